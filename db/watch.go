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

// Watches stream the application's own tables (docs/watch.md). A watch is
// an object class (listed with the collections, one field per streamed
// column) plus a row of pgcast.watches; the capture triggers on the table
// and the functions they call are in package triggers (watch.sql). The
// functions here apply, list and remove watches; they run SQL only.

// WatchApplyResult says what ApplyWatch did.
type WatchApplyResult struct {
	Watch Watch
	// Created is true when the watch did not exist.
	Created bool
	// Changes describes each change made, one line each; empty when the
	// watch already matched the definition and nothing needed repair.
	Changes []string
}

// WatchQuerier is what the read-only watch functions need: *pgxpool.Pool,
// *pgx.Conn and pgx.Tx satisfy it.
type WatchQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// existingWatch is the class of a watch's name in an environment, and its
// watch row when it is one.
type existingWatch struct {
	classID  int64
	watchID  *int64
	tableOID uint32
	status   string
	cfg      watchConfig
}

const selectExisting = `
SELECT c.id, c.read_rule, w.id, coalesce(w.table_oid, 0), coalesce(w.status, ''), w.key_attnums, w.include_attnums,
       w.exclude_attnums, w.owner_attnums, w.env_attnum, coalesce(w.counts, false)
FROM pgcast.object_classes c LEFT JOIN pgcast.watches w ON w.object_class_id = c.id
WHERE c.environment_id = $1 AND c.name = $2`

func scanExisting(row pgx.Row) (*existingWatch, error) {
	var e existingWatch
	err := row.Scan(&e.classID, &e.cfg.read, &e.watchID, &e.tableOID, &e.status, &e.cfg.key, &e.cfg.include,
		&e.cfg.exclude, &e.cfg.owners, &e.cfg.env, &e.cfg.counts)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return &e, err
}

// ApplyWatch makes the watch of def's table in environment env match def:
// it creates the watch (an object class, its fields and the
// capture triggers), or updates its columns, read rule, owner and
// environment columns and counts. Applying the same definition again
// changes nothing, except that it repairs what drifted: missing or disabled
// capture triggers, fields behind the table's columns, a changed primary
// key, a table dropped and created again. The table is locked against
// writes (SHARE ROW EXCLUSIVE, as CREATE TRIGGER takes) until the
// transaction ends: ApplyWatch runs in a transaction it begins on d, a
// savepoint of d's when d is a transaction (whose end then releases the
// lock).
func ApplyWatch(ctx context.Context, d DB, env int64, def WatchDefinition) (WatchApplyResult, error) {
	var res WatchApplyResult
	err := pgx.BeginFunc(ctx, d, func(tx pgx.Tx) error {
		var err error
		res, err = applyWatch(ctx, tx, env, def)
		return err
	})
	return res, err
}

func applyWatch(ctx context.Context, tx pgx.Tx, env int64, def WatchDefinition) (WatchApplyResult, error) {
	if err := def.Validate(); err != nil {
		return WatchApplyResult{}, err
	}
	t, err := resolveTable(ctx, tx, def.Table)
	if err != nil {
		return WatchApplyResult{}, err
	}
	if t == nil {
		return WatchApplyResult{}, fmt.Errorf("%w: table %s does not exist", ErrInvalidWatch, def.Table)
	}
	if t.kind != "r" {
		return WatchApplyResult{}, fmt.Errorf("%w: %s is not a table (only ordinary tables can be watched; partitioned tables not yet)", ErrInvalidWatch, t.quoted)
	}
	if !t.owner {
		return WatchApplyResult{}, fmt.Errorf("%w: must own table %s (or be superuser) to watch it", ErrNotTableOwner, t.quoted)
	}
	if problem, err := captureCannotRead(ctx, tx, t); err != nil || problem != "" {
		if err == nil {
			err = fmt.Errorf("%w: %s", ErrInvalidWatch, problem)
		}
		return WatchApplyResult{}, err
	}
	name := def.Name
	if name == "" {
		name = t.name
		if err := checkWatchName(name, fmt.Sprintf("the table's name %q", t.name)); err != nil {
			return WatchApplyResult{}, err
		}
	}
	// Locked before reading the columns, so that they cannot change under
	// the watch, and so that a seeded count is exact.
	if _, err := tx.Exec(ctx, `LOCK TABLE `+t.quoted+` IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		return WatchApplyResult{}, fmt.Errorf("lock table %s: %w", t.quoted, err)
	}
	if err := t.load(ctx, tx); err != nil {
		return WatchApplyResult{}, err
	}
	cfg, err := t.resolve(&def)
	if err != nil {
		return WatchApplyResult{}, err
	}

	prev, err := scanExisting(tx.QueryRow(ctx, selectExisting+` FOR UPDATE OF c`, env, name))
	if err != nil {
		return WatchApplyResult{}, fmt.Errorf("read watch %q: %w", name, err)
	}
	if prev != nil && prev.watchID == nil {
		return WatchApplyResult{}, fmt.Errorf("%w: a collection named %q exists in environment %d and is not a watch: set another \"name\"", ErrWatchConflict, name, env)
	}
	if prev != nil && prev.tableOID != 0 && prev.tableOID != t.oid {
		// Its table may be gone (dropped where no event trigger marked it):
		// then the watch moves to this one.
		var other *string
		if err := tx.QueryRow(ctx, `SELECT (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1)`,
			prev.tableOID).Scan(&other); err != nil {
			return WatchApplyResult{}, fmt.Errorf("read watch %q: %w", name, err)
		}
		if other != nil {
			return WatchApplyResult{}, fmt.Errorf("%w: watch %q already watches table %s: remove it first (pgcast watch remove %s) or set another \"name\"", ErrWatchConflict, name, *other, name)
		}
	}
	var takenBy string
	var takenEnv int64
	err = tx.QueryRow(ctx, `SELECT c.name, c.environment_id FROM pgcast.watches w JOIN pgcast.object_classes c ON c.id = w.object_class_id
		WHERE w.table_oid = $1 AND NOT (c.environment_id = $2 AND c.name = $3)`, t.oid, env, name).Scan(&takenBy, &takenEnv)
	if err == nil {
		return WatchApplyResult{}, fmt.Errorf("%w: table %s is already watched as %q (environment %d): one watch per table", ErrWatchConflict, t.quoted, takenBy, takenEnv)
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return WatchApplyResult{}, fmt.Errorf("look up watches of %s: %w", t.quoted, err)
	}

	res := WatchApplyResult{}
	var classID, watchID int64
	reinstall, reseed := false, false
	if prev == nil {
		err := tx.QueryRow(ctx, `INSERT INTO pgcast.object_classes (environment_id, name, read_rule, create_rule, update_rule, delete_rule)
			VALUES ($1, $2, $3, 'admin', 'admin', 'admin') RETURNING id`, env, name, cfg.read).Scan(&classID)
		if err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "23503" {
				return WatchApplyResult{}, fmt.Errorf("%w: environment %d does not exist", ErrInvalidWatch, env)
			}
			return WatchApplyResult{}, fmt.Errorf("create watch %q: %w", name, err)
		}
		err = tx.QueryRow(ctx, `INSERT INTO pgcast.watches (object_class_id, table_oid, schema_name, table_name, key_attnums,
				include_attnums, exclude_attnums, owner_attnums, env_attnum, counts)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`,
			classID, t.oid, t.schema, t.name, cfg.key, cfg.include, cfg.exclude, cfg.owners, cfg.env, cfg.counts).Scan(&watchID)
		if err != nil {
			return WatchApplyResult{}, fmt.Errorf("create watch %q: %w", name, err)
		}
		res.Created, reinstall, reseed = true, true, cfg.counts
	} else {
		classID, watchID = prev.classID, *prev.watchID
		res.Changes = append(res.Changes, describeChanges(name, t, prev, cfg)...)
		if prev.tableOID != t.oid {
			res.Changes = append(res.Changes, fmt.Sprintf("%s: table was dropped; now watches %s", name, t.quoted))
			reinstall = true
		}
		if prev.cfg.read != cfg.read {
			if _, err := tx.Exec(ctx, `UPDATE pgcast.object_classes SET read_rule = $2 WHERE id = $1`, classID, cfg.read); err != nil {
				return WatchApplyResult{}, fmt.Errorf("update watch %q: %w", name, err)
			}
		}
		if !prev.cfg.equal(cfg) || prev.tableOID != t.oid || prev.status != "active" {
			_, err := tx.Exec(ctx, `UPDATE pgcast.watches SET table_oid = $2, schema_name = $3, table_name = $4, key_attnums = $5,
					include_attnums = $6, exclude_attnums = $7, owner_attnums = $8, env_attnum = $9, counts = $10,
					status = 'active', updated_at = now()
				WHERE id = $1`, watchID, t.oid, t.schema, t.name, cfg.key, cfg.include, cfg.exclude, cfg.owners, cfg.env, cfg.counts)
			if err != nil {
				return WatchApplyResult{}, fmt.Errorf("update watch %q: %w", name, err)
			}
		}
		if !reinstall {
			problems, err := triggerProblems(ctx, tx, watchID, t)
			if err != nil {
				return WatchApplyResult{}, err
			}
			for _, p := range problems {
				res.Changes = append(res.Changes, fmt.Sprintf("%s: repaired: %s", name, p))
			}
			reinstall = len(problems) > 0
		}
		// A count that missed writes (triggers missing, another table) is
		// counted again.
		reseed = cfg.counts && (!prev.cfg.counts || reinstall)
	}
	if _, err := tx.Exec(ctx, `SELECT pgcast.watch_sync($1)`, watchID); err != nil {
		return WatchApplyResult{}, fmt.Errorf("sync fields of watch %q: %w", name, err)
	}
	if reinstall {
		if _, err := tx.Exec(ctx, `SELECT pgcast.watch_install($1)`, watchID); err != nil {
			return WatchApplyResult{}, fmt.Errorf("install triggers of watch %q on %s: %w", name, t.quoted, err)
		}
	}
	if reseed {
		n, err := seedCount(ctx, tx, classID, name, cfg.read, env, t, res.Created)
		if err != nil {
			return WatchApplyResult{}, err
		}
		if !res.Created {
			res.Changes = append(res.Changes, fmt.Sprintf("%s: count seeded: %d rows", name, n))
		}
	}
	w, err := getWatch(ctx, tx, env, name)
	if err != nil {
		return WatchApplyResult{}, err
	}
	res.Watch = w
	if res.Created {
		res.Changes = append([]string{fmt.Sprintf("created watch %s (class id %d) on %s: %d columns streamed, key %s",
			name, classID, t.quoted, len(w.Columns), strings.Join(w.Key, ", "))}, res.Changes...)
	}
	return res, nil
}

// describeChanges lists how cfg differs from the watch's configuration.
func describeChanges(name string, t *table, prev *existingWatch, cfg watchConfig) []string {
	var out []string
	names := func(attnums []int16) string {
		var ns []string
		for _, a := range attnums {
			n := fmt.Sprintf("#%d", a)
			for _, c := range t.columns {
				if c.attnum == a {
					n = c.name
				}
			}
			ns = append(ns, n)
		}
		return "[" + strings.Join(ns, ", ") + "]"
	}
	columns := func(c watchConfig) string {
		if c.include != nil {
			return "include " + names(c.include)
		}
		return "exclude " + names(c.exclude)
	}
	env := func(a *int16) string {
		if a == nil {
			return "none"
		}
		return names([]int16{*a})
	}
	p := prev.cfg
	if p.read != cfg.read {
		out = append(out, fmt.Sprintf("%s: read rule %s → %s", name, p.read, cfg.read))
	}
	if !slices.Equal(p.key, cfg.key) && prev.tableOID == t.oid {
		out = append(out, fmt.Sprintf("%s: key %s → %s (the table's primary key changed)", name, names(p.key), names(cfg.key)))
	}
	if columns(p) != columns(cfg) {
		out = append(out, fmt.Sprintf("%s: columns %s → %s", name, columns(p), columns(cfg)))
	}
	if !slices.Equal(p.owners, cfg.owners) {
		out = append(out, fmt.Sprintf("%s: owner columns %s → %s", name, names(p.owners), names(cfg.owners)))
	}
	if env(p.env) != env(cfg.env) {
		out = append(out, fmt.Sprintf("%s: environment column %s → %s", name, env(p.env), env(cfg.env)))
	}
	if p.counts != cfg.counts {
		out = append(out, fmt.Sprintf("%s: counts %t → %t", name, p.counts, cfg.counts))
	}
	return out
}

// seedCount sets the watch's count to the table's row count: it appends a
// count entry with the count itself ({"count": n}), from which the reader's
// derived count starts again (see counts.go), and which Catalyst count
// subscribers receive. Exact: the caller holds a lock that keeps writers
// out, so every entry of the table's writes lies on one side of it in the
// order the reader delivers.
//
// A watch created on an empty table needs none: its class's
// collection_created entry starts its count at 0.
func seedCount(ctx context.Context, tx pgx.Tx, classID int64, name, read string, env int64, t *table, created bool) (int64, error) {
	var n int64
	err := tx.QueryRow(ctx, `SELECT count(*) FROM ONLY `+t.quoted).Scan(&n)
	if err == nil && created && n == 0 {
		return 0, nil
	}
	if err == nil {
		_, err = tx.Exec(ctx, `INSERT INTO pgcast.events (kind, environment_id, object_class_id, data)
			VALUES ('records_count_changed', $1, $2, jsonb_build_object('class', $3::text, 'read', $4::text, 'count', $5::bigint))`,
			env, classID, name, read, n)
	}
	if err == nil {
		_, err = tx.Exec(ctx, `SELECT pgcast.ring()`)
	}
	if err != nil {
		return 0, fmt.Errorf("seed count of watch %q: %w", name, err)
	}
	return n, nil
}

// captureCannotRead says what to grant when the role that owns the capture
// functions (they run as it) cannot read t: capturing a TRUNCATE reads the
// rows before they go. (Transition tables need no privilege.)
func captureCannotRead(ctx context.Context, q WatchQuerier, t *table) (string, error) {
	var owner string
	var ok bool
	// By name, not a regprocedure constant: a cached plan would keep the oid
	// of a function since replaced (pgcast migrate down and up).
	err := q.QueryRow(ctx, `SELECT quote_ident(r.rolname), has_table_privilege(p.proowner, $1::oid, 'SELECT')
		FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_roles r ON r.oid = p.proowner
		WHERE n.nspname = 'pgcast' AND p.proname = 'capture_watch_truncate'`, t.oid).Scan(&owner, &ok)
	if err != nil {
		return "", fmt.Errorf("read the privileges of pgcast's capture on %s: %w", t.quoted, err)
	}
	if ok {
		return "", nil
	}
	return fmt.Sprintf("pgcast's capture runs as role %s, which cannot read table %s (a TRUNCATE is captured by reading its rows first): GRANT SELECT ON %s TO %s",
		owner, t.quoted, t.quoted, owner), nil
}

// watchTriggers are the capture triggers of a watched table and the
// function each calls.
var watchTriggers = [...]struct{ name, function string }{
	{"pgcast_watch_insert", "pgcast.capture_watch_insert()"},
	{"pgcast_watch_update", "pgcast.capture_watch_update()"},
	{"pgcast_watch_delete", "pgcast.capture_watch_delete()"},
	{"pgcast_watch_truncate", "pgcast.capture_watch_truncate()"},
}

// triggerProblems compares the table's capture triggers with what watch
// id needs: each present, enabled, calling its function for this watch.
func triggerProblems(ctx context.Context, q WatchQuerier, id int64, t *table) ([]string, error) {
	var problems []string
	for _, tr := range watchTriggers {
		var ok, enabled, mine bool
		err := q.QueryRow(ctx, `
			SELECT true, g.tgenabled <> 'D',
			       g.tgfoid = $3::regprocedure AND g.tgnargs = 1 AND g.tgargs = convert_to($4::text, 'UTF8') || '\x00'::bytea
			FROM pg_trigger g WHERE g.tgrelid = $1 AND g.tgname = $2`, t.oid, tr.name, tr.function, fmt.Sprint(id)).Scan(&ok, &enabled, &mine)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			problems = append(problems, fmt.Sprintf("trigger %s on %s is missing", tr.name, t.quoted))
		case err != nil:
			return nil, fmt.Errorf("read triggers of %s: %w", t.quoted, err)
		case !mine:
			problems = append(problems, fmt.Sprintf("trigger %s on %s does not call this watch's capture", tr.name, t.quoted))
		case !enabled:
			problems = append(problems, fmt.Sprintf("trigger %s on %s is disabled", tr.name, t.quoted))
		}
	}
	return problems, nil
}

// RemoveWatch removes the watch called name in environment env, in a
// transaction it begins on d (a savepoint when d is a transaction): it
// drops its capture triggers (the table and its data stay) and deletes its
// object class with its fields and count. Entries already in the log stay
// until retention prunes them.
func RemoveWatch(ctx context.Context, d DB, env int64, name string) error {
	return pgx.BeginFunc(ctx, d, func(tx pgx.Tx) error { return removeWatch(ctx, tx, env, name) })
}

func removeWatch(ctx context.Context, tx pgx.Tx, env int64, name string) error {
	prev, err := scanExisting(tx.QueryRow(ctx, selectExisting+` FOR UPDATE OF c`, env, name))
	if err != nil {
		return fmt.Errorf("read watch %q: %w", name, err)
	}
	if prev == nil || prev.watchID == nil {
		return fmt.Errorf("%w: no watch %q in environment %d", ErrWatchNotFound, name, env)
	}
	if prev.tableOID != 0 {
		var quoted string
		var owner bool
		err := tx.QueryRow(ctx, `
			SELECT format('%I.%I', n.nspname, c.relname),
			       pg_has_role(c.relowner, 'USAGE') OR coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false)
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1`, prev.tableOID).Scan(&quoted, &owner)
		switch {
		case errors.Is(err, pgx.ErrNoRows): // dropped without an event trigger to say so
		case err != nil:
			return fmt.Errorf("look up the table of watch %q: %w", name, err)
		case !owner:
			return fmt.Errorf("%w: must own table %s (or be superuser) to remove its watch", ErrNotTableOwner, quoted)
		default:
			if _, err := tx.Exec(ctx, `SELECT pgcast.watch_uninstall($1)`, prev.tableOID); err != nil {
				return fmt.Errorf("drop the triggers of watch %q on %s: %w", name, quoted, err)
			}
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM pgcast.object_classes WHERE id = $1`, prev.classID); err != nil {
		return fmt.Errorf("remove watch %q: %w", name, err)
	}
	return nil
}
