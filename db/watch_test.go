package db_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/collections"
	"github.com/pgcast/pgcast/internal/pgtest"
)

func applyWatch(ctx context.Context, pool *pgxpool.Pool, env int64, def db.WatchDefinition) (db.WatchApplyResult, error) {
	var res db.WatchApplyResult
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		res, err = db.ApplyWatch(ctx, tx, env, def)
		return err
	})
	return res, err
}

func mustExec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func mustWatch(t *testing.T, pool *pgxpool.Pool, name string) db.Watch {
	t.Helper()
	w, err := db.GetWatch(context.Background(), pool, 1, name)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWatchApplyErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	mustExec(t, pool, `CREATE TABLE orders (id int PRIMARY KEY, customer text, tags text[], amount numeric, tenant text, "Mixed" int)`)
	mustExec(t, pool, `CREATE TABLE nokey (a int)`)
	mustExec(t, pool, `CREATE VIEW v AS SELECT 1 AS id`)
	mustExec(t, pool, `CREATE TABLE "Caps" (id int PRIMARY KEY)`)
	mustExec(t, pool, `INSERT INTO pgcast.object_classes (name) VALUES ('posts')`)
	mustExec(t, pool, `CREATE TABLE posts (id int PRIMARY KEY)`)
	cases := []struct {
		def  db.WatchDefinition
		is   error
		want string
		env  int64
	}{
		{db.WatchDefinition{Table: "public.missing"}, db.ErrInvalidWatch, "table public.missing does not exist", 0},
		{db.WatchDefinition{Table: "nokey"}, db.ErrInvalidWatch, "has no primary key", 0},
		{db.WatchDefinition{Table: "v"}, db.ErrInvalidWatch, "is not a table", 0},
		{db.WatchDefinition{Table: "orders", Columns: db.WatchColumns{Exclude: []string{"nope"}}}, db.ErrInvalidWatch, `columns.exclude: table public.orders has no column "nope" (its columns: id, customer, tags, amount, tenant, Mixed)`, 0},
		{db.WatchDefinition{Table: "orders", Columns: db.WatchColumns{Include: []string{"nope"}}}, db.ErrInvalidWatch, `columns.include: table public.orders has no column "nope"`, 0},
		{db.WatchDefinition{Table: "orders", OwnerColumns: []string{"nope"}}, db.ErrInvalidWatch, `owner_columns: table public.orders has no column "nope"`, 0},
		{db.WatchDefinition{Table: "orders", OwnerColumns: []string{"amount"}}, db.ErrInvalidWatch, `column "amount" has type numeric: want text`, 0},
		{db.WatchDefinition{Table: "orders", EnvColumn: "nope"}, db.ErrInvalidWatch, `env_column: table public.orders has no column "nope"`, 0},
		{db.WatchDefinition{Table: "orders", EnvColumn: "tenant"}, db.ErrInvalidWatch, `env_column: column "tenant" has type text: want smallint, integer or bigint`, 0},
		{db.WatchDefinition{Table: "orders", Columns: db.WatchColumns{Exclude: []string{"id"}}}, db.ErrInvalidWatch, `"id" is a key, owner or environment column`, 0},
		{db.WatchDefinition{Table: "orders", OwnerColumns: []string{"customer"}, Columns: db.WatchColumns{Exclude: []string{"customer"}}}, db.ErrInvalidWatch, `"customer" is a key, owner or environment column`, 0},
		{db.WatchDefinition{Table: "orders", EnvColumn: "Mixed", Counts: true}, db.ErrInvalidWatch, "counts: not available with env_column", 0},
		{db.WatchDefinition{Table: "orders", Read: "everyone"}, db.ErrInvalidWatch, `read rule "everyone"`, 0},
		{db.WatchDefinition{Table: "orders", Name: "auth"}, db.ErrInvalidWatch, `name "auth" is reserved`, 0},
		{db.WatchDefinition{Table: `public."Caps"`}, db.ErrInvalidWatch, `name "Caps" must match ^[a-z][a-z0-9_]*$ and have at most 63 characters (the name defaults to the table's name "Caps": set "name")`, 0},
		{db.WatchDefinition{Table: "posts"}, db.ErrWatchConflict, `a collection named "posts" exists in environment 1 and is not a watch`, 0},
		{db.WatchDefinition{Table: "orders"}, db.ErrInvalidWatch, "environment 9 does not exist", 9},
	}
	for _, c := range cases {
		env := max(c.env, 1)
		_, err := applyWatch(ctx, pool, env, c.def)
		if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v:\n got %v\nwant %v: …%s…", c.def, err, c.is, c.want)
		}
	}
	if n := countRows(t, pool, `SELECT count(*) FROM pgcast.watches`); n != 0 {
		t.Fatalf("%d watches after failed applies", n)
	}
	// One watch per table.
	if _, err := applyWatch(ctx, pool, 1, db.WatchDefinition{Table: "orders"}); err != nil {
		t.Fatal(err)
	}
	_, err := applyWatch(ctx, pool, 1, db.WatchDefinition{Table: "orders", Name: "orders2"})
	if !errors.Is(err, db.ErrWatchConflict) || !strings.Contains(err.Error(), `table public.orders is already watched as "orders"`) {
		t.Fatalf("second watch of a table: %v", err)
	}
	// collections apply refuses to change a watch's class.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := db.ApplyCollection(ctx, tx, 1, collections.Definition{Name: "orders", Permissions: collections.DefaultPermissions()})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "is the watch of table public.orders") {
		t.Fatalf("collections apply over a watch: %v", err)
	}
}

func countRows(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestWatchApplyIdempotentAndUpdates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	mustExec(t, pool, `CREATE TABLE orders (id int PRIMARY KEY, customer text, status text, secret text)`)
	mustExec(t, pool, `INSERT INTO orders SELECT g, 'c', 'new', 's' FROM generate_series(1, 5) g`)
	def := db.WatchDefinition{Table: "public.orders", Columns: db.WatchColumns{Exclude: []string{"secret"}}}
	res, err := applyWatch(ctx, pool, 1, def)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || len(res.Changes) != 1 || !strings.HasPrefix(res.Changes[0], "created watch orders") {
		t.Fatalf("first apply: %+v", res)
	}
	snapshot := func() string {
		var s string
		err := pool.QueryRow(ctx, `SELECT concat_ws(' | ',
			(SELECT string_agg(concat_ws(',', id, name, read_rule), ';' ORDER BY id) FROM pgcast.object_classes),
			(SELECT string_agg(concat_ws(',', id, name, type, attnum), ';' ORDER BY id) FROM pgcast.object_class_fields),
			(SELECT string_agg(concat_ws(',', id, updated_at, counts), ';') FROM pgcast.watches),
			(SELECT string_agg(concat_ws(',', oid, tgname), ';' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'orders'::regclass),
			(SELECT count(*) FROM pgcast.events))`).Scan(&s)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := snapshot()
	res, err = applyWatch(ctx, pool, 1, def)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created || len(res.Changes) != 0 || res.Watch.Status != "ok" {
		t.Fatalf("second apply: %+v", res)
	}
	if after := snapshot(); after != before {
		t.Fatalf("second apply changed the database:\n%s\n%s", before, after)
	}

	def = db.WatchDefinition{Table: "public.orders", Columns: db.WatchColumns{Include: []string{"status"}}, Read: "owner", OwnerColumns: []string{"customer"}, Counts: true}
	res, err = applyWatch(ctx, pool, 1, def)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"orders: read rule authenticated → owner",
		"orders: columns exclude [secret] → include [id, customer, status]",
		"orders: owner columns [] → [customer]",
		"orders: counts false → true",
		"orders: count seeded: 5 rows",
	}
	if !slices.Equal(res.Changes, want) {
		t.Fatalf("changes:\n%s\nwant\n%s", strings.Join(res.Changes, "\n"), strings.Join(want, "\n"))
	}
	w := res.Watch
	if w.Read != "owner" || !slices.Equal(w.OwnerColumns, []string{"customer"}) || !w.Counts || !slices.Equal(w.Excluded, []string{"secret"}) || len(w.Columns) != 3 {
		t.Fatalf("watch after update: %+v", w)
	}
	counts, err := db.ClassCounts(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if n := counts[w.ClassID]; n != 5 {
		t.Fatalf("count %d, want 5", n)
	}
	if n := countRows(t, pool, `SELECT count(*) FROM pgcast.events WHERE kind = 'records_count_changed' AND (data->>'count')::int = 5`); n != 1 {
		t.Fatalf("%d seed count entries", n)
	}
}

// Capture triggers dropped or disabled behind pgcast's back are reported
// by list and repaired by apply.
func TestWatchDriftReportedAndRepaired(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	mustExec(t, pool, `CREATE TABLE orders (id int PRIMARY KEY, status text)`)
	def := db.WatchDefinition{Table: "orders", Counts: true}
	if _, err := applyWatch(ctx, pool, 1, def); err != nil {
		t.Fatal(err)
	}
	mustExec(t, pool, `DROP TRIGGER pgcast_watch_update ON orders`)
	mustExec(t, pool, `ALTER TABLE orders DISABLE TRIGGER pgcast_watch_insert`)
	mustExec(t, pool, `INSERT INTO orders VALUES (1, 'missed')`)
	list, err := db.ListWatches(ctx, pool, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Status != "drift" || len(list[0].Problems) != 2 ||
		!strings.Contains(list[0].Problems[0], "trigger pgcast_watch_insert on public.orders is disabled") ||
		!strings.Contains(list[0].Problems[1], "trigger pgcast_watch_update on public.orders is missing") {
		t.Fatalf("list: %+v", list)
	}
	res, err := applyWatch(ctx, pool, 1, def)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"orders: repaired: trigger pgcast_watch_insert on public.orders is disabled",
		"orders: repaired: trigger pgcast_watch_update on public.orders is missing",
		"orders: count seeded: 1 rows",
	}
	if !slices.Equal(res.Changes, want) || res.Watch.Status != "ok" {
		t.Fatalf("repair: %+v", res)
	}
	mustExec(t, pool, `UPDATE orders SET status = 'seen'`)
	if n := countRows(t, pool, `SELECT count(*) FROM pgcast.events WHERE kind = 'record_updated'`); n != 1 {
		t.Fatalf("%d updates captured after the repair", n)
	}
}

func TestWatchRemoveLeavesNoTrigger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	mustExec(t, pool, `CREATE TABLE orders (id int PRIMARY KEY, status text)`)
	mustExec(t, pool, `INSERT INTO orders VALUES (1, 'kept')`)
	if _, err := applyWatch(ctx, pool, 1, db.WatchDefinition{Table: "orders", Counts: true}); err != nil {
		t.Fatal(err)
	}
	remove := func(name string) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return db.RemoveWatch(ctx, tx, 1, name) })
	}
	if err := remove("orders"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		q    string
		want int64
	}{
		{`SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass`, 0},
		{`SELECT count(*) FROM pgcast.watches`, 0},
		{`SELECT count(*) FROM pgcast.object_classes`, 0},
		{`SELECT count(*) FROM pgcast.object_class_fields`, 0},
		{`SELECT count(*) FROM pgcast.object_class_counts`, 0},
		{`SELECT count(*) FROM orders WHERE status = 'kept'`, 1},
		{`WITH w AS (INSERT INTO orders VALUES (2, 'x') RETURNING 1) SELECT count(*) FROM w`, 1},
		{`SELECT count(*) FROM pgcast.events WHERE kind NOT IN ('collection_created', 'records_count_changed')`, 0},
	} {
		if n := countRows(t, pool, c.q); n != c.want {
			t.Errorf("%s: %d, want %d", c.q, n, c.want)
		}
	}
	if err := remove("orders"); !errors.Is(err, db.ErrWatchNotFound) {
		t.Fatalf("second remove: %v", err)
	}
}

func TestWatchTableRenamedAndDropped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	mustExec(t, pool, `CREATE SCHEMA app`)
	mustExec(t, pool, `CREATE TABLE app.orders (id int PRIMARY KEY, status text)`)
	if _, err := applyWatch(ctx, pool, 1, db.WatchDefinition{Table: "app.orders"}); err != nil {
		t.Fatal(err)
	}
	mustExec(t, pool, `ALTER TABLE app.orders RENAME TO "Orders 2"`)
	mustExec(t, pool, `INSERT INTO app."Orders 2" VALUES (1, 'after rename')`)
	if n := countRows(t, pool, `SELECT count(*) FROM pgcast.events WHERE kind = 'record_created' AND data->'record'->>'status' = 'after rename'`); n != 1 {
		t.Fatal("a renamed table's changes are not captured")
	}
	if w := mustWatch(t, pool, "orders"); w.Table != `app."Orders 2"` || w.Status != "ok" {
		t.Fatalf("after rename: %+v", w)
	}
	mustExec(t, pool, `DROP TABLE app."Orders 2"`)
	w := mustWatch(t, pool, "orders")
	if w.Status != "dropped" || !strings.Contains(w.Problems[0], `table app."Orders 2" was dropped`) {
		t.Fatalf("after drop: %+v", w)
	}
	// Created again, applied again: watched again.
	mustExec(t, pool, `CREATE TABLE app.orders (id int PRIMARY KEY, status text)`)
	res, err := applyWatch(ctx, pool, 1, db.WatchDefinition{Table: "app.orders"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Watch.Status != "ok" || !slices.Contains(res.Changes, "orders: table was dropped; now watches app.orders") {
		t.Fatalf("re-apply: %+v", res)
	}
	mustExec(t, pool, `INSERT INTO app.orders VALUES (1, 'again')`)
	if n := countRows(t, pool, `SELECT count(*) FROM pgcast.events WHERE kind = 'record_created' AND data->'record'->>'status' = 'again'`); n != 1 {
		t.Fatal("the table created again is not captured")
	}
}

// Without the event trigger (a role that is not superuser migrated), a
// dropped table is found by list, and apply moves the watch to the table
// created again.
func TestWatchTableDroppedWithoutEventTrigger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	mustExec(t, pool, `DROP EVENT TRIGGER pgcast_watch_drop`)
	mustExec(t, pool, `CREATE TABLE orders (id int PRIMARY KEY)`)
	if _, err := applyWatch(ctx, pool, 1, db.WatchDefinition{Table: "orders"}); err != nil {
		t.Fatal(err)
	}
	mustExec(t, pool, `DROP TABLE orders`)
	if w := mustWatch(t, pool, "orders"); w.Status != "dropped" {
		t.Fatalf("after drop: %+v", w)
	}
	mustExec(t, pool, `CREATE TABLE orders (id int PRIMARY KEY)`)
	if res, err := applyWatch(ctx, pool, 1, db.WatchDefinition{Table: "orders"}); err != nil || res.Watch.Status != "ok" {
		t.Fatalf("re-apply: %+v %v", res, err)
	}
}

func TestWatchNeedsTableOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	var pid int64
	if err := pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	role := fmt.Sprintf("pgcast_other_%d", pid)
	mustExec(t, pool, `CREATE ROLE `+role+` NOLOGIN`)
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), `DROP OWNED BY `+role)
		_, _ = pool.Exec(context.Background(), `DROP ROLE `+role)
	})
	mustExec(t, pool, `CREATE TABLE orders (id int PRIMARY KEY)`)
	mustExec(t, pool, `GRANT USAGE ON SCHEMA pgcast TO `+role)
	mustExec(t, pool, `GRANT ALL ON ALL TABLES IN SCHEMA pgcast TO `+role)
	mustExec(t, pool, `GRANT SELECT ON orders TO `+role)
	as := func(f func(tx pgx.Tx) error) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL ROLE `+role); err != nil {
				return err
			}
			return f(tx)
		})
	}
	err := as(func(tx pgx.Tx) error {
		_, err := db.ApplyWatch(ctx, tx, 1, db.WatchDefinition{Table: "orders"})
		return err
	})
	if !errors.Is(err, db.ErrNotTableOwner) || !strings.Contains(err.Error(), "must own table public.orders (or be superuser) to watch it") {
		t.Fatalf("apply as another role: %v", err)
	}
	if _, err := applyWatch(ctx, pool, 1, db.WatchDefinition{Table: "orders"}); err != nil {
		t.Fatal(err)
	}
	err = as(func(tx pgx.Tx) error { return db.RemoveWatch(ctx, tx, 1, "orders") })
	if !errors.Is(err, db.ErrNotTableOwner) || !strings.Contains(err.Error(), "must own table public.orders (or be superuser) to remove its watch") {
		t.Fatalf("remove as another role: %v", err)
	}
}

// Without the event trigger that refuses it, dropping a key column stops
// the capture, and list says why.
func TestWatchKeyColumnDroppedWithoutEventTrigger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	mustExec(t, pool, `DROP EVENT TRIGGER pgcast_watch_ddl`)
	mustExec(t, pool, `CREATE TABLE orders (id int PRIMARY KEY, status text)`)
	if _, err := applyWatch(ctx, pool, 1, db.WatchDefinition{Table: "orders"}); err != nil {
		t.Fatal(err)
	}
	mustExec(t, pool, `ALTER TABLE orders DROP COLUMN id`)
	mustExec(t, pool, `INSERT INTO orders VALUES ('uncaptured')`)
	if n := countRows(t, pool, `SELECT count(*) FROM pgcast.events WHERE kind <> 'collection_created'`); n != 0 {
		t.Fatalf("%d entries without a key", n)
	}
	w := mustWatch(t, pool, "orders")
	if w.Status != "drift" || !strings.Contains(strings.Join(w.Problems, "; "), "key column(s) #1 were dropped: nothing is captured") {
		t.Fatalf("list: %+v", w)
	}
}

// Migrating below the watches' version drops the capture triggers from the
// watched tables (the tables and their data stay); the way back up works.
func TestWatchMigrateDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, url := pgtest.NewPool(t)
	mustExec(t, pool, `CREATE TABLE orders (id int PRIMARY KEY, status text)`)
	mustExec(t, pool, `INSERT INTO orders VALUES (1, 'kept')`)
	if _, err := applyWatch(ctx, pool, 1, db.WatchDefinition{Table: "orders", Counts: true}); err != nil {
		t.Fatal(err)
	}
	m, err := db.NewMigrator(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// Below version 6: version 7 (derived counts) first.
	if err := m.Down(ctx, 2); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		q    string
		want int64
	}{
		{`SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass`, 0},
		{`SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'pgcast%'`, 0},
		{`SELECT count(*) FROM pgcast.object_classes`, 0},
		{`SELECT count(*) FROM information_schema.tables WHERE table_name = 'watches'`, 0},
		{`SELECT count(*) FROM orders`, 1},
		{`WITH w AS (INSERT INTO orders VALUES (2, 'x') RETURNING 1) SELECT count(*) FROM w`, 1},
	} {
		if n := countRows(t, pool, c.q); n != c.want {
			t.Errorf("%s: %d, want %d", c.q, n, c.want)
		}
	}
	if err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := applyWatch(ctx, pool, 1, db.WatchDefinition{Table: "orders", Counts: true}); err != nil || !res.Created {
		t.Fatalf("apply after up: %+v %v", res, err)
	}
}

// The capture functions run as their owner, which must be able to read
// the table for TRUNCATE: apply says what to grant, list reports a revoked
// grant.
func TestWatchCaptureOwnerMustReadTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	var pid int64
	if err := pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	role := fmt.Sprintf("pgcast_fn_%d", pid)
	mustExec(t, pool, `CREATE ROLE `+role+` NOLOGIN`)
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), `REASSIGN OWNED BY `+role+` TO CURRENT_USER`)
		_, _ = pool.Exec(context.Background(), `DROP OWNED BY `+role)
		_, _ = pool.Exec(context.Background(), `DROP ROLE `+role)
	})
	mustExec(t, pool, `ALTER FUNCTION pgcast.capture_watch_truncate() OWNER TO `+role)
	mustExec(t, pool, `CREATE TABLE orders (id int PRIMARY KEY)`)
	_, err := applyWatch(ctx, pool, 1, db.WatchDefinition{Table: "orders"})
	want := fmt.Sprintf("pgcast's capture runs as role %s, which cannot read table public.orders (a TRUNCATE is captured by reading its rows first): GRANT SELECT ON public.orders TO %s", role, role)
	if !errors.Is(err, db.ErrInvalidWatch) || !strings.Contains(err.Error(), want) {
		t.Fatalf("apply: %v", err)
	}
	mustExec(t, pool, `GRANT SELECT ON orders TO `+role)
	if _, err := applyWatch(ctx, pool, 1, db.WatchDefinition{Table: "orders"}); err != nil {
		t.Fatal(err)
	}
	mustExec(t, pool, `REVOKE SELECT ON orders FROM `+role)
	if w := mustWatch(t, pool, "orders"); w.Status != "drift" || !strings.Contains(strings.Join(w.Problems, "; "), want) {
		t.Fatalf("list after revoke: %+v", w)
	}
}
