package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// watchWriter is an io.Writer that records output and closes a channel the
// first time a pattern appears, so tests wait on a signal, not a sleep.
type watchWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	pattern *regexp.Regexp
	match   []string
	found   chan struct{}
}

func newWatch(pattern string) *watchWriter {
	return &watchWriter{pattern: regexp.MustCompile(pattern), found: make(chan struct{})}
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.match == nil {
		if m := w.pattern.FindStringSubmatch(w.buf.String()); m != nil {
			w.match = m
			close(w.found)
		}
	}
	return len(p), nil
}

func (w *watchWriter) String() string { w.mu.Lock(); defer w.mu.Unlock(); return w.buf.String() }

func testEnv(vars map[string]string) env {
	return env{
		lookup: func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
		environ: func() []string {
			var out []string
			for k, v := range vars {
				out = append(out, k+"="+v)
			}
			return out
		},
	}
}

// runCLI runs pgcast in-process and returns exit code, stdout and stderr.
func runCLI(t *testing.T, vars map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := execute(context.Background(), args, testEnv(vars), &out, &errb, make(chan os.Signal))
	return code, out.String(), errb.String()
}

func TestServeReadyMetricsAndGracefulStop(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	stderr := newWatch(`msg=listening addr=(\S+) internal_addr=(\S+)`)
	sig := make(chan os.Signal, 2)
	done := make(chan int, 1)
	go func() {
		done <- execute(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--internal-addr", "127.0.0.1:0"},
			testEnv(map[string]string{"DATABASE_URL": url, "PGCAST_JWT_SECRET": testJWTSecret}), io.Discard, stderr, sig)
	}()
	select {
	case <-stderr.found:
	case code := <-done:
		t.Fatalf("serve exited early with %d: %s", code, stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not start: %s", stderr)
	}
	public, internal := "http://"+stderr.match[1], "http://"+stderr.match[2]

	for _, c := range []struct {
		url  string
		want int
	}{
		{public + "/livez", 200},
		{public + "/readyz", 200},
		{public + "/metrics", 404},
		{internal + "/metrics", 200},
	} {
		resp, err := http.Get(c.url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET %s = %d, want %d: %s", c.url, resp.StatusCode, c.want, body)
		}
		if strings.HasSuffix(c.url, "/metrics") && c.want == 200 {
			for _, m := range []string{"go_goroutines", "pgcast_reader_events_total", "pgcast_reader_reconnects_total", "pgcast_reader_lag_seconds"} {
				if !bytes.Contains(body, []byte(m)) {
					t.Errorf("metrics lack %s", m)
				}
			}
		}
		if strings.HasSuffix(c.url, "/readyz") && !bytes.Contains(body, []byte(`"reader":"ok"`)) {
			t.Errorf("readyz does not report the reader: %s", body)
		}
	}

	sig <- syscall.SIGTERM
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code after SIGTERM = %d, want 0: %s", code, stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop within 15 s of SIGTERM")
	}
	if _, err := net.Dial("tcp", stderr.match[1]); err == nil {
		t.Error("public port still accepting after stop")
	}
}

func TestBadInputIsOneClearLine(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)

	// A schema newer than the binary.
	newer := pgtest.NewDatabase(t)
	conn, err := pgx.Connect(context.Background(), newer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(context.Background(), `UPDATE `+db.MigrationsTable+` SET version = version + 100`); err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())

	// A port already in use.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	// A schema behind the binary.
	behind := pgtest.WithDatabase(pgtest.AdminURL(), "postgres")

	cases := []struct {
		name string
		vars map[string]string
		args []string
		want string
	}{
		{"unknown flag", nil, []string{"serve", "--bogus"}, "unknown flag: --bogus"},
		{"malformed url", map[string]string{"DATABASE_URL": "postgres://%zz"}, []string{"serve"}, "invalid database URL"},
		{"unreachable", map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/x?connect_timeout=2"}, []string{"serve"}, "connect to database"},
		{"schema newer", map[string]string{"DATABASE_URL": newer}, []string{"serve"}, "newer than this pgcast"},
		{"schema behind", map[string]string{"DATABASE_URL": behind}, []string{"serve", "--addr", "127.0.0.1:0", "--schema-wait", "0"}, "run `pgcast migrate up`"},
		{"port in use", map[string]string{"DATABASE_URL": url}, []string{"serve", "--addr", busy.Addr().String(), "--internal-addr", "off"}, "address already in use"},
		{"no database", nil, []string{"migrate", "up"}, "no database: set DATABASE_URL"},
		{"bad env value", map[string]string{"DATABASE_URL": url, "PGCAST_SHUTDOWN_TIMEOUT": "soon"}, []string{"serve"}, "invalid PGCAST_SHUTDOWN_TIMEOUT"},
		{"bad log format", nil, []string{"version", "--log-format", "xml"}, "invalid --log-format"},
		{"no secret", map[string]string{"DATABASE_URL": url}, []string{"serve"}, "no JWT secret: set PGCAST_JWT_SECRET"},
		{"short secret", map[string]string{"DATABASE_URL": url, "PGCAST_JWT_SECRET": "short"}, []string{"serve"}, "at least 32"},
		{"unknown bench scenario", nil, []string{"bench", "capture", "--scenarios", "latency,nope"}, `unknown scenario "nope"`},
		{"bad trusted proxy", nil, []string{"serve", "--trusted-proxies", "10.0.0.0/8,lb.internal"}, `--trusted-proxies: trusted proxy "lb.internal" is neither an address nor a CIDR`},
		{"buffer below a statement", nil, []string{"serve", "--max-buffer", "200", "--message-limit", "100"}, "--max-buffer 200 is below 2100 (--message-limit 100 + two reader pages of 1000 events)"},
		{"buffer bytes below 1 MiB", nil, []string{"serve", "--max-buffer-bytes", "1000"}, "--max-buffer-bytes 1000 is below 1048576 (1 MiB)"},
		{"no realtime writers", nil, []string{"bench", "realtime", "--writers", "0"}, "--writers must be between 1 and 100, got 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.vars != nil && c.vars["PGCAST_JWT_SECRET"] == "" && c.name != "no secret" {
				c.vars["PGCAST_JWT_SECRET"] = testJWTSecret
			}
			code, _, stderr := runCLI(t, c.vars, c.args...)
			if code == 0 {
				t.Fatalf("exit code 0, want non-zero; stderr: %s", stderr)
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if len(lines) != 1 {
				t.Errorf("want one line on stderr, got %d:\n%s", len(lines), stderr)
			}
			if !strings.Contains(stderr, c.want) {
				t.Errorf("stderr %q lacks %q", stderr, c.want)
			}
			if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "panic") {
				t.Errorf("stack trace in output: %s", stderr)
			}
		})
	}
}

func TestConfigPrecedenceAndRedaction(t *testing.T) {
	t.Parallel()
	vars := map[string]string{
		"DATABASE_URL":               "postgres://app:s3cret@db.example/app",
		"PGCAST_LISTEN_DATABASE_URL": "host=db password=hunter2 dbname=app",
		"PGCAST_ADDR":                ":7000",
		"PGCAST_INTERNAL_ADDR":       "127.0.0.1:7001",
		"PGCAST_NO_SUCH_SETTING":     "1",
	}
	code, out, stderr := runCLI(t, vars, "config", "--internal-addr", "127.0.0.1:7002")
	if code != 0 {
		t.Fatalf("config exited %d: %s", code, stderr)
	}
	for _, want := range []string{
		":7000", "env PGCAST_ADDR", // env beats default
		"127.0.0.1:7002", // flag beats env
		"postgres://app:xxxxx@db.example/app", "password=xxxxx",
		"10s", // default
	} {
		if !strings.Contains(out, want) {
			t.Errorf("config output lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"s3cret", "hunter2"} {
		if strings.Contains(out+stderr, secret) {
			t.Errorf("secret %q printed:\n%s%s", secret, out, stderr)
		}
	}
	if !strings.Contains(stderr, "PGCAST_NO_SUCH_SETTING") {
		t.Errorf("unknown PGCAST_ variable not warned about: %s", stderr)
	}
}

func TestMigrateCommands(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	vars := map[string]string{"DATABASE_URL": url}
	latest, err := schemaVersion()
	if err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, vars, "migrate", "status")
	if code != 0 || !strings.Contains(out, "up to date") {
		t.Fatalf("status: %d %s %s", code, out, stderr)
	}
	if code, _, stderr = runCLI(t, vars, "migrate", "down"); code != 0 {
		t.Fatalf("down: %s", stderr)
	}
	code, out, _ = runCLI(t, vars, "migrate", "status")
	if code != 0 || !strings.Contains(out, "database version: 0") {
		t.Fatalf("after down: %s", out)
	}
	if code, _, stderr = runCLI(t, vars, "migrate", "up"); code != 0 {
		t.Fatalf("up: %s", stderr)
	}
	code, out, _ = runCLI(t, vars, "migrate", "status")
	if code != 0 || !strings.Contains(out, "up to date") || !strings.Contains(out, "binary version:   "+itoa(latest)) {
		t.Fatalf("after up: %s", out)
	}
	if code, _, stderr = runCLI(t, vars, "migrate", "force", itoa(latest)); code != 0 {
		t.Fatalf("force: %s", stderr)
	}
	if code, _, stderr = runCLI(t, vars, "migrate", "down", "x"); code == 0 || !strings.Contains(stderr, "positive integer") {
		t.Fatalf("down x: %d %s", code, stderr)
	}
}

func TestVersionAndHelp(t *testing.T) {
	t.Parallel()
	code, out, _ := runCLI(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "pgcast ") {
		t.Fatalf("version: %d %q", code, out)
	}
	for _, c := range []string{"serve", "dev", "migrate", "config", "version", "migrate up", "migrate down", "migrate status", "migrate force"} {
		code, out, _ := runCLI(t, nil, append(strings.Fields(c), "--help")...)
		if code != 0 || !strings.Contains(out, "Examples:") {
			t.Errorf("%s --help lacks an example: %s", c, out)
		}
	}
}

func itoa(v uint) string { return strconv.FormatUint(uint64(v), 10) }
