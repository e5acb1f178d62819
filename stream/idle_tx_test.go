package stream

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pgcast/pgcast/internal/pgtest"
)

// Reliability case R5 during a catch-up (issue: the reader's connection sat
// idle in a transaction between the FETCHes of a large read, up to seconds,
// holding the cluster's NOTIFY queue all the while). One statement writes
// 30,000 records; the reader reads them in 60 pages. Its backend is looked
// at in pg_stat_activity from each page's hand-over (when the reader is
// between two statements of the read, where a cursor's transaction would
// sit idle) and sampled continuously from another connection: it is never
// idle in a transaction.
func TestReaderLargeReadNeverIdleInTransaction(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	ctx := context.Background()
	class, field := recordClass(t, pool, "catch_up")
	const n, pageSize = 30_000, 500
	const stateQuery = `SELECT coalesce(state, '') FROM pg_stat_activity WHERE application_name = 'pgcast-reader' AND datname = current_database()`
	var (
		mu      sync.Mutex
		got     int
		between = map[string]int{} // states seen from the hand-overs
		errs    []error
		done    = make(chan struct{})
		reading = make(chan struct{}) // closed at the first page of the statement
	)
	startLargeReader(t, ReaderConfig{URL: url, PageSize: pageSize, Handler: func(evs []*Event) {
		mu.Lock()
		defer mu.Unlock()
		before := got
		for _, ev := range evs {
			if ev.Kind == KindRecordCreated && ev.ClassID == class {
				got++
			}
		}
		if before == 0 && got > 0 {
			close(reading)
		}
		if got > 0 && before < n {
			var state string
			if err := pool.QueryRow(ctx, stateQuery).Scan(&state); err != nil {
				errs = append(errs, err)
			}
			between[state]++
		}
		if before < n && got >= n {
			close(done)
		}
	}})
	// The sampler: as often as it can, from the statement's first page to
	// its last.
	sampled := map[string]int{}
	samplerDone := make(chan error, 1)
	go func() {
		select {
		case <-reading:
		case <-time.After(5 * time.Minute):
			samplerDone <- errors.New("the statement's read did not start within 5 minutes")
			return
		}
		for {
			select {
			case <-done:
				samplerDone <- nil
				return
			default:
			}
			var state string
			if err := pool.QueryRow(ctx, stateQuery).Scan(&state); err != nil {
				samplerDone <- err
				return
			}
			sampled[state]++
		}
	}()
	if _, err := pool.Exec(ctx, insertRecords, class, strconv.FormatInt(field, 10), n); err != nil {
		t.Fatal(err)
	}
	if err := <-samplerDone; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	t.Logf("reader backend states: at the hand-overs %v; sampled during the read %v", between, sampled)
	if between["idle in transaction"] > 0 || sampled["idle in transaction"] > 0 {
		t.Fatalf("the reader's backend was idle in a transaction during a large read: at the hand-overs %v, sampled %v", between, sampled)
	}
	if between["idle"] < n/pageSize/2 {
		t.Fatalf("the hand-overs saw %v: want the backend idle between the read's statements", between)
	}
}
