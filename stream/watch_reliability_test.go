package stream_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/pgtest"
	"github.com/pgcast/pgcast/stream"
)

// TestWatchedTableSurvivesReaderKills is reliability case R1 on a watched
// application table: the reader's backend is terminated 10 times while
// writers increment counters in the table with plain SQL; every committed
// change is delivered once, in per-row order (the counter workload checks
// n = 1, 2, 3, ... per row).
func TestWatchedTableSurvivesReaderKills(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, url := pgtest.NewPool(t)
	mustExec(t, pool, `CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0, secret text)`)
	mustExec(t, pool, `INSERT INTO counters (id) SELECT generate_series(1, 20)`)
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := db.ApplyWatch(ctx, tx, 1, db.WatchDefinition{Table: "counters", Columns: db.WatchColumns{Exclude: []string{"secret"}}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &counterWorkload{last: map[int64]int64{}, changed: make(chan struct{}, 1)}
	for id := range int64(20) {
		w.records = append(w.records, id+1)
	}
	startReader(t, stream.ReaderConfig{URL: url, Handler: w.handle, PollInterval: 50 * time.Millisecond,
		ReconnectMin: 5 * time.Millisecond, ReconnectMax: 50 * time.Millisecond})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := w.records[rand.IntN(len(w.records))]
				if _, err := pool.Exec(ctx, `UPDATE counters SET n = n + 1, secret = md5(random()::text) WHERE id = $1`, id); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	killed := []int32{}
	pid := readerPID(t, pool, killed)
	for i := range 10 {
		var ok bool
		if err := pool.QueryRow(ctx, `SELECT pg_terminate_backend($1, 10000)`, pid).Scan(&ok); err != nil || !ok {
			t.Fatalf("kill %d: %v %v", i, ok, err)
		}
		killed = append(killed, pid)
		pid = readerPID(t, pool, killed)
	}
	close(stop)
	wg.Wait()
	verifyCounters(t, pool, w, 60*time.Second)
}

// verifyCounters waits until every row's delivered n equals its committed
// n, then checks that nothing was duplicated or reordered.
func verifyCounters(t *testing.T, pool *pgxpool.Pool, w *counterWorkload, timeout time.Duration) {
	t.Helper()
	want := map[int64]int64{}
	var total int64
	rows, err := pool.Query(context.Background(), `SELECT id, n FROM counters`)
	if err != nil {
		t.Fatal(err)
	}
	var id, n int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { want[id] = n; total += n; return nil }); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(timeout)
	for w.updates.Load() < total {
		select {
		case <-w.changed:
		case <-deadline:
			t.Fatalf("delivered %d of %d committed updates", w.updates.Load(), total)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) > 0 {
		t.Fatalf("%d problems, first: %v", len(w.errs), w.errs)
	}
	for id, n := range want {
		if w.last[id] != n {
			t.Fatalf("row %d: delivered up to %d, committed %d", id, w.last[id], n)
		}
	}
	if w.updates.Load() != total {
		t.Fatalf("delivered %d updates, committed %d (duplicates)", w.updates.Load(), total)
	}
	t.Logf("%d committed updates of a watched table over %d rows delivered exactly once, in order", total, len(want))
}

// An update of a watched row decodes with its record, changed field ids and
// the changed columns' old values (Event.Old).
func TestReaderDecodesWatchedUpdate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, url := pgtest.NewPool(t)
	mustExec(t, pool, `CREATE TABLE orders (id int PRIMARY KEY, status text, total numeric)`)
	mustExec(t, pool, `INSERT INTO orders VALUES (7, 'new', 5)`)
	var watch db.WatchApplyResult
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		watch, err = db.ApplyWatch(ctx, tx, 1, db.WatchDefinition{Table: "orders"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	startReader(t, stream.ReaderConfig{URL: url, Handler: c.handle, PollInterval: 50 * time.Millisecond})
	mustExec(t, pool, `UPDATE orders SET status = 'paid', total = 6`)
	evs := c.waitFor(t, 10*time.Second, "the update", func(evs []*stream.Event) bool {
		return len(evs) > 0 && evs[len(evs)-1].Kind == stream.KindRecordValueChanged
	})
	ev := evs[len(evs)-1]
	var ids []int64
	for _, col := range watch.Watch.Columns {
		if col.Name != "id" {
			ids = append(ids, col.ID)
		}
	}
	if ev.RecordID != 7 || ev.ClassID != watch.Watch.ClassID || ev.ClassName != "orders" || len(ev.FieldIDs) != 2 || ev.FieldIDs[0] != ids[0] || ev.FieldIDs[1] != ids[1] {
		t.Fatalf("event %+v (fields %v)", ev, watch.Watch.Columns)
	}
	if string(ev.Record) != `{"id":7,"total":6,"status":"paid"}` || string(ev.Old) != `{"total":5,"status":"new"}` {
		t.Fatalf("record %s, old %s", ev.Record, ev.Old)
	}
}
