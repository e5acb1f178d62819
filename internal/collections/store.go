package collections

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DB is what this package needs of a pool, a connection or a transaction.
// Writes run in a transaction (a savepoint when db is a transaction).
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Errors of the functions below (wrapped, test with errors.Is).
var (
	ErrExists        = errors.New("collection already exists")
	ErrNotFound      = errors.New("collection not found")
	ErrNoEnvironment = errors.New("environment does not exist")
)

// selectCollections reads collections with their fields in definition
// order; $1 is the environment.
const selectCollections = `
SELECT c.id, c.name, c.create_rule, c.read_rule, c.update_rule, c.delete_rule,
       COALESCE((SELECT jsonb_agg(jsonb_build_object('id', f.id, 'name', f.name, 'type', f.type, 'required', f.required)
                                  ORDER BY f.position, f.id)
                 FROM pgcast.object_class_fields f WHERE f.object_class_id = c.id), '[]'::jsonb),
       coalesce((SELECT format('%I.%I', w.schema_name, w.table_name) FROM pgcast.watches w WHERE w.object_class_id = c.id), '')
FROM pgcast.object_classes c
WHERE c.environment_id = $1`

func scanCollection(row pgx.Row) (Collection, error) {
	var c Collection
	err := row.Scan(&c.ID, &c.Name, &c.Permissions.Create, &c.Permissions.Read, &c.Permissions.Update, &c.Permissions.Delete, &c.Fields, &c.Table)
	return c, err
}

// Get returns the collection called name in environment env, or an error
// wrapping ErrNotFound.
func Get(ctx context.Context, db DB, env int64, name string) (Collection, error) {
	c, err := scanCollection(db.QueryRow(ctx, selectCollections+` AND c.name = $2`, env, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return Collection{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if err != nil {
		return Collection{}, fmt.Errorf("read collection %q: %w", name, err)
	}
	return c, nil
}

// List returns the collections of environment env in creation order.
func List(ctx context.Context, db DB, env int64) ([]Collection, error) {
	rows, err := db.Query(ctx, selectCollections+` ORDER BY c.id`, env)
	if err != nil {
		return nil, fmt.Errorf("list collections: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Collection, error) { return scanCollection(r) })
	if err != nil {
		return nil, fmt.Errorf("list collections: %w", err)
	}
	return out, nil
}

// Create creates def in environment env. The capture trigger on
// object_classes appends the collection_created entry (realtime
// "system.collection.created") in the same transaction. A collection of the
// same name gives an error wrapping ErrExists; an environment that does not
// exist, ErrNoEnvironment.
func Create(ctx context.Context, db DB, env int64, def Definition) (Collection, error) {
	var c Collection
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var err error
		c, err = insertClass(ctx, tx, env, def, false)
		return err
	})
	return c, err
}

// insertClass inserts the class and its fields. With ifAbsent, an existing
// class is not an error: the zero Collection is returned.
func insertClass(ctx context.Context, tx pgx.Tx, env int64, def Definition, ifAbsent bool) (Collection, error) {
	q := `INSERT INTO pgcast.object_classes (environment_id, name, create_rule, read_rule, update_rule, delete_rule)
	      VALUES ($1, $2, $3, $4, $5, $6)`
	if ifAbsent {
		q += ` ON CONFLICT (environment_id, name) DO NOTHING`
	}
	p := def.Permissions
	var id int64
	err := tx.QueryRow(ctx, q+` RETURNING id`, env, def.Name, p.Create, p.Read, p.Update, p.Delete).Scan(&id)
	if ifAbsent && errors.Is(err, pgx.ErrNoRows) {
		return Collection{}, nil
	}
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			switch {
			case pe.Code == "23505" && pe.ConstraintName == "object_classes_environment_id_name_key":
				return Collection{}, fmt.Errorf("%w: %q in environment %d", ErrExists, def.Name, env)
			case pe.Code == "23503" && pe.ConstraintName == "object_classes_environment_id_fkey":
				return Collection{}, fmt.Errorf("%w: %d", ErrNoEnvironment, env)
			}
		}
		return Collection{}, fmt.Errorf("create collection %q: %w", def.Name, err)
	}
	fields, err := insertFields(ctx, tx, id, def.Fields, 0)
	if err != nil {
		return Collection{}, err
	}
	return Collection{ID: id, Name: def.Name, Fields: fields, Permissions: p}, nil
}

// insertFields adds fields to class id at positions from firstPos on and
// returns them with their ids, in the order given.
func insertFields(ctx context.Context, tx pgx.Tx, classID int64, defs []FieldDef, firstPos int) ([]Field, error) {
	out := make([]Field, len(defs))
	if len(defs) == 0 {
		return out, nil
	}
	names, types, req := make([]string, len(defs)), make([]string, len(defs)), make([]bool, len(defs))
	for i, f := range defs {
		names[i], types[i], req[i] = f.Name, string(f.Type), f.Required
	}
	rows, err := tx.Query(ctx, `
		INSERT INTO pgcast.object_class_fields (object_class_id, name, type, required, position)
		SELECT $1, f.name, f.type, f.required, $5 + f.ord - 1
		FROM unnest($2::text[], $3::text[], $4::bool[]) WITH ORDINALITY AS f(name, type, required, ord)
		ORDER BY f.ord
		RETURNING id, name`, classID, names, types, req, firstPos)
	if err != nil {
		return nil, fmt.Errorf("add fields: %w", err)
	}
	ids := map[string]int64{}
	var (
		id   int64
		name string
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &name}, func() error { ids[name] = id; return nil }); err != nil {
		return nil, fmt.Errorf("add fields: %w", err)
	}
	for i, f := range defs {
		out[i] = Field{ID: ids[f.Name], Name: f.Name, Type: f.Type, Required: f.Required}
	}
	return out, nil
}

// ApplyResult says what Apply did.
type ApplyResult struct {
	Collection Collection
	// Created is true when the collection did not exist.
	Created bool
	// Changes describes each change made, one line each; empty when the
	// collection already matched the definition.
	Changes []string
	// Kept lists fields the database has and the definition does not:
	// Apply never removes a field (that would drop data).
	Kept []string
}

// Apply makes the collection in environment env match def: it creates the
// collection, or updates its rules, adds the missing fields and updates the
// required flag of existing ones. Applying the same definition again
// changes nothing. A field whose type differs from the database's is an
// error (its stored values would no longer match); fields the database has
// and the definition lacks are kept and listed in the result. Concurrent
// applies of one collection serialise on its row.
func Apply(ctx context.Context, db DB, env int64, def Definition) (ApplyResult, error) {
	var res ApplyResult
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		res = ApplyResult{}
		c, err := insertClass(ctx, tx, env, def, true)
		if err != nil {
			return err
		}
		if c.ID != 0 {
			res.Collection, res.Created = c, true
			res.Changes = append(res.Changes, fmt.Sprintf("created collection %s (id %d) with %d fields", c.Name, c.ID, len(c.Fields)))
			return nil
		}
		c, err = scanCollection(tx.QueryRow(ctx, selectCollections+` AND c.name = $2 FOR UPDATE OF c`, env, def.Name))
		if err != nil {
			return fmt.Errorf("read collection %q: %w", def.Name, err)
		}
		if c.Table != "" {
			return fmt.Errorf("%w: %q is the watch of table %s: change it with pgcast watch apply", ErrExists, def.Name, c.Table)
		}
		return update(ctx, tx, &c, def, &res)
	})
	if err != nil {
		return ApplyResult{}, err
	}
	return res, nil
}

func update(ctx context.Context, tx pgx.Tx, c *Collection, def Definition, res *ApplyResult) error {
	have, want := c.Permissions, def.Permissions
	for _, r := range []struct {
		op         string
		have, want Rule
	}{{"create", have.Create, want.Create}, {"read", have.Read, want.Read}, {"update", have.Update, want.Update}, {"delete", have.Delete, want.Delete}} {
		if r.have != r.want {
			res.Changes = append(res.Changes, fmt.Sprintf("%s: %s rule %s → %s", c.Name, r.op, r.have, r.want))
		}
	}
	if have != want {
		if _, err := tx.Exec(ctx, `UPDATE pgcast.object_classes SET create_rule = $2, read_rule = $3, update_rule = $4, delete_rule = $5 WHERE id = $1`,
			c.ID, want.Create, want.Read, want.Update, want.Delete); err != nil {
			return fmt.Errorf("update rules of %q: %w", c.Name, err)
		}
		c.Permissions = want
	}

	existing := map[string]int{}
	for i, f := range c.Fields {
		existing[f.Name] = i
	}
	var added []FieldDef
	inDef := map[string]bool{}
	for _, f := range def.Fields {
		inDef[f.Name] = true
		i, ok := existing[f.Name]
		if !ok {
			added = append(added, f)
			continue
		}
		cur := c.Fields[i]
		if cur.Type != f.Type {
			return fmt.Errorf("%s.%s: the database has type %s, the definition %s: changing a field's type is not supported (add a new field instead)", c.Name, f.Name, cur.Type, f.Type)
		}
		if cur.Required != f.Required {
			if _, err := tx.Exec(ctx, `UPDATE pgcast.object_class_fields SET required = $2 WHERE id = $1`, cur.ID, f.Required); err != nil {
				return fmt.Errorf("update field %s.%s: %w", c.Name, f.Name, err)
			}
			c.Fields[i].Required = f.Required
			res.Changes = append(res.Changes, fmt.Sprintf("%s.%s: required %t → %t", c.Name, f.Name, cur.Required, f.Required))
		}
	}
	for _, f := range c.Fields {
		if !inDef[f.Name] {
			res.Kept = append(res.Kept, fmt.Sprintf("%s.%s", c.Name, f.Name))
		}
	}
	if len(added) > 0 {
		if len(c.Fields)+len(added) > MaxFields {
			return fmt.Errorf("%s: adding %d fields would make %d, at most %d allowed", c.Name, len(added), len(c.Fields)+len(added), MaxFields)
		}
		var next int
		if err := tx.QueryRow(ctx, `SELECT COALESCE(max(position) + 1, 0) FROM pgcast.object_class_fields WHERE object_class_id = $1`, c.ID).Scan(&next); err != nil {
			return fmt.Errorf("add fields to %q: %w", c.Name, err)
		}
		fields, err := insertFields(ctx, tx, c.ID, added, next)
		if err != nil {
			return fmt.Errorf("%s: %w", c.Name, err)
		}
		for _, f := range fields {
			res.Changes = append(res.Changes, fmt.Sprintf("%s: added field %s (%s, id %d)", c.Name, f.Name, f.Type, f.ID))
		}
		c.Fields = append(c.Fields, fields...)
	}
	res.Collection = *c
	return nil
}
