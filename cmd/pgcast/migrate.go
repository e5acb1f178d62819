package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/pgcast/pgcast/db"
)

func (a *app) migrateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply, roll back or inspect pgcast's schema migrations",
		Long: `Manage pgcast's schema in the database named by --database-url / DATABASE_URL.
Migrations are embedded in the binary. After a migrate that leaves the schema at
this binary's version, the capture triggers are (re)installed.`,
		Example: "  pgcast migrate up\n  pgcast migrate status\n  pgcast migrate down 1",
	}
	up := &cobra.Command{
		Use:     "up",
		Short:   "Apply all pending migrations and install the triggers",
		Example: "  DATABASE_URL=postgres://localhost/app pgcast migrate up",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			url, err := a.requireDatabaseURL()
			if err != nil {
				return err
			}
			return a.migrateUp(cmd.Context(), url)
		},
	}
	down := &cobra.Command{
		Use:     "down [N]",
		Short:   "Roll back N migrations (all of them without N)",
		Example: "  pgcast migrate down 1\n  pgcast migrate down   # removes pgcast's schema entirely",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n := 0
			if len(args) == 1 {
				v, err := strconv.Atoi(args[0])
				if err != nil || v < 1 {
					return fmt.Errorf("N must be a positive integer, got %q", args[0])
				}
				n = v
			}
			return a.withMigrator(cmd.Context(), func(ctx context.Context, m *db.Migrator) error {
				if err := m.Down(ctx, n); err != nil {
					return err
				}
				return a.printStatus(ctx, m)
			})
		},
	}
	status := &cobra.Command{
		Use:     "status",
		Short:   "Print the database's schema version against this binary's",
		Example: "  pgcast migrate status",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withMigrator(cmd.Context(), a.printStatus)
		},
	}
	force := &cobra.Command{
		Use:     "force V",
		Short:   "Record version V without running migrations (clears a dirty state)",
		Example: "  pgcast migrate force 1",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := strconv.Atoi(args[0])
			if err != nil || v < -1 {
				return fmt.Errorf("V must be a version number (or -1 for none), got %q", args[0])
			}
			return a.withMigrator(cmd.Context(), func(ctx context.Context, m *db.Migrator) error {
				if err := m.Force(ctx, v); err != nil {
					return err
				}
				return a.printStatus(ctx, m)
			})
		},
	}
	cmd.AddCommand(up, down, status, force)
	return cmd
}

func (a *app) withMigrator(ctx context.Context, f func(context.Context, *db.Migrator) error) error {
	url, err := a.requireDatabaseURL()
	if err != nil {
		return err
	}
	m, err := db.NewMigrator(url, a.logger)
	if err != nil {
		return err
	}
	defer m.Close()
	return f(ctx, m)
}

func (a *app) migrateUp(ctx context.Context, url string) error {
	m, err := db.NewMigrator(url, a.logger)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Up(ctx); err != nil {
		return err
	}
	st, err := m.Status(ctx)
	if err != nil {
		return err
	}
	a.logger.Info("schema migrated", "version", st.Current)
	return nil
}

func (a *app) printStatus(ctx context.Context, m *db.Migrator) error {
	st, err := m.Status(ctx)
	if err != nil {
		return err
	}
	state := "up to date"
	if err := st.Check(); err != nil {
		state = err.Error()
	}
	fmt.Fprintf(a.stdout, "database version: %d\nbinary version:   %d\ndirty:            %t\nstate:            %s\n", st.Current, st.Latest, st.Dirty, state)
	return nil
}
