package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/collections"
)

// maxCollectionsFile bounds the definitions file read by `collections apply`.
const maxCollectionsFile = 16 << 20

func (a *app) collectionsCmd() *cobra.Command {
	var env int64
	cmd := &cobra.Command{
		Use:   "collections",
		Short: "Define collections (object classes) from a file, or list them",
		Long: `Collections are object classes: named sets of records with typed fields and a
permission rule per operation. They are served by the REST API
(/api/{collection}) and stream changes on /api/realtime and the Catalyst
endpoints. These commands work directly on the database named by
--database-url / DATABASE_URL; no server needs to run.`,
		Example: "  pgcast collections apply collections.yaml\n  pgcast collections list --env 2",
	}
	cmd.PersistentFlags().Int64Var(&env, "env", 1, "environment id the collections belong to")

	apply := &cobra.Command{
		Use:   "apply FILE",
		Short: "Create or update collections from a JSON or YAML file (idempotent)",
		Long: `Make the database's collections match FILE, in one transaction: collections
that do not exist are created (each emits system.collection.created); for those
that exist, permission rules are updated, missing fields are added and the
required flag of existing fields is updated. Applying the same file again
changes nothing. Nothing is ever removed: a field the database has and the file
lacks is kept (and reported), and changing a field's type is refused.

FILE is JSON (.json, or content starting with { or [) or YAML, and holds one
collection, a list of them, or {"collections": [...]}. A collection is
{"name", "fields": [{"name", "type", "required"}], "permissions": {"create",
"read", "update", "delete"}}: names match ^[a-z][a-z0-9_]*$ (at most 63
characters; reserved: ` + strings.Join(collections.ReservedNames(), ", ") + `),
types are string, text, integer, float, boolean, datetime or json, rules are
public, authenticated, owner or admin. The file is the truth for what it
names: a rule it leaves out is set to its default (create and read
authenticated, update and delete owner).`,
		Example: `  cat > collections.yaml <<'EOF'
  collections:
    - name: posts
      fields:
        - {name: title, type: string, required: true}
        - {name: body, type: text}
      permissions: {create: authenticated, read: public, update: owner, delete: owner}
  EOF
  pgcast collections apply collections.yaml --database-url postgres://localhost/app`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			defs, err := readDefinitions(args[0])
			if err != nil {
				return err
			}
			return a.withCollectionsDB(cmd.Context(), env, func(ctx context.Context, conn *pgx.Conn) error {
				return a.applyCollections(ctx, conn, env, defs)
			})
		},
	}
	list := &cobra.Command{
		Use:     "list",
		Short:   "Print the collections, with their ids and field ids, as JSON",
		Example: "  pgcast collections list --database-url postgres://localhost/app",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withCollectionsDB(cmd.Context(), env, func(ctx context.Context, conn *pgx.Conn) error {
				list, err := db.ListCollections(ctx, conn, env)
				if err != nil {
					return err
				}
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"items": list})
			})
		},
	}
	cmd.AddCommand(apply, list)
	return cmd
}

// withCollectionsDB connects to the database, checks that its schema is at
// this binary's version and that the environment exists, and runs f.
func (a *app) withCollectionsDB(ctx context.Context, env int64, f func(context.Context, *pgx.Conn) error) error {
	if env < 1 {
		return fmt.Errorf("invalid --env %d: want an environment id ≥ 1", env)
	}
	url, err := a.databaseURLOrDev()
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connect to database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	st, err := db.ReadStatus(ctx, conn)
	if err != nil {
		return err
	}
	if err := st.Check(); err != nil {
		return err
	}
	exists, err := db.EnvironmentExists(ctx, conn, env)
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("environment %d does not exist", env)
	}
	return f(ctx, conn)
}

// applyCollections applies every definition in one transaction, so a file
// is applied whole or not at all, and prints what changed.
func (a *app) applyCollections(ctx context.Context, conn *pgx.Conn, env int64, defs []collections.Definition) error {
	var results []db.CollectionApplyResult
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		results = results[:0]
		for _, def := range defs {
			res, err := db.ApplyCollection(ctx, tx, env, def)
			if err != nil {
				return fmt.Errorf("apply collection %q: %w", def.Name, err)
			}
			results = append(results, res)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, res := range results {
		for _, c := range res.Changes {
			fmt.Fprintln(a.stdout, c)
		}
		for _, k := range res.Kept {
			fmt.Fprintf(a.stdout, "%s: kept (not in the file; apply never removes fields)\n", k)
		}
		if len(res.Changes) == 0 {
			fmt.Fprintf(a.stdout, "%s: unchanged (id %d)\n", res.Collection.Name, res.Collection.ID)
		}
	}
	return nil
}

// readDefinitions reads and validates every definition in path.
func readDefinitions(path string) ([]collections.Definition, error) {
	return readDefs(collectionsFile, path, definitions)
}

// collectionsFile is the shape of a `collections apply` file.
var collectionsFile = definitionFile{one: "collection", plural: "collections", max: maxCollectionsFile}

// definitions validates a file's collections, each named once.
func definitions(items []json.RawMessage) ([]collections.Definition, error) {
	defs := make([]collections.Definition, 0, len(items))
	seen := map[string]int{}
	for i, item := range items {
		def, err := collections.ParseDefinition(item)
		if err != nil {
			return nil, fmt.Errorf("collection %d: %w", i+1, describeProblems(err))
		}
		if j, dup := seen[def.Name]; dup {
			return nil, fmt.Errorf("collection %d: %q is already defined by collection %d", i+1, def.Name, j+1)
		}
		seen[def.Name] = i
		defs = append(defs, def)
	}
	return defs, nil
}

// describeProblems makes a validation failure one readable line, each
// problem prefixed with its path.
func describeProblems(err error) error {
	var ps collections.Problems
	if !errors.As(err, &ps) {
		return err
	}
	msgs := make([]string, len(ps))
	for i, p := range ps {
		msgs[i] = p.Field + ": " + p.Message
	}
	return errors.New(strings.Join(msgs, "; "))
}

// yamlToJSON converts one YAML document to JSON. Mapping keys must be
// strings (JSON has no others).
func yamlToJSON(data []byte) ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	v, err := jsonable(v, "")
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("convert YAML to JSON: %w", err)
	}
	if len(out) == 0 || (out[0] != '{' && out[0] != '[') {
		return nil, errors.New("want a collection, a list of collections or collections: [...]")
	}
	return out, nil
}

// jsonable turns what yaml.v3 decodes into values encoding/json accepts.
func jsonable(v any, path string) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			c, err := jsonable(e, path+"."+k)
			if err != nil {
				return nil, err
			}
			x[k] = c
		}
		return x, nil
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("YAML key %v at %q is not a string", k, strings.TrimPrefix(path, "."))
			}
			c, err := jsonable(e, path+"."+ks)
			if err != nil {
				return nil, err
			}
			m[ks] = c
		}
		return m, nil
	case []any:
		for i, e := range x {
			c, err := jsonable(e, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			x[i] = c
		}
		return x, nil
	}
	return v, nil
}
