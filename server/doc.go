// Package server is pgcast's HTTP surface: health and readiness, the
// WebSocket endpoints, the collections REST API, and the internal listener
// that serves Prometheus metrics. Metrics are never served on the public
// address.
package server
