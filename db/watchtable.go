package db

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The watched table as the catalog describes it, and a definition resolved
// against it.

// table is a resolved table.
type table struct {
	oid      uint32
	schema   string
	name     string
	kind     string
	owner    bool // the role owns it (or is superuser)
	quoted   string
	columns  []tableColumn
	key      []int16 // primary key, in key order
	keyNames []string
}

type tableColumn struct {
	attnum  int16
	name    string
	typ     string // as format_type prints it
	ownerOK bool   // text, uuid, integer, or an array of one
	envOK   bool   // an integer type
}

func (t *table) column(name string) (tableColumn, bool) {
	for _, c := range t.columns {
		if c.name == name {
			return c, true
		}
	}
	return tableColumn{}, false
}

func (t *table) columnNames() string {
	names := make([]string, len(t.columns))
	for i, c := range t.columns {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

// resolveTable looks the table up by name (nil when it does not exist)
// with its columns and primary key.
func resolveTable(ctx context.Context, q WatchQuerier, name string) (*table, error) {
	return lookupTable(ctx, q, `to_regclass($1)`, name)
}

// tableByOID is resolveTable by oid.
func tableByOID(ctx context.Context, q WatchQuerier, oid uint32) (*table, error) {
	return lookupTable(ctx, q, `$1::oid`, oid)
}

func lookupTable(ctx context.Context, q WatchQuerier, oidExpr string, arg any) (*table, error) {
	t := &table{}
	name := fmt.Sprint(arg)
	err := q.QueryRow(ctx, `
		SELECT c.oid, n.nspname, c.relname, c.relkind::text, format('%I.%I', n.nspname, c.relname),
		       pg_has_role(c.relowner, 'USAGE') OR coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.oid = `+oidExpr, arg).Scan(&t.oid, &t.schema, &t.name, &t.kind, &t.quoted, &t.owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%w: table %q: %s", ErrInvalidWatch, name, pe.Message)
		}
		return nil, fmt.Errorf("look up table %q: %w", name, err)
	}
	if err := t.load(ctx, q); err != nil {
		return nil, err
	}
	return t, nil
}

// load reads the table's columns and primary key.
func (t *table) load(ctx context.Context, q WatchQuerier) error {
	rows, err := q.Query(ctx, `
		SELECT a.attnum, a.attname::text, format_type(a.atttypid, a.atttypmod),
		       (CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE a.atttypid END)
		           IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype, 'uuid'::regtype, 'int2'::regtype, 'int4'::regtype, 'int8'::regtype),
		       a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)
		FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, t.oid)
	if err != nil {
		return fmt.Errorf("read columns of %s: %w", t.quoted, err)
	}
	t.columns, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (tableColumn, error) {
		var c tableColumn
		err := r.Scan(&c.attnum, &c.name, &c.typ, &c.ownerOK, &c.envOK)
		return c, err
	})
	if err != nil {
		return fmt.Errorf("read columns of %s: %w", t.quoted, err)
	}
	rows, err = q.Query(ctx, `
		SELECT k.attnum, a.attname::text
		FROM pg_index i
		CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = $1 AND i.indisprimary
		ORDER BY k.ord`, t.oid)
	if err != nil {
		return fmt.Errorf("read primary key of %s: %w", t.quoted, err)
	}
	var (
		attnum int16
		name   string
	)
	t.key, t.keyNames = nil, nil
	_, err = pgx.ForEachRow(rows, []any{&attnum, &name}, func() error {
		t.key = append(t.key, attnum)
		t.keyNames = append(t.keyNames, name)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read primary key of %s: %w", t.quoted, err)
	}
	return nil
}

// watchConfig is a definition resolved against its table: columns by
// attnum, as pgcast.watches stores them.
type watchConfig struct {
	read    string
	key     []int16
	include []int16 // nil: every column but exclude
	exclude []int16
	owners  []int16
	env     *int16
	counts  bool
}

func (c watchConfig) equal(o watchConfig) bool {
	return c.read == o.read && slices.Equal(c.key, o.key) && (c.include == nil) == (o.include == nil) &&
		slices.Equal(c.include, o.include) && slices.Equal(c.exclude, o.exclude) && slices.Equal(c.owners, o.owners) &&
		((c.env == nil && o.env == nil) || (c.env != nil && o.env != nil && *c.env == *o.env)) && c.counts == o.counts
}

// resolve checks def against t and returns its configuration.
func (t *table) resolve(def *WatchDefinition) (watchConfig, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidWatch, fmt.Sprintf(format, args...))
	}
	if len(t.key) == 0 {
		return watchConfig{}, bad("table %s has no primary key: pgcast identifies rows by it (add one: ALTER TABLE %s ADD PRIMARY KEY (...))", t.quoted, t.quoted)
	}
	cfg := watchConfig{read: def.readRule(), key: t.key, exclude: []int16{}, counts: def.Counts}
	attnums := func(what string, names []string) ([]int16, error) {
		out := make([]int16, 0, len(names))
		for _, n := range names {
			c, ok := t.column(n)
			if !ok {
				return nil, bad("%s: table %s has no column %q (its columns: %s)", what, t.quoted, n, t.columnNames())
			}
			out = append(out, c.attnum)
		}
		return out, nil
	}
	var err error
	if cfg.owners, err = attnums("owner_columns", def.OwnerColumns); err != nil {
		return watchConfig{}, err
	}
	for _, n := range def.OwnerColumns {
		if c, _ := t.column(n); !c.ownerOK {
			return watchConfig{}, bad("owner_columns: column %q has type %s: want text, varchar, uuid, an integer type or an array of one (compared with the token's sub)", c.name, c.typ)
		}
	}
	always := slices.Clone(t.key)
	always = append(always, cfg.owners...)
	if def.EnvColumn != "" {
		c, ok := t.column(def.EnvColumn)
		if !ok {
			return watchConfig{}, bad("env_column: table %s has no column %q (its columns: %s)", t.quoted, def.EnvColumn, t.columnNames())
		}
		if !c.envOK {
			return watchConfig{}, bad("env_column: column %q has type %s: want smallint, integer or bigint (an environment id)", c.name, c.typ)
		}
		cfg.env = &c.attnum
		always = append(always, c.attnum)
	}
	switch {
	case def.Columns.Include != nil:
		inc, err := attnums("columns.include", def.Columns.Include)
		if err != nil {
			return watchConfig{}, err
		}
		for _, a := range always {
			if !slices.Contains(inc, a) {
				inc = append(inc, a)
			}
		}
		slices.Sort(inc)
		cfg.include = inc
	case def.Columns.Exclude != nil:
		exc, err := attnums("columns.exclude", def.Columns.Exclude)
		if err != nil {
			return watchConfig{}, err
		}
		for i, a := range exc {
			if slices.Contains(always, a) {
				return watchConfig{}, bad("columns.exclude: %q is a key, owner or environment column: every entry carries its value", def.Columns.Exclude[i])
			}
		}
		slices.Sort(exc)
		cfg.exclude = exc
	}
	return cfg, nil
}
