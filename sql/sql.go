package sql

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// FS is the migrations directory.
//
//go:embed *.sql
var FS embed.FS

// LatestVersion is the highest migration version embedded in this binary:
// the schema version this binary requires.
func LatestVersion() (uint, error) {
	entries, err := fs.ReadDir(FS, ".")
	if err != nil {
		return 0, fmt.Errorf("read embedded migrations: %w", err)
	}
	var versions []uint
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".up.sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		if !ok {
			return 0, fmt.Errorf("migration %q: name must be NNNNNN_title.up.sql", name)
		}
		v, err := strconv.ParseUint(num, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("migration %q: %w", name, err)
		}
		versions = append(versions, uint(v))
	}
	if len(versions) == 0 {
		return 0, fmt.Errorf("no migrations embedded")
	}
	sort.Slice(versions, func(i, j int) bool { return versions[i] < versions[j] })
	return versions[len(versions)-1], nil
}
