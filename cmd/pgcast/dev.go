package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/collections"
	"github.com/pgcast/pgcast/internal/pgcluster"
	"github.com/pgcast/pgcast/server/auth"
)

// devDatabase is the database `pgcast dev` creates in its private cluster.
const devDatabase = "pgcast"

// devJWTSecret is the JWT secret `pgcast dev` uses when none is set, so that
// a fresh `make run` works out of the box. It is public: dev only.
const devJWTSecret = "pgcast-development-secret-not-for-production"

// defaultDevDir is --dir's default, relative to the working directory.
const defaultDevDir = ".pgcast"

func (a *app) devCmd() *cobra.Command {
	o := &serveOptions{}
	var pgBin, dir string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Serve against DATABASE_URL, or a private Postgres cluster kept in ./.pgcast (what `make run` calls)",
		Long: `The newcomer path. With DATABASE_URL (or --database-url) set, dev migrates that
database and serves. Otherwise it starts a private PostgreSQL cluster from the
locally installed Postgres binaries (found on PATH, in the usual Debian and
Homebrew locations, or at --pg-bin), migrates it, serves, and stops the
cluster on exit. The cluster's data is kept between runs, and so is its port
while it is free, so its URL stays the same. Either way it seeds, unless they
exist, a "posts" collection and a table public.orders with three rows, watched
as "orders" (read: authenticated).

The cluster lives in --dir (default ./.pgcast, in the working directory: the
clone, for make run). Postgres refuses to run as root: when pgcast runs as
root the cluster runs as the system user "postgres", and lives in
/var/tmp/pgcast-dev-<hash of --dir>, where that user can reach it whatever
the permissions of the clone's parents; --dir then holds only dev.json.

dev records the database URL in --dir/dev.json. Without DATABASE_URL, the
other commands (migrate, collections, watch, token) run in that directory or below
use it, and pgcast token mints with the development JWT secret dev serves
with; each says so on stderr.`,
		Example: "  pgcast dev\n  pgcast dev --pg-bin /usr/lib/postgresql/16/bin --addr :8081",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			o.migrate = true
			o.seed = a.seedDev
			o.devTokens = true
			devSecret := o.auth.secret == ""
			if devSecret {
				o.auth.secret = devJWTSecret
			}
			if a.databaseURL != "" {
				if devSecret {
					a.logger.Warn("no --jwt-secret: using the public development secret (never use it in production); mint tokens with `pgcast token --jwt-secret " + devJWTSecret + "`")
				}
				return a.serve(ctx, a.databaseURL, o)
			}
			if devSecret {
				a.logger.Warn("no --jwt-secret: using the public development secret (never use it in production); `pgcast token --sub u1` run here mints tokens with it")
			}
			return a.serveDevCluster(ctx, o, dir, pgBin, devSecret)
		},
	}
	o.addFlags(cmd.Flags())
	// No load balancer watches a development server's readiness: Ctrl-C
	// should not wait out serve's grace.
	_ = cmd.Flags().Set("shutdown-grace", "0")
	cmd.Flags().Lookup("shutdown-grace").DefValue = "0s"
	cmd.Flags().StringVar(&pgBin, "pg-bin", "", "directory holding the Postgres binaries (initdb, postgres); default: searched")
	cmd.Flags().StringVar(&dir, "dir", defaultDevDir, "directory for the private cluster (as root: for dev.json only; the cluster lives in /var/tmp/pgcast-dev-<hash of dir>)")
	return cmd
}

// serveDevCluster starts (or reuses) the dev cluster of dir, records it in
// dir/dev.json and serves against it until the first signal.
func (a *app) serveDevCluster(ctx context.Context, o *serveOptions, dir, pgBin string, devSecret bool) error {
	dir, err := a.absDir(dir)
	if err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	clusterDir, err := devClusterDir(dir)
	if err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		a.logger.Info("running as root: the dev cluster runs as user postgres, in a directory it can reach", "cluster_dir", clusterDir)
	}
	prev, _ := readDevState(dir)
	cluster, err := pgcluster.Start(ctx, pgcluster.Config{
		Dir:           clusterDir,
		BinDir:        pgBin,
		PreferredPort: prev.Port,
		Logger:        a.logger,
	})
	if err != nil {
		if errors.Is(err, pgcluster.ErrNoBinaries) {
			return pgcluster.ErrNoBinaries
		}
		return fmt.Errorf("start local postgres (--dir %s): %w", dir, err)
	}
	defer func() {
		if err := cluster.Stop(context.WithoutCancel(ctx)); err != nil {
			a.logger.Error("stop local postgres", "err", err)
		}
	}()
	if err := createDatabase(ctx, cluster.DSN("postgres"), devDatabase); err != nil {
		return err
	}
	st := devState{URL: cluster.DSN(devDatabase), Port: cluster.Port(), ClusterDir: clusterDir, PID: os.Getpid(), DevJWTSecret: devSecret}
	if err := writeDevState(dir, st); err != nil {
		return err
	}
	defer func() {
		st.PID = 0
		if err := writeDevState(dir, st); err != nil {
			a.logger.Error("record that pgcast dev stopped", "err", err)
		}
	}()
	hint := "pgcast commands run in " + filepath.Dir(dir) + " or below use this database when DATABASE_URL is unset"
	if filepath.Base(dir) != defaultDevDir {
		hint = "pgcast commands run with PGCAST_DIR=" + dir + " use this database when DATABASE_URL is unset"
	}
	a.logger.Info("local postgres started", "url", st.URL, "cluster_dir", clusterDir, "state", filepath.Join(dir, devStateFile), "hint", hint)
	return a.serve(ctx, st.URL, o)
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
// that name exists (which is then left exactly as it is), and the watched
// sample table (seedDevOrders).
func (a *app) seedDev(ctx context.Context, pool *pgxpool.Pool) error {
	c, err := db.CreateCollection(ctx, pool, 1, devCollection())
	switch {
	case errors.Is(err, db.ErrCollectionExists):
	case err != nil:
		return fmt.Errorf("seed the posts collection: %w", err)
	default:
		a.logger.Info("seeded collection", "name", c.Name, "id", c.ID)
	}
	return a.seedDevOrders(ctx, pool)
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

// devTokenMinter mints the console's development tokens (an admin of
// environment 1, for an hour) when on, as `pgcast dev` serves: its secret is
// the development one unless --jwt-secret says otherwise.
func devTokenMinter(on bool, authn *auth.Authenticator) func() (string, error) {
	if !on || authn == nil {
		return nil
	}
	return func() (string, error) { return authn.Mint("dev", auth.RoleAdmin, 1, time.Hour) }
}
