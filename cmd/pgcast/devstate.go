package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// devStateFile is the file, in `pgcast dev`'s --dir, where it records its
// database so that the other commands find it.
const devStateFile = "dev.json"

// devState is what `pgcast dev` records about its private cluster. It holds
// no secret: the development JWT secret is public, and the cluster trusts
// local connections without a password.
type devState struct {
	// URL of the dev database: stable across runs while its port is free.
	URL string `json:"url"`
	// Port the cluster listens on at 127.0.0.1, tried first on the next run.
	Port int `json:"port"`
	// ClusterDir holds the cluster's data and log.
	ClusterDir string `json:"cluster_dir"`
	// PID of the `pgcast dev` serving it; 0 once it has stopped.
	PID int `json:"pid"`
	// DevJWTSecret: it serves with devJWTSecret (no --jwt-secret given), so
	// `pgcast token` may mint with it.
	DevJWTSecret bool `json:"dev_jwt_secret"`
}

func (s devState) running() bool {
	if s.PID <= 0 {
		return false
	}
	err := syscall.Kill(s.PID, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func readDevState(dir string) (devState, error) {
	var s devState
	b, err := os.ReadFile(filepath.Join(dir, devStateFile))
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("read %s: %w", filepath.Join(dir, devStateFile), err)
	}
	return s, nil
}

// writeDevState replaces dir/dev.json atomically, so a reader never sees
// half of it.
func writeDevState(dir string, s devState) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, devStateFile+".*")
	if err != nil {
		return fmt.Errorf("write dev state: %w", err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, devStateFile))
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write dev state: %w", err)
	}
	return nil
}

// absDir resolves a directory given on the command line against the
// working directory.
func (a *app) absDir(dir string) (string, error) {
	if !filepath.IsAbs(dir) && a.env.wd != "" {
		return filepath.Join(a.env.wd, dir), nil
	}
	return filepath.Abs(dir)
}

// findDevState finds the state of the `pgcast dev` that commands run here
// belong to: the one in PGCAST_DIR when set, else .pgcast/dev.json in the
// working directory or the nearest parent directory that has one. ok is
// false when there is none.
func (a *app) findDevState() (s devState, path string, ok bool) {
	if dir, set := a.env.lookup(envName("dir")); set && dir != "" {
		abs, err := a.absDir(dir)
		if err != nil {
			return s, "", false
		}
		s, err = readDevState(abs)
		return s, filepath.Join(abs, devStateFile), err == nil
	}
	if a.env.wd == "" {
		return s, "", false
	}
	for d := a.env.wd; ; d = filepath.Dir(d) {
		dir := filepath.Join(d, defaultDevDir)
		if st, err := readDevState(dir); err == nil {
			return st, filepath.Join(dir, devStateFile), true
		}
		if filepath.Dir(d) == d {
			return s, "", false
		}
	}
}

// devClusterDir is where the dev cluster of state dir lives. Normally
// dir/pg. As root, postgres runs as the postgres user, which often cannot
// traverse the clone's parents (root's home is 0700): the cluster then lives
// in /var/tmp/pgcast-dev-<hash of dir>, one per dir, kept across reboots. A
// directory there that root did not create (/var/tmp is world-writable) is
// refused.
func devClusterDir(dir string) (string, error) {
	if os.Geteuid() != 0 {
		return filepath.Join(dir, "pg"), nil
	}
	sum := sha256.Sum256([]byte(dir))
	cd := filepath.Join(rootDevParent, "pgcast-dev-"+hex.EncodeToString(sum[:6]))
	fi, err := os.Lstat(cd)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return cd, nil
	case err != nil:
		return "", fmt.Errorf("dev cluster directory: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !fi.IsDir() || !ok || st.Uid != 0 {
		return "", fmt.Errorf("dev cluster directory %s is not a directory owned by root: remove it, or pass --dir", cd)
	}
	return cd, nil
}

// rootDevParent holds the dev clusters of a pgcast run as root.
const rootDevParent = "/var/tmp"
