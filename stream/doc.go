// Package stream is the path of a change from the event log to subscribers:
// the event model and its encodings, the Reader that reads new log entries
// in commit-safe order and decodes each one once, the Hub that fans events
// out to the subscriptions that may read them, Replay of the log for
// resuming subscribers, and the Pruner that enforces retention. It owns the
// policy (what to read when, commit safety, the doorbell, timeouts,
// reconnection, decoding, fan-out); every SQL statement it runs is package
// db's, behind typed functions: stream imports neither pgx nor triggers.
// Its domain rules each live in one file that every API uses: who may read
// what (permission.go, also the REST API's), channels and realtime types
// (channel.go, also the replay's SQL condition and the realtime API's
// channel checks), and the record's JSON (record.go, also REST's records).
//
// # Commit-safe reading
//
// Log positions (pgcast.events.id) are assigned at insert, not at commit, so
// reading "WHERE id > cursor" would silently skip an entry whose transaction
// commits after a later one. The Reader instead remembers the snapshot of its
// previous read (xmax and the in-progress list xip). The entries that became
// visible since are exactly those of transactions that were in progress then
// or started after: xid = ANY(xip_prev) OR xid >= xmax_prev. Each read
// returns them, in position order, from a REPEATABLE READ transaction whose
// snapshot becomes the next "previous". Nothing is skipped and nothing is
// read twice, however transactions interleave.
//
// Order: two transactions that change the same record are serialised by the
// record's row lock, and each appends its entry while holding that lock, so
// the later-committing one always has the higher position. Delivering each
// read in position order therefore keeps every record's events in commit
// order.
//
// # Waking
//
// Writers ring a doorbell (a NOTIFY without data) only while the reader's row
// in pgcast.listeners says it waits. While commits are rare (below
// ReaderConfig.DoorbellMaxRate) the reader waits after every read, so each
// commit wakes it and costs one read of one round trip. When they are
// frequent it stops waiting and reads every DrainInterval: a NOTIFY holds a
// cluster-wide lock through the commit flush, and writers ringing on every
// commit would queue on it. Writers that looked at the flag just before the
// reader set it are caught by the read that follows setting it, and by short
// re-reads until the transactions running then have ended; a lost doorbell
// costs at most PollInterval.
//
// Counts: writers keep no count. The Reader derives every class's record
// count from the log (each record_created +1, each record_deleted -1),
// starting from a checkpoint the Pruner advances, and makes the count events
// itself: after a run of one transaction's record entries, the count of each
// class the run changed, as of the read's snapshot: the exact count after
// every change read so far (see counts.go and docs/design.md, "Counts").
// Counts are state, not history.
package stream
