package db_test

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/pgtest"
)

// The reader's delta must come from the xid index, not from a walk of the
// whole log in id order (with a cursor's default planning, optimise for the
// first 10 % of rows, Postgres picks the walk) nor from a sequential scan,
// parallel workers or JIT compilation (what it picks before the log has
// statistics, when every range looks like a third of the table): any of
// them makes every read cost the whole retained log, or milliseconds.
func TestDeltaQueryUsesTheXidIndex(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	ctx := t.Context()
	for range 100 { // 20,000 entries over 100 transactions
		if _, err := pool.Exec(ctx, `INSERT INTO pgcast.events (kind, environment_id, data)
SELECT 'published', 1, '{"type":"job.done","payload":{}}' FROM generate_series(1, 200)`); err != nil {
			t.Fatal(err)
		}
	}
	conn := listen(t, url) // the reader's own connection settings
	for _, stats := range []string{"without statistics", "after ANALYZE"} {
		if stats == "after ANALYZE" {
			if _, err := pool.Exec(ctx, `ANALYZE pgcast.events`); err != nil {
				t.Fatal(err)
			}
		}
		var snapText string
		if err := conn.QueryRow(ctx, `SELECT pg_current_snapshot()::text`).Scan(&snapText); err != nil {
			t.Fatal(err)
		}
		sn, err := parseSnapshot(snapText)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The first page as the reader runs it, and a large delta's bounds
		// and pages: prepared statements on the connection's generic plans.
		suffix := "_" + strings.ReplaceAll(stats, " ", "_")
		xmax := strconv.FormatUint(sn.xmax-5, 10)
		xip := "'{" + strings.Join(sn.xipText(), ",") + "}'"
		var lines, pageLines []string
		for _, q := range []struct{ name, sql, args string }{
			{"first", db.DeltaFirstPage, fmt.Sprintf(`'%s', %s, %d, 1000`, xmax, xip, int64(math.MaxInt64))},
			{"bounds", db.DeltaBounds, fmt.Sprintf(`'%s', %s, %d`, xmax, xip, int64(math.MaxInt64))},
			{"page", db.DeltaPage, fmt.Sprintf(`'%s', %s, %d, 100, 32100, '%s', 1000`, xmax, xip, int64(math.MaxInt64), snapText)},
		} {
			if _, err := tx.Exec(ctx, `PREPARE `+q.name+suffix+` AS `+q.sql); err != nil {
				t.Fatal(err)
			}
			rows, err := tx.Query(ctx, `EXPLAIN EXECUTE `+q.name+suffix+`(`+q.args+`)`)
			if err != nil {
				t.Fatal(err)
			}
			l, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			if q.name == "page" {
				pageLines = l
			} else {
				lines = append(lines, l...)
			}
		}
		_ = tx.Rollback(ctx)
		plan := strings.Join(lines, "\n")
		// A large delta's page walks a stretch of the primary key, never
		// more.
		pagePlan := strings.Join(pageLines, "\n")
		if !strings.Contains(pagePlan, "Index Cond: ((id > $4) AND (id <= $5))") || strings.Contains(pagePlan, "events_xid_idx") {
			t.Errorf("%s: a page of a large delta is not read from a stretch of the primary key:\n%s", stats, pagePlan)
		}
		lines = append(lines, pageLines...)
		plan += "\n" + pagePlan
		if strings.Count(plan, "events_xid_idx") < 2 {
			t.Errorf("%s: the delta does not come from the xid index:\n%s", stats, plan)
		}
		for _, bad := range []string{"Seq Scan on events", "Gather", "JIT"} {
			if strings.Contains(plan, bad) {
				t.Errorf("%s: the delta's plan has %q:\n%s", stats, bad, plan)
			}
		}
		// A scan of the primary key is fine over a range or for one entry
		// (a count set within the delta), never whole.
		for i, line := range lines {
			if strings.Contains(line, "Index Scan using events_pkey") && (i+1 == len(lines) ||
				!strings.Contains(lines[i+1], "Index Cond: (id >") && !strings.Contains(lines[i+1], "Index Cond: (id = ") &&
					!strings.Contains(lines[i+1], "Index Cond: ((id > $4) AND (id <= $5))")) {
				t.Errorf("%s: the delta's plan walks the whole primary key:\n%s", stats, plan)
			}
		}
	}
}

// A transaction still in progress, say a statement writing a million
// entries, has its entries in the xid index already. Every read must not
// visit them (only to find them invisible): that made every read, and every
// other event, slower for as long as the statement ran.
func TestDeltaSkipsTransactionsStillRunning(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	ctx := t.Context()
	conn := listen(t, url)
	const running = 5000
	big, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Rollback(context.Background())
	if _, err := big.Exec(ctx, `INSERT INTO pgcast.events (kind, environment_id, data)
SELECT 'published', 1, '{"type":"job.done","payload":{}}' FROM generate_series(1, $1)`, running); err != nil {
		t.Fatal(err)
	}
	// A later transaction ends, so the running one is in the snapshot's
	// in-progress list (not at or above its xmax).
	if _, err := pool.Exec(ctx, `INSERT INTO pgcast.events (kind, environment_id, data) VALUES ('published', 1, '{"type":"job.done","payload":{}}')`); err != nil {
		t.Fatal(err)
	}
	var snapText string
	if err := conn.QueryRow(ctx, `SELECT pg_current_snapshot()::text`).Scan(&snapText); err != nil {
		t.Fatal(err)
	}
	prev, err := parseSnapshot(snapText)
	if err != nil {
		t.Fatal(err)
	}
	if len(prev.xip) == 0 {
		t.Fatalf("snapshot %s: the running transaction is not in progress in it", snapText)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `PREPARE running_delta AS `+db.DeltaFirstPage); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, fmt.Sprintf(`EXPLAIN (ANALYZE, TIMING OFF) EXECUTE running_delta('%d', '{%s}', %d, 1000)`,
		prev.xmax, strings.Join(prev.xipText(), ","), int64(math.MaxInt64)))
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	found := false
	for i, line := range lines {
		if !strings.Contains(line, "Index Cond: (xid = ANY") {
			continue
		}
		found = true
		if !strings.Contains(lines[i-1], "rows=0 ") {
			t.Fatalf("the read visits the entries of a transaction still running (%d of them):\n%s", running, plan)
		}
	}
	if !found {
		t.Fatalf("no index scan of the in-progress transactions in the plan:\n%s", plan)
	}
}

// listen opens the reader's connection (db.Listen, registered as the reader
// registers it), closed when the test ends.
func listen(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	lc, err := db.Listen(t.Context(), db.ListenConfig{URL: url, Register: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lc.Close(context.Background()) })
	return lc.PgxConn()
}

// snapshot is a parsed pg_current_snapshot()::text, "xmin:xmax:xip,...":
// the tests' own (the reader's is package stream's).
type snapshot struct {
	xmax uint64
	xip  []uint64
}

func parseSnapshot(s string) (snapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return snapshot{}, fmt.Errorf("parse snapshot %q: want xmin:xmax:xip", s)
	}
	var sn snapshot
	var err error
	if sn.xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return snapshot{}, fmt.Errorf("parse snapshot %q: xmax: %w", s, err)
	}
	if parts[2] != "" {
		for _, p := range strings.Split(parts[2], ",") {
			x, err := strconv.ParseUint(p, 10, 64)
			if err != nil {
				return snapshot{}, fmt.Errorf("parse snapshot %q: xip: %w", s, err)
			}
			sn.xip = append(sn.xip, x)
		}
	}
	return sn, nil
}

// xipText is the in-progress list as decimal strings.
func (s snapshot) xipText() []string {
	out := make([]string, len(s.xip))
	for i, x := range s.xip {
		out[i] = strconv.FormatUint(x, 10)
	}
	return out
}
