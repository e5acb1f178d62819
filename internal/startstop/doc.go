// Package startstop is the lifecycle of pgcast's background services (the
// event log's Reader and Pruner): a Base to embed that starts a service's
// goroutine once, stops it idempotently and waits for it, and exposes
// started and stopped signals that tests wait on instead of sleeping; and
// Sleep, the pause of a service's loop that ends with its context.
package startstop
