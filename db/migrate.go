package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/golang-migrate/migrate/v4"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	pgsql "github.com/pgcast/pgcast/sql"
	"github.com/pgcast/pgcast/triggers"
)

// MigrationsTable records the schema version (golang-migrate's format). It is
// prefixed so that it never collides with an application's own
// schema_migrations table in the same database.
const MigrationsTable = "pgcast_schema_migrations"

// Migrator applies the embedded migrations. After every change of version
// that leaves the schema at this binary's version it re-applies the capture
// triggers, so `pgcast migrate up` is also how trigger fixes ship.
type Migrator struct {
	url    string
	db     *sql.DB
	m      *migrate.Migrate
	logger *slog.Logger
}

// NewMigrator opens a dedicated connection to url for migrating.
func NewMigrator(url string, logger *slog.Logger) (*Migrator, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("invalid database URL: %w", err)
	}
	if _, ok := cc.RuntimeParams["application_name"]; !ok {
		cc.RuntimeParams["application_name"] = "pgcast-migrate"
	}
	sqldb := stdlib.OpenDB(*cc)
	drv, err := migratepgx.WithInstance(sqldb, &migratepgx.Config{MigrationsTable: MigrationsTable})
	if err != nil {
		sqldb.Close()
		// WithInstance also creates the migrations table, in the first
		// schema of the search path (public: a role that does not own the
		// database needs CREATE there since PostgreSQL 15).
		return nil, fmt.Errorf("connect to database and prepare %s: %w", MigrationsTable, err)
	}
	src, err := iofs.New(pgsql.FS, ".")
	if err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("open embedded migrations: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", drv)
	if err != nil {
		sqldb.Close()
		return nil, fmt.Errorf("init migrations: %w", err)
	}
	return &Migrator{url: url, db: sqldb, m: m, logger: logger}, nil
}

// Close releases the migrator's connection.
func (mg *Migrator) Close() error {
	srcErr, dbErr := mg.m.Close()
	return errors.Join(srcErr, dbErr)
}

// Up applies all pending migrations, then the triggers. Several nodes may
// call it at once: each waits for the migration lock (as long as ctx
// allows), then finds the schema as the previous holder left it. A schema
// newer than this binary is refused, untouched.
func (mg *Migrator) Up(ctx context.Context) error {
	return mg.locked(ctx, func() error {
		st, err := mg.Status(ctx)
		if err != nil {
			return err
		}
		if st.Current > st.Latest {
			return st.Check()
		}
		if err := mg.m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
			return fmt.Errorf("migrate up: %w", err)
		}
		return mg.applyTriggers(ctx)
	})
}

// Down rolls back n migrations (all of them when n <= 0).
func (mg *Migrator) Down(ctx context.Context, n int) error {
	return mg.locked(ctx, func() error {
		var err error
		if n <= 0 {
			err = mg.m.Down()
		} else {
			err = mg.m.Steps(-n)
		}
		if err != nil && !errors.Is(err, migrate.ErrNoChange) {
			return fmt.Errorf("migrate down: %w", err)
		}
		return mg.applyTriggers(ctx)
	})
}

// Force sets the recorded version without running migrations, clearing the
// dirty flag: the way out after a migration failed halfway and was repaired
// by hand.
func (mg *Migrator) Force(ctx context.Context, version int) error {
	return mg.locked(ctx, func() error {
		if err := mg.m.Force(version); err != nil {
			return fmt.Errorf("migrate force %d: %w", version, err)
		}
		return mg.applyTriggers(ctx)
	})
}

// MigrationLockKey is the session-level advisory lock (in the migrated
// database) held through a whole Up, Down or Force: migrations and the
// trigger installation that follows them. golang-migrate's own lock covers
// the migrations alone, so without this two nodes installing the triggers at
// once fail ("tuple concurrently updated"), and its lock wait gives up after
// 15 s, shorter than a long migration.
const MigrationLockKey int64 = 0x7067636173740001 // "pgcast", 1

// locked runs f holding MigrationLockKey on a connection of its own, waiting
// for it as long as ctx allows.
func (mg *Migrator) locked(ctx context.Context, f func() error) error {
	conn, err := mg.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migration lock: connect: %w", err)
	}
	defer conn.Close()
	var got bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, MigrationLockKey).Scan(&got); err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	if !got {
		mg.logger.Info("another pgcast is migrating this database: waiting for it to finish")
		t0 := time.Now()
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, MigrationLockKey); err != nil {
			return fmt.Errorf("wait for the migration lock: %w", err)
		}
		mg.logger.Info("migration lock acquired", "waited", time.Since(t0).Round(time.Millisecond).String())
	}
	defer func() {
		// Closing the connection would release it too; unlocking first
		// hands it to the next node without waiting for the pool.
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, MigrationLockKey)
	}()
	return f()
}

// applyTriggers (re)installs the capture triggers when, and only when, the
// schema is at this binary's version: they reference its tables.
func (mg *Migrator) applyTriggers(ctx context.Context) error {
	st, err := ReadStatus(ctx, sqlDB{mg.db})
	if err != nil {
		return err
	}
	if st.Dirty || st.Current != st.Latest {
		return nil
	}
	if _, err := mg.db.ExecContext(ctx, triggers.SQL); err != nil {
		return fmt.Errorf("apply triggers: %w", err)
	}
	mg.logger.Debug("triggers applied", "version", st.Current)
	return nil
}

// Status reads the database's schema version through the migrator's connection.
func (mg *Migrator) Status(ctx context.Context) (Status, error) {
	return ReadStatus(ctx, sqlDB{mg.db})
}

// Status describes the database's schema against this binary.
type Status struct {
	Current uint // version recorded in the database; 0 = never migrated
	Dirty   bool // a migration failed halfway
	Latest  uint // version this binary needs
}

// Check returns nil when the schema is at the binary's version and otherwise
// an error telling the user, in one line, what to run.
func (s Status) Check() error {
	switch {
	case s.Dirty:
		return fmt.Errorf("database schema version %d is dirty (a migration failed halfway): repair it, then run `pgcast migrate force VERSION`", s.Current)
	case s.Current < s.Latest:
		return fmt.Errorf("database schema is at version %d but this pgcast needs %d: run `pgcast migrate up` (or start with --migrate)", s.Current, s.Latest)
	case s.Current > s.Latest:
		return fmt.Errorf("database schema is at version %d, newer than this pgcast (%d): upgrade pgcast, or roll back with the newer binary's `pgcast migrate down`", s.Current, s.Latest)
	}
	return nil
}

// Querier is the one method ReadStatus needs; *pgxpool.Pool, *pgx.Conn and
// pgx.Tx satisfy it.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// sqlDB adapts *sql.DB (the migrator's handle) to Querier.
type sqlDB struct{ db *sql.DB }

func (s sqlDB) QueryRow(ctx context.Context, query string, args ...any) pgx.Row {
	return s.db.QueryRowContext(ctx, query, args...)
}

// ReadStatus reads the recorded schema version.
func ReadStatus(ctx context.Context, q Querier) (Status, error) {
	latest, err := pgsql.LatestVersion()
	if err != nil {
		return Status{}, err
	}
	st := Status{Latest: latest}
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, MigrationsTable).Scan(&exists); err != nil {
		return st, fmt.Errorf("read schema version: %w", err)
	}
	if !exists {
		return st, nil
	}
	var v int64
	err = q.QueryRow(ctx, `SELECT version, dirty FROM `+MigrationsTable+` LIMIT 1`).Scan(&v, &st.Dirty)
	if errors.Is(err, sql.ErrNoRows) || errors.Is(err, pgx.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read schema version: %w", err)
	}
	if v > 0 {
		st.Current = uint(v)
	}
	return st, nil
}
