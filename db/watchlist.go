package db

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Watch is a watch as `pgcast watch list` shows it: its configuration by
// column name, as the table is now, and whether capture matches it.
type Watch struct {
	Name string `json:"name"`
	// ClassID is the watch's object class: Catalyst subscribers filter on
	// it (object_class_ids).
	ClassID     int64  `json:"class_id"`
	Environment int64  `json:"environment"`
	Table       string `json:"table"`
	// Status is "ok" (every change is captured as configured), "drift"
	// (Problems says what differs; `pgcast watch apply` repairs it) or
	// "dropped" (the table is gone; nothing is captured).
	Status   string   `json:"status"`
	Problems []string `json:"problems"`
	Key      []string `json:"key"`
	// Catalyst: the key is one integer column, so changes also reach the
	// Catalyst object-records endpoint (its items need an integer id).
	Catalyst bool `json:"catalyst"`
	// Columns are the streamed columns with their field ids.
	Columns []WatchField `json:"columns"`
	// Excluded are the table's columns that are not streamed.
	Excluded     []string `json:"excluded"`
	Read         string   `json:"read"`
	OwnerColumns []string `json:"owner_columns"`
	EnvColumn    string   `json:"env_column,omitempty"`
	Counts       bool     `json:"counts"`
}

// WatchField is a streamed column and its field.
type WatchField struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
}

const selectWatches = `
SELECT w.id, c.id, c.name, c.environment_id, c.read_rule, w.table_oid, format('%I.%I', w.schema_name, w.table_name), w.status,
       w.key_attnums, w.include_attnums, w.exclude_attnums, w.owner_attnums, w.env_attnum, w.counts, w.int_key,
       coalesce((SELECT x.fresh FROM pgcast.watch_config(w.id, w.table_oid) x), false),
       coalesce((SELECT jsonb_agg(jsonb_build_object('id', f.id, 'name', f.name, 'type', f.type) ORDER BY f.position, f.id)
                 FROM pgcast.object_class_fields f WHERE f.object_class_id = c.id), '[]')
FROM pgcast.watches w JOIN pgcast.object_classes c ON c.id = w.object_class_id
WHERE c.environment_id = $1`

type watchRow struct {
	Watch
	id    int64
	oid   uint32
	state string
	cfg   watchConfig
	fresh bool
}

// ListWatches returns the watches of environment env by name, each checked
// against its table and triggers.
func ListWatches(ctx context.Context, q WatchQuerier, env int64) ([]Watch, error) {
	rows, err := q.Query(ctx, selectWatches+` ORDER BY c.name`, env)
	if err != nil {
		return nil, fmt.Errorf("list watches: %w", err)
	}
	list, err := pgx.CollectRows(rows, scanWatch)
	if err != nil {
		return nil, fmt.Errorf("list watches: %w", err)
	}
	out := make([]Watch, len(list))
	for i := range list {
		if err := list[i].check(ctx, q); err != nil {
			return nil, err
		}
		out[i] = list[i].Watch
	}
	return out, nil
}

// GetWatch returns the watch called name in environment env, or an error
// wrapping ErrWatchNotFound.
func GetWatch(ctx context.Context, q WatchQuerier, env int64, name string) (Watch, error) {
	return getWatch(ctx, q, env, name)
}

func getWatch(ctx context.Context, q WatchQuerier, env int64, name string) (Watch, error) {
	rows, err := q.Query(ctx, selectWatches+` AND c.name = $2`, env, name)
	if err != nil {
		return Watch{}, fmt.Errorf("read watch %q: %w", name, err)
	}
	w, err := pgx.CollectExactlyOneRow(rows, scanWatch)
	if errors.Is(err, pgx.ErrNoRows) {
		return Watch{}, fmt.Errorf("%w: no watch %q in environment %d", ErrWatchNotFound, name, env)
	}
	if err != nil {
		return Watch{}, fmt.Errorf("read watch %q: %w", name, err)
	}
	if err := w.check(ctx, q); err != nil {
		return Watch{}, err
	}
	return w.Watch, nil
}

func scanWatch(r pgx.CollectableRow) (watchRow, error) {
	var w watchRow
	err := r.Scan(&w.id, &w.ClassID, &w.Name, &w.Environment, &w.Read, &w.oid, &w.Table, &w.state,
		&w.cfg.key, &w.cfg.include, &w.cfg.exclude, &w.cfg.owners, &w.cfg.env, &w.Counts, &w.Catalyst, &w.fresh, &w.Columns)
	w.cfg.read, w.cfg.counts = w.Read, w.Counts
	return w, err
}

// check fills in the names of the watch's columns as the table has them
// now, its status and its problems.
func (w *watchRow) check(ctx context.Context, q WatchQuerier) error {
	w.Problems, w.Key, w.Excluded, w.OwnerColumns = []string{}, []string{}, []string{}, []string{}
	var t *table
	if w.oid != 0 && w.state == "active" {
		var err error
		if t, err = tableByOID(ctx, q, w.oid); err != nil {
			return err
		}
	}
	if t == nil {
		w.Status, w.Catalyst = "dropped", false
		w.Problems = append(w.Problems, fmt.Sprintf("table %s was dropped: nothing is captured; remove the watch (pgcast watch remove %s), or create the table again and run pgcast watch apply", w.Table, w.Name))
		return nil
	}
	w.Table = t.quoted
	name := func(a int16) (string, bool) {
		for _, c := range t.columns {
			if c.attnum == a {
				return c.name, true
			}
		}
		return fmt.Sprintf("#%d", a), false
	}
	drift := func(format string, args ...any) { w.Problems = append(w.Problems, fmt.Sprintf(format, args...)) }
	var missing []string
	for _, a := range w.cfg.key {
		n, ok := name(a)
		w.Key = append(w.Key, n)
		if !ok {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		drift("key column(s) %s were dropped: nothing is captured; remove the watch", strings.Join(missing, ", "))
	} else if !slices.Equal(t.key, w.cfg.key) {
		drift("the table's primary key is (%s), the watch keys rows by (%s): run pgcast watch apply", strings.Join(t.keyNames, ", "), strings.Join(w.Key, ", "))
	}
	for _, a := range w.cfg.owners {
		n, ok := name(a)
		w.OwnerColumns = append(w.OwnerColumns, n)
		if !ok {
			drift("owner column %s was dropped", n)
		}
	}
	if w.cfg.env != nil {
		n, ok := name(*w.cfg.env)
		w.EnvColumn = n
		if !ok {
			drift("environment column %s was dropped: nothing is captured; remove the watch", n)
		}
	}
	for _, c := range t.columns {
		streamed := !slices.Contains(w.cfg.exclude, c.attnum)
		if w.cfg.include != nil {
			streamed = slices.Contains(w.cfg.include, c.attnum)
		}
		if !streamed {
			w.Excluded = append(w.Excluded, c.name)
		}
	}
	if !w.fresh {
		drift("fields lag the table's columns (a column was added, renamed, dropped or retyped): the next write or pgcast watch apply syncs them")
	}
	problems, err := triggerProblems(ctx, q, w.id, t)
	if err != nil {
		return err
	}
	if p, err := captureCannotRead(ctx, q, t); err != nil {
		return err
	} else if p != "" {
		problems = append(problems, p)
	}
	for _, p := range problems {
		drift("%s: run pgcast watch apply", p)
	}
	w.Status = "ok"
	if len(w.Problems) > 0 {
		w.Status = "drift"
	}
	return nil
}
