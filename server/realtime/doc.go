// Package realtime serves /api/realtime (see docs/realtime.md): the
// handshake with an optional JWT, the connection's client messages
// (subscribe, unsubscribe, ping) and channel checks, its outbox (replies
// and events in a ws.Queue bounded in items and bytes, live events held
// while a resume replays the log, without gap or duplicate), and the
// replays themselves, bounded per node. The transport
// is package ws.
package realtime
