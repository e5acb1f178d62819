package stream

import (
	"context"
	"testing"

	"github.com/pgcast/pgcast/internal/pgtest"
)

// Reliability case R5, the guard: the reader's connection (the very one its
// sessions open, see connect) carries idle_in_transaction_session_timeout,
// so no bug or wedged Handler can leave it idle in a transaction, holding
// the cluster's NOTIFY queue, for longer than that.
func TestReaderConnectionBoundsIdleInTransaction(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	r, err := NewReader(ReaderConfig{URL: url, Handler: func([]*Event) {}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	conn, err := r.connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var ms int64
	var source string
	if err := conn.QueryRow(ctx, `SELECT setting::bigint, source FROM pg_settings WHERE name = 'idle_in_transaction_session_timeout'`).Scan(&ms, &source); err != nil {
		t.Fatal(err)
	}
	if ms != idleInTransactionTimeout.Milliseconds() {
		t.Fatalf("idle_in_transaction_session_timeout is %d ms (%s), want %d ms", ms, source, idleInTransactionTimeout.Milliseconds())
	}
}
