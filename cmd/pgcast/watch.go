package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgcast/pgcast/db"
)

// maxWatchFile bounds the file read by `watch apply`.
const maxWatchFile = 16 << 20

func (a *app) watchCmd() *cobra.Command {
	var env int64
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Stream your own tables: watch them from a file, list or remove watches",
		Long: `A watch streams an existing table of your application like a collection:
capture triggers on the table append every committed change to pgcast's
durable log in the writing transaction, and subscribers receive
"<name>.created/.updated/.deleted" on /api/realtime (and Catalyst items when
the primary key is one integer column). Each watch is listed with the
collections, with a field id per streamed column. See docs/watch.md.

These commands work directly on the database named by --database-url /
DATABASE_URL; no server needs to run. The role must own the watched tables
(or be superuser).`,
		Example: "  pgcast watch apply watches.yaml\n  pgcast watch list\n  pgcast watch remove orders",
	}
	cmd.PersistentFlags().Int64Var(&env, "env", 1, "environment id the watches belong to")

	apply := &cobra.Command{
		Use:   "apply FILE",
		Short: "Create or update watches from a JSON or YAML file (idempotent; repairs drift)",
		Long: `Make the watches in FILE exist as written, in one transaction: a watch that
does not exist is created (an object class, its fields, the capture triggers
on the table); one that exists is updated. Applying the same file again changes
nothing, except that it repairs drift: capture triggers dropped or disabled,
fields behind the table's columns, a changed primary key, a table created
again after a drop. Watches not in the file are left alone (pgcast watch
remove drops one). The tables are locked against writes until the
transaction ends (a watch with counts: true counts its table's rows).

FILE is JSON (.json, or content starting with { or [) or YAML, and holds one
watch, a list of them, or {"watches": [...]}. A watch is:
  table          schema-qualified table (required); must have a primary key
  name           collection name (default: the table's name)
  columns        {exclude: [...]} or {include: [...]} (default: every column);
                 key, owner and env columns are always streamed
  read           public | authenticated (default) | owner | admin
  owner_columns  text, uuid or integer columns, or arrays of those, holding
                 the row's owners (compared with the token's sub)
  env_column     integer column holding the row's environment
                 (default: every row is in --env)
  counts         true: keep the row count (Catalyst count items)`,
		Example: `  cat > watches.yaml <<'EOF'
  watches:
    - table: public.orders
      columns: {exclude: [card_token]}
      read: owner
      owner_columns: [customer_id]
  EOF
  pgcast watch apply watches.yaml --database-url postgres://localhost/app`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			defs, err := readWatchFile(args[0])
			if err != nil {
				return err
			}
			return a.withCollectionsDB(cmd.Context(), env, func(ctx context.Context, conn *pgx.Conn) error {
				return a.applyWatches(ctx, conn, env, defs)
			})
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "Print the watches, their field ids and any drift, as JSON",
		Long: `Print the watches of --env as JSON: each with its table, key, streamed columns
(with field ids), rules, and a status: "ok", "drift" (problems says what
differs from what capture needs, e.g. a capture trigger dropped or disabled;
pgcast watch apply repairs it) or "dropped" (the table is gone).`,
		Example: "  pgcast watch list --database-url postgres://localhost/app",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withCollectionsDB(cmd.Context(), env, func(ctx context.Context, conn *pgx.Conn) error {
				list, err := db.ListWatches(ctx, conn, env)
				if err != nil {
					return err
				}
				if list == nil {
					list = []db.Watch{}
				}
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"items": list})
			})
		},
	}
	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Stop watching a table: drop its capture triggers (the table and its data stay)",
		Long: `Remove the watch NAME: drop its capture triggers and delete its object class
(with its fields and count). The table and its data are not touched. Entries
already in the log stay until retention prunes them.`,
		Example: "  pgcast watch remove orders",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withCollectionsDB(cmd.Context(), env, func(ctx context.Context, conn *pgx.Conn) error {
				var table string
				err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
					w, err := db.GetWatch(ctx, tx, env, args[0])
					if err != nil {
						return err
					}
					table = w.Table
					return db.RemoveWatch(ctx, tx, env, args[0])
				})
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "removed watch %s: capture triggers dropped from %s (the table and its data are untouched)\n", args[0], table)
				return nil
			})
		},
	}
	cmd.AddCommand(apply, list, remove)
	return cmd
}

// applyWatches applies every definition in one transaction, so a file is
// applied whole or not at all, and prints what changed.
func (a *app) applyWatches(ctx context.Context, conn *pgx.Conn, env int64, defs []db.WatchDefinition) error {
	var results []db.WatchApplyResult
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		results = results[:0]
		for i, def := range defs {
			res, err := db.ApplyWatch(ctx, tx, env, def)
			if err != nil {
				return fmt.Errorf("watch %d (%s): %w", i+1, def.Table, err)
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
		if len(res.Changes) == 0 {
			fmt.Fprintf(a.stdout, "%s: unchanged (class id %d)\n", res.Watch.Name, res.Watch.ClassID)
		}
	}
	return nil
}

// readWatchFile reads and parses every definition in path.
func readWatchFile(path string) ([]db.WatchDefinition, error) {
	return readDefs(watchFile, path, watchDefinitions)
}

// watchFile is the shape of a `watch apply` file.
var watchFile = definitionFile{one: "watch", plural: "watches", max: maxWatchFile}

// watchDefinitions parses a file's watches.
func watchDefinitions(items []json.RawMessage) ([]db.WatchDefinition, error) {
	defs := make([]db.WatchDefinition, 0, len(items))
	for i, item := range items {
		def, err := db.ParseWatchDefinition(item)
		if err != nil {
			return nil, fmt.Errorf("watch %d: %w", i+1, err)
		}
		defs = append(defs, def)
	}
	return defs, nil
}
