package triggers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/pgtest"
	"github.com/pgcast/pgcast/stream"
	"github.com/pgcast/pgcast/triggers"
)

// entry is one row of pgcast.events as a test sees it.
type entry struct {
	ID       int64
	Kind     string
	Env      int64
	ClassID  *int64
	RecordID *int64
	TaskID   *int64
	Data     map[string]any
}

func (e entry) String() string {
	b, _ := json.Marshal(e.Data)
	return fmt.Sprintf("#%d %s env=%d class=%v record=%v task=%v %s", e.ID, e.Kind, e.Env, deref(e.ClassID), deref(e.RecordID), deref(e.TaskID), b)
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

type fixture struct {
	t    *testing.T
	ctx  context.Context
	pool *pgxpool.Pool
	url  string
	seen int64 // highest entry id returned by newEntries
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	pool, url := pgtest.NewPool(t)
	return &fixture{t: t, ctx: ctx, pool: pool, url: url}
}

func (f *fixture) exec(sql string, args ...any) {
	f.t.Helper()
	if _, err := f.pool.Exec(f.ctx, sql, args...); err != nil {
		f.t.Fatalf("exec %q: %v", sql, err)
	}
}

func (f *fixture) int64(sql string, args ...any) int64 {
	f.t.Helper()
	var n int64
	if err := f.pool.QueryRow(f.ctx, sql, args...).Scan(&n); err != nil {
		f.t.Fatalf("query %q: %v", sql, err)
	}
	return n
}

// class creates an object class with the given fields (all strings) and
// returns its id and the field ids by name.
// count is classID's record count as the reader derives it from the log
// (the writing transactions keep none).
func (f *fixture) count(classID int64) int64 {
	f.t.Helper()
	counts, err := db.ClassCounts(f.ctx, f.pool)
	if err != nil {
		f.t.Fatal(err)
	}
	return counts[classID]
}

func (f *fixture) class(name, read string, fields ...string) (int64, map[string]int64) {
	f.t.Helper()
	id := f.int64(`INSERT INTO pgcast.object_classes (name, read_rule) VALUES ($1, $2) RETURNING id`, name, read)
	ids := map[string]int64{}
	for _, fn := range fields {
		ids[fn] = f.int64(`INSERT INTO pgcast.object_class_fields (object_class_id, name, type) VALUES ($1, $2, 'string') RETURNING id`, id, fn)
	}
	return id, ids
}

// record inserts a record and returns its id.
func (f *fixture) record(classID int64, cells string, owners, assignees []string) int64 {
	f.t.Helper()
	if owners == nil {
		owners = []string{}
	}
	if assignees == nil {
		assignees = []string{}
	}
	return f.int64(`INSERT INTO pgcast.object_records (object_class_id, cells, owners, assignees) VALUES ($1, $2, $3, $4) RETURNING id`,
		classID, cells, owners, assignees)
}

// withoutCellsCheck turns the check of record cells off in the test's
// database, so that a test can write cells as they could be written before
// the check existed.
func (f *fixture) withoutCellsCheck() {
	f.t.Helper()
	f.exec(`ALTER TABLE pgcast.object_records DISABLE TRIGGER pgcast_check_cells_insert, DISABLE TRIGGER pgcast_check_cells_update`)
}

// newEntries returns the entries appended since the previous call.
func (f *fixture) newEntries() []entry {
	f.t.Helper()
	rows, err := f.pool.Query(f.ctx, `
		SELECT id, kind, environment_id, object_class_id, object_record_id, task_id, data::text
		FROM pgcast.events WHERE id > $1 ORDER BY id`, f.seen)
	if err != nil {
		f.t.Fatalf("read events: %v", err)
	}
	var out []entry
	for rows.Next() {
		var e entry
		var data string
		if err := rows.Scan(&e.ID, &e.Kind, &e.Env, &e.ClassID, &e.RecordID, &e.TaskID, &data); err != nil {
			f.t.Fatalf("scan event: %v", err)
		}
		if err := json.Unmarshal([]byte(data), &e.Data); err != nil {
			f.t.Fatalf("event %d data %s: %v", e.ID, data, err)
		}
		withRecord(f.t, &e, data)
		out = append(out, e)
		f.seen = e.ID
	}
	if err := rows.Err(); err != nil {
		f.t.Fatalf("read events: %v", err)
	}
	return out
}

// withRecord replaces, in a record entry's data, what the reader builds the
// record from (cells, field names, timestamps) by the record it builds, as
// "record": what the realtime API shows.
func withRecord(t *testing.T, e *entry, data string) {
	t.Helper()
	if _, ok := e.Data["cells"]; !ok {
		return
	}
	for _, k := range []string{"cells", "fields", "created_at", "updated_at"} {
		if _, ok := e.Data[k]; !ok {
			t.Fatalf("entry %d: %s without %s", e.ID, e.Kind, k)
		}
		delete(e.Data, k)
	}
	rec, err := stream.EntryRecord(deref64(e.RecordID), []byte(data))
	if err != nil {
		t.Fatalf("entry %d: %v", e.ID, err)
	}
	var v any
	if err := json.Unmarshal(rec, &v); err != nil {
		t.Fatalf("entry %d: record %s: %v", e.ID, rec, err)
	}
	e.Data["record"] = v
}

func deref64(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// skip marks everything appended so far as seen.
func (f *fixture) skip() { f.newEntries() }

func kinds(es []entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Kind
	}
	return out
}

func wantKinds(t *testing.T, es []entry, want ...string) {
	t.Helper()
	if got := kinds(es); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Fatalf("kinds = %v, want %v\nentries:\n%s", got, want, dump(es))
	}
}

func dump(es []entry) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString("  " + e.String() + "\n")
	}
	return b.String()
}

// num is a JSON number as decoded into any.
func num(n int64) float64 { return float64(n) }

func nums(ns ...int64) []any {
	out := make([]any, len(ns))
	for i, n := range ns {
		out[i] = num(n)
	}
	return out
}

func strs(ss ...string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func wantData(t *testing.T, e entry, key string, want any) {
	t.Helper()
	if got := e.Data[key]; !reflect.DeepEqual(got, want) {
		t.Errorf("%s: data.%s = %#v, want %#v", e.Kind, key, got, want)
	}
}

func wantIDs(t *testing.T, e entry, classID, recordID, taskID any) {
	t.Helper()
	if got := deref(e.ClassID); got != classID {
		t.Errorf("%s: object_class_id = %v, want %v", e.Kind, got, classID)
	}
	if got := deref(e.RecordID); got != recordID {
		t.Errorf("%s: object_record_id = %v, want %v", e.Kind, got, recordID)
	}
	if got := deref(e.TaskID); got != taskID {
		t.Errorf("%s: task_id = %v, want %v", e.Kind, got, taskID)
	}
}

var isoMillisZ = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func TestCollectionCreated(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exec(`INSERT INTO pgcast.environments (id, name) VALUES (2, 'two')`)
	id := f.int64(`INSERT INTO pgcast.object_classes (environment_id, name) VALUES (2, 'posts') RETURNING id`)
	es := f.newEntries()
	wantKinds(t, es, triggers.KindCollectionCreated)
	if es[0].Env != 2 {
		t.Errorf("environment_id = %d, want 2", es[0].Env)
	}
	wantIDs(t, es[0], id, nil, nil)
	if !reflect.DeepEqual(es[0].Data, map[string]any{"name": "posts"}) {
		t.Errorf("data = %v, want {name: posts}", es[0].Data)
	}
}

func TestRecordCreated(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exec(`INSERT INTO pgcast.environments (id, name) VALUES (3, 'three')`)
	classID := f.int64(`INSERT INTO pgcast.object_classes (environment_id, name, read_rule) VALUES (3, 'posts', 'owner') RETURNING id`)
	title := f.int64(`INSERT INTO pgcast.object_class_fields (object_class_id, name, type) VALUES ($1, 'title', 'string') RETURNING id`, classID)
	views := f.int64(`INSERT INTO pgcast.object_class_fields (object_class_id, name, type) VALUES ($1, 'views', 'integer') RETURNING id`, classID)
	meta := f.int64(`INSERT INTO pgcast.object_class_fields (object_class_id, name, type) VALUES ($1, 'meta', 'json') RETURNING id`, classID)
	f.int64(`INSERT INTO pgcast.object_class_fields (object_class_id, name, type) VALUES ($1, 'unset', 'string') RETURNING id`, classID)
	f.skip()

	cells := fmt.Sprintf(`{"%d": "hello", "%d": 42, "%d": {"a": [1, 2]}, "999999": "not a field of the class"}`, title, views, meta)
	// Written as records written before the triggers checked cells were.
	f.withoutCellsCheck()
	id := f.record(classID, cells, []string{"u1", "u2"}, []string{"u3"})

	es := f.newEntries()
	// No count entry: the count is derived from the log.
	wantKinds(t, es, triggers.KindRecordCreated)
	c := es[0]
	if c.Env != 3 {
		t.Errorf("environment_id = %d, want 3", c.Env)
	}
	wantIDs(t, c, classID, id, nil)
	wantData(t, c, "class", "posts")
	wantData(t, c, "read", "owner")
	wantData(t, c, "owners", strs("u1", "u2"))
	wantData(t, c, "assignees", strs("u3"))
	rec, _ := c.Data["record"].(map[string]any)
	for _, k := range []string{"createdAt", "updatedAt"} {
		s, _ := rec[k].(string)
		if !isoMillisZ.MatchString(s) {
			t.Errorf("record.%s = %q, want UTC with milliseconds and Z", k, rec[k])
		}
	}
	var createdAt string
	if err := f.pool.QueryRow(f.ctx, `SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') FROM pgcast.object_records WHERE id = $1`, id).Scan(&createdAt); err != nil {
		t.Fatal(err)
	}
	if rec["createdAt"] != createdAt || rec["updatedAt"] != createdAt {
		t.Errorf("createdAt, updatedAt = %v, %v, want %s", rec["createdAt"], rec["updatedAt"], createdAt)
	}
	delete(rec, "createdAt")
	delete(rec, "updatedAt")
	// Only fields of the class, by name; a field without a cell is absent.
	want := map[string]any{"id": num(id), "title": "hello", "views": num(42), "meta": map[string]any{"a": nums(1, 2)}}
	if !reflect.DeepEqual(rec, want) {
		t.Errorf("record = %v, want %v (plus timestamps)", rec, want)
	}

	if n := f.count(classID); n != 1 {
		t.Errorf("count = %d, want 1", n)
	}
}

func TestRecordTimestampsInRecord(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classID, _ := f.class("posts", "public")
	f.skip()
	f.exec(`INSERT INTO pgcast.object_records (object_class_id, created_at, updated_at)
		VALUES ($1, '2025-01-16 11:07:57.954470+02', '2025-01-16 12:00:00.5+00')`, classID)
	es := f.newEntries()
	rec := es[0].Data["record"].(map[string]any)
	if rec["createdAt"] != "2025-01-16T09:07:57.954Z" || rec["updatedAt"] != "2025-01-16T12:00:00.500Z" {
		t.Errorf("timestamps = %v, %v", rec["createdAt"], rec["updatedAt"])
	}
}

func TestMultiRowInsertOneCount(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classID, fields := f.class("posts", "public", "title")
	f.skip()
	tag, err := f.pool.Exec(f.ctx, `INSERT INTO pgcast.object_records (object_class_id, cells)
		SELECT $1, jsonb_build_object($2::text, 'r' || g) FROM generate_series(1, 3) g`, classID, fmt.Sprint(fields["title"]))
	if err != nil || tag.RowsAffected() != 3 {
		t.Fatalf("insert: %v %v", tag, err)
	}
	es := f.newEntries()
	wantKinds(t, es, triggers.KindRecordCreated, triggers.KindRecordCreated, triggers.KindRecordCreated)
	for i, e := range es[:3] {
		rec := e.Data["record"].(map[string]any)
		if rec["title"] != fmt.Sprintf("r%d", i+1) || rec["id"] != num(*e.RecordID) {
			t.Errorf("created #%d: record %v, entry record id %v (want statement order)", i, rec, deref(e.RecordID))
		}
	}
	if n := f.count(classID); n != 3 {
		t.Errorf("count = %d, want 3", n)
	}
}

func TestMultiClassStatementCounts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a, _ := f.class("a", "public")
	b, _ := f.class("b", "admin")
	f.skip()
	f.exec(`INSERT INTO pgcast.object_records (object_class_id) VALUES ($1), ($2), ($1)`, a, b)
	es := f.newEntries()
	wantKinds(t, es, triggers.KindRecordCreated, triggers.KindRecordCreated, triggers.KindRecordCreated)
	if na, nb := f.count(a), f.count(b); na != 2 || nb != 1 {
		t.Errorf("counts = %d, %d, want 2, 1\n%s", na, nb, dump(es))
	}
	f.exec(`DELETE FROM pgcast.object_records`)
	es = f.newEntries()
	wantKinds(t, es, triggers.KindRecordDeleted, triggers.KindRecordDeleted, triggers.KindRecordDeleted)
	if na, nb := f.count(a), f.count(b); na != 0 || nb != 0 {
		t.Errorf("counts after delete = %d, %d", na, nb)
	}
}

func TestRecordUpdated(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classID, fl := f.class("posts", "authenticated", "a", "b", "c", "d")
	a, b, c, d := fl["a"], fl["b"], fl["c"], fl["d"]
	id := f.record(classID, fmt.Sprintf(`{"%d": 1, "%d": "same", "%d": {"x": 1}}`, a, b, c), []string{"o1"}, []string{"s1"})
	f.exec(`UPDATE pgcast.object_records SET updated_at = '2000-01-01', created_at = '2000-01-01' WHERE id = $1`, id)
	f.skip()

	// Change c (nested), remove a, add d, keep b: one entry, ids sorted.
	f.exec(fmt.Sprintf(`UPDATE pgcast.object_records SET cells = '{"%d": "same", "%d": {"x": 2}, "%d": null}' WHERE id = $1`, b, c, d), id)
	es := f.newEntries()
	wantKinds(t, es, triggers.KindRecordUpdated)
	e := es[0]
	wantIDs(t, e, classID, id, nil)
	wantData(t, e, "field_ids", nums(a, c, d))
	wantData(t, e, "class", "posts")
	wantData(t, e, "read", "authenticated")
	wantData(t, e, "owners", strs("o1"))
	wantData(t, e, "assignees", strs("s1"))
	rec := e.Data["record"].(map[string]any)
	if rec["createdAt"] != "2000-01-01T00:00:00.000Z" {
		t.Errorf("createdAt = %v", rec["createdAt"])
	}
	if rec["updatedAt"] == "2000-01-01T00:00:00.000Z" || !isoMillisZ.MatchString(rec["updatedAt"].(string)) {
		t.Errorf("updatedAt = %v, want bumped by the cell change", rec["updatedAt"])
	}
	delete(rec, "createdAt")
	delete(rec, "updatedAt")
	if want := map[string]any{"id": num(id), "b": "same", "c": map[string]any{"x": num(2)}, "d": nil}; !reflect.DeepEqual(rec, want) {
		t.Errorf("record = %v, want %v", rec, want)
	}

	// Same cells (in another key order and spacing): nothing, and updated_at kept.
	before := f.int64(`SELECT extract(epoch FROM updated_at)::bigint FROM pgcast.object_records WHERE id = $1`, id)
	f.exec(fmt.Sprintf(`UPDATE pgcast.object_records SET cells = '{"%d":null,"%d":{"x":2},"%d":"same"}' WHERE id = $1`, d, c, b), id)
	f.exec(`UPDATE pgcast.object_records SET cells = cells WHERE id = $1`, id)
	f.exec(`UPDATE pgcast.object_records SET updated_at = now() WHERE id = $1`, id)
	f.exec(`UPDATE pgcast.object_records SET owners = owners, assignees = assignees WHERE id = $1`, id)
	f.exec(`UPDATE pgcast.object_records SET cells = cells WHERE false`)
	wantKinds(t, f.newEntries())
	f.exec(`UPDATE pgcast.object_records SET updated_at = '2001-01-01' WHERE id = $1`, id)
	f.exec(`UPDATE pgcast.object_records SET cells = cells WHERE id = $1`, id)
	if after := f.int64(`SELECT extract(epoch FROM updated_at)::bigint FROM pgcast.object_records WHERE id = $1`, id); after != 978307200 {
		t.Errorf("updated_at changed by a no-op update: %d (before %d)", after, before)
	}
	wantKinds(t, f.newEntries())

	// Keys that are not field ids are not reported as fields (the check
	// refuses them now; records written before it may have them).
	f.withoutCellsCheck()
	f.exec(`UPDATE pgcast.object_records SET cells = cells || '{"note": 1}' WHERE id = $1`, id)
	wantKinds(t, f.newEntries())
}

func TestMultiRowUpdate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classID, fl := f.class("posts", "public", "a", "b")
	a, b := fl["a"], fl["b"]
	ids := []int64{
		f.record(classID, fmt.Sprintf(`{"%d": 1}`, a), nil, nil),
		f.record(classID, fmt.Sprintf(`{"%d": 2}`, a), nil, nil),
		f.record(classID, fmt.Sprintf(`{"%d": 3, "%d": 0}`, a, b), nil, nil),
	}
	f.skip()
	// Row 1: unchanged; row 2: a changed; row 3: a unchanged, b removed.
	f.exec(`UPDATE pgcast.object_records
		SET cells = CASE id WHEN $1 THEN cells WHEN $2 THEN jsonb_build_object($3::text, 20) ELSE jsonb_build_object($3::text, 3) END`,
		ids[0], ids[1], fmt.Sprint(a))
	es := f.newEntries()
	wantKinds(t, es, triggers.KindRecordUpdated, triggers.KindRecordUpdated)
	got := map[int64]any{}
	for _, e := range es {
		got[*e.RecordID] = e.Data["field_ids"]
	}
	if want := map[int64]any{ids[1]: nums(a), ids[2]: nums(b)}; !reflect.DeepEqual(got, want) {
		t.Errorf("field_ids by record = %v, want %v", got, want)
	}
}

func TestRolledBackTransactionLeavesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classID, fl := f.class("posts", "public", "a")
	f.record(classID, `{}`, nil, nil)
	f.skip()
	tx, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(f.ctx) // on a failure: the pool's Close would wait for it
	for _, q := range []string{
		`INSERT INTO pgcast.object_records (object_class_id) SELECT $1 WHERE $2 <> ''`,
		`UPDATE pgcast.object_records SET cells = jsonb_build_object($2::text, 1), owners = '{x}' WHERE object_class_id = $1`,
		`DELETE FROM pgcast.object_records WHERE object_class_id = $1 AND $2 <> ''`,
	} {
		if _, err := tx.Exec(f.ctx, q, classID, fmt.Sprint(fl["a"])); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := tx.Exec(f.ctx, `SELECT pgcast.publish('job.started', '{}')`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(f.ctx); err != nil {
		t.Fatal(err)
	}
	wantKinds(t, f.newEntries())
	if n := f.count(classID); n != 1 {
		t.Errorf("count after rollback = %d, want 1", n)
	}
}

func TestOwnersAndAssigneesDiff(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classID, fl := f.class("posts", "owner", "title")
	id := f.record(classID, `{}`, []string{"a", "c"}, []string{"x"})
	f.skip()

	f.exec(`UPDATE pgcast.object_records SET owners = '{a,b}' WHERE id = $1`, id)
	es := f.newEntries()
	wantKinds(t, es, triggers.KindRecordOwnerAdded, triggers.KindRecordOwnerRemoved)
	wantIDs(t, es[0], classID, id, nil)
	wantData(t, es[0], "user_id", "b")
	wantData(t, es[0], "owners", strs("a", "b")) // after
	wantData(t, es[0], "assignees", strs("x"))
	wantData(t, es[0], "class", "posts")
	wantData(t, es[0], "read", "owner")
	wantData(t, es[1], "user_id", "c")
	wantData(t, es[1], "owners", strs("a", "c")) // before
	if _, ok := es[0].Data["record"]; ok {
		t.Errorf("owner entry carries a record: %v", es[0].Data)
	}

	f.exec(`UPDATE pgcast.object_records SET assignees = '{y,z,y}' WHERE id = $1`, id)
	es = f.newEntries()
	wantKinds(t, es, triggers.KindRecordAssigneeAdded, triggers.KindRecordAssigneeAdded, triggers.KindRecordAssigneeRemoved)
	users := map[string]string{}
	for _, e := range es {
		users[e.Data["user_id"].(string)] = e.Kind
	}
	if want := map[string]string{"y": triggers.KindRecordAssigneeAdded, "z": triggers.KindRecordAssigneeAdded, "x": triggers.KindRecordAssigneeRemoved}; !reflect.DeepEqual(users, want) {
		t.Errorf("assignee entries = %v, want %v", users, want)
	}
	wantData(t, es[2], "assignees", strs("x"))
	wantData(t, es[0], "assignees", strs("y", "z", "y"))

	// Reordering is not a change of membership; a cell change and an owner
	// change in one statement give the value entry first.
	f.exec(`UPDATE pgcast.object_records SET owners = '{b,a}' WHERE id = $1`, id)
	wantKinds(t, f.newEntries())
	f.exec(`UPDATE pgcast.object_records SET owners = '{}', cells = jsonb_build_object($2::text, 1) WHERE id = $1`, id, fmt.Sprint(fl["title"]))
	es = f.newEntries()
	wantKinds(t, es, triggers.KindRecordUpdated, triggers.KindRecordOwnerRemoved, triggers.KindRecordOwnerRemoved)
	wantData(t, es[0], "owners", strs())
	wantData(t, es[0], "field_ids", nums(fl["title"]))
}

func TestRecordDeleted(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classID, fl := f.class("posts", "owner", "title")
	id := f.record(classID, fmt.Sprintf(`{"%d": "x"}`, fl["title"]), []string{"o"}, []string{"s"})
	f.skip()
	f.exec(`DELETE FROM pgcast.object_records WHERE id = $1`, id)
	es := f.newEntries()
	wantKinds(t, es, triggers.KindRecordDeleted)
	wantIDs(t, es[0], classID, id, nil)
	title := fmt.Sprint(fl["title"])
	want := map[string]any{"class": "posts", "read": "owner", "owners": strs("o"), "assignees": strs("s"), "record": map[string]any{"id": num(id)},
		"old_cells": map[string]any{title: "x"}, "fields": map[string]any{title: "title"}}
	if !reflect.DeepEqual(es[0].Data, want) {
		t.Errorf("data = %v, want %v", es[0].Data, want)
	}
	if n := f.count(classID); n != 0 {
		t.Errorf("count = %d, want 0", n)
	}
	f.exec(`DELETE FROM pgcast.object_records WHERE id = $1`, id)
	wantKinds(t, f.newEntries())
}

func TestClassDeletionCascades(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classID, _ := f.class("posts", "public", "title")
	other, _ := f.class("other", "public")
	rec := f.record(classID, `{}`, nil, nil)
	f.record(other, `{}`, nil, nil)
	f.exec(`INSERT INTO pgcast.object_record_documents (object_record_id) VALUES ($1)`, rec)
	f.exec(`INSERT INTO pgcast.tasks (object_class_id, object_record_id) VALUES ($1, $2)`, classID, rec)
	f.skip()
	f.exec(`DELETE FROM pgcast.object_classes WHERE id = $1`, classID)
	for _, e := range f.newEntries() {
		if deref(e.ClassID) != classID {
			t.Errorf("unexpected entry %v", e)
		}
	}
	// The checkpoint keeps no count for a class that is gone.
	if _, err := db.Prune(f.ctx, f.pool, db.PruneOptions{Now: time.Now(), Retention: time.Hour, BatchSize: 100}); err != nil {
		t.Fatal(err)
	}
	if n := f.int64(`SELECT count(*) FROM pgcast.count_checkpoint WHERE counts ? $1`, fmt.Sprint(classID)); n != 0 {
		t.Errorf("count of the deleted class left in the checkpoint")
	}
	if n := f.count(other); n != 1 {
		t.Errorf("other class count = %d, want 1", n)
	}
}

func TestRecordCannotMoveClass(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a, _ := f.class("a", "public")
	b, _ := f.class("b", "public")
	id := f.record(a, `{}`, nil, nil)
	f.skip()
	_, err := f.pool.Exec(f.ctx, `UPDATE pgcast.object_records SET object_class_id = $1 WHERE id = $2`, b, id)
	if sqlState(err) != "23514" || !strings.Contains(err.Error(), "cannot move") {
		t.Fatalf("err = %v, want SQLSTATE 23514 refusing the move", err)
	}
	wantKinds(t, f.newEntries())
	// Updating the class to itself is no move.
	f.exec(`UPDATE pgcast.object_records SET object_class_id = $1 WHERE id = $2`, a, id)
}

func TestCountsAcrossConnections(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classID, _ := f.class("posts", "public")
	f.skip()

	const workers = 6
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(f.ctx, f.url)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(context.Background())
			for i := range 10 {
				if _, err := conn.Exec(f.ctx, `INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, $2)`, classID, i%3+1); err != nil {
					errs <- err
					return
				}
				if i%2 == w%2 {
					if _, err := conn.Exec(f.ctx, `DELETE FROM pgcast.object_records WHERE id = (SELECT max(id) FROM pgcast.object_records WHERE object_class_id = $1)`, classID); err != nil {
						errs <- err
						return
					}
				}
			}
			// One transaction with several statements.
			tx, err := conn.Begin(f.ctx)
			if err != nil {
				errs <- err
				return
			}
			defer tx.Rollback(context.Background())
			for range 3 {
				if _, err := tx.Exec(f.ctx, `INSERT INTO pgcast.object_records (object_class_id) VALUES ($1), ($1)`, classID); err != nil {
					errs <- err
					return
				}
			}
			if _, err := tx.Exec(f.ctx, `DELETE FROM pgcast.object_records WHERE id IN (SELECT id FROM pgcast.object_records WHERE object_class_id = $1 ORDER BY id DESC LIMIT 1)`, classID); err != nil {
				errs <- err
				return
			}
			errs <- tx.Commit(f.ctx)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	real := f.int64(`SELECT count(*) FROM pgcast.object_records WHERE object_class_id = $1`, classID)
	steps := f.int64(`SELECT sum(CASE kind WHEN 'record_created' THEN 1 ELSE -1 END) FROM pgcast.events
		WHERE kind IN ('record_created', 'record_deleted') AND object_class_id = $1`, classID)
	if n := f.count(classID); real == 0 || n != real || steps != real {
		t.Errorf("records = %d, derived count = %d, sum of steps = %d", real, n, steps)
	}
}

// A writer never waits for a count: with the count checkpoint and the
// shards of earlier versions locked by an open transaction, an insert still
// goes through without waiting (it touches no count), and the count stays
// right.
func TestCountNeverWaitsForAnotherWriter(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classID, _ := f.class("posts", "public")
	f.exec(`INSERT INTO pgcast.object_class_counts (object_class_id, shard, n) SELECT $1, g, 0 FROM generate_series(0, 15) g ON CONFLICT DO NOTHING`, classID)
	f.exec(`INSERT INTO pgcast.object_records (object_class_id) VALUES ($1)`, classID)
	holder, err := pgx.Connect(f.ctx, f.url)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	tx, err := holder.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(f.ctx, `SELECT 1 FROM pgcast.object_class_counts WHERE object_class_id = $1 FOR UPDATE`, classID); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(f.ctx, `SELECT 1 FROM pgcast.count_checkpoint FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	writer, err := pgx.Connect(f.ctx, f.url)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close(context.Background())
	if _, err := writer.Exec(f.ctx, `SET lock_timeout = '3s'`); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Exec(f.ctx, `INSERT INTO pgcast.object_records (object_class_id) VALUES ($1), ($1)`, classID); err != nil {
		t.Fatalf("insert while every count shard is held: %v", err)
	}
	if err := tx.Rollback(f.ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.count(classID); n != 3 {
		t.Fatalf("count = %d, want 3", n)
	}
}

func TestLargeCellCapturedIntact(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classID, fl := f.class("posts", "public", "body")
	f.skip()
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	cells, _ := json.Marshal(map[string]string{fmt.Sprint(fl["body"]): big})
	id := f.record(classID, string(cells), nil, nil)
	cells, _ = json.Marshal(map[string]string{fmt.Sprint(fl["body"]): big + "!"})
	f.exec(`UPDATE pgcast.object_records SET cells = $1 WHERE id = $2`, string(cells), id)
	es := f.newEntries()
	wantKinds(t, es, triggers.KindRecordCreated, triggers.KindRecordUpdated)
	if got := es[0].Data["record"].(map[string]any)["body"]; got != big {
		t.Errorf("created body: %d bytes, want %d intact", len(fmt.Sprint(got)), len(big))
	}
	if got := es[1].Data["record"].(map[string]any)["body"]; got != big+"!" {
		t.Errorf("updated body: %d bytes, want %d intact", len(fmt.Sprint(got)), len(big)+1)
	}
	wantData(t, es[1], "field_ids", nums(fl["body"]))
}

func TestDocumentGenerated(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classID, _ := f.class("posts", "owner")
	id := f.record(classID, `{}`, []string{"o"}, []string{"s"})
	f.skip()
	doc := f.int64(`INSERT INTO pgcast.object_record_documents (object_record_id, name) VALUES ($1, 'invoice.pdf') RETURNING id`, id)
	es := f.newEntries()
	wantKinds(t, es, triggers.KindRecordDocumentGenerated)
	wantIDs(t, es[0], classID, id, nil)
	want := map[string]any{"class": "posts", "read": "owner", "owners": strs("o"), "assignees": strs("s"), "document_id": num(doc)}
	if !reflect.DeepEqual(es[0].Data, want) {
		t.Errorf("data = %v, want %v", es[0].Data, want)
	}
}

func TestTasks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classID, _ := f.class("posts", "authenticated")
	rec := f.record(classID, `{}`, nil, nil)
	f.skip()

	task := f.int64(`INSERT INTO pgcast.tasks (object_class_id, object_record_id, owners, assignees, updated_at)
		VALUES ($1, $2, '{o1}', '{a1}', '2000-01-01') RETURNING id`, classID, rec)
	es := f.newEntries()
	wantKinds(t, es, triggers.KindTaskCreated)
	wantIDs(t, es[0], classID, nil, task)
	want := map[string]any{"class": "posts", "read": "authenticated", "owners": strs("o1"), "assignees": strs("a1"), "record_id": num(rec)}
	if !reflect.DeepEqual(es[0].Data, want) {
		t.Errorf("task_created data = %v, want %v", es[0].Data, want)
	}

	f.exec(`UPDATE pgcast.tasks SET status = 'done', "values" = '{"k": 1}' WHERE id = $1`, task)
	es = f.newEntries()
	wantKinds(t, es, triggers.KindTaskValueChanged, triggers.KindTaskStatusChanged)
	for _, e := range es {
		wantIDs(t, e, classID, nil, task)
		wantData(t, e, "record_id", num(rec))
		wantData(t, e, "owners", strs("o1"))
	}
	if y := f.int64(`SELECT extract(year FROM updated_at)::bigint FROM pgcast.tasks WHERE id = $1`, task); y == 2000 {
		t.Errorf("updated_at not bumped by a status change")
	}
	f.exec(`UPDATE pgcast.tasks SET updated_at = '2000-01-01', owners = '{o2}' WHERE id = $1`, task)
	if y := f.int64(`SELECT extract(year FROM updated_at)::bigint FROM pgcast.tasks WHERE id = $1`, task); y != 2000 {
		t.Errorf("updated_at bumped by an owners change")
	}
	es = f.newEntries()
	wantKinds(t, es, triggers.KindTaskOwnerAdded, triggers.KindTaskOwnerRemoved)
	wantData(t, es[0], "user_id", "o2")
	wantData(t, es[0], "owners", strs("o2"))
	wantData(t, es[1], "user_id", "o1")
	wantData(t, es[1], "owners", strs("o1"))

	f.exec(`UPDATE pgcast.tasks SET "values" = '{"k": 2}' WHERE id = $1`, task)
	wantKinds(t, f.newEntries(), triggers.KindTaskValueChanged)
	f.exec(`UPDATE pgcast.tasks SET status = 'open' WHERE id = $1`, task)
	wantKinds(t, f.newEntries(), triggers.KindTaskStatusChanged)
	f.exec(`UPDATE pgcast.tasks SET assignees = '{a2}' WHERE id = $1`, task)
	es = f.newEntries()
	wantKinds(t, es, triggers.KindTaskAssigneeAdded, triggers.KindTaskAssigneeRemoved)
	wantData(t, es[0], "user_id", "a2")
	wantData(t, es[1], "user_id", "a1")
	wantData(t, es[1], "assignees", strs("a1"))
	f.exec(`UPDATE pgcast.tasks SET status = status, "values" = "values" WHERE id = $1`, task)
	wantKinds(t, f.newEntries())

	// Deleting the record sets the task's record to NULL: no task entry.
	f.exec(`DELETE FROM pgcast.object_records WHERE id = $1`, rec)
	wantKinds(t, f.newEntries(), triggers.KindRecordDeleted)

	f.exec(`DELETE FROM pgcast.tasks WHERE id = $1`, task)
	es = f.newEntries()
	wantKinds(t, es, triggers.KindTaskDeleted)
	wantIDs(t, es[0], classID, nil, task)
	want = map[string]any{"class": "posts", "read": "authenticated", "owners": strs("o2"), "assignees": strs("a2"), "record_id": nil}
	if !reflect.DeepEqual(es[0].Data, want) {
		t.Errorf("task_deleted data = %v, want %v", es[0].Data, want)
	}
}

func TestPublish(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.skip()

	id := f.int64(`SELECT pgcast.publish('job.completed', '{"name": "nightly"}')`)
	es := f.newEntries()
	wantKinds(t, es, triggers.KindPublished)
	if es[0].ID != id {
		t.Errorf("publish returned %d, entry is %d", id, es[0].ID)
	}
	if es[0].Env != 1 {
		t.Errorf("environment = %d, want 1", es[0].Env)
	}
	wantIDs(t, es[0], nil, nil, nil)
	want := map[string]any{"type": "job.completed", "source": "jobs", "payload": map[string]any{"name": "nightly"}}
	if !reflect.DeepEqual(es[0].Data, want) {
		t.Errorf("data = %v, want %v", es[0].Data, want)
	}

	// Explicit source, NULL payload, environment from the setting, named
	// arguments, an application's own namespace.
	f.exec(`INSERT INTO pgcast.environments (id, name) VALUES (7, 'seven')`)
	f.exec(`INSERT INTO pgcast.publish_namespaces (name, source) VALUES ('billing', 'billing-service')`)
	tx, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`SELECT set_config('pgcast.environment', '7', true)`,
		`SELECT pgcast.publish('auth.login', NULL, 'custom')`,
		`SELECT pgcast.publish(type => 'billing.invoice.paid', payload => '{"amount": 3}')`,
		`SELECT set_config('pgcast.environment', '', true)`,
		`SELECT pgcast.publish('storage.uploaded', '{}')`,
	} {
		if _, err := tx.Exec(f.ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.Commit(f.ctx); err != nil {
		t.Fatal(err)
	}
	es = f.newEntries()
	wantKinds(t, es, triggers.KindPublished, triggers.KindPublished, triggers.KindPublished)
	if es[0].Env != 7 || es[1].Env != 7 || es[2].Env != 1 {
		t.Errorf("environments = %d, %d, %d, want 7, 7, 1", es[0].Env, es[1].Env, es[2].Env)
	}
	if want := map[string]any{"type": "auth.login", "source": "custom", "payload": map[string]any{}}; !reflect.DeepEqual(es[0].Data, want) {
		t.Errorf("data = %v, want %v", es[0].Data, want)
	}
	wantData(t, es[1], "source", "billing-service")
	wantData(t, es[2], "source", "storage")

	for _, c := range []struct{ sql, msg string }{
		{`SELECT pgcast.publish('job', '{}')`, "invalid event type"},
		{`SELECT pgcast.publish('job.', '{}')`, "invalid event type"},
		{`SELECT pgcast.publish('job..done', '{}')`, "invalid event type"},
		{`SELECT pgcast.publish('job.do ne', '{}')`, "invalid event type"},
		{`SELECT pgcast.publish('job.*', '{}')`, "invalid event type"},
		{`SELECT pgcast.publish(NULL, '{}')`, "invalid event type"},
		{`SELECT pgcast.publish('posts.created', '{}')`, `unknown event namespace "posts": add it to pgcast.publish_namespaces`},
		{`SELECT pgcast.publish('job.completed', '[1]')`, "JSON object"},
		{`SELECT pgcast.publish('job.completed', '"x"')`, "JSON object"},
		{`SELECT pgcast.publish('job.completed', 'null')`, "JSON object"},
	} {
		_, err := f.pool.Exec(f.ctx, c.sql)
		if sqlState(err) != "22023" || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: err = %v, want SQLSTATE 22023 with %q", c.sql, err, c.msg)
		}
	}
	wantKinds(t, f.newEntries())
}

// listen opens a connection LISTENing on the doorbell channel.
func (f *fixture) listen() *pgx.Conn {
	f.t.Helper()
	conn, err := pgx.Connect(f.ctx, f.url)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(f.ctx, `LISTEN `+triggers.NotifyChannel); err != nil {
		f.t.Fatal(err)
	}
	return conn
}

// quiet is how long a test waits to conclude that no notification comes.
const quiet = 300 * time.Millisecond

// ding waits for one notification; ok is false when none came within d.
func (f *fixture) ding(conn *pgx.Conn, d time.Duration) (*pgconn.Notification, bool) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(f.ctx, d)
	defer cancel()
	n, err := conn.WaitForNotification(ctx)
	if err != nil {
		if ctx.Err() != nil && f.ctx.Err() == nil {
			return nil, false
		}
		f.t.Fatalf("wait for notification: %v", err)
	}
	return n, true
}

func TestDoorbell(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classID, fl := f.class("posts", "public", "a")
	l := f.listen()

	// Nobody waits: writes ring no bell.
	f.record(classID, `{}`, nil, nil)
	f.exec(`SELECT pgcast.publish('job.started', '{}')`)
	if n, ok := f.ding(l, quiet); ok {
		t.Fatalf("notification %+v with no waiting reader", n)
	}

	// A waiting reader: one transaction with three writes rings once, with
	// an empty payload.
	f.exec(`INSERT INTO pgcast.listeners (pid, waiting) VALUES (1, true)`)
	tx, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) // on a failure: the pool's Close would wait for it
	var rang []string
	for _, q := range []string{
		`INSERT INTO pgcast.object_records (object_class_id) SELECT $1 WHERE $2 <> ''`,
		`UPDATE pgcast.object_records SET cells = jsonb_build_object($2::text, 1) WHERE object_class_id = $1`,
		`DELETE FROM pgcast.object_records WHERE object_class_id = $1 AND $2 <> ''`,
	} {
		if _, err := tx.Exec(f.ctx, q, classID, fmt.Sprint(fl["a"])); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		var s *string
		if err := tx.QueryRow(f.ctx, `SELECT current_setting('pgcast.rang', true)`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		rang = append(rang, fmt.Sprint(deref2(s)))
	}
	if err := tx.Commit(f.ctx); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rang, []string{"y", "y", "y"}) {
		t.Errorf("pgcast.rang after each write = %v, want y once rung", rang)
	}
	n, ok := f.ding(l, 30*time.Second)
	if !ok {
		t.Fatal("no notification for a transaction while a reader waits")
	}
	if n.Channel != triggers.NotifyChannel || n.Payload != "" {
		t.Errorf("notification = %+v, want channel %s with an empty payload", n, triggers.NotifyChannel)
	}
	if n, ok := f.ding(l, quiet); ok {
		t.Errorf("second notification %+v for one transaction", n)
	}

	// publish rings too; a transaction that appends nothing does not.
	f.exec(`SELECT pgcast.publish('job.completed', '{}')`)
	if _, ok := f.ding(l, 30*time.Second); !ok {
		t.Error("no notification for publish")
	}
	f.exec(`UPDATE pgcast.object_records SET cells = cells`)
	f.exec(`DELETE FROM pgcast.object_records WHERE false`)
	if n, ok := f.ding(l, quiet); ok {
		t.Errorf("notification %+v for a transaction that appended nothing", n)
	}

	// A reader that starts waiting in the middle of a writer's transaction
	// still gets the bell for the writer's later writes.
	f.exec(`UPDATE pgcast.listeners SET waiting = false`)
	tx, err = f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(f.ctx, `INSERT INTO pgcast.object_records (object_class_id) VALUES ($1)`, classID); err != nil {
		t.Fatal(err)
	}
	f.exec(`UPDATE pgcast.listeners SET waiting = true`)
	if _, err := tx.Exec(f.ctx, `INSERT INTO pgcast.object_records (object_class_id) VALUES ($1)`, classID); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(f.ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.ding(l, 30*time.Second); !ok {
		t.Error("no notification after the reader started waiting mid-transaction")
	}
}

func deref2(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// A session's plans are cached from its first, often one-row, statement;
// a later statement of many rows must not become quadratic with them.
func TestLargeStatementAfterSmallOnes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classID, fl := f.class("posts", "public", "title")
	key := fmt.Sprint(fl["title"])
	conn, err := pgx.Connect(f.ctx, f.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(f.ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// Warm every trigger's plan with one-row statements.
	exec(`INSERT INTO pgcast.object_records (object_class_id, cells) VALUES ($1, '{}')`, classID)
	exec(`UPDATE pgcast.object_records SET cells = jsonb_build_object($1::text, 'x'), owners = '{a}'`, key)
	exec(`DELETE FROM pgcast.object_records`)
	exec(`INSERT INTO pgcast.tasks (object_class_id) VALUES ($1)`, classID)
	exec(`UPDATE pgcast.tasks SET status = 'x', owners = '{a}'`)
	exec(`DELETE FROM pgcast.tasks`)

	const n = 30000
	ctx, cancel := context.WithTimeout(f.ctx, 60*time.Second)
	defer cancel()
	start := time.Now()
	for _, q := range []string{
		`INSERT INTO pgcast.object_records (object_class_id, cells) SELECT $1, jsonb_build_object($2::text, g) FROM generate_series(1, $3) g`,
		`UPDATE pgcast.object_records SET cells = jsonb_build_object($2::text, id), owners = '{b}' WHERE object_class_id = $1 AND $3 > 0`,
		`INSERT INTO pgcast.tasks (object_class_id) SELECT $1 FROM generate_series(1, $3) WHERE $2 <> ''`,
		`UPDATE pgcast.tasks SET status = 'y', owners = '{b}' WHERE object_class_id = $1 AND $2 <> '' AND $3 > 0`,
		`DELETE FROM pgcast.tasks WHERE object_class_id = $1 AND $2 <> '' AND $3 > 0`,
		`DELETE FROM pgcast.object_records WHERE object_class_id = $1 AND $2 <> '' AND $3 > 0`,
	} {
		if _, err := conn.Exec(ctx, q, classID, key, n); err != nil {
			t.Fatalf("%s: %v (after %v)", q, err, time.Since(start))
		}
	}
	t.Logf("six %d-row statements in %v", n, time.Since(start))
	want := int64(n * 8) // created+updated+owner_added+deleted, task created+status+owner_added+deleted
	if got := f.int64(`SELECT count(*) FROM pgcast.events WHERE object_record_id IS NOT NULL OR task_id IS NOT NULL`); got < want {
		t.Errorf("%d entries, want at least %d", got, want)
	}
}

// Record entries carry the class's field names as they are at the change:
// a field added, renamed or removed shows in the next entry, not in those
// already appended.
func TestRecordEntriesCarryFieldNamesOfTheirMoment(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classID, fid := f.class("notes", "public", "title", "body")
	id := f.record(classID, fmt.Sprintf(`{"%d": "t", "%d": "b"}`, fid["title"], fid["body"]), nil, nil)
	f.exec(`UPDATE pgcast.object_class_fields SET name = 'heading' WHERE id = $1`, fid["title"])
	f.exec(`DELETE FROM pgcast.object_class_fields WHERE id = $1`, fid["body"])
	extra := f.int64(`INSERT INTO pgcast.object_class_fields (object_class_id, name, type) VALUES ($1, 'extra', 'string') RETURNING id`, classID)
	f.exec(`UPDATE pgcast.object_records SET cells = cells || jsonb_build_object($2::text, 'x') WHERE id = $1`, id, fmt.Sprint(extra))

	var created, updated map[string]any
	for _, e := range f.newEntries() {
		switch e.Kind {
		case triggers.KindRecordCreated:
			created, _ = e.Data["record"].(map[string]any)
		case triggers.KindRecordUpdated:
			updated, _ = e.Data["record"].(map[string]any)
		}
	}
	for _, c := range []struct {
		name string
		rec  map[string]any
		want map[string]any
	}{
		{"created (before the changes)", created, map[string]any{"title": "t", "body": "b"}},
		{"updated (after them)", updated, map[string]any{"heading": "t", "extra": "x"}},
	} {
		got := map[string]any{}
		for k, v := range c.rec {
			if k != "id" && k != "createdAt" && k != "updatedAt" {
				got[k] = v
			}
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: record fields %v, want %v", c.name, got, c.want)
		}
	}
}

// pgcast.object_classes.field_names follows every change to the fields,
// concurrent ones included, and re-applying the triggers repairs it.
func TestFieldNamesFollowFields(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classID, fid := f.class("items", "public", "a")
	other, _ := f.class("others", "public", "z")
	names := func(class int64) map[string]string {
		t.Helper()
		var m map[string]string
		if err := f.pool.QueryRow(f.ctx, `SELECT field_names FROM pgcast.object_classes WHERE id = $1`, class).Scan(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	want := func(class int64, w map[string]string) {
		t.Helper()
		if got := names(class); !reflect.DeepEqual(got, w) {
			t.Fatalf("class %d field_names %v, want %v", class, got, w)
		}
	}
	key := func(id int64) string { return fmt.Sprint(id) }
	want(classID, map[string]string{key(fid["a"]): "a"})

	// Two transactions add fields to one class at once: both stay.
	tx1, err := f.pool.Begin(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx1.Rollback(f.ctx)
	var b, c int64
	if err := tx1.QueryRow(f.ctx, `INSERT INTO pgcast.object_class_fields (object_class_id, name, type) VALUES ($1, 'b', 'string') RETURNING id`, classID).Scan(&b); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- f.pool.QueryRow(f.ctx, `INSERT INTO pgcast.object_class_fields (object_class_id, name, type) VALUES ($1, 'c', 'string') RETURNING id`, classID).Scan(&c)
	}()
	// The second waits for the first's lock on the class row (Postgres
	// signals that only through pg_stat_activity).
	for deadline := time.Now().Add(30 * time.Second); f.int64(`SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'`) != 1; {
		if time.Now().After(deadline) {
			t.Fatal("the second field insert never waited for the first")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := tx1.Commit(f.ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want(classID, map[string]string{key(fid["a"]): "a", key(b): "b", key(c): "c"})

	f.exec(`UPDATE pgcast.object_class_fields SET name = 'bee' WHERE id = $1`, b)
	f.exec(`UPDATE pgcast.object_class_fields SET object_class_id = $2 WHERE id = $1`, c, other)
	f.exec(`DELETE FROM pgcast.object_class_fields WHERE id = $1`, fid["a"])
	want(classID, map[string]string{key(b): "bee"})
	if got := names(other); got[key(c)] != "c" || len(got) != 2 {
		t.Fatalf("class %d field_names %v, want z and c", other, got)
	}

	// Drift (the maps written by hand) is repaired at the next migrate.
	f.exec(`UPDATE pgcast.object_classes SET field_names = '{"0": "stale"}'`)
	f.exec(triggers.SQL)
	want(classID, map[string]string{key(b): "bee"})

	f.exec(`TRUNCATE pgcast.object_class_fields`)
	want(classID, map[string]string{})
	want(other, map[string]string{})
}

// An update of one record that keeps its owners and assignees takes the
// capture's single-row path; it appends the entry the general statement
// appends for each record of a larger update.
func TestSingleRowUpdateMatchesStatementPath(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	classID, fl := f.class("posts", "public", "a", "b")
	f.withoutCellsCheck()
	cells := fmt.Sprintf(`{"%d": 1, "%d": "x", "junk": 1}`, fl["a"], fl["b"])
	ids := []int64{f.record(classID, cells, []string{"o"}, []string{"s"}), f.record(classID, cells, []string{"o"}, []string{"s"}), f.record(classID, cells, []string{"o"}, []string{"s"})}
	f.exec(`UPDATE pgcast.object_records SET created_at = '2000-01-01', updated_at = '2000-01-01'`)
	f.skip()
	set := fmt.Sprintf(`cells = cells - '%d' || '{"%d": 2, "junk": 2, "99": 1}'`, fl["a"], fl["b"])
	f.exec(`UPDATE pgcast.object_records SET `+set+` WHERE id = $1`, ids[0])
	f.exec(`UPDATE pgcast.object_records SET `+set+` WHERE id = ANY ($1)`, ids[1:])
	f.exec(`UPDATE pgcast.object_records SET cells = cells WHERE id = $1`, ids[0]) // no change: nothing
	rows, err := f.pool.Query(f.ctx, `SELECT kind, (data - 'updated_at')::text FROM pgcast.events WHERE id > $1 ORDER BY id`, f.seen)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var kind, data string
		err := r.Scan(&kind, &data)
		return kind + " " + data, err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != got[1] || got[1] != got[2] {
		t.Fatalf("entries:\n%s", strings.Join(got, "\n"))
	}
	ids3 := []int64{fl["a"], fl["b"], 99}
	slices.Sort(ids3)
	if want := fmt.Sprintf(`"field_ids": [%d, %d, %d]`, ids3[0], ids3[1], ids3[2]); !strings.HasPrefix(got[0], "record_updated ") || !strings.Contains(got[0], want) {
		t.Fatalf("entry %s, want %s", got[0], want)
	}
}
