package stream_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgcast/pgcast/internal/pgtest"
	"github.com/pgcast/pgcast/stream"
)

// recordSQL is the record as the REST API built it in SQL before it built
// records with AppendRecord, and as the capture triggers built it before the
// reader did; encoding/json's compaction of it is what REST answered, the
// reference the record AppendRecord builds must equal byte for byte.
const recordSQL = `(COALESCE((SELECT jsonb_object_agg(f.name, r.cells -> f.id::text)
          FROM pgcast.object_class_fields f
          WHERE f.object_class_id = r.object_class_id AND r.cells ? f.id::text), '{}'::jsonb)
|| jsonb_build_object(
    'id', r.id,
    'createdAt', to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'updatedAt', to_char(r.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')))::text`

// The record the reader builds from a record entry (cells, field names,
// timestamps) is, byte for byte, the one REST answers for the row: key
// order, names, values as printed and compacted, timestamps in UTC with
// milliseconds whatever the writer's time zone, the server-managed keys
// winning over fields of the same name, cells of unknown fields left out.
func TestEntryRecordIsTheRecordPostgresBuilds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SET TimeZone = 'Asia/Kolkata'`); err != nil {
		t.Fatal(err)
	}
	var class int64
	if err := conn.QueryRow(ctx, `INSERT INTO pgcast.object_classes (name, read_rule) VALUES ('things', 'public') RETURNING id`).Scan(&class); err != nil {
		t.Fatal(err)
	}
	fields := map[string]int64{}
	for _, name := range []string{"b", "a", "bb", "aa", "id", "title", "z9_long_name", "nested", "nothing"} {
		var id int64
		if err := conn.QueryRow(ctx, `INSERT INTO pgcast.object_class_fields (object_class_id, name, type) VALUES ($1, $2, 'json') RETURNING id`, class, name).Scan(&id); err != nil {
			t.Fatal(err)
		}
		fields[name] = id
	}
	cells := fmt.Sprintf(`{"%d": 1, "%d": "two", "%d": 1.50, "%d": 3e2, "%d": "the id field", "%d": "é \" \\ \u2028 😀 <&>",
		"%d": null, "%d": {"k": [1, {"x": true}], "e": {}}, "999999": "no such field", "note": "not a field id"}`,
		fields["b"], fields["a"], fields["bb"], fields["aa"], fields["id"], fields["title"], fields["z9_long_name"], fields["nested"])
	// Cells of unknown fields cannot be written since the triggers check
	// cells; records written before may have them.
	if _, err := conn.Exec(ctx, `ALTER TABLE pgcast.object_records DISABLE TRIGGER pgcast_check_cells_insert, DISABLE TRIGGER pgcast_check_cells_update`); err != nil {
		t.Fatal(err)
	}
	rows := []struct{ created, updated string }{
		{"2026-01-02 03:04:05.678901+00", "2026-01-02 03:04:05+00"},
		{"10000-01-01 00:00:00.5+00", "0044-03-15 00:00:00.0789+00 BC"},
		{"infinity", "-infinity"},
		{"1890-01-01 00:00:00.999999+00", "2026-06-30 23:59:59.9999+00"},
	}
	inserted := map[int64]int{} // record id → index in rows
	for i, r := range rows {
		var id int64
		if err := conn.QueryRow(ctx, `INSERT INTO pgcast.object_records (object_class_id, cells, created_at, updated_at) VALUES ($1, $2, $3, $4) RETURNING id`,
			class, cells, r.created, r.updated).Scan(&id); err != nil {
			t.Fatal(err)
		}
		inserted[id] = i
		// An update whose cells change (the updated_at trigger sets the time).
		if _, err := conn.Exec(ctx, `UPDATE pgcast.object_records SET cells = cells || jsonb_build_object($2::text, 'changed') WHERE id = $1`, id, fmt.Sprint(fields["a"])); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := conn.Query(ctx, `SELECT e.id, e.kind, e.object_record_id, e.data::text FROM pgcast.events e
WHERE e.kind IN ('record_created', 'record_updated') ORDER BY e.id`)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		id, record int64
		kind, data string
	}
	var es []entry
	for entries.Next() {
		var e entry
		if err := entries.Scan(&e.id, &e.kind, &e.record, &e.data); err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	if err := entries.Err(); err != nil {
		t.Fatal(err)
	}
	if len(es) != 2*len(rows) {
		t.Fatalf("%d record entries, want %d", len(es), 2*len(rows))
	}
	// The row as it is now is the row of the update's entry; the created
	// entry's row had the cells of its entry and the timestamps inserted.
	for _, e := range es {
		created, updated := "", ""
		if e.kind == "record_created" {
			created, updated = rows[inserted[e.record]].created, rows[inserted[e.record]].updated
		}
		got, err := stream.EntryRecord(e.record, []byte(e.data))
		if err != nil {
			t.Fatalf("entry %d: %v", e.id, err)
		}
		var want string
		if err := conn.QueryRow(ctx, `SELECT `+recordSQL+` FROM (
    SELECT r.id, r.object_class_id, (e.data -> 'cells') AS cells,
           coalesce(nullif($2, '')::timestamptz, r.created_at) AS created_at,
           coalesce(nullif($3, '')::timestamptz, r.updated_at) AS updated_at
    FROM pgcast.object_records r, pgcast.events e WHERE r.id = $1 AND e.id = $4) r`, e.record, created, updated, e.id).Scan(&want); err != nil {
			t.Fatal(err)
		}
		// REST writes the record with encoding/json (writeJSON).
		rest, err := json.Marshal(json.RawMessage(want))
		if err != nil {
			t.Fatal(err)
		}
		if want := string(rest); string(got) != want {
			t.Errorf("entry %d (%s):\nreader   %s\npostgres %s", e.id, e.kind, got, want)
		}
	}
}

// recordRowColumns are the columns of a RecordRow, as its documentation
// says the REST API reads them.
const recordRowColumns = `r.id, r.cells, c.field_names,
	to_jsonb(r.created_at AT TIME ZONE 'UTC') #>> '{}', to_jsonb(r.updated_at AT TIME ZONE 'UTC') #>> '{}'`

// TestAppendRecordIsTheRESTRecord: the record AppendRecord builds from a
// row is, byte for byte, what REST answered when it built records in SQL:
// encoding/json's encoding of it for a record response (escapeHTML), and
// json.Compact's for the items of a listing; for field names and values
// that need escaping (control characters, HTML, U+2028, quotes), duplicate
// server-managed names, unknown field ids, and the timestamps Postgres
// prints oddly.
func TestAppendRecordIsTheRESTRecord(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SET TimeZone = 'America/St_Johns'`); err != nil {
		t.Fatal(err)
	}
	var class int64
	if err := conn.QueryRow(ctx, `INSERT INTO pgcast.object_classes (name, read_rule) VALUES ('things', 'public') RETURNING id`).Scan(&class); err != nil {
		t.Fatal(err)
	}
	// Names beyond the pattern of collection fields are those of watched
	// columns (which have an attnum).
	names := []string{"a", "bb", "id", "createdAt", "<b>&amp;", "tab\there", "bs\bff\f", "ctl\x01\x1f", "q\"uo\\te", "sep\u2028\u2029", "é😀", "z9_long_name"}
	var cells []string
	for i, name := range names {
		var id int64
		if err := conn.QueryRow(ctx, `INSERT INTO pgcast.object_class_fields (object_class_id, name, type, attnum) VALUES ($1, $2, 'json', $3) RETURNING id`, class, name, i+1).Scan(&id); err != nil {
			t.Fatal(err)
		}
		values := []string{`1`, `"two"`, `1.50`, `3e2`, `"<script>&\u2028\u2029</script>"`, `"tab\there\b\f\u0001"`, `null`,
			`{"k": [1, {"x": true}], "<": {}}`, `"q\"uo\\te"`, `"é 😀"`, `[]`, `-0.0`}
		cells = append(cells, fmt.Sprintf(`"%d": %s`, id, values[i%len(values)]))
	}
	cells = append(cells, `"999999": "no such field"`)
	if _, err := conn.Exec(ctx, `ALTER TABLE pgcast.object_records DISABLE TRIGGER pgcast_check_cells_insert`); err != nil {
		t.Fatal(err)
	}
	for _, ts := range [][2]string{
		{"2026-01-02 03:04:05.678901+00", "2026-01-02 03:04:05+00"},
		{"10000-01-01 00:00:00.5+00", "0044-03-15 00:00:00.0789+00 BC"},
		{"infinity", "-infinity"},
	} {
		var id int64
		if err := conn.QueryRow(ctx, `INSERT INTO pgcast.object_records (object_class_id, cells, created_at, updated_at) VALUES ($1, $2, $3, $4) RETURNING id`,
			class, "{"+strings.Join(cells, ", ")+"}", ts[0], ts[1]).Scan(&id); err != nil {
			t.Fatal(err)
		}
		var (
			row      stream.RecordRow
			fields   []byte
			rest     []byte
			response bytes.Buffer
			listItem bytes.Buffer
		)
		if err := conn.QueryRow(ctx, `SELECT `+recordRowColumns+`, `+recordSQL+`
			FROM pgcast.object_records r JOIN pgcast.object_classes c ON c.id = r.object_class_id WHERE r.id = $1`, id).
			Scan(&row.ID, &row.Cells, &fields, &row.CreatedAt, &row.UpdatedAt, &rest); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(fields, &row.Fields); err != nil {
			t.Fatal(err)
		}
		// As REST wrote a record (writeJSON) and a listing's items.
		if err := json.NewEncoder(&response).Encode(json.RawMessage(rest)); err != nil {
			t.Fatal(err)
		}
		if err := json.Compact(&listItem, rest); err != nil {
			t.Fatal(err)
		}
		got, err := stream.AppendRecord([]byte("prefix"), &row, true)
		if err != nil {
			t.Fatal(err)
		}
		if want := "prefix" + strings.TrimSuffix(response.String(), "\n"); string(got) != want {
			t.Errorf("record %d, escapeHTML:\ngot  %s\nwant %s", id, got, want)
		}
		got, err = stream.AppendRecord(nil, &row, false)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != listItem.String() {
			t.Errorf("record %d, list item:\ngot  %s\nwant %s", id, got, listItem.String())
		}
	}
	if _, err := stream.AppendRecord(nil, &stream.RecordRow{ID: 1, Cells: json.RawMessage(`[1]`)}, true); err == nil {
		t.Error("cells that are not an object: no error")
	}
}
