// Command pgcast turns changes in PostgreSQL into real-time WebSocket streams.
// It is the cobra command tree (serve, dev, migrate, collections, config,
// version, token, bench) and the wiring of pgcast's components from flags,
// environment and defaults. See README.md, or run `pgcast --help`.
package main
