// Package catalyst serves the Catalyst WebSocket endpoints,
// /ws/events/object-records/ and /ws/events/tasks/ (see docs/catalyst.md):
// the handshake (filters, the ws-auth ticket, caps), the subscription to
// the hub, and the batcher, the connection's queue that sends JSON arrays
// of items when MessageLimit items are buffered or every MessageTime.
// Clients send nothing: their messages are dropped. The transport is
// package ws.
package catalyst
