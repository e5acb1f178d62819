package stream

import (
	"context"
	"encoding/json"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/internal/pgtest"
)

// startLargeReader starts a reader for the tests of large reads and stops it
// at the end of the test.
func startLargeReader(t *testing.T, cfg ReaderConfig) *Reader {
	t.Helper()
	r, err := NewReader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
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

// recordClass creates a class with one integer field "n".
func recordClass(t *testing.T, pool *pgxpool.Pool, name string) (class, field int64) {
	t.Helper()
	ctx := context.Background()
	if err := pool.QueryRow(ctx, `INSERT INTO pgcast.object_classes (name) VALUES ($1) RETURNING id`, name).Scan(&class); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `INSERT INTO pgcast.object_class_fields (object_class_id, name, type) VALUES ($1, 'n', 'integer') RETURNING id`, class).Scan(&field); err != nil {
		t.Fatal(err)
	}
	return class, field
}

// insertRecords is one statement writing n records of class, as an
// application would: the triggers append a record_created entry per record
// and a count entry.
const insertRecords = `INSERT INTO pgcast.object_records (object_class_id, cells)
SELECT $1, jsonb_build_object($2::text, g) FROM generate_series(1, $3) g`

// hugeRecords is how many records TestReaderHugeStatement writes in one
// statement; PGCAST_R7_RECORDS overrides it (the figures for a million are
// measured by hand that way).
func hugeRecords(t *testing.T) int {
	if s := os.Getenv("PGCAST_R7_RECORDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 2000 {
			t.Fatalf("PGCAST_R7_RECORDS=%q: want a number of at least 2000", s)
		}
		return n
	}
	return 200_000
}

// TestReaderHugeStatement is reliability case R7, through real records: one
// statement inserts 200,000 records of a class while job events are
// published one after another (each once the previous one arrived). The
// reader hands the statement's entries over a page at a time, in order,
// with bounded memory; it marks progress at every page, so readiness holds
// however long the whole read takes; and the job events keep flowing: while
// the statement runs, the reader does not wade through its uncommitted
// entries on every read, and after it commits, a job event waits at most
// for the pages of the statement before it in the log (the log is ordered),
// not for any one giant statement. The figures are logged.
func TestReaderHugeStatement(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	ctx := context.Background()
	n := hugeRecords(t)
	class, field := recordClass(t, pool, "huge")
	const pageSize = 1000

	var (
		mu                sync.Mutex
		r                 *Reader
		pages, got        int
		count             int64 = -1
		lastPos, progress int64
		maxHeap           uint64
		problems          []string
		jobs              = map[int64]time.Time{} // seq → delivered
		firstPage, lastPg time.Time
		maxGap            time.Duration
		changed           = make(chan struct{}) // closed and replaced on every page
	)
	problem := func(s string) {
		if len(problems) < 10 {
			problems = append(problems, s)
		}
	}
	handler := func(evs []*Event) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		pages++
		if len(evs) > pageSize {
			problem("a page of " + strconv.Itoa(len(evs)) + " events")
		}
		huge := 0
		for _, ev := range evs {
			switch {
			case ev.Kind == KindRecordCreated && ev.ClassID == class:
				// The statement's entries in log order, each once. (A job
				// event may fall among them in the log and yet come after
				// them all: it committed after the statement.)
				if ev.Position <= lastPos {
					problem("position " + strconv.FormatInt(ev.Position, 10) + " after " + strconv.FormatInt(lastPos, 10))
				}
				lastPos = ev.Position
				huge++
			case ev.Kind == KindRecordsCountChanged && ev.ClassID == class:
				count = ev.Count
			case ev.Kind == KindPublished:
				var p struct{ Seq int64 }
				if err := json.Unmarshal(ev.Payload, &p); err != nil {
					problem("job payload " + string(ev.Payload))
				}
				if _, dup := jobs[p.Seq]; dup {
					problem("job " + strconv.FormatInt(p.Seq, 10) + " delivered twice")
				}
				jobs[p.Seq] = now
			}
		}
		// Inside the statement's read (a page after its first): progress
		// was marked since the previous page, and readiness holds.
		p := r.lastRead.Load()
		if got > 0 && got < n {
			if p <= progress {
				problem("no progress marked between two pages of the statement's read (page " + strconv.Itoa(pages) + ")")
			}
			if err := r.Ready(); err != nil {
				problem("not ready during the statement's read: " + err.Error())
			}
			maxGap = max(maxGap, now.Sub(lastPg))
		}
		progress = p
		if huge > 0 {
			if got == 0 {
				firstPage = now
			}
			lastPg = now
			got += huge
			if (got/pageSize)%50 == 0 {
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				maxHeap = max(maxHeap, ms.HeapAlloc)
			}
		}
		close(changed)
		changed = make(chan struct{})
	}
	r, err := NewReader(ReaderConfig{URL: url, Handler: handler, PageSize: pageSize})
	if err != nil {
		t.Fatal(err)
	}
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := r.Start(startCtx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	// await waits, on the handler's signal, until cond holds (under mu),
	// for up to 5 minutes.
	await := func(cond func() bool) bool {
		deadline := time.After(5 * time.Minute)
		for {
			mu.Lock()
			ok, ch := cond(), changed
			mu.Unlock()
			if ok {
				return true
			}
			select {
			case <-ch:
			case <-deadline:
				return false
			}
		}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		if !await(cond) {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("timed out waiting for %s: %d of %d records, %d jobs", what, got, n, len(jobs))
		}
	}

	// Job events, one after another, each once the previous has arrived.
	type job struct {
		seq       int64
		committed time.Time
	}
	var (
		jobsMu    sync.Mutex
		committed []job
	)
	stopJobs := make(chan struct{})
	jobsDone := make(chan struct{})
	go func() {
		defer close(jobsDone)
		for seq := int64(1); ; seq++ {
			select {
			case <-stopJobs:
				return
			default:
			}
			if _, err := pool.Exec(ctx, `SELECT pgcast.publish('job.tick', jsonb_build_object('seq', $1::bigint))`, seq); err != nil {
				t.Error(err)
				return
			}
			jobsMu.Lock()
			committed = append(committed, job{seq, time.Now()})
			jobsMu.Unlock()
			if !await(func() bool { _, ok := jobs[seq]; return ok }) {
				t.Errorf("job %d not delivered within 5 minutes", seq)
				return
			}
		}
	}()
	defer func() {
		select {
		case <-stopJobs:
		default:
			close(stopJobs)
		}
		<-jobsDone
	}()
	waitFor("the first jobs", func() bool { return len(jobs) >= 3 })

	started := time.Now()
	if _, err := pool.Exec(ctx, insertRecords, class, strconv.FormatInt(field, 10), n); err != nil {
		t.Fatal(err)
	}
	commit := time.Now()
	waitFor("every record and the count", func() bool { return got >= n && count >= 0 })
	// And a job committed after the statement's last page.
	waitFor("a job after the statement", func() bool {
		jobsMu.Lock()
		defer jobsMu.Unlock()
		for _, j := range committed {
			if _, ok := jobs[j.seq]; ok && j.committed.After(lastPg) {
				return true
			}
		}
		return false
	})
	close(stopJobs)
	<-jobsDone

	mu.Lock()
	defer mu.Unlock()
	jobsMu.Lock()
	defer jobsMu.Unlock()
	if len(problems) > 0 {
		t.Fatalf("%d problems, the first: %v", len(problems), problems)
	}
	if got != n {
		t.Fatalf("%d records delivered, want %d", got, n)
	}
	if count != int64(n) {
		t.Fatalf("count event says %d, want %d", count, n)
	}
	// A million decoded events held at once would take several hundred MB;
	// 200,000 records' events, over a hundred.
	if maxHeap > 96<<20 {
		t.Fatalf("heap reached %d MiB while paging", maxHeap>>20)
	}
	var during, after []time.Duration
	for _, j := range committed {
		at, ok := jobs[j.seq]
		if !ok {
			continue // the one in flight when the loop stopped
		}
		if at.Before(firstPage) {
			during = append(during, at.Sub(j.committed))
		} else {
			after = append(after, at.Sub(j.committed))
		}
	}
	read := lastPg.Sub(commit)
	maxDuring, maxAfter := slices.Max(append(during, 0)), slices.Max(append(after, 0))
	t.Logf("%d records in one statement (%s); read in %d pages, the first %s after the commit, the last %s after it (%.0f records/s); longest gap between two pages %s; max heap %d MiB",
		n, commit.Sub(started).Round(time.Millisecond), pages, firstPage.Sub(commit).Round(time.Millisecond), read.Round(time.Millisecond),
		float64(n)/lastPg.Sub(firstPage).Seconds(), maxGap.Round(time.Millisecond), maxHeap>>20)
	t.Logf("job events: %d delivered before the statement's first page, delay at most %s; %d after it (committed after the statement, or after its read's snapshot), delay at most %s",
		len(during), maxDuring.Round(time.Millisecond), len(after), maxAfter.Round(time.Millisecond))
	if len(during) == 0 || len(after) == 0 {
		t.Fatalf("jobs before the statement's first page: %d, after: %d; want some of each", len(during), len(after))
	}
	// The bound: a job waits for the pages of what precedes it in the log,
	// and one read more.
	if bound := read + 2*time.Second; maxAfter > bound || maxDuring > bound {
		t.Fatalf("a job event waited %s, want at most the statement's read (%s) and a read more", max(maxAfter, maxDuring), read)
	}
}

// TestReaderStretchesQueryTimeout: with a query timeout shorter than the
// reader's statements need (a busy machine, a delta of a million entries),
// a fixed timeout would fail the same read on every reconnection for ever.
// Each timeout doubles the bound for the next connection, so the read
// completes, and the timeouts are counted.
func TestReaderStretchesQueryTimeout(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	class, field := recordClass(t, pool, "slow")
	const n = 50_000
	var (
		mu      sync.Mutex
		got     int
		changed = make(chan struct{}, 1)
	)
	reg := prometheus.NewRegistry()
	// The first page of 50,000 entries takes some 60 ms to sort on an idle
	// machine; a connection attempt, a few.
	startLargeReader(t, ReaderConfig{URL: url, QueryTimeout: 20 * time.Millisecond, Registerer: reg,
		ReconnectMin: time.Millisecond, ReconnectMax: 20 * time.Millisecond,
		Handler: func(evs []*Event) {
			mu.Lock()
			defer mu.Unlock()
			for _, ev := range evs {
				if ev.Kind == KindRecordCreated && ev.ClassID == class {
					got++
				}
			}
			select {
			case changed <- struct{}{}:
			default:
			}
		}})
	if _, err := pool.Exec(context.Background(), insertRecords, class, strconv.FormatInt(field, 10), n); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Minute)
	for {
		mu.Lock()
		done := got >= n
		mu.Unlock()
		if done {
			break
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%d of %d records delivered", got, n)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var timeouts float64
	for _, mf := range mfs {
		if mf.GetName() == "pgcast_reader_query_timeouts_total" {
			timeouts = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if timeouts < 1 {
		t.Fatalf("pgcast_reader_query_timeouts_total is %v: the case did not arise", timeouts)
	}
	if got != n {
		t.Fatalf("%d records delivered, want %d", got, n)
	}
	t.Logf("%d records delivered after %v statement timeouts", n, timeouts)
}
