// Package ws is the WebSocket transport both of pgcast's WebSocket APIs
// are served on: the upgrade (with its Origin check), one writer per
// connection that writes hand-built frames (FrameBuf) in one writev, the
// read loop and its checks of client frames (size, UTF-8, close payloads,
// the message rate), the connection caps per user and per client address,
// the slow-consumer close (4008), the registry of open connections and
// their batched close at shutdown, the fan-out gate, and the WebSocket
// metrics. A protocol plugs in an Outbox (which builds the frames) and
// handles client messages; ws knows no protocol. Both protocols' Outboxes
// keep what waits for the writer in a Queue: one queue implementation,
// bounded in items and in bytes (Config.MaxBuffer, MaxBufferBytes), whose
// overflow the Outbox answers by closing the connection with 4008; the
// protocol's policy (Catalyst's batching and coalescing, realtime's replies
// and held events) sits on top, in its own package.
package ws
