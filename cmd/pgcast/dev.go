package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/pgcast/pgcast/internal/collections"
	"github.com/pgcast/pgcast/internal/pgcluster"
)

// devDatabase is the database `pgcast dev` creates in its private cluster.
const devDatabase = "pgcast"

// devJWTSecret is the JWT secret `pgcast dev` uses when none is set, so that
// a fresh `make run` works out of the box. It is public: dev only.
const devJWTSecret = "pgcast-development-secret-not-for-production"

func (a *app) devCmd() *cobra.Command {
	o := &serveOptions{}
	var pgBin, dir string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Serve against DATABASE_URL, or a private throwaway Postgres cluster (what `make run` calls)",
		Long: `The newcomer path. With DATABASE_URL (or --database-url) set, dev migrates that
database and serves. Otherwise it starts a private PostgreSQL cluster from the
locally installed Postgres binaries (found on PATH, in the usual Debian and
Homebrew locations, or at --pg-bin) under --dir on a free port, migrates it,
serves, and stops the cluster on exit. The cluster's data is kept in --dir
between runs.

Postgres refuses to run as root: when pgcast runs as root, the cluster runs as
the unprivileged system user "postgres".`,
		Example: "  pgcast dev\n  pgcast dev --pg-bin /usr/lib/postgresql/16/bin --addr :8081",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			o.migrate = true
			o.seed = a.seedDev
			if o.auth.secret == "" {
				o.auth.secret = devJWTSecret
				a.logger.Warn("no --jwt-secret: using the public development secret; mint tokens with `pgcast token --jwt-secret " + devJWTSecret + "` (never use it in production)")
			}
			if a.databaseURL != "" {
				return a.serve(ctx, a.databaseURL, o)
			}
			cluster, err := pgcluster.Start(ctx, pgcluster.Config{
				Dir:    filepath.Join(dir, "pg"),
				BinDir: pgBin,
				Logger: a.logger,
			})
			if err != nil {
				if errors.Is(err, pgcluster.ErrNoBinaries) {
					return pgcluster.ErrNoBinaries
				}
				return fmt.Errorf("start local postgres: %w", err)
			}
			defer func() {
				if err := cluster.Stop(context.WithoutCancel(ctx)); err != nil {
					a.logger.Error("stop local postgres", "err", err)
				}
			}()
			if err := createDatabase(ctx, cluster.DSN("postgres"), devDatabase); err != nil {
				return err
			}
			url := cluster.DSN(devDatabase)
			a.logger.Info("local postgres started", "dir", filepath.Join(dir, "pg"), "url", url)
			return a.serve(ctx, url, o)
		},
	}
	o.addFlags(cmd.Flags())
	cmd.Flags().StringVar(&pgBin, "pg-bin", "", "directory holding the Postgres binaries (initdb, postgres); default: searched")
	cmd.Flags().StringVar(&dir, "dir", ".pgcast", "directory for the private cluster's data and logs")
	return cmd
}

// devCollection is the collection `pgcast dev` seeds so that the README's
// first request works on a fresh database:
//
//	curl -X POST http://localhost:8080/api/posts -H 'Content-Type: application/json' -d '{"title":"Hello"}'
func devCollection() collections.Definition {
	return collections.Definition{
		Name:   "posts",
		Fields: []collections.FieldDef{{Name: "title", Type: collections.TypeString, Required: true}},
		Permissions: collections.Permissions{
			Create: collections.RulePublic, Read: collections.RulePublic,
			Update: collections.RuleOwner, Delete: collections.RuleOwner,
		},
	}
}

// seedDev creates devCollection in environment 1 unless a collection of
// that name exists (which is then left exactly as it is).
func (a *app) seedDev(ctx context.Context, pool *pgxpool.Pool) error {
	c, err := collections.Create(ctx, pool, 1, devCollection())
	switch {
	case errors.Is(err, collections.ErrExists):
		return nil
	case err != nil:
		return fmt.Errorf("seed the posts collection: %w", err)
	}
	a.logger.Info("seeded collection", "name", c.Name, "id", c.ID)
	return nil
}

// createDatabase creates name unless it exists.
func createDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to local postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %q: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	return nil
}
