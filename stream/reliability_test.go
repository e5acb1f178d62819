package stream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/internal/pgcluster"
	"github.com/pgcast/pgcast/internal/pgtest"
	"github.com/pgcast/pgcast/stream"
)

// counterWorkload keeps records whose one cell "n" is incremented in SQL,
// so each record's value_changed events must carry n = 1, 2, 3, ... in
// delivery order: any loss, duplicate or reordering shows.
type counterWorkload struct {
	field   string
	records []int64
	mu      sync.Mutex
	last    map[int64]int64 // record → last n delivered
	updates atomic.Int64    // value_changed events delivered
	errs    []string
	changed chan struct{}
}

func setupCounters(t testing.TB, pool *pgxpool.Pool, n int) *counterWorkload {
	t.Helper()
	ctx := context.Background()
	var class, field int64
	if err := pool.QueryRow(ctx, `INSERT INTO pgcast.object_classes (name) VALUES ('counters') RETURNING id`).Scan(&class); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `INSERT INTO pgcast.object_class_fields (object_class_id, name, type) VALUES ($1, 'n', 'integer') RETURNING id`, class).Scan(&field); err != nil {
		t.Fatal(err)
	}
	w := &counterWorkload{field: fmt.Sprint(field), last: map[int64]int64{}, changed: make(chan struct{}, 1)}
	rows, err := pool.Query(ctx, `INSERT INTO pgcast.object_records (object_class_id, cells) SELECT $1, jsonb_build_object($2::text, 0) FROM generate_series(1, $3) RETURNING id`, class, w.field, n)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		w.records = append(w.records, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *counterWorkload) handle(evs []*stream.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, ev := range evs {
		if ev.Kind != stream.KindRecordValueChanged {
			continue
		}
		var rec map[string]json.RawMessage
		var n int64
		if err := json.Unmarshal(ev.Record, &rec); err != nil || json.Unmarshal(rec["n"], &n) != nil {
			w.errs = append(w.errs, fmt.Sprintf("record %d: bad payload %s", ev.RecordID, ev.Record))
			continue
		}
		if want := w.last[ev.RecordID] + 1; n != want && len(w.errs) < 10 {
			w.errs = append(w.errs, fmt.Sprintf("record %d: got n=%d, want %d (loss, duplicate or reorder)", ev.RecordID, n, want))
		}
		w.last[ev.RecordID] = n
		w.updates.Add(1)
	}
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// write increments a random record's counter; errors (a restarting server)
// are returned for the caller to retry.
func (w *counterWorkload) write(ctx context.Context, pool *pgxpool.Pool) error {
	id := w.records[rand.IntN(len(w.records))]
	_, err := pool.Exec(ctx, `UPDATE pgcast.object_records SET cells = jsonb_build_object($2::text, (cells->>$2)::bigint + 1) WHERE id = $1`, id, w.field)
	return err
}

// run writes from n goroutines until stop is closed.
func (w *counterWorkload) run(ctx context.Context, pool *pgxpool.Pool, n int, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := w.write(ctx, pool); err != nil {
					select { // the server is restarting: back off briefly
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		}()
	}
	return &wg
}

// verify waits until every record's delivered value equals its committed
// value (the database is the truth, including commits whose result a writer
// never learnt), then checks no error was seen.
func (w *counterWorkload) verify(t testing.TB, pool *pgxpool.Pool, timeout time.Duration) {
	t.Helper()
	want := map[int64]int64{}
	var total int64
	rows, err := pool.Query(context.Background(), `SELECT id, (cells->>$1)::bigint FROM pgcast.object_records WHERE id = ANY($2)`, w.field, w.records)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, n int64
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		want[id] = n
		total += n
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	deadline := time.After(timeout)
	for w.updates.Load() < total {
		select {
		case <-w.changed:
		case <-deadline:
			w.mu.Lock()
			var short []string
			for id, n := range want {
				if w.last[id] != n {
					short = append(short, fmt.Sprintf("record %d: delivered up to %d, committed %d", id, w.last[id], n))
				}
			}
			errs := w.errs
			w.mu.Unlock()
			t.Fatalf("delivered %d of %d committed updates; %v; problems: %v", w.updates.Load(), total, short, errs)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) > 0 {
		t.Fatalf("%d problems, first: %v", len(w.errs), w.errs)
	}
	for id, n := range want {
		if w.last[id] != n {
			t.Fatalf("record %d: delivered up to %d, committed %d", id, w.last[id], n)
		}
	}
	if w.updates.Load() != total {
		t.Fatalf("delivered %d updates, committed %d (duplicates)", w.updates.Load(), total)
	}
	t.Logf("%d committed updates over %d records delivered exactly once, in order", total, len(want))
}

// TestReaderSurvivesBackendKills is reliability case R1: the reader's
// backend is terminated 10 times under continuous writes; every committed
// change is delivered once, in per-record order, and reconnects are counted.
func TestReaderSurvivesBackendKills(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	w := setupCounters(t, pool, 20)
	reg := prometheus.NewRegistry()
	startReader(t, stream.ReaderConfig{URL: url, Handler: w.handle, PollInterval: 50 * time.Millisecond,
		ReconnectMin: 5 * time.Millisecond, ReconnectMax: 50 * time.Millisecond, Registerer: reg})
	stop := make(chan struct{})
	wg := w.run(context.Background(), pool, 4, stop)
	ctx := context.Background()
	killed := []int32{}
	pid := readerPID(t, pool, killed)
	for i := range 10 {
		// The timeout form waits until the backend has exited, so a slow exit
		// under load is never mistaken for the reader's next connection.
		var ok bool
		if err := pool.QueryRow(ctx, `SELECT pg_terminate_backend($1, 10000)`, pid).Scan(&ok); err != nil || !ok {
			t.Fatalf("kill %d: %v %v", i, ok, err)
		}
		killed = append(killed, pid)
		pid = readerPID(t, pool, killed) // wait for the reconnect
	}
	close(stop)
	wg.Wait()
	w.verify(t, pool, 60*time.Second)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var reconnects float64
	for _, mf := range mfs {
		if mf.GetName() == "pgcast_reader_reconnects_total" {
			reconnects = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if reconnects < 10 {
		t.Fatalf("reconnects counted: %v, want ≥ 10", reconnects)
	}
}

// readerPID waits until a reader backend not among killed is connected.
func readerPID(t testing.TB, pool *pgxpool.Pool, killed []int32) int32 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var pid int32
		err := pool.QueryRow(context.Background(), `SELECT pid FROM pg_stat_activity WHERE application_name = 'pgcast-reader' AND datname = current_database() AND pid <> ALL($1) AND state IS NOT NULL LIMIT 1`, killed).Scan(&pid)
		if err == nil {
			return pid
		}
		time.Sleep(5 * time.Millisecond) // pg_stat_activity has no change signal
	}
	t.Fatal("reader did not reconnect within 30 s")
	return 0
}

// TestReaderSurvivesPostgresRestart is reliability case R3: Postgres is
// restarted (fast, then immediate) while writers run; the reader recovers
// within 30 s of Postgres accepting connections and no committed change is
// lost, duplicated or reordered.
func TestReaderSurvivesPostgresRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cluster, url, pool := durableCluster(t)
	w := setupCounters(t, pool, 20)
	logs := &lockedBuffer{}
	r := startReader(t, stream.ReaderConfig{URL: url, Handler: w.handle, PollInterval: 50 * time.Millisecond,
		ReconnectMin: 20 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	defer func() {
		if t.Failed() {
			t.Logf("reader log:\n%s", logs.String())
		}
	}()
	stop := make(chan struct{})
	wg := w.run(ctx, pool, 3, stop)
	for _, mode := range []string{"fast", "immediate"} {
		before := w.updates.Load()
		for w.updates.Load() < before+50 { // the stream flows before the restart
			<-w.changed
		}
		if err := cluster.Restart(ctx, mode); err != nil {
			t.Fatal(err)
		}
		up := time.Now()
		after := w.updates.Load()
		deadline := time.After(30 * time.Second)
		for w.updates.Load() < after+50 {
			select {
			case <-w.changed:
			case <-deadline:
				t.Fatalf("%s restart: no recovery within 30 s", mode)
			}
		}
		t.Logf("%s restart: stream recovered %s after Postgres accepted connections", mode, time.Since(up).Round(time.Millisecond))
		if err := r.Ready(); err != nil {
			t.Fatalf("reader not ready after %s restart: %v", mode, err)
		}
	}
	close(stop)
	wg.Wait()
	w.verify(t, pool, 60*time.Second)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// After a crash, Postgres hands out again the transaction ids that never
// reached durable storage. A transaction committed after the restart can
// then carry an id below the reader's last snapshot's xmax that the snapshot
// calls finished: the snapshot alone would skip its entries for good.
func TestReaderAfterCrashReusesTransactionIDs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cluster, url, pool := durableCluster(t)
	c := newCollector()
	startReader(t, stream.ReaderConfig{URL: url, Handler: c.handle, PollInterval: 20 * time.Millisecond, PollOnly: true,
		ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond})
	mustExec(t, pool, insertEntry, 1)
	c.waitCount(t, 1, 20*time.Second)
	var before uint64
	if err := pool.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	// Burn 200 transaction ids without a durable trace: with the WAL writer
	// stopped, their abort records stay in shared memory until the crash.
	var walWriter int
	if err := pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'`).Scan(&walWriter); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(walWriter, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(walWriter, syscall.SIGCONT) }() // if the crash did not happen
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		if _, err := conn.Exec(ctx, `BEGIN; SELECT pg_current_xact_id(); ROLLBACK`); err != nil {
			t.Fatal(err)
		}
	}
	conn.Release()
	// Let the reader complete a read begun after the burn: its snapshot's
	// xmax is past the burnt ids.
	var burnt time.Time
	if err := pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&burnt); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var done bool
		if err := pool.QueryRow(ctx, `SELECT coalesce(bool_or(state = 'idle' AND state_change > $1::timestamptz + interval '60 ms' AND query = 'COMMIT'), false)
FROM pg_stat_activity WHERE application_name = 'pgcast-reader'`, burnt).Scan(&done); err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reader did not read after the burn")
		}
		time.Sleep(10 * time.Millisecond) // pg_stat_activity offers nothing to await
	}
	if err := cluster.Restart(ctx, "immediate"); err != nil {
		t.Fatal(err)
	}
	var after uint64
	if err := pool.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after > before+200 {
		t.Fatalf("ids were not reused (%d before the crash, %d after): the case did not arise", before, after)
	}
	mustExec(t, pool, insertEntry, 2)
	evs := c.waitCount(t, 2, 20*time.Second)
	if seqOf(t, evs[1]) != 2 || len(evs) != 2 {
		t.Fatalf("after the crash: %d events, last seq %d", len(evs), seqOf(t, evs[len(evs)-1]))
	}
}

// durableCluster starts a private, migrated cluster that the test may
// restart (durable: see pgtest.PrivateCluster).
func durableCluster(t *testing.T) (*pgcluster.Cluster, string, *pgxpool.Pool) {
	t.Helper()
	return pgtest.PrivateCluster(t, pgcluster.Config{Durable: true})
}

// A read whose delta spans many pages loses its connection after handing
// over the first pages: the read is retried from the same previous snapshot
// and the entries already handed over are not handed over again.
func TestReaderInterruptedMidDelta(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	ctx := context.Background()
	const n, pageSize = 2500, 500
	var (
		mu     sync.Mutex
		seqs   []int64
		pages  int
		killed bool
	)
	done := make(chan struct{})
	handler := func(evs []*stream.Event) {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range evs {
			seqs = append(seqs, seqOf(t, ev))
		}
		pages++
		if pages == 2 && !killed {
			// On the reader's goroutine, between two pages of the cursor
			// over the rest of the delta: its next fetch fails.
			killed = true
			var ok bool
			if err := pool.QueryRow(ctx, `SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity
WHERE application_name = 'pgcast-reader' AND datname = current_database()`).Scan(&ok); err != nil || !ok {
				t.Errorf("kill the reader's backend: %v %v", ok, err)
			}
		}
		if len(seqs) >= n {
			select {
			case <-done:
			default:
				close(done)
			}
		}
	}
	startReader(t, stream.ReaderConfig{URL: url, Handler: handler, PageSize: pageSize, PollInterval: 50 * time.Millisecond,
		ReconnectMin: 5 * time.Millisecond, ReconnectMax: 50 * time.Millisecond})
	mustExec(t, pool, `INSERT INTO pgcast.events (kind, environment_id, data)
SELECT 'published', 1, jsonb_build_object('type', 'job.completed', 'source', 'jobs', 'payload', jsonb_build_object('seq', g))
FROM generate_series(1, $1) g`, n)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d of %d delivered", len(seqs), n)
	}
	mu.Lock()
	defer mu.Unlock()
	if !killed {
		t.Fatal("the read was never interrupted")
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("delivery %d is seq %d: want every entry once, in order", i, s)
		}
	}
	if len(seqs) != n {
		t.Fatalf("%d delivered, want %d", len(seqs), n)
	}
}
