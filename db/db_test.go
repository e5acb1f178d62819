package db_test

import (
	"context"
	"strings"
	"testing"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestStatusCheck(t *testing.T) {
	t.Parallel()
	cases := []struct {
		st   db.Status
		want string
	}{
		{db.Status{Current: 3, Latest: 3}, ""},
		{db.Status{Current: 0, Latest: 3}, "run `pgcast migrate up`"},
		{db.Status{Current: 4, Latest: 3}, "newer than this pgcast"},
		{db.Status{Current: 3, Latest: 3, Dirty: true}, "pgcast migrate force"},
	}
	for _, c := range cases {
		err := c.st.Check()
		if c.want == "" {
			if err != nil {
				t.Errorf("%+v: unexpected %v", c.st, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.st, err, c.want)
		}
	}
}

func TestPoolSessionSettings(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	var name string
	if err := pool.QueryRow(context.Background(), `SELECT current_setting('application_name')`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	if name != "pgcast" {
		t.Fatalf("application_name = %q, want pgcast", name)
	}
	var idle string
	if err := pool.QueryRow(context.Background(), `SELECT current_setting('idle_in_transaction_session_timeout')`).Scan(&idle); err != nil {
		t.Fatal(err)
	}
	if idle != "1min" {
		t.Fatalf("idle_in_transaction_session_timeout = %q, want 1min", idle)
	}
}

func TestMigratorRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, url := pgtest.NewPool(t)
	m, err := db.NewMigrator(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	st, err := db.ReadStatus(ctx, pool)
	if err != nil || st.Check() != nil {
		t.Fatalf("fresh database not at latest: %+v %v", st, err)
	}
	if err := m.Down(ctx, 0); err != nil {
		t.Fatal(err)
	}
	var schemas int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'pgcast'`).Scan(&schemas); err != nil {
		t.Fatal(err)
	}
	if schemas != 0 {
		t.Fatal("schema pgcast survives migrate down")
	}
	if err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Up(ctx); err != nil { // idempotent: nothing pending, triggers re-applied
		t.Fatal(err)
	}
	st, err = m.Status(ctx)
	if err != nil || st.Check() != nil {
		t.Fatalf("after up: %+v %v", st, err)
	}
}

func TestNewPoolErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, err := db.NewPool(ctx, db.Config{}); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("empty URL: %v", err)
	}
	_, err := db.NewPool(ctx, db.Config{URL: "postgres://u:topsecret@%zz/x"})
	if err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("malformed URL error leaks or is nil: %v", err)
	}
}

// The check of record cells belongs to schema version 5: migrating down
// removes it (a binary of version 4 does not know it exists), migrating up
// installs it again.
func TestMigrateDownRemovesCellsCheck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, url := pgtest.NewPool(t)
	m, err := db.NewMigrator(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// The check's two triggers and four functions.
	checks := func() int {
		t.Helper()
		var n int
		if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgcast\_check\_cells\_%')
    + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
       WHERE n.nspname = 'pgcast' AND (p.proname IN ('cells_problems', 'refuse_cells') OR p.proname LIKE 'check\_object\_records\_%'))`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := checks(); n != 6 {
		t.Fatalf("%d triggers and functions of the cells check at the latest version, want 6", n)
	}
	// Down to version 4: the derived counts (version 7), the watches
	// (version 6), then the cells check.
	if err := m.Down(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if st, err := m.Status(ctx); err != nil || st.Current != 4 {
		t.Fatalf("after two steps down: %+v %v", st, err)
	}
	if n := checks(); n != 0 {
		t.Fatalf("%d triggers and functions of the cells check left at version 4", n)
	}
	if err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if n := checks(); n != 6 {
		t.Fatalf("%d triggers and functions of the cells check after up, want 6", n)
	}
}
