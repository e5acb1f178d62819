package stream_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgcast/pgcast/internal/pgtest"
	"github.com/pgcast/pgcast/stream"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// collector is a Handler that records events and lets tests wait for them.
type collector struct {
	mu      sync.Mutex
	events  []*stream.Event
	changed chan struct{} // closed and replaced on every delivery
	onPage  func([]*stream.Event)
}

func newCollector() *collector { return &collector{changed: make(chan struct{})} }

func (c *collector) handle(evs []*stream.Event) {
	if c.onPage != nil {
		c.onPage(evs)
	}
	c.mu.Lock()
	c.events = append(c.events, evs...)
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

func (c *collector) snapshot() ([]*stream.Event, chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*stream.Event(nil), c.events...), c.changed
}

// waitFor waits until cond holds for the delivered events, or fails t.
func (c *collector) waitFor(t testing.TB, timeout time.Duration, what string, cond func([]*stream.Event) bool) []*stream.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		evs, changed := c.snapshot()
		if cond(evs) {
			return evs
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s; have %d events", timeout, what, len(evs))
		}
	}
}

func (c *collector) waitCount(t testing.TB, n int, timeout time.Duration) []*stream.Event {
	t.Helper()
	return c.waitFor(t, timeout, fmt.Sprintf("%d events", n), func(evs []*stream.Event) bool { return len(evs) >= n })
}

func startReader(t testing.TB, cfg stream.ReaderConfig) *stream.Reader {
	t.Helper()
	r, err := stream.NewReader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return r
}

// insertEntry appends a raw published entry whose payload carries seq.
const insertEntry = `INSERT INTO pgcast.events (kind, environment_id, data)
VALUES ('published', 1, jsonb_build_object('type', 'job.completed', 'source', 'jobs', 'payload', jsonb_build_object('seq', $1::bigint)))
RETURNING id`

func seqOf(t testing.TB, ev *stream.Event) int64 {
	t.Helper()
	var p struct{ Seq int64 }
	if err := jsonUnmarshal(ev.Payload, &p); err != nil {
		t.Fatalf("payload %s: %v", ev.Payload, err)
	}
	return p.Seq
}

func mustExec(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestReaderDeliversOnlyAfterStart(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	mustExec(t, pool, insertEntry, -1) // before start: never delivered
	c := newCollector()
	startReader(t, stream.ReaderConfig{URL: url, Handler: c.handle, PollOnly: true, PollInterval: 20 * time.Millisecond})
	for i := 1; i <= 5; i++ {
		mustExec(t, pool, insertEntry, i)
	}
	evs := c.waitCount(t, 5, 10*time.Second)
	for i, ev := range evs {
		if got := seqOf(t, ev); got != int64(i+1) {
			t.Fatalf("event %d has seq %d, want %d", i, got, i+1)
		}
		if ev.Kind != stream.KindPublished || ev.Type != "job.completed" || ev.Source != "jobs" || ev.Environment != 1 {
			t.Fatalf("bad event %+v", ev)
		}
		if i > 0 && ev.Position <= evs[i-1].Position {
			t.Fatalf("positions not increasing")
		}
	}
}

// TestReaderCommitSafe is reliability case R4: transactions take a log
// position, wait a random while, then commit (or roll back), so they commit
// out of position order. The delivered set must equal the committed set.
func TestReaderCommitSafe(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	c := newCollector()
	startReader(t, stream.ReaderConfig{URL: url, Handler: c.handle, PollInterval: 20 * time.Millisecond})

	ctx := context.Background()
	// A long transaction takes the lowest position first and commits last.
	long, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := long.Exec(ctx, insertEntry, 0); err != nil {
		t.Fatal(err)
	}

	const writers, perWriter = 8, 1250 // 10,000 writes
	var mu sync.Mutex
	committed := map[int64]bool{0: true}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				seq := int64(w*perWriter + i + 1)
				tx, err := pool.Begin(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := tx.Exec(ctx, insertEntry, seq); err != nil {
					t.Error(err)
					return
				}
				if rand.IntN(4) == 0 {
					time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond) // deliberate interleaving
				}
				if seq%10 == 0 {
					_ = tx.Rollback(ctx)
					continue
				}
				if err := tx.Commit(ctx); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				committed[seq] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// Let the reader deliver every writer's entry first: only then is "the long
	// transaction's entry comes last" a property of the reader rather than of
	// poll timing (a poll may legitimately pick up late writers together with
	// the long transaction, ordered by position).
	c.waitCount(t, len(committed)-1, 60*time.Second)
	if err := long.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	evs := c.waitCount(t, len(committed), 60*time.Second)
	seen := map[int64]bool{}
	for _, ev := range evs {
		s := seqOf(t, ev)
		if seen[s] {
			t.Fatalf("seq %d delivered twice", s)
		}
		if !committed[s] {
			t.Fatalf("seq %d delivered but not committed", s)
		}
		seen[s] = true
	}
	if len(seen) != len(committed) {
		t.Fatalf("delivered %d, committed %d", len(seen), len(committed))
	}
	if last := evs[len(evs)-1]; seqOf(t, last) != 0 {
		t.Fatalf("the long transaction's entry (lowest position, committed last) must come last, got seq %d", seqOf(t, last))
	}
}

func TestTwoReadersBothReceiveEverything(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	a, b := newCollector(), newCollector()
	startReader(t, stream.ReaderConfig{URL: url, Handler: a.handle, PollInterval: 20 * time.Millisecond})
	startReader(t, stream.ReaderConfig{URL: url, Handler: b.handle, PollInterval: 20 * time.Millisecond})
	for i := 1; i <= 200; i++ {
		mustExec(t, pool, insertEntry, i)
	}
	ea := a.waitCount(t, 200, 20*time.Second)
	eb := b.waitCount(t, 200, 20*time.Second)
	for i := range 200 {
		if ea[i].Position != eb[i].Position {
			t.Fatalf("readers disagree at %d", i)
		}
	}
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pgcast.listeners`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("want two registered listeners, got %d (%v)", n, err)
	}
}

func TestReaderStopIsIdempotentAndUnregisters(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	r, err := stream.NewReader(stream.ReaderConfig{URL: url, Handler: func([]*stream.Event) {}, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(context.Background()); err != nil { // before Start
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.Ready(); err != nil {
		t.Fatalf("not ready after start: %v", err)
	}
	for range 2 {
		if err := r.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pgcast.listeners`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("listener row left behind: %d (%v)", n, err)
	}
	if r.Ready() == nil {
		t.Fatal("stopped reader reports ready")
	}
}

func TestReaderConfigValidation(t *testing.T) {
	t.Parallel()
	for _, cfg := range []stream.ReaderConfig{
		{Handler: func([]*stream.Event) {}},
		{URL: "postgres://x/y"},
		{URL: "postgres://x/y", Handler: func([]*stream.Event) {}, PageSize: -1},
		{URL: "postgres://%zz", Handler: func([]*stream.Event) {}},
	} {
		if _, err := stream.NewReader(cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
}

var _ = pgx.ErrNoRows
