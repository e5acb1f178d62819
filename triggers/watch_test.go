package triggers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgcast/pgcast/db"
)

// Capture of watched application tables (watch.sql, docs/watch.md).

// watch applies def in environment 1 and commits.
func (f *fixture) watch(def db.WatchDefinition) db.WatchApplyResult {
	f.t.Helper()
	res, err := f.tryWatch(1, def)
	if err != nil {
		f.t.Fatalf("apply watch %+v: %v", def, err)
	}
	return res
}

func (f *fixture) tryWatch(env int64, def db.WatchDefinition) (db.WatchApplyResult, error) {
	var res db.WatchApplyResult
	err := pgx.BeginFunc(f.ctx, f.pool, func(tx pgx.Tx) error {
		var err error
		res, err = db.ApplyWatch(f.ctx, tx, env, def)
		return err
	})
	return res, err
}

// fieldIDs are a watch's field ids by column name.
func fieldIDs(w db.Watch) map[string]int64 {
	out := map[string]int64{}
	for _, c := range w.Columns {
		out[c.Name] = c.ID
	}
	return out
}

// record is an entry's data.record, re-encoded for comparison.
func record(t *testing.T, e entry) string {
	t.Helper()
	b, err := json.Marshal(e.Data["record"])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// jsonEq compares two JSON texts by value.
func jsonEq(t *testing.T, what, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("%s: %s: %v", what, got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("%s: want %s: %v", what, want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s = %s, want %s", what, got, want)
	}
}

const ordersTable = `CREATE TABLE public.orders (
	id          bigint PRIMARY KEY,
	customer_id uuid,
	status      text NOT NULL DEFAULT 'new',
	total       numeric,
	card_token  text
)`

const alice = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"

func TestWatchEachOperation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exec(ordersTable)
	res := f.watch(db.WatchDefinition{Table: "public.orders", Columns: db.WatchColumns{Exclude: []string{"card_token"}},
		Read: "owner", OwnerColumns: []string{"customer_id"}, Counts: true})
	if !res.Created || res.Watch.Name != "orders" || !res.Watch.Catalyst || res.Watch.Status != "ok" {
		t.Fatalf("apply: %+v", res)
	}
	class := res.Watch.ClassID
	ids := fieldIDs(res.Watch)
	if len(ids) != 4 || ids["card_token"] != 0 {
		t.Fatalf("fields %v: want one per streamed column, none for card_token", ids)
	}
	wantKinds(t, f.newEntries(), "collection_created")

	f.exec(`INSERT INTO orders VALUES (1, $1, 'new', 10.50, 'secret-token-1'), (2, NULL, 'new', 3, 'secret-token-2')`, alice)
	es := f.newEntries()
	// No count entry: the count is derived from the log; the entries of a
	// watch with counts say so.
	wantKinds(t, es, "record_created", "record_created")
	wantIDs(t, es[0], class, int64(1), nil)
	wantData(t, es[0], "class", "orders")
	wantData(t, es[0], "read", "owner")
	wantData(t, es[0], "owners", strs(alice))
	wantData(t, es[0], "assignees", []any{})
	jsonEq(t, "created record", record(t, es[0]), `{"id": 1, "customer_id": "`+alice+`", "status": "new", "total": 10.50}`)
	wantData(t, es[1], "owners", []any{})
	wantData(t, es[1], "counted", true)
	if n := f.count(class); n != 2 {
		t.Fatalf("count after insert: %d", n)
	}

	f.exec(`UPDATE orders SET status = 'paid', card_token = 'secret-token-3' WHERE id = 1`)
	es = f.newEntries()
	wantKinds(t, es, "record_updated")
	wantIDs(t, es[0], class, int64(1), nil)
	wantData(t, es[0], "field_ids", nums(ids["status"]))
	jsonEq(t, "old", mustJSON(t, es[0].Data["old"]), `{"status": "new"}`)
	jsonEq(t, "updated record", record(t, es[0]), `{"id": 1, "customer_id": "`+alice+`", "status": "paid", "total": 10.50}`)

	// A no-op update, and one changing only an excluded column: nothing.
	f.exec(`UPDATE orders SET status = status`)
	f.exec(`UPDATE orders SET card_token = 'secret-token-4' WHERE id = 2`)
	wantKinds(t, f.newEntries())

	// A key change is a delete and a create; the count does not change.
	f.exec(`UPDATE orders SET id = 20, total = 4 WHERE id = 2`)
	es = f.newEntries()
	wantKinds(t, es, "record_deleted", "record_created")
	wantIDs(t, es[0], class, int64(2), nil)
	jsonEq(t, "deleted by key change", record(t, es[0]), `{"id": 2, "customer_id": null, "status": "new", "total": 3}`)
	wantIDs(t, es[1], class, int64(20), nil)
	jsonEq(t, "created by key change", record(t, es[1]), `{"id": 20, "customer_id": null, "status": "new", "total": 4}`)

	f.exec(`DELETE FROM orders WHERE id = 1`)
	es = f.newEntries()
	wantKinds(t, es, "record_deleted")
	wantData(t, es[0], "owners", strs(alice))
	wantData(t, es[0], "counted", true)
	jsonEq(t, "deleted record", record(t, es[0]), `{"id": 1, "customer_id": "`+alice+`", "status": "paid", "total": 10.50}`)
	if n := f.count(class); n != 1 {
		t.Fatalf("count after delete: %d", n)
	}

	f.exec(`INSERT INTO orders (id, card_token) VALUES (30, 'secret-token-5')`)
	f.skip()
	f.exec(`TRUNCATE orders`)
	es = f.newEntries()
	wantKinds(t, es, "record_deleted", "record_deleted")
	if n := f.count(class); n != 0 {
		t.Fatalf("count after truncate: %d", n)
	}

	// Excluded values never reach the log.
	if n := f.int64(`SELECT count(*) FROM pgcast.events WHERE data::text LIKE '%secret-token%'`); n != 0 {
		t.Fatalf("%d entries carry an excluded value", n)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWatchRolledBackTransactionLeavesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exec(ordersTable)
	f.watch(db.WatchDefinition{Table: "public.orders", Counts: true})
	f.exec(`INSERT INTO orders (id) VALUES (1)`)
	f.skip()
	err := pgx.BeginFunc(f.ctx, f.pool, func(tx pgx.Tx) error {
		for _, q := range []string{`INSERT INTO orders (id) VALUES (2)`, `UPDATE orders SET status = 'x'`, `DELETE FROM orders WHERE id = 1`, `TRUNCATE orders`} {
			if _, err := tx.Exec(f.ctx, q); err != nil {
				return err
			}
		}
		return errors.New("roll back")
	})
	if err == nil || err.Error() != "roll back" {
		t.Fatal(err)
	}
	wantKinds(t, f.newEntries())
}

// One statement of 10,000 rows: one entry per row, in one set-based
// statement, and the count derived from them.
func TestWatchMultiRowStatements(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exec(ordersTable)
	w := f.watch(db.WatchDefinition{Table: "public.orders", Counts: true}).Watch
	f.skip()
	const n = 10000
	check := func(kind string, wantDelta int64) {
		t.Helper()
		var rows, ids, lo, hi, delta int64
		err := f.pool.QueryRow(f.ctx, `
			SELECT count(*) FILTER (WHERE kind = $2), count(DISTINCT object_record_id) FILTER (WHERE kind = $2),
			       coalesce(min(object_record_id), 0), coalesce(max(object_record_id), 0),
			       coalesce(sum(CASE kind WHEN 'record_created' THEN 1 WHEN 'record_deleted' THEN -1 END), 0)
			FROM pgcast.events WHERE id > $1`, f.seen, kind).Scan(&rows, &ids, &lo, &hi, &delta)
		if err != nil {
			t.Fatal(err)
		}
		if rows != n || ids != n || lo != 1 || hi != n || delta != wantDelta {
			t.Fatalf("%s: %d entries for %d records (%d..%d), count delta %d; want %d each, delta %d", kind, rows, ids, lo, hi, delta, n, wantDelta)
		}
		f.seen = f.int64(`SELECT coalesce(max(id), 0) FROM pgcast.events`)
	}
	f.exec(`INSERT INTO orders (id, total) SELECT g, g FROM generate_series(1, $1) g`, n)
	check("record_created", n)
	f.exec(`UPDATE orders SET total = total + 1`)
	check("record_updated", 0)
	if k := f.int64(`SELECT count(*) FROM pgcast.events WHERE kind = 'record_updated' AND data->'field_ids' <> jsonb_build_array($1::bigint)`, fieldIDs(w)["total"]); k != 0 {
		t.Fatalf("%d updates with other field ids", k)
	}
	f.exec(`DELETE FROM orders`)
	check("record_deleted", -n)
}

func TestWatchOwnerColumns(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exec(`CREATE TABLE docs (id int PRIMARY KEY, by_int bigint, by_uuid uuid, by_text text, editors text[], title text)`)
	f.watch(db.WatchDefinition{Table: "docs", Read: "owner", OwnerColumns: []string{"by_int", "by_uuid", "by_text", "editors"}})
	f.skip()
	f.exec(`INSERT INTO docs VALUES (1, 42, $1, 'bob', '{carol,dave,NULL,bob}', 't'), (2, NULL, NULL, NULL, NULL, 't')`, alice)
	es := f.newEntries()
	wantKinds(t, es, "record_created", "record_created")
	wantData(t, es[0], "owners", strs("42", alice, "bob", "carol", "dave"))
	wantData(t, es[1], "owners", []any{})

	f.exec(`UPDATE docs SET editors = '{carol,erin}', by_text = NULL WHERE id = 1`)
	es = f.newEntries()
	wantKinds(t, es, "record_updated", "record_owner_added", "record_owner_removed", "record_owner_removed")
	wantData(t, es[0], "owners", strs("42", alice, "carol", "erin"))
	wantData(t, es[1], "user_id", "erin")
	wantData(t, es[1], "owners", strs("42", alice, "carol", "erin"))
	removed := []any{es[2].Data["user_id"], es[3].Data["user_id"]}
	if !reflect.DeepEqual(removed, strs("bob", "dave")) && !reflect.DeepEqual(removed, strs("dave", "bob")) {
		t.Errorf("removed %v, want bob and dave", removed)
	}
	wantData(t, es[2], "owners", strs("42", alice, "bob", "carol", "dave"))
	if _, ok := es[1].Data["record"]; ok {
		t.Errorf("owner entry carries a record: %v", es[1])
	}
}

func TestWatchEnvironmentColumn(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exec(`INSERT INTO pgcast.environments (id, name) VALUES (2, 'two'), (3, 'three')`)
	f.exec(`CREATE TABLE notes (id int PRIMARY KEY, tenant_id int, body text)`)
	f.watch(db.WatchDefinition{Table: "public.notes", EnvColumn: "tenant_id"})
	f.skip()
	f.exec(`INSERT INTO notes VALUES (1, 2, 'a'), (2, 3, 'b'), (3, NULL, 'no tenant')`)
	es := f.newEntries()
	wantKinds(t, es, "record_created", "record_created")
	if es[0].Env != 2 || es[1].Env != 3 {
		t.Fatalf("environments %d, %d; want 2, 3", es[0].Env, es[1].Env)
	}
	f.exec(`UPDATE notes SET body = 'a2' WHERE id = 1`)
	es = f.newEntries()
	wantKinds(t, es, "record_updated")
	if es[0].Env != 2 {
		t.Fatalf("update in environment %d", es[0].Env)
	}
	// Moving a row to another environment: gone from one, new in the other.
	f.exec(`UPDATE notes SET tenant_id = 3 WHERE id = 1`)
	es = f.newEntries()
	wantKinds(t, es, "record_deleted", "record_created")
	if es[0].Env != 2 || es[1].Env != 3 {
		t.Fatalf("move: environments %d, %d; want 2, 3", es[0].Env, es[1].Env)
	}
	jsonEq(t, "moved out", record(t, es[0]), `{"id": 1, "tenant_id": 2, "body": "a2"}`)
	f.exec(`UPDATE notes SET body = 'x' WHERE id = 3`)
	f.exec(`DELETE FROM notes WHERE id = 3`)
	wantKinds(t, f.newEntries())
}

// Columns added, renamed and dropped while the table is watched keep
// streaming under their names, fields follow columns by attnum, and a
// renamed excluded column stays excluded: from the DDL's transaction with
// the event trigger, and at the next write without it.
func TestWatchSchemaChanges(t *testing.T) {
	t.Parallel()
	for _, withEventTrigger := range []bool{true, false} {
		t.Run(fmt.Sprintf("event_trigger=%t", withEventTrigger), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			if !withEventTrigger {
				f.exec(`DROP EVENT TRIGGER pgcast_watch_ddl`)
			}
			f.exec(ordersTable)
			w := f.watch(db.WatchDefinition{Table: "public.orders", Columns: db.WatchColumns{Exclude: []string{"card_token"}}}).Watch
			ids := fieldIDs(w)
			f.exec(`INSERT INTO orders (id, status, card_token) VALUES (1, 'new', 'secret-a')`)
			f.skip()

			// The same session writes before and after each change (cached
			// plans of the capture functions must follow the row type).
			conn, err := f.pool.Acquire(f.ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Release()
			exec := func(q string) {
				t.Helper()
				if _, err := conn.Exec(f.ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			exec(`UPDATE orders SET total = 1 WHERE id = 1`)
			exec(`ALTER TABLE orders ADD COLUMN note text DEFAULT 'n'`)
			exec(`ALTER TABLE orders RENAME COLUMN status TO state`)
			exec(`ALTER TABLE orders RENAME COLUMN card_token TO token`)
			exec(`UPDATE orders SET state = 'paid', note = 'hi', token = 'secret-b' WHERE id = 1`)
			exec(`ALTER TABLE orders DROP COLUMN total`)
			exec(`INSERT INTO orders (id, token) VALUES (2, 'secret-c')`)
			es := f.newEntries()
			wantKinds(t, es, "record_updated", "record_updated", "record_created")
			jsonEq(t, "after add and renames", record(t, es[1]),
				`{"id": 1, "customer_id": null, "state": "paid", "total": 1, "note": "hi"}`)
			now, err := db.GetWatch(f.ctx, f.pool, 1, "orders")
			if err != nil {
				t.Fatal(err)
			}
			got := fieldIDs(now)
			if got["state"] != ids["status"] || got["note"] == 0 || got["total"] != 0 || got["token"] != 0 || len(got) != 4 {
				t.Fatalf("fields after the changes: %v (before: %v)", got, ids)
			}
			wantData(t, es[1], "field_ids", nums(ids["status"], got["note"]))
			jsonEq(t, "after drop", record(t, es[2]), `{"id": 2, "customer_id": null, "state": "new", "note": "n"}`)
			if now.Status != "ok" {
				t.Fatalf("list after the changes: %+v", now)
			}
			if n := f.int64(`SELECT count(*) FROM pgcast.events WHERE data::text LIKE '%secret-%'`); n != 0 {
				t.Fatalf("%d entries carry an excluded value", n)
			}
		})
	}
}

func TestWatchDDLRefusedForKeyColumn(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exec(`CREATE TABLE notes (id int PRIMARY KEY, tenant_id int, body text)`)
	f.watch(db.WatchDefinition{Table: "notes", EnvColumn: "tenant_id"})
	for _, q := range []string{`ALTER TABLE notes DROP COLUMN id`, `ALTER TABLE notes DROP COLUMN tenant_id`} {
		_, err := f.pool.Exec(f.ctx, q)
		if err == nil || !strings.Contains(err.Error(), "is watched by pgcast") {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func TestWatchNonIntegerKeys(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exec(`CREATE TABLE skus (code text PRIMARY KEY, price int)`)
	f.exec(`CREATE TABLE stock (warehouse int, region text, qty int, PRIMARY KEY (region, warehouse))`)
	if w := f.watch(db.WatchDefinition{Table: "skus"}).Watch; w.Catalyst {
		t.Fatalf("text key: catalyst %v", w.Catalyst)
	}
	f.watch(db.WatchDefinition{Table: "stock"})
	f.skip()
	f.exec(`INSERT INTO skus VALUES ('A-1', 5)`)
	f.exec(`INSERT INTO stock VALUES (7, 'eu', 1)`)
	f.exec(`UPDATE stock SET qty = 2`)
	es := f.newEntries()
	wantKinds(t, es, "record_created", "record_created", "record_updated")
	for _, e := range es {
		if e.RecordID != nil {
			t.Errorf("%s: object_record_id %d, want NULL", e.Kind, *e.RecordID)
		}
	}
	jsonEq(t, "text key", record(t, es[0]), `{"id": "A-1", "code": "A-1", "price": 5}`)
	jsonEq(t, "composite key", record(t, es[1]), `{"id": "[\"eu\", 7]", "warehouse": 7, "region": "eu", "qty": 1}`)
}

// Every column type is in the record as to_jsonb shows it.
func TestWatchColumnTypes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exec(`CREATE TYPE mood AS ENUM ('sad', 'happy')`)
	f.exec(`CREATE TYPE pair AS (a int, b text)`)
	f.exec(`CREATE TABLE kinds (
		id smallint PRIMARY KEY, i4 int, i8 bigint, n numeric, n2 numeric(10,2), f4 real, f8 double precision,
		b boolean, t text, vc varchar(5), ch char(3), ts timestamp, tstz timestamptz, d date, tm time, iv interval,
		j json, jb jsonb, u uuid, by bytea, ia int[], ta text[], ip inet, m mood, p pair, big numeric, inf float8, nul text)`)
	f.watch(db.WatchDefinition{Table: "kinds"})
	f.skip()
	// Timestamps with time zone are shown in UTC whatever the writer's
	// TimeZone (to_jsonb shows them in the session's).
	conn, err := f.pool.Acquire(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(f.ctx, `SET TIME ZONE 'Europe/Paris'`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(f.ctx, `INSERT INTO kinds VALUES (7, -2147483648, 9223372036854775807, 3.14159265358979323846264338327950288, 12.5,
		1.5, 0.1, true, E'tab\there "quoted" \\ é 😀', 'abc', 'x', '2026-01-02 03:04:05.678901', '2026-01-02 03:04:05.5+02',
		'2026-01-02', '13:14:15', '1 day 2 hours', '{"b": 1, "a": [1, 2]}', '{"b": 1, "a": {"c": null}}',
		$1, '\xdeadbeef', '{1,2,NULL}', '{"a,b","c"}', '10.0.0.1/32', 'happy', ROW(1, 'x'), 1e100, 'Infinity', NULL)`, alice); err != nil {
		t.Fatal(err)
	}
	es := f.newEntries()
	wantKinds(t, es, "record_created")
	var want string
	if _, err := conn.Exec(f.ctx, `SET TIME ZONE 'UTC'`); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(f.ctx, `SELECT (to_jsonb(k) || jsonb_build_object('id', k.id))::text FROM kinds k`).Scan(&want); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(want, `"tstz": "2026-01-02T01:04:05.5+00:00"`) {
		t.Fatalf("reference record %s", want)
	}
	jsonEq(t, "record", record(t, es[0]), want)
	var raw string
	if err := f.pool.QueryRow(f.ctx, `SELECT (data->'record')::text FROM pgcast.events WHERE id = $1`, es[0].ID).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if raw != want {
		t.Fatalf("record text\n%s\nwant\n%s", raw, want)
	}
}

func TestWatchLargeValue(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exec(`CREATE TABLE blobs (id int PRIMARY KEY, body text)`)
	f.watch(db.WatchDefinition{Table: "blobs"})
	f.skip()
	body := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	f.exec(`INSERT INTO blobs VALUES (1, $1)`, body)
	es := f.newEntries()
	wantKinds(t, es, "record_created")
	if got := es[0].Data["record"].(map[string]any)["body"]; got != body {
		t.Fatalf("body of %d bytes captured as %d", len(body), len(fmt.Sprint(got)))
	}
}

// The capture functions run as pgcast's role: a role that owns nothing in
// schema pgcast writes its watched table and the changes are captured; the
// same function attached to another table captures nothing.
func TestWatchCaptureNeedsNoPrivilegeOnPgcast(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	role := fmt.Sprintf("pgcast_app_%d", f.int64(`SELECT pg_backend_pid()`))
	f.exec(`CREATE ROLE ` + role + ` NOLOGIN`)
	t.Cleanup(func() {
		_, _ = f.pool.Exec(context.Background(), `DROP OWNED BY `+role)
		_, _ = f.pool.Exec(context.Background(), `DROP ROLE `+role)
	})
	f.exec(`CREATE TABLE notes (id int PRIMARY KEY, body text)`)
	f.exec(`CREATE TABLE other (id int PRIMARY KEY, body text)`)
	f.exec(`ALTER TABLE notes OWNER TO ` + role)
	f.exec(`ALTER TABLE other OWNER TO ` + role)
	f.watch(db.WatchDefinition{Table: "notes"})
	watchID := f.int64(`SELECT id FROM pgcast.watches`)
	f.skip()
	err := pgx.BeginFunc(f.ctx, f.pool, func(tx pgx.Tx) error {
		for _, q := range []string{
			// Even with usage of the schema (the forged trigger needs it).
			`GRANT USAGE ON SCHEMA pgcast TO ` + role,
			`SET LOCAL ROLE ` + role,
			`INSERT INTO notes VALUES (1, 'a')`,
			fmt.Sprintf(`CREATE TRIGGER forged AFTER INSERT ON other REFERENCING NEW TABLE AS pgcast_new FOR EACH STATEMENT EXECUTE FUNCTION pgcast.capture_watch_insert('%d')`, watchID),
			`INSERT INTO other VALUES (1, 'forged')`,
		} {
			if _, err := tx.Exec(f.ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	es := f.newEntries()
	wantKinds(t, es, "record_created")
	jsonEq(t, "record", record(t, es[0]), `{"id": 1, "body": "a"}`)
}

// With an include list, a column added later is not streamed; a column's
// type change is followed (here the key's: its id becomes a string): from
// the DDL's transaction with the event trigger, and at the next write without
// it (the capture compares the columns' types too, not only their names).
func TestWatchIncludeAndTypeChange(t *testing.T) {
	t.Parallel()
	for _, withEventTrigger := range []bool{true, false} {
		t.Run(fmt.Sprintf("event_trigger=%t", withEventTrigger), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			if !withEventTrigger {
				f.exec(`DROP EVENT TRIGGER pgcast_watch_ddl`)
			}
			f.exec(`CREATE TABLE items (id int PRIMARY KEY, name text, price int, secret text)`)
			w := f.watch(db.WatchDefinition{Table: "items", Columns: db.WatchColumns{Include: []string{"name", "price"}}}).Watch
			if len(w.Columns) != 3 || !reflect.DeepEqual(w.Excluded, []string{"secret"}) {
				t.Fatalf("watch %+v", w)
			}
			f.exec(`ALTER TABLE items ADD COLUMN added text DEFAULT 'not streamed'`)
			f.exec(`ALTER TABLE items ALTER COLUMN price TYPE numeric`)
			f.skip()
			f.exec(`INSERT INTO items VALUES (1, 'a', 2, 's')`)
			es := f.newEntries()
			wantKinds(t, es, "record_created")
			jsonEq(t, "record", record(t, es[0]), `{"id": 1, "name": "a", "price": 2}`)
			now, err := db.GetWatch(f.ctx, f.pool, 1, "items")
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range now.Columns {
				if c.Name == "price" && c.Type != "float" {
					t.Errorf("price field type %s after ALTER TYPE numeric", c.Type)
				}
			}
			f.exec(`ALTER TABLE items ALTER COLUMN id TYPE text`)
			f.exec(`UPDATE items SET name = 'b'`)
			es = f.newEntries()
			wantKinds(t, es, "record_updated")
			if es[0].RecordID != nil {
				t.Errorf("text key: object_record_id %d", *es[0].RecordID)
			}
			jsonEq(t, "record", record(t, es[0]), `{"id": "1", "name": "b", "price": 2}`)
		})
	}
}

// INSERT ... ON CONFLICT DO UPDATE: created for the new rows, updated for
// the existing ones, in one statement.
func TestWatchUpsert(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.exec(`CREATE TABLE kv (k text PRIMARY KEY, v int)`)
	f.exec(`INSERT INTO kv VALUES ('a', 1), ('b', 2)`)
	f.watch(db.WatchDefinition{Table: "kv"})
	f.skip()
	f.exec(`INSERT INTO kv VALUES ('a', 10), ('b', 2), ('c', 3) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v`)
	es := f.newEntries()
	// Postgres fires the statement's UPDATE triggers before its INSERT ones.
	wantKinds(t, es, "record_updated", "record_created")
	jsonEq(t, "updated", record(t, es[0]), `{"id": "a", "k": "a", "v": 10}`)
	jsonEq(t, "old", mustJSON(t, es[0].Data["old"]), `{"v": 1}`)
	jsonEq(t, "created", record(t, es[1]), `{"id": "c", "k": "c", "v": 3}`)
}
