// Package db owns pgcast's connections to PostgreSQL and the SQL pgcast
// runs on them, behind typed functions, so that the packages above it hold
// no SQL text and (stream) do not import pgx:
//
//   - the pgx pool (NewPool), the migration runner (golang-migrate with the
//     migrations embedded from package sql) and the schema-version check
//     that keeps a binary off a schema it was not built for;
//   - the event log (pgcast.events): the entry kinds the capture triggers
//     write (re-exported from package triggers) and Entry, one raw row;
//   - the reader's dedicated connection (Listen, ListenConn): its session
//     settings, LISTEN, its pgcast.listeners row and waiting flag, waiting
//     for a doorbell, retiring a predecessor's backend;
//   - the reader's delta reads on it: the first page in one pipelined
//     batch ending in COMMIT (ReadDelta), and a large delta's bounds and
//     pages, a statement each (DeltaBounds, ReadPage), never leaving the
//     listening connection idle in a transaction;
//   - replay pages (LogEnd, ReadReplayPage), pruning (Prune) and the
//     classification of driver errors (IsTimeout);
//   - watches of the application's own tables.
//
// Which entries a read takes and why that is commit-safe, the doorbell
// policy and every timeout are package stream's: db runs each statement
// under the context it is given.
package db
