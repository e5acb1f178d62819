package db

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgcast/pgcast/internal/collections"
)

// CollectionApplyResult says what ApplyCollection did.
type CollectionApplyResult struct {
	Collection collections.Collection
	// Created is true when the collection did not exist.
	Created bool
	// Changes describes each change made, one line each; empty when the
	// collection already matched the definition.
	Changes []string
	// Kept lists fields the database has and the definition does not:
	// ApplyCollection never removes a field (that would drop data).
	Kept []string
}

// ApplyCollection makes the collection in environment env match def: it
// creates the collection, or updates its rules, adds the missing fields and
// updates the required flag of existing ones. Applying the same definition again
// changes nothing. A field whose type differs from the database's is an
// error (its stored values would no longer match); fields the database has
// and the definition lacks are kept and listed in the result. Concurrent
// applies of one collection serialise on its row.
func ApplyCollection(ctx context.Context, d DB, env int64, def collections.Definition) (CollectionApplyResult, error) {
	var res CollectionApplyResult
	err := pgx.BeginFunc(ctx, d, func(tx pgx.Tx) error {
		res = CollectionApplyResult{}
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
			return fmt.Errorf("%w: %q is the watch of table %s: change it with pgcast watch apply", ErrCollectionExists, def.Name, c.Table)
		}
		return updateCollection(ctx, tx, &c, def, &res)
	})
	if err != nil {
		return CollectionApplyResult{}, err
	}
	return res, nil
}

func updateCollection(ctx context.Context, tx pgx.Tx, c *collections.Collection, def collections.Definition, res *CollectionApplyResult) error {
	have, want := c.Permissions, def.Permissions
	for _, r := range []struct {
		op         string
		have, want collections.Rule
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
	var added []collections.FieldDef
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
		if len(c.Fields)+len(added) > collections.MaxFields {
			return fmt.Errorf("%s: adding %d fields would make %d, at most %d allowed", c.Name, len(added), len(c.Fields)+len(added), collections.MaxFields)
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
