package db

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/pgcast/pgcast/internal/collections"
)

// Errors of the watch functions (wrapped, test with errors.Is). Their
// messages say what to do.
var (
	// ErrInvalidWatch: the definition is malformed, or does not fit the
	// table (a column it names does not exist, the table has no primary
	// key, ...).
	ErrInvalidWatch = errors.New("invalid watch")
	// ErrWatchNotFound: no watch of that name in the environment.
	ErrWatchNotFound = errors.New("watch not found")
	// ErrWatchConflict: the name or the table is taken by another watch or
	// collection.
	ErrWatchConflict = errors.New("watch conflict")
	// ErrNotTableOwner: the role is neither the table's owner nor a
	// superuser.
	ErrNotTableOwner = errors.New("not the table's owner")
)

// WatchDefinition is one watched table, as a watch file or an API request
// states it (JSON keys as tagged). See docs/watch.md.
type WatchDefinition struct {
	// Table is the table, schema-qualified ("public.orders"; a name
	// without schema is looked up in the search_path). Required.
	Table string `json:"table"`
	// Name is the watch's collection name: realtime channels are
	// "<name>.created" etc. Default: the table's name.
	Name string `json:"name,omitempty"`
	// Columns says which columns are streamed: every column but Exclude
	// (columns added later are streamed too), or Include only (columns
	// added later are not). Default: every column. The key, owner and
	// environment columns are always streamed.
	Columns WatchColumns `json:"columns,omitzero"`
	// Read is the read rule: public, authenticated, owner or admin.
	// Default authenticated, as for collections.
	Read string `json:"read,omitempty"`
	// OwnerColumns hold the row's owners for the owner rule: text, uuid or
	// integer columns, or arrays of those, compared with the token's sub.
	OwnerColumns []string `json:"owner_columns,omitempty"`
	// EnvColumn, when set, is an integer column holding the row's
	// environment; otherwise every row is in the watch's environment.
	EnvColumn string `json:"env_column,omitempty"`
	// Counts keeps the table's row count (Catalyst count items).
	Counts bool `json:"counts,omitempty"`
}

// WatchColumns selects the streamed columns; at most one list is set.
type WatchColumns struct {
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
}

var watchNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// maxWatchColumns bounds the column lists of a definition (Postgres allows
// 1600 columns per table).
const maxWatchColumns = 1600

// ParseWatchDefinition decodes one definition from JSON, refusing unknown
// keys (a misspelt "exclude" must not stream what it meant to hide), and
// checks what can be checked without the database.
func ParseWatchDefinition(data []byte) (WatchDefinition, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var d WatchDefinition
	if err := dec.Decode(&d); err != nil {
		return WatchDefinition{}, fmt.Errorf("%w: %v", ErrInvalidWatch, jsonProblem(err))
	}
	if dec.More() {
		return WatchDefinition{}, fmt.Errorf("%w: more than one JSON value", ErrInvalidWatch)
	}
	if err := d.Validate(); err != nil {
		return WatchDefinition{}, err
	}
	return d, nil
}

func jsonProblem(err error) string {
	msg := err.Error()
	if s, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return "unknown key " + s + " (keys: table, name, columns {include | exclude}, read, owner_columns, env_column, counts)"
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("%s: want %s, got JSON %s", te.Field, te.Type, te.Value)
	}
	return strings.TrimPrefix(msg, "json: ")
}

// Validate checks d without the database; the name, when set, must be a
// valid collection name.
func (d *WatchDefinition) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidWatch, fmt.Sprintf(format, args...))
	}
	if strings.TrimSpace(d.Table) == "" {
		return bad(`"table" is required (e.g. "public.orders")`)
	}
	if d.Name != "" {
		if err := checkWatchName(d.Name, ""); err != nil {
			return err
		}
	}
	if d.Read != "" && !collections.Rule(d.Read).Valid() {
		return bad("read rule %q: want public, authenticated, owner or admin", d.Read)
	}
	if d.Columns.Include != nil && d.Columns.Exclude != nil {
		return bad("columns: give include or exclude, not both")
	}
	if d.Columns.Include != nil && len(d.Columns.Include) == 0 {
		return bad("columns.include is empty: list the columns to stream (the key is always streamed)")
	}
	for what, list := range map[string][]string{"columns.include": d.Columns.Include, "columns.exclude": d.Columns.Exclude, "owner_columns": d.OwnerColumns} {
		if len(list) > maxWatchColumns {
			return bad("%s: %d columns, at most %d", what, len(list), maxWatchColumns)
		}
		for i, c := range list {
			if c == "" {
				return bad("%s[%d] is empty", what, i)
			}
			if slices.Index(list, c) != i {
				return bad("%s lists %q twice", what, c)
			}
		}
	}
	if d.Counts && d.EnvColumn != "" {
		return bad("counts: not available with env_column: a count is per watch, and would add up every environment's rows")
	}
	return nil
}

// checkWatchName applies the collection name rules; from says where a
// defaulted name came from.
func checkWatchName(name, from string) error {
	hint := ""
	if from != "" {
		hint = fmt.Sprintf(" (the name defaults to %s: set \"name\")", from)
	}
	switch {
	case len(name) > collections.MaxNameLen || !watchNamePattern.MatchString(name):
		return fmt.Errorf("%w: name %q must match ^[a-z][a-z0-9_]*$ and have at most %d characters%s", ErrInvalidWatch, name, collections.MaxNameLen, hint)
	case collections.IsReserved(name):
		return fmt.Errorf("%w: name %q is reserved (%s)%s", ErrInvalidWatch, name, strings.Join(collections.ReservedNames(), ", "), hint)
	}
	return nil
}

func (d *WatchDefinition) readRule() string {
	if d.Read == "" {
		return string(collections.RuleAuthenticated)
	}
	return d.Read
}
