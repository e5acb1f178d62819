// Package db owns pgcast's connections to PostgreSQL and every SQL
// statement pgcast runs on them, behind typed functions that take a pool,
// a connection or a transaction (Querier, RowsQuerier, DB) and return Go
// types, so that the packages above it hold no SQL text and import no pgx
// (stream and server hold the pool as *Pool):
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
//   - collections (CreateCollection, ApplyCollection, GetCollection,
//     ListCollections; their definitions and validation are package
//     internal/collections, a leaf) and watches of the application's own
//     tables (ApplyWatch, ListWatches, GetWatch, RemoveWatch);
//   - records as the REST API reads and writes them (CreateRecord,
//     GetRecord, UpdateRecord, DeleteRecord, ListRecords: raw rows,
//     RecordRow, that package stream builds the API's record from) and
//     published events (Publish);
//   - the one-time WebSocket tickets (IssueTicket, TakeTicket,
//     RestoreTicket, DeleteExpiredTickets) and what a realtime namespace is
//     (LookupNamespace).
//
// Database errors that callers act on come back typed: sentinels to test
// with errors.Is (ErrCollectionNotFound, ErrRecordNotFound,
// ErrRecordNotAllowed, ErrTicketNotFound, ...) and error types to test with
// errors.As (CellsError, InvalidEventError); never a pgconn error a caller
// must decode. Who may read or write what, which entries a read takes and
// why that is commit-safe, the doorbell policy and every timeout are
// package stream's or server's: db runs each statement under the context it
// is given.
package db
