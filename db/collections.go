package db

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgcast/pgcast/internal/collections"
)

// Collections are object classes with typed fields and a rule per
// operation; package collections defines and validates them, the functions
// here store and read them.

// Errors of the collection functions (wrapped, test with errors.Is).
var (
	ErrCollectionExists   = errors.New("collection already exists")
	ErrCollectionNotFound = errors.New("collection not found")
	ErrNoEnvironment      = errors.New("environment does not exist")
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

func scanCollection(row pgx.Row) (collections.Collection, error) {
	var c collections.Collection
	err := row.Scan(&c.ID, &c.Name, &c.Permissions.Create, &c.Permissions.Read, &c.Permissions.Update, &c.Permissions.Delete, &c.Fields, &c.Table)
	return c, err
}

// GetCollection returns the collection called name in environment env, or
// an error wrapping ErrCollectionNotFound.
func GetCollection(ctx context.Context, q Querier, env int64, name string) (collections.Collection, error) {
	c, err := scanCollection(q.QueryRow(ctx, selectCollections+` AND c.name = $2`, env, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return collections.Collection{}, fmt.Errorf("%w: %q", ErrCollectionNotFound, name)
	}
	if err != nil {
		return collections.Collection{}, fmt.Errorf("read collection %q: %w", name, err)
	}
	return c, nil
}

// ListCollections returns the collections of environment env in creation
// order (an empty list, not nil, when there are none).
func ListCollections(ctx context.Context, q RowsQuerier, env int64) ([]collections.Collection, error) {
	rows, err := q.Query(ctx, selectCollections+` ORDER BY c.id`, env)
	if err != nil {
		return nil, fmt.Errorf("list collections: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (collections.Collection, error) { return scanCollection(r) })
	if err != nil {
		return nil, fmt.Errorf("list collections: %w", err)
	}
	return out, nil
}

// EnvironmentExists reports whether environment env exists.
func EnvironmentExists(ctx context.Context, q Querier, env int64) (bool, error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pgcast.environments WHERE id = $1)`, env).Scan(&exists); err != nil {
		return false, fmt.Errorf("look up environment %d: %w", env, err)
	}
	return exists, nil
}

// CreateCollection creates def in environment env. The capture trigger on
// object_classes appends the collection_created entry (realtime
// "system.collection.created") in the same transaction. A collection of the
// same name gives an error wrapping ErrCollectionExists; an environment
// that does not exist, ErrNoEnvironment.
func CreateCollection(ctx context.Context, d DB, env int64, def collections.Definition) (collections.Collection, error) {
	var c collections.Collection
	err := pgx.BeginFunc(ctx, d, func(tx pgx.Tx) error {
		var err error
		c, err = insertClass(ctx, tx, env, def, false)
		return err
	})
	return c, err
}

// insertClass inserts the class and its fields. With ifAbsent, an existing
// class is not an error: the zero Collection is returned.
func insertClass(ctx context.Context, tx pgx.Tx, env int64, def collections.Definition, ifAbsent bool) (collections.Collection, error) {
	q := `INSERT INTO pgcast.object_classes (environment_id, name, create_rule, read_rule, update_rule, delete_rule)
	      VALUES ($1, $2, $3, $4, $5, $6)`
	if ifAbsent {
		q += ` ON CONFLICT (environment_id, name) DO NOTHING`
	}
	p := def.Permissions
	var id int64
	err := tx.QueryRow(ctx, q+` RETURNING id`, env, def.Name, p.Create, p.Read, p.Update, p.Delete).Scan(&id)
	if ifAbsent && errors.Is(err, pgx.ErrNoRows) {
		return collections.Collection{}, nil
	}
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			switch {
			case pe.Code == "23505" && pe.ConstraintName == "object_classes_environment_id_name_key":
				return collections.Collection{}, fmt.Errorf("%w: %q in environment %d", ErrCollectionExists, def.Name, env)
			case pe.Code == "23503" && pe.ConstraintName == "object_classes_environment_id_fkey":
				return collections.Collection{}, fmt.Errorf("%w: %d", ErrNoEnvironment, env)
			}
		}
		return collections.Collection{}, fmt.Errorf("create collection %q: %w", def.Name, err)
	}
	fields, err := insertFields(ctx, tx, id, def.Fields, 0)
	if err != nil {
		return collections.Collection{}, err
	}
	return collections.Collection{ID: id, Name: def.Name, Fields: fields, Permissions: p}, nil
}

// insertFields adds fields to class id at positions from firstPos on and
// returns them with their ids, in the order given.
func insertFields(ctx context.Context, tx pgx.Tx, classID int64, defs []collections.FieldDef, firstPos int) ([]collections.Field, error) {
	out := make([]collections.Field, len(defs))
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
		out[i] = collections.Field{ID: ids[f.Name], Name: f.Name, Type: f.Type, Required: f.Required}
	}
	return out, nil
}
