package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcast/pgcast/internal/pgtest"
)

// emptyDatabase creates a database without pgcast's schema (named so that
// pgtest drops it if this process dies first), dropped when t ends.
func emptyDatabase(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	ident := pgx.Identifier{fmt.Sprintf("pgcast_t_%d_empty_%d", os.Getpid(), time.Now().UnixNano())}.Sanitize()
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
	return pgtest.WithDatabase(pgtest.AdminURL(), strings.Trim(ident, `"`))
}

// startServe runs `pgcast serve` in-process on url with args, returning its
// signal channel, exit channel and a watcher of its stderr for each pattern.
func startServe(t *testing.T, url string, args []string, patterns ...string) (chan os.Signal, chan int, []*watchWriter) {
	t.Helper()
	watches := make([]*watchWriter, len(patterns))
	writers := make([]io.Writer, len(patterns))
	for i, p := range patterns {
		watches[i] = newWatch(p)
		writers[i] = watches[i]
	}
	sig := make(chan os.Signal, 2)
	done := make(chan int, 1)
	go func() {
		done <- execute(context.Background(), append([]string{"serve", "--addr", "127.0.0.1:0", "--internal-addr", "off"}, args...),
			testEnv(map[string]string{"DATABASE_URL": url, "PGCAST_JWT_SECRET": testJWTSecret}), io.Discard, io.MultiWriter(writers...), sig)
	}()
	return sig, done, watches
}

func await(t *testing.T, w *watchWriter, done chan int, what string) {
	t.Helper()
	select {
	case <-w.found:
	case code := <-done:
		t.Fatalf("serve exited with %d before %s: %s", code, what, w)
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s after 30 s: %s", what, w)
	}
}

// A node started without --migrate on a schema that is behind waits, and
// serves as soon as another node (here `pgcast migrate up`) has migrated.
func TestServeWaitsForAnotherNodeToMigrate(t *testing.T) {
	t.Parallel()
	url := emptyDatabase(t)
	sig, done, w := startServe(t, url, nil, `waiting for another node to migrate`, `msg=listening`)
	await(t, w[0], done, "waiting message")
	if code, _, stderr := runCLI(t, map[string]string{"DATABASE_URL": url}, "migrate", "up"); code != 0 {
		t.Fatalf("migrate up: %s", stderr)
	}
	await(t, w[1], done, "listening")
	if !strings.Contains(w[1].String(), "database schema is current") {
		t.Errorf("serve does not say it stopped waiting: %s", w[1])
	}
	sig <- syscall.SIGTERM
	if code := <-done; code != 0 {
		t.Fatalf("exit %d after SIGTERM: %s", code, w[1])
	}
}

// The wait is bounded, and a signal ends it at once.
func TestServeSchemaWaitEnds(t *testing.T) {
	t.Parallel()
	url := emptyDatabase(t)
	sig, done, w := startServe(t, url, nil, `waiting for another node to migrate`)
	await(t, w[0], done, "waiting message")
	sig <- syscall.SIGTERM
	if code := <-done; code == 0 || !strings.Contains(w[0].String(), "interrupted by terminated before serving") {
		t.Errorf("SIGTERM during the wait: exit %d: %s", code, w[0])
	}

	_, done, w = startServe(t, url, []string{"--schema-wait", "100ms"}, `waited 100ms for another node to migrate`)
	if code := <-done; code == 0 || w[0].match == nil || !strings.Contains(w[0].String(), "run `pgcast migrate up`") {
		t.Errorf("bounded wait: exit %d: %s", code, w[0])
	}
}
