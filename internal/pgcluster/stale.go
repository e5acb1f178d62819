package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// writePgcastPid records our pid and the postmaster's in Dir/pgcast.pid.
func writePgcastPid(dir string, postmaster int) error {
	return os.WriteFile(filepath.Join(dir, "pgcast.pid"), fmt.Appendf(nil, "%d\n%d\n", os.Getpid(), postmaster), 0o644)
}

// readPgcastPid returns the owner and postmaster pids, 0 when unknown.
func readPgcastPid(dir string) (owner, postmaster int) {
	b, _ := os.ReadFile(filepath.Join(dir, "pgcast.pid"))
	_, _ = fmt.Sscan(string(b), &owner, &postmaster)
	return owner, postmaster
}

func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// stopStale stops a postmaster left running in dataDir by a dead pgcast
// (SIGINT, then SIGKILL to its process group after 10 s). Where /proc exists it
// first checks the pid really is a postgres on dataDir, so a recycled pid is
// never signalled.
func stopStale(ctx context.Context, dataDir string, pid int, log *slog.Logger) error {
	b, _ := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	_, _ = fmt.Sscan(string(b), &pid)
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if !pidAlive(pid) || (err == nil && !bytes.Contains(cmdline, []byte(dataDir))) {
		return nil
	}
	log.Warn("stopping stale postmaster", "pid", pid, "dir", dataDir)
	_ = syscall.Kill(pid, syscall.SIGINT)
	for i := 0; pidAlive(pid); i++ {
		if i == 200 { // 10 s
			_ = syscall.Kill(-pid, syscall.SIGKILL) // its process group (we started it with Setpgid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		} else if i == 300 {
			return fmt.Errorf("pgcluster: stale postmaster %d in %s does not exit", pid, dataDir)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgcluster: stopping stale postmaster %d: %w", pid, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// sweepTempDirs removes pgcast-pg-* temp dirs left by dead pgcast processes.
// A dir without a pid file is only removed once older than a minute, since a
// concurrent Start may have just created it.
func sweepTempDirs(ctx context.Context, log *slog.Logger) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "pgcast-pg-*"))
	for _, d := range dirs {
		owner, pm := readPgcastPid(d)
		if st, err := os.Stat(d); err != nil || pidAlive(owner) || (owner == 0 && time.Since(st.ModTime()) < time.Minute) {
			continue
		}
		err := stopStale(ctx, filepath.Join(d, "data"), pm, log)
		if err == nil {
			err = os.RemoveAll(d)
		}
		log.Info("removed stale cluster dir", "dir", d, "owner", owner, "err", err)
	}
}
