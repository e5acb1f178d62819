package stream_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcast/pgcast/internal/pgtest"
	"github.com/pgcast/pgcast/stream"
)

// Entries older than the retention go, newer ones stay, and the horizon is
// recorded for resumes.
func TestPrunerKeepsRetention(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	ctx := t.Context()
	p, err := stream.NewPruner(stream.PrunerConfig{Pool: pool, Retention: time.Hour, BatchSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 20; i++ {
		mustExec(t, pool, insertEntry, i)
	}
	t0 := time.Now()
	if n, err := p.Prune(ctx, t0); err != nil || n != 0 {
		t.Fatalf("first round: %d deleted, %v", n, err)
	}
	for i := 21; i <= 30; i++ {
		mustExec(t, pool, insertEntry, i)
	}
	// Not yet an hour: nothing goes.
	if n, err := p.Prune(ctx, t0.Add(59*time.Minute)); err != nil || n != 0 {
		t.Fatalf("within retention: %d deleted, %v", n, err)
	}
	n, err := p.Prune(ctx, t0.Add(61*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var left, oldest, through int64
	if err := pool.QueryRow(ctx, `SELECT count(*), min((data->'payload'->>'seq')::int) FROM pgcast.events`).Scan(&left, &oldest); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT pruned_through FROM pgcast.event_log`).Scan(&through); err != nil {
		t.Fatal(err)
	}
	var maxGone int64
	if err := pool.QueryRow(ctx, `SELECT coalesce(min(id), 0) - 1 FROM pgcast.events`).Scan(&maxGone); err != nil {
		t.Fatal(err)
	}
	if n != 20 || left != 10 || oldest != 21 || through != maxGone {
		t.Fatalf("deleted %d, left %d (oldest seq %d), pruned_through %d (want %d)", n, left, oldest, through, maxGone)
	}
}

// TestPrunerDropsStaleListeners: the listener row of a reader whose backend
// is gone (its node was killed, so no reader reconnects to clean it) is
// dropped by the next pruning round; a live one is kept.
func TestPrunerDropsStaleListeners(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	ctx := t.Context()
	if _, err := pool.Exec(ctx, `INSERT INTO pgcast.listeners (pid, waiting) VALUES (-42, true)`); err != nil {
		t.Fatal(err)
	}
	live, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Release()
	if _, err := live.Exec(ctx, `INSERT INTO pgcast.listeners (pid, waiting) VALUES (pg_backend_pid(), true)`); err != nil {
		t.Fatal(err)
	}
	p, err := stream.NewPruner(stream.PrunerConfig{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Prune(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	var pids []int32
	rows, _ := pool.Query(ctx, `SELECT pid FROM pgcast.listeners ORDER BY pid`)
	if pids, err = pgx.CollectRows(rows, pgx.RowTo[int32]); err != nil {
		t.Fatal(err)
	}
	if len(pids) != 1 || uint32(pids[0]) != live.Conn().PgConn().PID() {
		t.Fatalf("listeners after pruning: %v, want only the live backend %d", pids, live.Conn().PgConn().PID())
	}
}
