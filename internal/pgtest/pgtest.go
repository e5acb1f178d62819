package pgtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/pgcluster"
	pgsql "github.com/pgcast/pgcast/sql"
	"github.com/pgcast/pgcast/triggers"
)

// env holds the process's test server. It is set once by Main before any
// test runs and read-only afterwards.
var env struct {
	adminURL string // maintenance database URL
	template string // migrated template database name
	cluster  *pgcluster.Cluster
	seq      atomic.Int64
	err      error
}

const dbPrefix = "pgcast_t_"

// Main sets up the test server, runs the tests, checks for leaked
// goroutines, tears the server down and exits.
func Main(m *testing.M) {
	code := run(m)
	os.Exit(code)
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	err := setup(ctx)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, `
pgtest: no PostgreSQL for the tests: %v

Tests need a real PostgreSQL. Either:
  - install the PostgreSQL server binaries (Debian/Ubuntu: apt-get install postgresql;
    macOS: brew install postgresql) and run make test again: a throwaway cluster is started;
  - or point TEST_DATABASE_URL at a server where the user may CREATE DATABASE,
    e.g. TEST_DATABASE_URL=postgres://postgres@localhost:5432/postgres make test
    (docker compose up -d postgres && make test-docker does this).
`, err)
		teardown()
		return 1
	}
	code := m.Run()
	teardown()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			return 1
		}
	}
	return code
}

func setup(ctx context.Context) error {
	if url := os.Getenv("TEST_DATABASE_URL"); url != "" {
		env.adminURL = url
	} else {
		c, err := pgcluster.Start(ctx, pgcluster.Config{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return err
		}
		env.cluster = c
		env.adminURL = c.DSN("postgres")
	}
	conn, err := pgx.Connect(ctx, env.adminURL)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", redacted(env.adminURL), err)
	}
	defer conn.Close(context.Background())
	dropLeftovers(ctx, conn)
	name, err := templateName()
	if err != nil {
		return err
	}
	env.template = name
	return ensureTemplate(ctx, conn, name)
}

func teardown() {
	if env.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = env.cluster.Stop(ctx)
	}
}

// templateName changes whenever a migration or the triggers change, so a
// stale template on a shared server is never used.
func templateName() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(pgsql.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(pgsql.FS, path)
		if err != nil {
			return err
		}
		h.Write([]byte(path))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash migrations: %w", err)
	}
	h.Write([]byte(triggers.SQL))
	return "pgcast_tmpl_" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

// ensureTemplate creates and migrates the template once; concurrent test
// processes on one server serialise on an advisory lock.
func ensureTemplate(ctx context.Context, conn *pgx.Conn, name string) error {
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(7428190331)`); err != nil {
		return fmt.Errorf("lock template: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.Background(), `SELECT pg_advisory_unlock(7428190331)`) }()
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("look up template: %w", err)
	}
	if exists {
		return nil
	}
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+ident); err != nil {
		return fmt.Errorf("drop half-made template: %w", err)
	}
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+ident); err != nil {
		return fmt.Errorf("create template: %w", err)
	}
	m, err := db.NewMigrator(withDatabase(env.adminURL, name), nil)
	if err != nil {
		return err
	}
	if err := m.Up(ctx); err != nil {
		m.Close()
		return err
	}
	if err := m.Close(); err != nil {
		return fmt.Errorf("close migrator: %w", err)
	}
	if _, err := conn.Exec(ctx, `ALTER DATABASE `+ident+` WITH IS_TEMPLATE true`); err != nil {
		return fmt.Errorf("mark template: %w", err)
	}
	return nil
}

// dropLeftovers drops test databases of test processes that are gone (a
// crashed or killed run), and templates no longer current are left for the
// DBA: another checkout may still use them.
func dropLeftovers(ctx context.Context, conn *pgx.Conn) {
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE $1`, dbPrefix+"%")
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, n := range names {
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(n, dbPrefix), "_")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || processAlive(pid) {
			continue
		}
		_, _ = conn.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{n}.Sanitize()+` WITH (FORCE)`)
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// NewDatabase creates a fresh migrated database for t, dropped when t ends,
// and returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	if env.template == "" {
		t.Fatal("pgtest: TestMain must call pgtest.Main(m)")
	}
	name := fmt.Sprintf("%s%d_%d", dbPrefix, os.Getpid(), env.seq.Add(1))
	ident := pgx.Identifier{name}.Sanitize()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := adminExec(ctx, `CREATE DATABASE `+ident+` TEMPLATE `+pgx.Identifier{env.template}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := adminExec(ctx, `DROP DATABASE IF EXISTS `+ident+` WITH (FORCE)`); err != nil {
			t.Errorf("pgtest: drop database: %v", err)
		}
	})
	return withDatabase(env.adminURL, name)
}

// NewPool returns a pool on a fresh database, closed when t ends.
func NewPool(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	url := NewDatabase(t)
	pool, err := db.NewPool(context.Background(), db.Config{URL: url})
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool, url
}

// AdminURL is the server's maintenance database URL (for tests that create
// their own databases).
func AdminURL() string { return env.adminURL }

func adminExec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, env.adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// WithDatabase returns url with its database name replaced.
func WithDatabase(url, name string) string { return withDatabase(url, name) }

func withDatabase(url, name string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url + " dbname=" + name
	}
	// Replace the path of a URL, keeping user, host and query.
	hostPart, query, _ := strings.Cut(rest, "?")
	if i := strings.Index(hostPart, "/"); i >= 0 {
		hostPart = hostPart[:i]
	}
	out := scheme + "://" + hostPart + "/" + name
	if query != "" {
		out += "?" + query
	}
	return out
}

func redacted(url string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return "(unparsable URL)"
	}
	return fmt.Sprintf("host=%s port=%d user=%s database=%s", cfg.Host, cfg.Port, cfg.User, cfg.Database)
}

// PrivateCluster starts a throwaway cluster of the test's own, migrated,
// stopped when t ends, and returns it, the URL of its postgres database and
// a pool on that: for what a shared server cannot give a test alone (a
// restart, the cluster-wide NOTIFY queue). Set cfg.Durable for a test that
// restarts it: with the throwaway default (synchronous_commit=off) an
// immediate restart loses commits Postgres had already made visible.
func PrivateCluster(t testing.TB, cfg pgcluster.Config) (*pgcluster.Cluster, string, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	cluster, err := pgcluster.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { _ = cluster.Stop(context.Background()) })
	url := cluster.DSN("postgres")
	m, err := db.NewMigrator(url, nil)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer m.Close()
	if err := m.Up(ctx); err != nil {
		t.Fatalf("pgtest: migrate: %v", err)
	}
	pool, err := db.NewPool(ctx, db.Config{URL: url})
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close)
	return cluster, url, pool
}
