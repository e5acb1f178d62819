package db_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/pgtest"
)

// emptyDatabase creates a database without pgcast's schema, dropped when t
// ends, and returns its URL.
func emptyDatabase(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// pgtest's prefix and our pid: a later run drops it if we die first.
	name := fmt.Sprintf("pgcast_t_%d_empty_%d", os.Getpid(), time.Now().UnixNano())
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+ident); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, pgtest.AdminURL())
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+ident+` WITH (FORCE)`); err != nil {
			t.Error(err)
		}
	})
	return pgtest.WithDatabase(pgtest.AdminURL(), name)
}

// Several nodes started together with --migrate each run Up on one fresh
// database: all must succeed and leave it at the latest version, with the
// triggers installed once the schema is there.
func TestConcurrentUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := emptyDatabase(t)
	const n = 6
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			m, err := db.NewMigrator(url, nil)
			if err != nil {
				errs[i] = err
				return
			}
			defer m.Close()
			errs[i] = m.Up(ctx)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrator %d: %v", i, err)
		}
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	st, err := db.ReadStatus(ctx, conn)
	if err != nil || st.Check() != nil {
		t.Fatalf("after concurrent ups: %+v %v", st, err)
	}
	var triggers int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'pgcast' AND NOT t.tgisinternal`).Scan(&triggers); err != nil {
		t.Fatal(err)
	}
	if triggers == 0 {
		t.Fatal("no capture triggers installed")
	}
}

// signalWriter closes found the first time the text contains want.
type signalWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	want  string
	found chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(w.buf.String(), w.want)
	w.buf.Write(p)
	if !had && strings.Contains(w.buf.String(), w.want) {
		close(w.found)
	}
	return len(p), nil
}

// A schema ahead of the binary, or dirty with nobody migrating, fails at
// once however long the wait; dirty while the migration lock is held is a
// migration in progress, which is waited for.
func TestWaitForSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	hour := time.Hour

	if _, err := pool.Exec(ctx, `UPDATE `+db.MigrationsTable+` SET version = version + 1`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.WaitForSchema(ctx, pool, hour, nil); err == nil || !strings.Contains(err.Error(), "newer than this pgcast") {
		t.Fatalf("ahead: %v", err)
	}
	if _, err := pool.Exec(ctx, `UPDATE `+db.MigrationsTable+` SET version = version - 1, dirty = true`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.WaitForSchema(ctx, pool, hour, nil); err == nil || !strings.Contains(err.Error(), "dirty") {
		t.Fatalf("dirty, nobody migrating: %v", err)
	}

	// Another node mid-migration: it holds the lock, the version is dirty.
	lock, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	if _, err := lock.Exec(ctx, `SELECT pg_advisory_lock($1)`, db.MigrationLockKey); err != nil {
		t.Fatal(err)
	}
	logs := &signalWriter{want: "waiting for another node to migrate", found: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := db.WaitForSchema(ctx, pool, hour, slog.New(slog.NewTextHandler(logs, nil)))
		done <- err
	}()
	select {
	case <-logs.found:
	case err := <-done:
		t.Fatalf("returned %v instead of waiting for the migration in progress", err)
	}
	if _, err := lock.Exec(ctx, `UPDATE `+db.MigrationsTable+` SET dirty = false`); err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, `SELECT pg_advisory_unlock($1)`, db.MigrationLockKey); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("after the migration ended: %v", err)
	}
}
