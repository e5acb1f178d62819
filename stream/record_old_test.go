package stream_test

import (
	"testing"
	"time"

	"github.com/pgcast/pgcast/internal/pgtest"
	"github.com/pgcast/pgcast/stream"
)

// An update of one of pgcast's own records carries the changed cells' old
// values by field name (Event.Old), as a watched table's update does, so a
// subscription filter can tell a record leaving it from one that never
// matched: a cell that did not exist before is null, unchanged cells are
// left out.
func TestRecordUpdateCarriesOldValues(t *testing.T) {
	t.Parallel()
	pool, url := pgtest.NewPool(t)
	c := newCollector()
	startReader(t, stream.ReaderConfig{URL: url, Handler: c.handle, PollInterval: 50 * time.Millisecond})
	var class, status, total, note int64
	if err := pool.QueryRow(t.Context(), `INSERT INTO pgcast.object_classes (environment_id, name) VALUES (1, 'orders') RETURNING id`).Scan(&class); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name string
		id   *int64
	}{{"status", &status}, {"total", &total}, {"note", &note}} {
		if err := pool.QueryRow(t.Context(), `INSERT INTO pgcast.object_class_fields (object_class_id, name, type) VALUES ($1, $2, 'json') RETURNING id`, class, f.name).Scan(f.id); err != nil {
			t.Fatal(err)
		}
	}
	mustExec(t, pool, `INSERT INTO pgcast.object_records (id, object_class_id, cells) VALUES (5, $1, jsonb_build_object($2::bigint::text, 'new', $3::bigint::text, 10))`, class, status, total)
	mustExec(t, pool, `UPDATE pgcast.object_records SET cells = jsonb_build_object($1::bigint::text, 'paid', $2::bigint::text, 10, $3::bigint::text, 'fast') WHERE id = 5`, status, total, note)
	evs := c.waitFor(t, 10*time.Second, "the update", func(evs []*stream.Event) bool {
		return len(evs) > 0 && evs[len(evs)-1].Kind == stream.KindRecordValueChanged
	})
	ev := evs[len(evs)-1]
	if got, want := string(ev.Old), `{"note":null,"status":"new"}`; got != want {
		t.Fatalf("old values %s, want %s (record %s)", got, want, ev.Record)
	}
	for _, e := range evs[:len(evs)-1] {
		if e.Old != nil {
			t.Fatalf("%s carries old values %s", e.Kind, e.Old)
		}
	}
}
