package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgcast/pgcast/server/auth"
)

// startDev runs `pgcast dev` in-process with working directory wd and no
// DATABASE_URL or secret, waits until it serves, and returns its stderr and
// a stop function (also run at cleanup) that SIGTERMs it and returns its
// exit code.
func startDev(t *testing.T, wd string) (*watchWriter, func() int) {
	t.Helper()
	e := testEnv(nil)
	e.wd = wd
	stderr := newWatch(`msg=listening`)
	sig := make(chan os.Signal, 2)
	done := make(chan int, 1)
	go func() {
		done <- execute(context.Background(), []string{"dev", "--addr", "127.0.0.1:0", "--internal-addr", "off"}, e, io.Discard, stderr, sig)
	}()
	code, stopped := 0, false
	stop := func() int {
		if !stopped {
			stopped = true
			sig <- syscall.SIGTERM
			code = <-done
		}
		return code
	}
	t.Cleanup(func() { stop() })
	select {
	case <-stderr.found:
	case code := <-done:
		stopped = true
		t.Fatalf("pgcast dev exited with %d: %s", code, stderr)
	case <-time.After(2 * time.Minute):
		t.Fatalf("pgcast dev did not serve: %s", stderr)
	}
	return stderr, stop
}

// runIn runs pgcast in-process in working directory wd without DATABASE_URL.
func runIn(t *testing.T, wd string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb strings.Builder
	e := testEnv(nil)
	e.wd = wd
	code := execute(context.Background(), args, e, &out, &errb, make(chan os.Signal))
	return code, out.String(), errb.String()
}

// `make run` from a clone that the postgres user cannot reach (root's home
// is 0700): as root the dev cluster lives where postgres can reach it and
// nothing postgres-owned lands in the clone; as a normal user it lives in
// the clone's .pgcast/pg. Either way the other commands, run in the clone or
// below without DATABASE_URL, find the dev database and the development
// secret, and the URL is the same on the next start.
func TestDevFromPrivateClone(t *testing.T) {
	t.Parallel()
	clone := filepath.Join(t.TempDir(), "clone")
	sub := filepath.Join(clone, "cmd")
	if err := os.MkdirAll(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(clone), 0o700); err != nil {
		t.Fatal(err)
	}
	stderr, stop := startDev(t, clone)
	dir := filepath.Join(clone, ".pgcast")
	st, err := readDevState(dir)
	if err != nil {
		t.Fatalf("no state in %s: %v\n%s", dir, err, stderr)
	}
	root := os.Geteuid() == 0
	if root {
		t.Cleanup(func() { _ = os.RemoveAll(st.ClusterDir) })
		if !strings.HasPrefix(st.ClusterDir, rootDevParent+"/pgcast-dev-") {
			t.Errorf("as root the cluster is in %s, want %s/pgcast-dev-*", st.ClusterDir, rootDevParent)
		}
		if !strings.Contains(stderr.String(), "cluster_dir="+st.ClusterDir) {
			t.Errorf("the log does not say where the cluster is: %s", stderr)
		}
		err := filepath.Walk(clone, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Sys().(*syscall.Stat_t).Uid != 0 {
				t.Errorf("%s in the clone is not root's", p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	} else if want := filepath.Join(dir, "pg"); st.ClusterDir != want {
		t.Errorf("cluster in %s, want %s", st.ClusterDir, want)
	}
	if st.PID != os.Getpid() || !st.DevJWTSecret || !strings.Contains(stderr.String(), st.URL) {
		t.Errorf("state %+v; log:\n%s", st, stderr)
	}

	code, out, errs := runIn(t, sub, "collections", "list")
	if code != 0 || !strings.Contains(out, `"posts"`) || !strings.Contains(errs, "using the database of the running `pgcast dev`") {
		t.Errorf("collections list below the clone: %d %s %s", code, out, errs)
	}
	code, out, errs = runIn(t, sub, "watch", "list")
	if code != 0 || !strings.Contains(out, `"table": "public.orders"`) || !strings.Contains(out, `"status": "ok"`) {
		t.Errorf("watch list below the clone: the seeded watch is missing: %d %s %s", code, out, errs)
	}
	code, out, errs = runIn(t, sub, "migrate", "status")
	if code != 0 || !strings.Contains(out, "up to date") {
		t.Errorf("migrate status: %d %s %s", code, out, errs)
	}
	code, out, errs = runIn(t, clone, "token", "--sub", "u1")
	if code != 0 || !strings.Contains(errs, "development secret") {
		t.Fatalf("token: %d %s", code, errs)
	}
	au, err := auth.NewAuthenticator(auth.Config{Secret: []byte(devJWTSecret)})
	if err != nil {
		t.Fatal(err)
	}
	if id, _, err := au.Verify(strings.TrimSpace(out)); err != nil || id.UserID != "u1" {
		t.Errorf("token %q: %+v %v", out, id, err)
	}

	if code := stop(); code != 0 {
		t.Fatalf("dev exited %d: %s", code, stderr)
	}
	if st, _ := readDevState(dir); st.PID != 0 {
		t.Errorf("state after stop: %+v", st)
	}
	if code, _, errs := runIn(t, clone, "collections", "list"); code == 0 || !strings.Contains(errs, "is not running") {
		t.Errorf("collections list with dev stopped: %d %s", code, errs)
	}

	stderr2, stop2 := startDev(t, clone)
	st2, err := readDevState(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The port may have been taken by someone else in between; then dev says so.
	if st2.URL != st.URL && !strings.Contains(stderr2.String(), "preferred port taken") {
		t.Errorf("URL changed from %s to %s: %s", st.URL, st2.URL, stderr2)
	}
	t.Logf("first run:\n%s\nsecond run:\n%s", stderr, stderr2)
	if code := stop2(); code != 0 {
		t.Fatalf("second dev exited %d: %s", code, stderr2)
	}
}

// token without a secret uses the state of the `pgcast dev` PGCAST_DIR
// names: a dev server with a secret of its own is reported, not guessed.
func TestTokenDevSecretFromState(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := writeDevState(dir, devState{URL: "postgres://x", DevJWTSecret: false}); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, map[string]string{"PGCAST_DIR": dir}, "token", "--sub", "u1")
	if code == 0 || out != "" || !strings.Contains(errs, "serves with") {
		t.Errorf("own secret: %d %q %s", code, out, errs)
	}
	if err := writeDevState(dir, devState{URL: "postgres://x", DevJWTSecret: true}); err != nil {
		t.Fatal(err)
	}
	if code, out, errs = runCLI(t, map[string]string{"PGCAST_DIR": dir}, "token", "--sub", "u1"); code != 0 || out == "" {
		t.Errorf("dev secret: %d %q %s", code, out, errs)
	}
}
