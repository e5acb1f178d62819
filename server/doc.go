// Package server is pgcast's HTTP server. It routes the public address to
// the WebSocket endpoints (the Catalyst endpoints, package catalyst, and
// /api/realtime, package realtime, both on the transport of package ws),
// the collections REST API (package rest) and the ticket endpoint (package
// auth), and owns what every request shares: Config, Start and Stop
// (readiness off, the shutdown grace, the batched close of WebSockets),
// /livez and /readyz, the metrics registry and the internal listener that
// serves it (metrics are never served on the public address), the HTTP
// timeouts and per-address request cap, CORS, and JSON answers for what no
// route takes. Packages below server import neither server nor each other's
// protocols: server wires them. No package of server runs SQL or imports
// pgx: they hold the pool as *db.Pool and reach the database through
// package db's typed functions. Every error answer, REST or not, is one
// type (server/internal/httpjson's APIError).
package server
