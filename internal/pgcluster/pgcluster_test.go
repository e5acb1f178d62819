package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func needBinaries(t *testing.T) {
	t.Helper()
	if _, err := FindBinDir(""); errors.Is(err, ErrNoBinaries) {
		t.Skip(err)
	}
}

func start(t *testing.T, cfg Config) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t0 := time.Now()
	c, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Start took %s (port %d, dir %s)", time.Since(t0).Round(time.Millisecond), c.Port(), c.dir)
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	return c
}

func selectOne(t *testing.T, c *Cluster) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("SELECT 1 = %d, %v", n, err)
	}
}

// assertGone checks the postmaster is dead and no process runs on dataDir.
func assertGone(t *testing.T, pid int, dataDir string) {
	t.Helper()
	if pidAlive(pid) {
		t.Errorf("postmaster %d still alive", pid)
	}
	if dataDir == "" {
		return
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(dataDir)) {
			t.Errorf("process %s still runs on %s", p, dataDir)
		}
	}
}

func TestStartRestartStop(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	c := start(t, Config{})
	selectOne(t, c)
	if !strings.HasPrefix(filepath.Base(c.dir), "pgcast-pg-") || !c.temp {
		t.Errorf("dir = %s, want a pgcast-pg-* temp dir", c.dir)
	}
	if owner, pm := readPgcastPid(c.dir); owner != os.Getpid() || pm != c.cmd.Process.Pid {
		t.Errorf("pgcast.pid = %d %d", owner, pm)
	}

	port, oldPid := c.Port(), c.cmd.Process.Pid
	t0 := time.Now()
	if err := c.Restart(context.Background(), "immediate"); err != nil {
		t.Fatal(err)
	}
	t.Logf("Restart(immediate) took %s", time.Since(t0).Round(time.Millisecond))
	if c.Port() != port {
		t.Errorf("port changed %d -> %d", port, c.Port())
	}
	assertGone(t, oldPid, "") // empty dataDir: only the pid check
	selectOne(t, c)
	if err := c.Restart(context.Background(), "bogus"); err == nil {
		t.Error("Restart(bogus) succeeded")
	}

	pid := c.cmd.Process.Pid
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() { errs[i] = c.Stop(context.Background()) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir %s not removed: %v", c.dir, err)
	}
	assertGone(t, pid, c.dataDir)
	if err := c.Restart(context.Background(), "fast"); err == nil {
		t.Error("Restart after Stop succeeded")
	}
}

func TestDirReuse(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	parent, err := os.MkdirTemp("", "pgcluster-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(parent) })
	dir := filepath.Join(parent, "pg")
	if os.Geteuid() == 0 {
		// t.TempDir is 0700 root: postgres cannot reach it, which Start reports.
		_, err := Start(context.Background(), Config{Dir: dir})
		if err == nil || !strings.Contains(err.Error(), "cannot reach") {
			t.Fatalf("want cannot-reach error, got %v", err)
		}
		t.Log(err)
		if want := parent + " is not traversable"; !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "Dir") {
			t.Errorf("error does not name %s, or names a Go field: %v", parent, err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a Start that failed left %s behind: %v", dir, err)
		}
		if err := os.Chmod(parent, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c := start(t, Config{Dir: dir, Settings: map[string]string{"max_connections": "20"}})
	selectOne(t, c)
	if _, err := Start(context.Background(), Config{Dir: dir}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Start on same Dir: want in-use error, got %v", err)
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); err != nil {
		t.Fatalf("caller Dir not kept: %v", err)
	}
	c = start(t, Config{Dir: dir, Port: c.Port()}) // reuse, no initdb
	selectOne(t, c)
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestPortTaken(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	c, err := Start(context.Background(), Config{Port: port})
	if err == nil {
		_ = c.Stop(context.Background())
		t.Fatal("Start on a taken port succeeded")
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "Address already in use") || strings.Contains(err.Error(), "\n") {
		t.Errorf("want a one-line error quoting the log, got %q", err)
	}
}

// A PreferredPort that is taken does not fail Start: another port is picked.
func TestPreferredPortTaken(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	c := start(t, Config{PreferredPort: port})
	if c.Port() == port || c.Port() == 0 {
		t.Errorf("port %d, want another than the taken %d", c.Port(), port)
	}
	selectOne(t, c)
}

func deadPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestStaleTempDirsCleaned(t *testing.T) {
	t.Parallel()
	needBinaries(t)
	dead := deadPid(t)

	// A leftover without a running postmaster.
	empty, err := os.MkdirTemp("", "pgcast-pg-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(empty, "pgcast.pid"), fmt.Appendf(nil, "%d\n0\n", dead), 0o644); err != nil {
		t.Fatal(err)
	}
	// A leftover with a live postmaster: a cluster whose owner looks dead.
	a := start(t, Config{})
	aPid := a.cmd.Process.Pid
	if err := os.WriteFile(filepath.Join(a.dir, "pgcast.pid"), fmt.Appendf(nil, "%d\n%d\n", dead, aPid), 0o644); err != nil {
		t.Fatal(err)
	}

	b := start(t, Config{})
	for _, d := range []string{empty, a.dir} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale dir %s not removed: %v", d, err)
		}
	}
	assertGone(t, aPid, a.dataDir)
	// b's own dir (owner alive) is untouched.
	selectOne(t, b)
	if err := a.Stop(context.Background()); err != nil {
		t.Errorf("Stop of swept cluster: %v", err)
	}
}

func TestFindBinDir(t *testing.T) {
	t.Parallel()
	if _, err := FindBinDir(t.TempDir()); err == nil {
		t.Error("FindBinDir(empty dir) succeeded")
	}
	if _, err := FindBinDir("/nonexistent/pg/bin"); err == nil {
		t.Error("FindBinDir(bogus) succeeded")
	}
	d, err := FindBinDir("")
	if errors.Is(err, ErrNoBinaries) {
		t.Skip(err)
	}
	if err != nil || !hasBinaries(d) {
		t.Fatalf("FindBinDir() = %q, %v", d, err)
	}
	t.Logf("FindBinDir() = %s", d)
	if got, err := FindBinDir(d); err != nil || got != d {
		t.Errorf("FindBinDir(%q) = %q, %v", d, got, err)
	}
}

func TestDirVersion(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int{
		"/usr/lib/postgresql/15/bin":          15,
		"/opt/homebrew/opt/postgresql@16/bin": 16,
		"/usr/local/opt/postgresql/bin":       0,
	} {
		if got := dirVersion(in); got != want {
			t.Errorf("dirVersion(%q) = %d, want %d", in, got, want)
		}
	}
}
