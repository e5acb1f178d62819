package triggers_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/pgcast/pgcast/db"
)

// A single-row UPDATE takes capture_watch_update's short path; a statement
// of more rows takes the set-based one. Each change below is made to one row
// alone and, to its twin (the same values, id + 100), by a statement that
// also touches a row it leaves as it is: both must append the same entries.
func TestWatchSingleRowUpdateMatchesSetBased(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exec(`INSERT INTO pgcast.environments (id, name) VALUES (2, 'two'), (3, 'three')`)
	f.exec(`CREATE TABLE items (id bigint PRIMARY KEY, tenant_id int, owner_id text, editors text[], status text,
		total numeric, at timestamptz, doc jsonb, secret text)`)
	f.watch(db.WatchDefinition{Table: "items", Read: "owner", OwnerColumns: []string{"owner_id", "editors"},
		EnvColumn: "tenant_id", Columns: db.WatchColumns{Exclude: []string{"secret"}}})
	// The row the set-based statements leave unchanged.
	f.exec(`INSERT INTO items VALUES (999, 2, 'zed', '{}', 'idle', 0, now(), '{}', 's')`)

	for i, c := range []struct {
		name string
		set  [][2]string // column, new value (SQL)
		want []string    // the kinds both must append
	}{
		{"value", [][2]string{{"status", "'paid'"}}, []string{"record_updated"}},
		{"several types", [][2]string{{"total", "total + 0.5"}, {"at", "'2026-01-02 03:04:05.5+02'"}, {"doc", `'{"a": [1, "é"]}'`}}, []string{"record_updated"}},
		{"no-op", [][2]string{{"status", "status"}}, nil},
		{"equal numeric", [][2]string{{"total", "1.00"}}, nil},
		{"excluded only", [][2]string{{"secret", "'other'"}}, nil},
		{"owners reordered", [][2]string{{"editors", "'{dave,carol}'"}}, []string{"record_updated"}},
		{"owner changed", [][2]string{{"owner_id", "'erin'"}, {"status", "'x'"}}, []string{"record_updated", "record_owner_added", "record_owner_removed"}},
		{"environment moved", [][2]string{{"tenant_id", "3"}}, []string{"record_deleted", "record_created"}},
		{"environment gone", [][2]string{{"tenant_id", "NULL"}}, []string{"record_deleted"}},
		{"environment gone with a value", [][2]string{{"tenant_id", "NULL"}, {"status", "'y'"}}, []string{"record_deleted"}},
		{"key changed", [][2]string{{"id", "id + 1000"}}, []string{"record_deleted", "record_created"}},
	} {
		one, twin := int64(i+1), int64(i+101)
		for _, id := range []int64{one, twin} {
			f.exec(`INSERT INTO items VALUES ($1, 2, 'bob', '{carol,dave}', 'new', 1.0, '2026-01-01 00:00:00+00', '{"a": 1}', 's')`, id)
		}
		f.skip()
		var single, both []string
		for _, s := range c.set {
			single = append(single, fmt.Sprintf("%s = %s", s[0], s[1]))
			both = append(both, fmt.Sprintf("%s = CASE WHEN id = 999 THEN %s ELSE %s END", s[0], s[0], s[1]))
		}
		f.exec(`UPDATE items SET `+strings.Join(single, ", ")+` WHERE id = $1`, one)
		got := f.newEntries()
		f.exec(`UPDATE items SET `+strings.Join(both, ", ")+` WHERE id IN ($1, 999)`, twin)
		want := f.newEntries()
		if !reflect.DeepEqual(kinds(got), c.want) && !(len(got) == 0 && len(c.want) == 0) {
			t.Errorf("%s: single-row update appended %v, want %v\n%s", c.name, kinds(got), c.want, dump(got))
			continue
		}
		if g, w := normalize(t, got, one), normalize(t, want, twin); !reflect.DeepEqual(g, w) {
			t.Errorf("%s: single-row update appended\n%s\nthe same change in a statement of two rows\n%s", c.name, strings.Join(g, "\n"), strings.Join(w, "\n"))
		}
	}
}

// normalize shows entries without their ids and with the record's key
// relative to base (a twin's entries then read as the original's).
func normalize(t *testing.T, es []entry, base int64) []string {
	t.Helper()
	var out []string
	for _, e := range es {
		d := map[string]any{}
		for k, v := range e.Data {
			d[k] = v
		}
		if r, ok := d["record"].(map[string]any); ok {
			rc := map[string]any{}
			for k, v := range r {
				rc[k] = v
			}
			if id, ok := rc["id"].(float64); ok {
				rc["id"] = int64(id) - base
			}
			d["record"] = rc
		}
		rid := any(nil)
		if e.RecordID != nil {
			rid = *e.RecordID - base
		}
		out = append(out, fmt.Sprintf("%s env %d record %v %s", e.Kind, e.Env, rid, mustJSON(t, d)))
	}
	return out
}
