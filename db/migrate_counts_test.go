package db_test

import (
	"context"
	_ "embed"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgcast/pgcast/db"
)

// triggersV6 are the capture triggers of schema version 6, which kept
// count shards in the writing transactions.
//
//go:embed testdata/triggers_v6.sql
var triggersV6 string

// Data and counts written under schema version 6 (its triggers keeping the
// shards, and a TRUNCATE that bypassed them) are counted exactly once
// migrated to version 7, where counts are derived from the log, also after
// more writes; migrating back down sets the shards to the exact counts.
func TestMigrateCountsFromVersion6(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := emptyDatabase(t)
	m, err := db.NewMigrator(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Down(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if st, err := m.Status(ctx); err != nil || st.Current != 6 {
		t.Fatalf("status %+v %v, want version 6", st, err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	mustExec(t, pool, triggersV6)
	// A version-6 installation has no TRUNCATE capture (the binary that
	// migrated down left its own triggers).
	mustExec(t, pool, `DROP TRIGGER pgcast_capture_truncate ON pgcast.object_records`)

	// Version 6: two collections, one truncated (its shards then say 40
	// more than it has), and a watched table with counts.
	var a, b int64
	if err := pool.QueryRow(ctx, `INSERT INTO pgcast.object_classes (name) VALUES ('a') RETURNING id`).Scan(&a); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `INSERT INTO pgcast.object_classes (name) VALUES ('b') RETURNING id`).Scan(&b); err != nil {
		t.Fatal(err)
	}
	mustExec(t, pool, `INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, 40)`, a)
	mustExec(t, pool, `TRUNCATE pgcast.object_records CASCADE`)
	mustExec(t, pool, `INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, 12)`, a)
	mustExec(t, pool, `INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, 9)`, b)
	mustExec(t, pool, `DELETE FROM pgcast.object_records WHERE id IN (SELECT id FROM pgcast.object_records WHERE object_class_id = $1 LIMIT 4)`, b)
	mustExec(t, pool, `CREATE TABLE orders (id int PRIMARY KEY, status text)`)
	res, err := applyWatch(ctx, pool, 1, db.WatchDefinition{Table: "orders", Counts: true})
	if err != nil {
		t.Fatal(err)
	}
	w := res.Watch.ClassID
	mustExec(t, pool, `INSERT INTO orders SELECT g, 'new' FROM generate_series(1, 7) g`)
	mustExec(t, pool, `DELETE FROM orders WHERE id <= 2`)
	if n := countRows(t, pool, `SELECT sum(n)::bigint FROM pgcast.object_class_counts WHERE object_class_id = $1`, w); n != 5 {
		t.Fatalf("version 6 kept the watch's count at %d, want 5", n)
	}

	check := func(when string, want map[int64]int64) {
		t.Helper()
		got, err := db.ClassCounts(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		for class, n := range want {
			if got[class] != n {
				t.Errorf("%s: class %d counts %d, want %d (all: %v)", when, class, got[class], n, got)
			}
		}
	}
	if err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	check("migrated to version 7", map[int64]int64{a: 12, b: 5, w: 5})

	mustExec(t, pool, `INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, 3)`, a)
	mustExec(t, pool, `DELETE FROM pgcast.object_records WHERE id IN (SELECT id FROM pgcast.object_records WHERE object_class_id = $1 LIMIT 5)`, b)
	mustExec(t, pool, `INSERT INTO orders SELECT g, 'new' FROM generate_series(100, 110) g`)
	mustExec(t, pool, `TRUNCATE orders`)
	mustExec(t, pool, `INSERT INTO orders VALUES (1, 'again')`)
	check("after writes under version 7", map[int64]int64{a: 15, b: 0, w: 1})
	if _, err := db.Prune(ctx, pool, db.PruneOptions{Now: time.Now(), Retention: 0, BatchSize: 1000}); err != nil {
		t.Fatal(err)
	}
	check("after the log was pruned", map[int64]int64{a: 15, b: 0, w: 1})

	if err := m.Down(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for class, want := range map[int64]int64{a: 15, b: 0, w: 1} {
		if n := countRows(t, pool, `SELECT coalesce(sum(n), 0)::bigint FROM pgcast.object_class_counts WHERE object_class_id = $1`, class); n != want {
			t.Errorf("back at version 6: class %d's shards sum to %d, want %d", class, n, want)
		}
	}
}
