package db_test

import (
	"testing"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/pgtest"
)

// Reliability case R5, the guard: the reader's connection (the very one its
// sessions open: Listen) carries idle_in_transaction_session_timeout, so no
// bug or wedged Handler can leave it idle in a transaction, holding the
// cluster's NOTIFY queue, for longer than that.
func TestReaderConnectionBoundsIdleInTransaction(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	ctx := t.Context()
	conn := listen(t, url)
	var ms int64
	var source string
	if err := conn.QueryRow(ctx, `SELECT setting::bigint, source FROM pg_settings WHERE name = 'idle_in_transaction_session_timeout'`).Scan(&ms, &source); err != nil {
		t.Fatal(err)
	}
	if ms != db.IdleInTransactionTimeout.Milliseconds() {
		t.Fatalf("idle_in_transaction_session_timeout is %d ms (%s), want %d ms", ms, source, db.IdleInTransactionTimeout.Milliseconds())
	}
}
