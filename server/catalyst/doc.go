// Package catalyst serves the Catalyst WebSocket endpoints,
// /ws/events/object-records/ and /ws/events/tasks/ (see docs/catalyst.md):
// the handshake (filters, the ws-auth ticket, caps), the subscription to
// the hub, and the batcher, the connection's Outbox that sends JSON arrays
// of items when MessageLimit items are buffered or every MessageTime (its
// policy: the items wait in a ws.Queue, bounded in items and bytes).
// Clients send nothing: their messages are dropped. The transport is
// package ws.
package catalyst
