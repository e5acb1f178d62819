package pgcluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrNoBinaries is returned (wrapped) by FindBinDir and Start when no
// PostgreSQL server binaries can be found.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries (initdb, postgres) found: " +
	"install PostgreSQL (e.g. `apt-get install postgresql` or `brew install postgresql`), " +
	"or set DATABASE_URL to an existing server, or run `docker compose up`")

// FindBinDir locates a directory containing both `initdb` and `postgres`:
// explicit if non-empty (error if it lacks them; that error does not wrap
// ErrNoBinaries), else the directory of `initdb` on $PATH (symlinks resolved
// first), then /usr/lib/postgresql/*/bin (highest major version first),
// /usr/local/pgsql/bin, /opt/homebrew/opt/postgresql*/bin,
// /usr/local/opt/postgresql*/bin, /opt/homebrew/bin, /usr/local/bin. Returns
// ErrNoBinaries (wrapped) when none is found.
func FindBinDir(explicit string) (string, error) {
	if explicit != "" {
		if hasBinaries(explicit) {
			return explicit, nil
		}
		return "", fmt.Errorf("pgcluster: %s does not contain both initdb and postgres executables", explicit)
	}
	var cands []string
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			cands = append(cands, filepath.Dir(real))
		}
		cands = append(cands, filepath.Dir(p))
	}
	for _, pat := range []string{"/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/opt/postgresql*/bin",
		"/usr/local/opt/postgresql*/bin", "/opt/homebrew/bin", "/usr/local/bin"} {
		m, _ := filepath.Glob(pat)
		slices.SortStableFunc(m, func(a, b string) int { return dirVersion(b) - dirVersion(a) })
		cands = append(cands, m...)
	}
	for _, d := range cands {
		if hasBinaries(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("pgcluster: %w", ErrNoBinaries)
}

func hasBinaries(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// dirVersion extracts the number in a bin dir's parent: ".../postgresql/15/bin"
// -> 15, ".../postgresql@16/bin" -> 16, otherwise 0.
func dirVersion(binDir string) int {
	notDigit := func(r rune) bool { return r < '0' || r > '9' }
	v := strings.TrimLeftFunc(filepath.Base(filepath.Dir(binDir)), notDigit)
	if i := strings.IndexFunc(v, notDigit); i >= 0 {
		v = v[:i]
	}
	n, _ := strconv.Atoi(v)
	return n
}
