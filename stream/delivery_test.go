package stream_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pgcast/pgcast/internal/pgtest"
	"github.com/pgcast/pgcast/stream"
)

// With polling pushed out to ten minutes, only the doorbell (NOTIFY rung by
// the writing transaction) can bring these events in time.
func TestReaderWokenByDoorbell(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	c := newCollector()
	startReader(t, stream.ReaderConfig{URL: url, Handler: c.handle, PollInterval: 10 * time.Minute, PingInterval: 10 * time.Minute})
	for i := 1; i <= 3; i++ {
		mustExec(t, pool, insertEntry, i) // raw entries do not ring
		mustExec(t, pool, `SELECT pgcast.publish('job.completed', jsonb_build_object('seq', $1::bigint))`, 100+i)
		evs := c.waitFor(t, 20*time.Second, "the published event", func(evs []*stream.Event) bool {
			return len(evs) > 0 && seqOf(t, evs[len(evs)-1]) == int64(100+i)
		})
		if got := seqOf(t, evs[len(evs)-2]); got != int64(i) {
			t.Fatalf("entry before the published one: seq %d, want %d", got, i)
		}
	}
}

// A 1 MB cell travels through the log, never through NOTIFY, and arrives
// whole in the decoded record.
func TestReaderDeliversLargeCell(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	c := newCollector()
	startReader(t, stream.ReaderConfig{URL: url, Handler: c.handle, PollInterval: 10 * time.Minute, PingInterval: 10 * time.Minute})
	var classID, fieldID int64
	if err := pool.QueryRow(t.Context(), `INSERT INTO pgcast.object_classes (environment_id, name) VALUES (1, 'big') RETURNING id`).Scan(&classID); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(t.Context(), `INSERT INTO pgcast.object_class_fields (object_class_id, name, type) VALUES ($1, 'body', 'text') RETURNING id`, classID).Scan(&fieldID); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	mustExec(t, pool, `INSERT INTO pgcast.object_records (object_class_id, cells) VALUES ($1, jsonb_build_object($2::bigint::text, $3::text))`, classID, fieldID, big)
	evs := c.waitFor(t, 20*time.Second, "record_created", func(evs []*stream.Event) bool {
		for _, ev := range evs {
			if ev.Kind == stream.KindRecordCreated {
				return true
			}
		}
		return false
	})
	for _, ev := range evs {
		if ev.Kind != stream.KindRecordCreated {
			continue
		}
		var rec struct{ Body string }
		if err := jsonUnmarshal(ev.Record, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Body != big {
			t.Fatalf("body: %d bytes delivered, want %d intact", len(rec.Body), len(big))
		}
		return
	}
}

// A writer that looked at the waiting flag before the reader set it commits
// without ringing. The reader knows such writers (they were running when it
// said it waits) and keeps checking briefly until they end: with polling
// pushed out to ten minutes, the entry still arrives.
func TestReaderCatchesWriterThatMissedTheFlag(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	c := newCollector()
	startReader(t, stream.ReaderConfig{URL: url, Handler: c.handle, PollInterval: 10 * time.Minute, PingInterval: 10 * time.Minute})
	ctx := t.Context()
	waitFlag := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			var waiting bool
			if err := pool.QueryRow(ctx, `SELECT bool_or(waiting) FROM pgcast.listeners`).Scan(&waiting); err != nil {
				t.Fatal(err)
			}
			if waiting == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("listener flag never became %v", want)
			}
			time.Sleep(5 * time.Millisecond) // the flag is a row: nothing to await
		}
	}
	waitFlag(true)
	// Pretend the reader is busy: the writer sees no waiting reader and
	// will not ring.
	mustExec(t, pool, `UPDATE pgcast.listeners SET waiting = false`)
	w, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Rollback(ctx)
	if _, err := w.Exec(ctx, `SELECT pgcast.publish('job.completed', '{"seq": 2}')`); err != nil {
		t.Fatal(err)
	}
	// Another entry and a bare doorbell: the reader reads it, goes back to
	// waiting while the writer is still running.
	mustExec(t, pool, insertEntry, 1)
	mustExec(t, pool, `SELECT pg_notify('pgcast_events', '')`)
	c.waitCount(t, 1, 20*time.Second)
	waitFlag(true)
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	evs := c.waitCount(t, 2, 20*time.Second)
	if seqOf(t, evs[1]) != 2 {
		t.Fatalf("second event seq %d", seqOf(t, evs[1]))
	}
}
