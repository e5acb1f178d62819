package stream_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/pgtest"
	"github.com/pgcast/pgcast/stream"
)

// countTracker keeps, per class, the last count event a reader handed over
// and its position.
type countTracker struct {
	mu      sync.Mutex
	last    map[int64][2]int64 // class → {position, count}
	changed chan struct{}
}

func newCountTracker() *countTracker {
	return &countTracker{last: map[int64][2]int64{}, changed: make(chan struct{}, 1)}
}

func (c *countTracker) handle(evs []*stream.Event) {
	c.mu.Lock()
	for _, ev := range evs {
		if ev.Kind == stream.KindRecordsCountChanged {
			c.last[ev.ClassID] = [2]int64{ev.Position, ev.Count}
		}
	}
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// countsAt waits until the tracker has a count event at or after the
// position of each class in marks, and returns those counts.
func (c *countTracker) countsAt(t testing.TB, what string, marks map[int64]int64, timeout time.Duration) map[int64]int64 {
	t.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		got, done := map[int64]int64{}, true
		for class, pos := range marks {
			l, ok := c.last[class]
			if !ok || l[0] < pos {
				done = false
			}
			got[class] = l[1]
		}
		c.mu.Unlock()
		if done {
			return got
		}
		select {
		case <-c.changed:
		case <-deadline:
			t.Fatalf("%s: no count event at the marks %v within %s; last %v", what, marks, timeout, got)
		}
	}
}

// markAll inserts one record into each class in one statement, and returns
// the position of each one's entry: a reader's count event at or after it
// is its count after everything before.
func markAll(t testing.TB, pool *pgxpool.Pool, classes []int64) map[int64]int64 {
	t.Helper()
	mustExec(t, pool, `INSERT INTO pgcast.object_records (object_class_id) SELECT unnest($1::bigint[])`, classes)
	// Nothing else writes now: each class's last record_created is its mark.
	rows, err := pool.Query(context.Background(), `SELECT object_class_id, max(id) FROM pgcast.events
WHERE kind = 'record_created' AND object_class_id = ANY ($1) GROUP BY 1`, classes)
	if err != nil {
		t.Fatal(err)
	}
	marks := map[int64]int64{}
	var class, pos int64
	if _, err := pgx.ForEachRow(rows, []any{&class, &pos}, func() error { marks[class] = pos; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(marks) != len(classes) {
		t.Fatalf("marks %v for classes %v", marks, classes)
	}
	return marks
}

// realCounts is SELECT count(*) per class.
func realCounts(t testing.TB, pool *pgxpool.Pool, classes []int64) map[int64]int64 {
	t.Helper()
	out := map[int64]int64{}
	for _, c := range classes {
		var n int64
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pgcast.object_records WHERE object_class_id = $1`, c).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[c] = n
	}
	return out
}

// countWriter runs writer w's share of a mixed workload on classes: single
// rows inserted and deleted, transactions of several statements, rolled
// back transactions; writers listed in big also insert (and, every other
// one, delete) 10,000 rows in one statement, and the writer truncate
// truncates the records once. signal is called after iteration half.
func countWriter(ctx context.Context, pool *pgxpool.Pool, w int, classes []int64, iterations int, big, truncate bool, half func()) error {
	rnd := rand.New(rand.NewPCG(uint64(w), 7))
	class := func() int64 { return classes[rnd.IntN(len(classes))] }
	exec := func(q string, args ...any) error {
		_, err := pool.Exec(ctx, q, args...)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "40P01" { // a deadlock rolls back: nothing to count
			return nil
		}
		return err
	}
	for i := range iterations {
		if i == iterations/2 && half != nil {
			half()
		}
		var err error
		switch {
		case big && i == iterations/4:
			err = exec(`INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, 10000)`, class())
		case big && w%2 == 0 && i == 3*iterations/4:
			err = exec(`DELETE FROM pgcast.object_records WHERE id IN (SELECT id FROM pgcast.object_records WHERE object_class_id = $1 ORDER BY id LIMIT 10000)`, class())
		case truncate && i == iterations/3:
			err = exec(`TRUNCATE pgcast.object_records CASCADE`)
		default:
			switch rnd.IntN(10) {
			case 0, 1, 2, 3:
				err = exec(`INSERT INTO pgcast.object_records (object_class_id) VALUES ($1)`, class())
			case 4, 5:
				err = exec(`DELETE FROM pgcast.object_records WHERE id = (SELECT max(id) FROM pgcast.object_records WHERE object_class_id = $1)`, class())
			case 6, 7:
				err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, `INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, 5)`, class()); err != nil {
						return err
					}
					if _, err := tx.Exec(ctx, `DELETE FROM pgcast.object_records WHERE id = (SELECT min(id) FROM pgcast.object_records WHERE object_class_id = $1)`, class()); err != nil {
						return err
					}
					return errRollBack
				})
				if errors.Is(err, errRollBack) {
					err = nil
				}
			default:
				err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					for range 3 {
						if _, err := tx.Exec(ctx, `INSERT INTO pgcast.object_records (object_class_id) VALUES ($1), ($2)`, class(), class()); err != nil {
							return err
						}
					}
					_, err := tx.Exec(ctx, `DELETE FROM pgcast.object_records WHERE id IN (SELECT id FROM pgcast.object_records WHERE object_class_id = $1 ORDER BY id DESC LIMIT 2)`, class())
					return err
				})
			}
		}
		if err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "40P01" {
				continue
			}
			return fmt.Errorf("writer %d, iteration %d: %w", w, i, err)
		}
	}
	return nil
}

var errRollBack = errors.New("roll back")

// Counts derived from the log are exact at quiescent points: 8 writers
// insert and delete (single rows, 10,000-row statements, transactions of
// several statements, rolled back transactions, a TRUNCATE) while the
// readers' backends are killed again and again; a reader started mid-stream
// (from the pruner's checkpoint, advanced meanwhile) and one started at
// the end agree with the first and with SELECT count(*).
func TestCountsExactUnderConcurrentWriters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, url := pgtest.NewPool(t)
	var classes []int64
	for _, name := range []string{"a", "b", "c"} {
		var id int64
		if err := pool.QueryRow(ctx, `INSERT INTO pgcast.object_classes (name) VALUES ($1) RETURNING id`, name).Scan(&id); err != nil {
			t.Fatal(err)
		}
		classes = append(classes, id)
	}
	mustExec(t, pool, `INSERT INTO pgcast.object_records (object_class_id) SELECT unnest($1::bigint[]) FROM generate_series(1, 50)`, classes)
	readerCfg := func(h func([]*stream.Event)) stream.ReaderConfig {
		return stream.ReaderConfig{URL: url, Handler: h, PollInterval: 50 * time.Millisecond,
			ReconnectMin: 5 * time.Millisecond, ReconnectMax: 50 * time.Millisecond}
	}
	first := newCountTracker()
	startReader(t, readerCfg(first.handle))

	// The pruner checkpoints every round (nothing is old enough to go).
	pruner, err := stream.NewPruner(stream.PrunerConfig{Pool: pool, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := pruner.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pruner.Stop(context.Background()) })

	const writers, iterations = 8, 40
	halfway := make(chan struct{})
	var once sync.Once
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- countWriter(ctx, pool, w, classes, iterations, w < 4, w == 5, func() { once.Do(func() { close(halfway) }) })
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	// Kill reader backends while the writers run; start the second reader
	// halfway.
	var second *countTracker
	killed := []int32{}
kills:
	for len(killed) < 12 {
		select {
		case <-done:
			break kills
		case <-halfway:
			if second == nil {
				second = newCountTracker()
				startReader(t, readerCfg(second.handle))
			}
		default:
		}
		pid := readerPID(t, pool, killed)
		var ok bool
		if err := pool.QueryRow(ctx, `SELECT pg_terminate_backend($1, 10000)`, pid).Scan(&ok); err != nil || !ok {
			t.Fatalf("kill %d: %v %v", len(killed), ok, err)
		}
		killed = append(killed, pid)
	}
	<-done
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if second == nil {
		second = newCountTracker()
		startReader(t, readerCfg(second.handle))
	}
	t.Logf("%d reader backends killed", len(killed))

	marks := markAll(t, pool, classes)
	want := realCounts(t, pool, classes)
	got1 := first.countsAt(t, "first reader", marks, 60*time.Second)
	got2 := second.countsAt(t, "reader started mid-stream", marks, 60*time.Second)
	if !maps.Equal(got1, want) || !maps.Equal(got2, want) {
		t.Fatalf("counts: first reader %v, second %v, SELECT count(*) %v", got1, got2, want)
	}
	derived, err := db.ClassCounts(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range classes {
		if derived[c] != want[c] {
			t.Fatalf("db.ClassCounts %v, SELECT count(*) %v", derived, want)
		}
	}

	// A reader started now, from the checkpoint: the next change shows the
	// same counts to all three.
	third := newCountTracker()
	startReader(t, readerCfg(third.handle))
	marks = markAll(t, pool, classes)
	want = realCounts(t, pool, classes)
	for i, tr := range []*countTracker{first, second, third} {
		if got := tr.countsAt(t, fmt.Sprintf("reader %d", i+1), marks, 60*time.Second); !maps.Equal(got, want) {
			t.Fatalf("reader %d: counts %v, SELECT count(*) %v", i+1, got, want)
		}
	}
	t.Logf("counts %v exact in three readers", want)
}

// Pruning with a short retention keeps every entry a checkpoint still
// needs: a transaction open across pruning rounds (its entries below the
// horizon by the time it commits) is counted, and readers started after
// the pruner deleted the log they would otherwise have read count exactly
// from the checkpoint.
func TestCountsExactWithShortRetention(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, url := pgtest.NewPool(t)
	var class int64
	if err := pool.QueryRow(ctx, `INSERT INTO pgcast.object_classes (name) VALUES ('a') RETURNING id`).Scan(&class); err != nil {
		t.Fatal(err)
	}
	classes := []int64{class}
	p, err := stream.NewPruner(stream.PrunerConfig{Pool: pool, Retention: time.Millisecond, BatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	prune := func() int64 {
		t.Helper()
		n, err := p.Prune(ctx, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// A transaction that stays open across rounds: 300 records.
	open, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Rollback(context.Background())
	if _, err := open.Exec(ctx, `INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, 300)`, class); err != nil {
		t.Fatal(err)
	}
	var deleted int64
	for round := range 5 {
		mustExec(t, pool, `INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, 200)`, class)
		mustExec(t, pool, `DELETE FROM pgcast.object_records WHERE id IN (SELECT id FROM pgcast.object_records WHERE object_class_id = $1 ORDER BY id LIMIT 50)`, class)
		if round == 2 {
			if err := open.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// Marks are recorded at the round's time: the next round, 1 ms
		// of retention later, deletes what the previous one marked.
		prune()
		time.Sleep(2 * time.Millisecond) // the retention is measured in wall time
		deleted += prune()
	}
	if deleted == 0 {
		t.Fatal("the pruner deleted nothing")
	}
	var left int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pgcast.events WHERE kind IN ('record_created', 'record_deleted')`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	t.Logf("pruned %d entries, %d record entries left", deleted, left)
	derived, err := db.ClassCounts(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	want := realCounts(t, pool, classes)
	if derived[class] != want[class] || want[class] != 5*150+300 {
		t.Fatalf("derived count %d, SELECT count(*) %d, want %d", derived[class], want[class], 5*150+300)
	}
	tr := newCountTracker()
	startReader(t, stream.ReaderConfig{URL: url, Handler: tr.handle, PollInterval: 50 * time.Millisecond})
	marks := markAll(t, pool, classes)
	want = realCounts(t, pool, classes)
	if got := tr.countsAt(t, "reader started after pruning", marks, 30*time.Second); !maps.Equal(got, want) {
		t.Fatalf("counts %v, SELECT count(*) %v", got, want)
	}
}

// A class created has count 0 and a class deleted takes its count away:
// a class id used again (an explicit id) starts from 0.
func TestCountsOfClassesCreatedAndDeleted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, url := pgtest.NewPool(t)
	tr := newCountTracker()
	startReader(t, stream.ReaderConfig{URL: url, Handler: tr.handle, PollInterval: 20 * time.Millisecond})
	mustExec(t, pool, `INSERT INTO pgcast.object_classes (id, name) VALUES (1000, 'a')`)
	mustExec(t, pool, `INSERT INTO pgcast.object_records (object_class_id) SELECT 1000 FROM generate_series(1, 7)`)
	if got := tr.countsAt(t, "first class", markAll(t, pool, []int64{1000}), 20*time.Second); got[1000] != 8 {
		t.Fatalf("count %d, want 8", got[1000])
	}
	p, err := stream.NewPruner(stream.PrunerConfig{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, pool, `DELETE FROM pgcast.object_classes WHERE id = 1000`)
	if _, err := p.Prune(ctx, time.Now()); err != nil { // the checkpoint drops the class
		t.Fatal(err)
	}
	mustExec(t, pool, `INSERT INTO pgcast.object_classes (id, name) VALUES (1000, 'b')`)
	if got := tr.countsAt(t, "class used again", markAll(t, pool, []int64{1000}), 20*time.Second); got[1000] != 1 {
		t.Fatalf("count %d of the new class 1000, want 1", got[1000])
	}
	if _, err := p.Prune(ctx, time.Now()); err != nil { // the checkpoint says 1000: 1
		t.Fatal(err)
	}
	// Deleted and created again between two checkpoints: a reader starting
	// now counts from the collection_created entry on.
	mustExec(t, pool, `DELETE FROM pgcast.object_classes WHERE id = 1000`)
	mustExec(t, pool, `INSERT INTO pgcast.object_classes (id, name) VALUES (1000, 'c')`)
	mustExec(t, pool, `INSERT INTO pgcast.object_records (object_class_id) SELECT 1000 FROM generate_series(1, 3)`)
	fresh := newCountTracker()
	startReader(t, stream.ReaderConfig{URL: url, Handler: fresh.handle, PollInterval: 20 * time.Millisecond})
	marks := markAll(t, pool, []int64{1000})
	for _, c := range []*countTracker{tr, fresh} {
		if got := c.countsAt(t, "class created again", marks, 20*time.Second); got[1000] != 4 {
			t.Fatalf("count %d of class 1000, want 4", got[1000])
		}
	}
}

// Counts stay exact across Postgres restarts (fast, then immediate) under
// writes: the reader that lived through them, a reader started afterwards
// from a checkpoint taken before them (whose server start no longer
// matches: the log above its position is counted too), and
// db.ClassCounts agree with SELECT count(*).
func TestCountsExactAcrossPostgresRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cluster, url, pool := durableCluster(t)
	var class int64
	if err := pool.QueryRow(ctx, `INSERT INTO pgcast.object_classes (name) VALUES ('a') RETURNING id`).Scan(&class); err != nil {
		t.Fatal(err)
	}
	classes := []int64{class}
	cfg := func(h func([]*stream.Event)) stream.ReaderConfig {
		return stream.ReaderConfig{URL: url, Handler: h, PollInterval: 50 * time.Millisecond,
			ReconnectMin: 20 * time.Millisecond, ReconnectMax: 500 * time.Millisecond}
	}
	live := newCountTracker()
	startReader(t, cfg(live.handle))
	mustExec(t, pool, `INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, 100)`, class)
	p, err := stream.NewPruner(stream.PrunerConfig{Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Prune(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				q := `INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, 3)`
				if (i+w)%3 == 0 {
					q = `DELETE FROM pgcast.object_records WHERE id = (SELECT min(id) FROM pgcast.object_records WHERE object_class_id = $1)`
				}
				if _, err := pool.Exec(ctx, q, class); err != nil {
					select { // the server is restarting: back off briefly
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		}()
	}
	for _, mode := range []string{"fast", "immediate"} {
		live.countsAt(t, "before the "+mode+" restart", markAll(t, pool, classes), 30*time.Second)
		if err := cluster.Restart(ctx, mode); err != nil {
			t.Fatal(err)
		}
		live.countsAt(t, "after the "+mode+" restart", markAll(t, pool, classes), 30*time.Second)
	}
	close(stop)
	wg.Wait()
	after := newCountTracker()
	startReader(t, cfg(after.handle))
	marks := markAll(t, pool, classes)
	want := realCounts(t, pool, classes)
	for name, tr := range map[string]*countTracker{"the reader that lived through the restarts": live, "a reader started after them": after} {
		if got := tr.countsAt(t, name, marks, 30*time.Second); !maps.Equal(got, want) {
			t.Fatalf("%s: counts %v, SELECT count(*) %v", name, got, want)
		}
	}
	derived, err := db.ClassCounts(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if derived[class] != want[class] {
		t.Fatalf("db.ClassCounts %d, SELECT count(*) %d", derived[class], want[class])
	}
	t.Logf("count %d exact after two restarts", want[class])
}
