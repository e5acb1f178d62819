package pgcluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Config configures Start. The zero value means defaults.
type Config struct {
	// Dir is the directory that holds the cluster ("data" subdir for PGDATA,
	// "run" for the unix socket, "postgres.log", "pgcast.pid").
	// Default: a new temp dir (os.MkdirTemp("", "pgcast-pg-")), removed on Stop.
	// A Dir given by the caller is kept across runs (reused if it already holds
	// an initialised cluster of the same major version; re-initialised otherwise).
	Dir string
	// BinDir is where initdb/postgres live. Default: FindBinDir("").
	BinDir string
	// Port is the TCP port on 127.0.0.1. Default 0 = pick a free port.
	Port int
	// PreferredPort, with Port 0, is tried first when it is free, so that a
	// cluster kept across runs keeps its URL; when it is taken a free port is
	// picked. Default 0: none.
	PreferredPort int
	// User is the OS user to run initdb and postgres as when the process is
	// root (Postgres refuses to run as root). Default "postgres".
	User string
	// Durable: when false (default) the cluster runs with fsync=off,
	// synchronous_commit=off, full_page_writes=off (tests, dev) and initdb uses
	// --no-sync. When true, those stay at Postgres defaults (benchmarks need
	// real commit cost).
	Durable bool
	// Settings are extra postgres -c settings (name -> value), e.g.
	// max_connections; they override this package's defaults. Default none.
	Settings map[string]string
	// Logger receives progress messages. Default: slog.New(slog.DiscardHandler).
	Logger *slog.Logger
}

// Cluster is a private PostgreSQL server started by Start.
type Cluster struct {
	dir, dataDir, runDir, logPath, binDir string
	temp, owned                           bool // Dir is our temp dir; we wrote Dir/pgcast.pid
	port, preferredPort                   int
	user                                  string
	cred                                  *syscall.Credential // nil unless we are root
	settings                              map[string]string
	log                                   *slog.Logger

	mu      sync.Mutex    // serialises Restart and Stop
	cmd     *exec.Cmd     // the postmaster
	done    chan struct{} // closed once cmd has been reaped
	stopped bool
	stopErr error
}

// Start initialises (if needed) and starts a cluster, returning once it accepts
// connections; without a ctx deadline it waits at most 60 s for that.
//
// First it cleans up after crashed pgcast processes: pgcast-pg-* dirs in
// os.TempDir() whose recorded pgcast pid is dead are removed (after stopping
// any postmaster still running in them), and a postmaster left running in
// cfg.Dir by a dead pgcast is stopped. A dir whose owner pid is alive is never
// touched; Start fails if cfg.Dir is in use by a live pgcast.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	c := &Cluster{port: cfg.Port, preferredPort: cfg.PreferredPort, user: cmp.Or(cfg.User, "postgres"), log: cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
		settings: map[string]string{"listen_addresses": "127.0.0.1"}}
	if !cfg.Durable {
		c.settings["fsync"], c.settings["synchronous_commit"], c.settings["full_page_writes"] = "off", "off", "off"
	}
	maps.Copy(c.settings, cfg.Settings)
	var err error
	if c.binDir, err = FindBinDir(cfg.BinDir); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		if c.cred, err = lookupCred(c.user); err != nil {
			return nil, err
		}
	}
	sweepTempDirs(ctx, c.log)
	c.dir, c.temp = cfg.Dir, cfg.Dir == ""
	if c.temp {
		c.dir, err = os.MkdirTemp("", "pgcast-pg-")
	} else if c.dir, err = filepath.Abs(c.dir); err == nil {
		// Before creating anything: a failed Start must not leave
		// directories behind that belong to the postgres user.
		if err := c.checkReachable(ctx); err != nil {
			return nil, err
		}
		err = os.MkdirAll(c.dir, 0o755)
	}
	if err != nil {
		return nil, fmt.Errorf("pgcluster: create %s: %w", c.dir, err)
	}
	c.dataDir, c.runDir = filepath.Join(c.dir, "data"), filepath.Join(c.dir, "run")
	c.logPath = filepath.Join(c.dir, "postgres.log")
	c.settings["unix_socket_directories"] = c.runDir
	if err := c.start(ctx); err != nil {
		_ = c.release()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	if !c.temp {
		if owner, pm := readPgcastPid(c.dir); pidAlive(owner) {
			return fmt.Errorf("pgcluster: %s is in use by pgcast process %d", c.dir, owner)
		} else if err := stopStale(ctx, c.dataDir, pm, c.log); err != nil {
			return err
		}
	}
	if err := writePgcastPid(c.dir, 0); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	c.owned = true
	if err := c.prepareDirs(); err != nil {
		return err
	}
	if err := c.initdb(ctx); err != nil {
		return err
	}
	return c.launch(ctx, c.port == 0)
}

// prepareDirs creates data/ and run/ and, when we are root, hands them to the
// postgres user.
func (c *Cluster) prepareDirs() error {
	err := os.MkdirAll(c.dataDir, 0o700)
	if err == nil {
		err = os.MkdirAll(c.runDir, 0o755)
	}
	if err == nil && c.cred != nil {
		paths := []string{c.runDir}
		if c.temp {
			paths = append(paths, c.dir) // MkdirTemp makes it 0700 root
		}
		err = filepath.WalkDir(c.dataDir, func(p string, _ os.DirEntry, err error) error {
			paths = append(paths, p)
			return err
		})
		for _, p := range paths {
			if err == nil {
				err = os.Lchown(p, int(c.cred.Uid), int(c.cred.Gid))
			}
		}
	}
	if err != nil {
		return fmt.Errorf("pgcluster: prepare %s: %w", c.dir, err)
	}
	return nil
}

// initdb initialises data/ unless it holds a cluster of the binaries' major
// version. It first runs `postgres -V` inside data/ as the user postgres will
// run as, which checks that user can reach data/.
func (c *Cluster) initdb(ctx context.Context) error {
	out, err := c.command(ctx, "postgres", "-V").Output() // "postgres (PostgreSQL) 15.14 (Debian ...)"
	if errors.Is(err, fs.ErrPermission) && c.cred != nil {
		return c.unreachable(ctx, c.dataDir)
	}
	f := strings.Fields(string(out))
	if err != nil || len(f) < 3 {
		return fmt.Errorf("pgcluster: postgres -V: %v %q", err, out)
	}
	want, _, _ := strings.Cut(f[2], ".")
	if have, err := os.ReadFile(filepath.Join(c.dataDir, "PG_VERSION")); err == nil {
		if strings.TrimSpace(string(have)) == want {
			return nil
		}
		c.log.Warn("re-initialising cluster", "dir", c.dataDir, "had", strings.TrimSpace(string(have)), "want", want)
	}
	entries, _ := os.ReadDir(c.dataDir) // initdb wants an empty dir
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(c.dataDir, e.Name())); err != nil {
			return fmt.Errorf("pgcluster: clear data dir: %w", err)
		}
	}
	args := []string{"-D", c.dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"}
	if c.settings["fsync"] == "off" {
		args = append(args, "--no-sync")
	}
	t0 := time.Now()
	if out, err := c.command(ctx, "initdb", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, strings.Join(strings.Fields(string(out)), " "))
	}
	c.log.Info("initdb done", "dir", c.dataDir, "took", time.Since(t0))
	return nil
}

func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, name), args...)
	cmd.Dir = c.dataDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	return cmd
}

var errPortTaken = errors.New("port in use")

// launch starts postgres and waits until it accepts connections. With
// pickPort it picks a free port, retrying up to 3 times if it gets taken.
func (c *Cluster) launch(ctx context.Context, pickPort bool) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
	}
	for retry := 0; ; retry++ {
		if pickPort && retry == 0 && c.preferredPort > 0 && portFree(c.preferredPort) {
			c.port = c.preferredPort
		} else if pickPort {
			if retry == 0 && c.preferredPort > 0 {
				c.log.Info("preferred port taken: picking another", "port", c.preferredPort)
			}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return fmt.Errorf("pgcluster: pick port: %w", err)
			}
			c.port = l.Addr().(*net.TCPAddr).Port
			_ = l.Close()
		}
		if err := c.launchOnce(ctx); !pickPort || retry == 3 || !errors.Is(err, errPortTaken) {
			return err
		}
	}
}

// portFree reports whether 127.0.0.1:port can be listened on now.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

func (c *Cluster) launchOnce(ctx context.Context) error {
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgcluster: open log: %w", err)
	}
	logStart, _ := logf.Seek(0, io.SeekEnd)
	args := []string{"-D", c.dataDir, "-p", strconv.Itoa(c.port), "-k", c.runDir}
	for _, k := range slices.Sorted(maps.Keys(c.settings)) {
		args = append(args, "-c", k+"="+c.settings[k])
	}
	cmd := exec.Command(filepath.Join(c.binDir, "postgres"), args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = c.dir, logf, logf
	cmd.SysProcAttr = postmasterAttr(c.cred)
	err = cmd.Start()
	_ = logf.Close()
	if err != nil {
		return fmt.Errorf("pgcluster: start postgres: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	c.cmd, c.done = cmd, done
	if err := writePgcastPid(c.dir, cmd.Process.Pid); err != nil {
		c.kill()
		return fmt.Errorf("pgcluster: %w", err)
	}
	t0 := time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			tail := c.logTail(logStart)
			if strings.Contains(tail, "could not create any TCP/IP sockets") {
				return fmt.Errorf("postgres: %w (port %d); last lines of %s: %s", errPortTaken, c.port, c.logPath, tail)
			}
			return fmt.Errorf("postgres exited during startup (%s); last lines of %s: %s", cmd.ProcessState, c.logPath, tail)
		case <-ctx.Done():
			c.kill()
			return fmt.Errorf("postgres not ready after %s: %w; last lines of %s: %s",
				time.Since(t0).Round(time.Millisecond), ctx.Err(), c.logPath, c.logTail(logStart))
		case <-tick.C:
			if c.ping(ctx) == nil {
				c.log.Info("postgres ready", "port", c.port, "pid", cmd.Process.Pid, "took", time.Since(t0))
				return nil
			}
		}
	}
}

// ping connects and checks the server is ours, not another one holding the
// port while ours fails to bind.
func (c *Cluster) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var dir string
	if err := conn.QueryRow(ctx, "SHOW data_directory").Scan(&dir); err != nil || dir != c.dataDir {
		return fmt.Errorf("not our server (%s): %v", dir, err)
	}
	return nil
}

// logTail returns the last 20 lines written to the log since offset, joined
// with " | " so errors stay on one line.
func (c *Cluster) logTail(offset int64) string {
	var b []byte
	if f, err := os.Open(c.logPath); err == nil {
		_, _ = f.Seek(offset, io.SeekStart)
		b, _ = io.ReadAll(f)
		_ = f.Close()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], " | ")
}

// Port returns the TCP port the server listens on at 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// DSN returns a pgx-compatible URL:
// postgres://postgres@127.0.0.1:PORT/DBNAME?sslmode=disable (superuser
// "postgres" created by initdb with -U postgres, trust auth on 127.0.0.1 and
// the socket).
func (c *Cluster) DSN(dbname string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, url.PathEscape(dbname))
}

// Restart stops the server with the given mode ("fast" or "immediate") and
// starts it again on the same port and data dir; it returns when the server
// accepts connections again (waiting at most 60 s without a ctx deadline).
func (c *Cluster) Restart(ctx context.Context, mode string) error {
	sig := map[string]syscall.Signal{"fast": syscall.SIGINT, "immediate": syscall.SIGQUIT}[mode]
	if sig == 0 {
		return fmt.Errorf("pgcluster: restart: unknown mode %q (want \"fast\" or \"immediate\")", mode)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("pgcluster: restart: cluster is stopped")
	}
	if err := c.shutdown(ctx, sig); err != nil {
		return fmt.Errorf("pgcluster: restart: %w", err)
	}
	if err := c.launch(ctx, false); err != nil {
		return fmt.Errorf("pgcluster: restart: %w", err)
	}
	return nil
}

// Stop shuts the server down (fast shutdown: SIGINT to the postmaster, SIGQUIT
// if it still runs after 5 s, SIGKILL to its process group after 10 s or as
// soon as ctx is done), waits for it to exit, and removes Dir if it was a temp
// dir. It is idempotent and safe for concurrent calls; later calls return the
// first call's result.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped {
		c.stopped = true
		err := c.shutdown(ctx, syscall.SIGINT)
		if err2 := c.release(); err == nil {
			err = err2
		}
		if err != nil {
			c.stopErr = fmt.Errorf("pgcluster: stop: %w", err)
		}
	}
	return c.stopErr
}

// release removes a temp Dir, or gives up our claim on a caller's Dir.
func (c *Cluster) release() error {
	if c.temp {
		return os.RemoveAll(c.dir)
	}
	if !c.owned {
		return nil
	}
	if err := os.Remove(filepath.Join(c.dir, "pgcast.pid")); !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// shutdown sends first, then SIGQUIT after 5 s, then SIGKILL after 10 s, and
// waits for the process to exit; when ctx ends it kills at once and returns
// ctx's error.
func (c *Cluster) shutdown(ctx context.Context, first syscall.Signal) error {
	for _, sig := range []syscall.Signal{first, syscall.SIGQUIT} {
		_ = c.cmd.Process.Signal(sig)
		t := time.NewTimer(5 * time.Second)
		select {
		case <-c.done:
			t.Stop()
			return nil
		case <-ctx.Done():
			t.Stop()
			c.kill()
			return ctx.Err()
		case <-t.C:
			c.log.Warn("postgres slow to shut down", "signal", sig)
		}
	}
	c.kill()
	return nil
}

// kill SIGKILLs the postmaster's process group and waits until it is reaped.
func (c *Cluster) kill() {
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	_ = c.cmd.Process.Kill()
	<-c.done
}
