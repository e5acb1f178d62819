package main

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"
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
			url, err := a.databaseURLOrDev()
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
	url, err := a.databaseURLOrDev()
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

// migrateOrWait brings serve to a database at this binary's schema version:
// with --migrate it migrates (waiting its turn on the migration lock), else it
// waits up to --schema-wait for another node to. A signal meanwhile
// interrupts the wait. It returns the open pool and the schema status.
func (a *app) migrateOrWait(ctx context.Context, url string, o *serveOptions) (*pgxpool.Pool, db.Status, error) {
	ctx, stop := a.cancelOnSignal(ctx)
	pool, st, err := func() (*pgxpool.Pool, db.Status, error) {
		if o.migrate {
			if err := a.migrateUp(ctx, url); err != nil {
				return nil, db.Status{}, err
			}
		}
		pool, err := db.NewPool(ctx, db.Config{URL: url})
		if err != nil {
			return nil, db.Status{}, err
		}
		st, err := db.WaitForSchema(ctx, pool, o.schemaWait, a.logger)
		if err != nil {
			pool.Close()
			return nil, st, err
		}
		return pool, st, nil
	}()
	if sig := stop(); sig != nil {
		if pool != nil {
			pool.Close()
		}
		return nil, st, fmt.Errorf("interrupted by %s before serving", sig)
	}
	return pool, st, err
}

// cancelOnSignal returns a context cancelled by the first signal on
// a.signals, and a stop function that ends the watch and returns that signal
// (nil if none came). Between the two no one else reads a.signals, so no
// signal is lost.
func (a *app) cancelOnSignal(ctx context.Context) (context.Context, func() os.Signal) {
	ctx, cancel := context.WithCancel(ctx)
	done, got := make(chan struct{}), make(chan os.Signal, 1)
	go func() {
		defer close(got)
		select {
		case s := <-a.signals:
			got <- s
			cancel()
		case <-done:
		}
	}()
	return ctx, func() os.Signal {
		close(done)
		s := <-got
		cancel()
		return s
	}
}
