package stream_test

import (
	"maps"
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
// pushed out to ten minutes, the entry still arrives. (The reader drains
// rather than waits after every read that found entries, as it does when the
// log is busy, so that it goes back to waiting while the writer runs.)
func TestReaderCatchesWriterThatMissedTheFlag(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	c := newCollector()
	startReader(t, stream.ReaderConfig{URL: url, Handler: c.handle, PollInterval: 10 * time.Minute, PingInterval: 10 * time.Minute, DoorbellMaxRate: -1})
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

// Count events carry their class's count in the read's snapshot, whether
// the class's count was read up front (a class that changed lately) or by
// the delta itself (a class new to the reader), also when count events of
// several classes lie next to each other in a page.
func TestReaderCountEvents(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	c := newCollector()
	startReader(t, stream.ReaderConfig{URL: url, Handler: c.handle, PollInterval: 20 * time.Millisecond})
	class := map[string]int64{}
	for _, name := range []string{"a", "b", "c"} {
		var id int64
		if err := pool.QueryRow(t.Context(), `INSERT INTO pgcast.object_classes (name) VALUES ($1) RETURNING id`, name).Scan(&id); err != nil {
			t.Fatal(err)
		}
		class[name] = id
	}
	counts := func(evs []*stream.Event) map[int64]int64 {
		out := map[int64]int64{}
		for _, ev := range evs {
			if ev.Kind == stream.KindRecordsCountChanged {
				if _, dup := out[ev.ClassID]; dup {
					t.Fatalf("two count events for class %d", ev.ClassID)
				}
				out[ev.ClassID] = ev.Count
			}
		}
		return out
	}
	mustExec(t, pool, `INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, 3)`, class["a"])
	evs := c.waitFor(t, 10*time.Second, "a's count", func(evs []*stream.Event) bool { return len(counts(evs)) == 1 })
	if got := counts(evs)[class["a"]]; got != 3 {
		t.Fatalf("a: count %d, want 3", got)
	}
	before := len(evs)
	// One statement over three classes: its count events come last, side by
	// side; a is known to the reader by now, b and c are not.
	mustExec(t, pool, `INSERT INTO pgcast.object_records (object_class_id)
SELECT $1::bigint FROM generate_series(1, 2) UNION ALL SELECT $2 FROM generate_series(1, 4) UNION ALL SELECT $3`, class["a"], class["b"], class["c"])
	evs = c.waitFor(t, 10*time.Second, "three counts", func(evs []*stream.Event) bool { return len(evs) > before && len(counts(evs[before:])) == 3 })
	got := counts(evs[before:])
	if want := map[int64]int64{class["a"]: 5, class["b"]: 4, class["c"]: 1}; !maps.Equal(got, want) {
		t.Fatalf("counts %v, want %v", got, want)
	}
}
