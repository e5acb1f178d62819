package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// checkReachable checks, when we are root, that the user postgres runs as
// can traverse every directory down to the nearest existing one of Dir and
// its parents (the rest we create, traversable).
func (c *Cluster) checkReachable(ctx context.Context) error {
	if c.cred == nil {
		return nil
	}
	p := c.dir
	for {
		if _, err := os.Stat(p); err == nil || filepath.Dir(p) == p {
			break
		}
		p = filepath.Dir(p)
	}
	if !c.canReach(ctx, p) {
		return c.unreachable(ctx, p)
	}
	return nil
}

// canReach reports whether postgres's user can chdir into dir: it runs
// `postgres -V` there under that user.
func (c *Cluster) canReach(ctx context.Context, dir string) bool {
	cmd := c.command(ctx, "postgres", "-V")
	cmd.Dir = dir
	return !errors.Is(cmd.Run(), fs.ErrPermission)
}

// unreachable names the first directory on the way to dir that postgres's
// user cannot traverse, and says what to do.
func (c *Cluster) unreachable(ctx context.Context, dir string) error {
	blocked := dir
	for p, parts := "/", strings.Split(strings.Trim(dir, "/"), "/"); len(parts) > 0; parts = parts[1:] {
		p = filepath.Join(p, parts[0])
		if !c.canReach(ctx, p) {
			blocked = p
			break
		}
	}
	return fmt.Errorf("pgcluster: user %q cannot reach %s: %s is not traversable for it (pgcast runs as root, which Postgres refuses, "+
		"so postgres runs as that user): make it traversable (chmod o+x %s) or choose a directory elsewhere", c.user, dir, blocked, blocked)
}

func lookupCred(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: running as root, which Postgres refuses, and user %q to run it as instead does not exist: "+
			"create it (e.g. `useradd --system %s`) or run pgcast as a normal user", name, name)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid <= 0 {
		return nil, fmt.Errorf("pgcluster: user %q (uid %s) cannot run postgres: it needs a non-root uid", name, u.Uid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
