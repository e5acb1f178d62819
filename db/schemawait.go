package db

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// schemaPollInterval is how often WaitForSchema re-reads the schema version
// while it waits for another node to migrate.
const schemaPollInterval = 250 * time.Millisecond

// WaitForSchema returns the schema status once the database is at this
// binary's version. A schema behind (or dirty while another node holds the
// migration lock, i.e. mid-migration) may be another node migrating right
// now: it logs that once and re-reads until the schema is current, for at
// most wait (0: not at all), then returns Status.Check's error. A schema
// ahead of the binary, or dirty with nobody migrating, fails at once.
func WaitForSchema(ctx context.Context, q Querier, wait time.Duration, logger *slog.Logger) (Status, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var deadline <-chan time.Time
	var tick *time.Ticker
	t0 := time.Now()
	for {
		st, err := ReadStatus(ctx, q)
		if err != nil {
			return st, err
		}
		check := st.Check()
		if check == nil {
			if tick != nil {
				logger.Info("database schema is current", "schema_version", st.Current, "waited", time.Since(t0).Round(time.Millisecond).String())
			}
			return st, nil
		}
		if st.Current > st.Latest {
			return st, check
		}
		if st.Dirty {
			migrating, err := migrationLockHeld(ctx, q)
			if err != nil {
				return st, err
			}
			if !migrating {
				// Re-read: the migration may have ended between the two reads.
				if st, err = ReadStatus(ctx, q); err != nil || st.Dirty {
					return st, cmpErr(err, st.Check())
				}
				continue
			}
		}
		if wait <= 0 {
			return st, check
		}
		if tick == nil {
			logger.Warn("database schema is behind this pgcast: waiting for another node to migrate it",
				"schema_version", st.Current, "dirty", st.Dirty, "want", st.Latest, "wait", wait.String(),
				"hint", "start one node with --migrate, or run `pgcast migrate up`")
			deadline = time.After(wait)
			tick = time.NewTicker(schemaPollInterval)
			defer tick.Stop()
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("waiting for the database schema: %w", ctx.Err())
		case <-deadline:
			return st, fmt.Errorf("%w (waited %s for another node to migrate)", check, wait)
		case <-tick.C:
		}
	}
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// migrationLockHeld reports whether some session holds MigrationLockKey in
// the current database. pg_locks shows a bigint advisory key as its high
// and low 32 bits (classid, objid) with objsubid 1.
func migrationLockHeld(ctx context.Context, q Querier) (bool, error) {
	var held bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 1
		  AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))`, MigrationLockKey).Scan(&held)
	if err != nil {
		return false, fmt.Errorf("read the migration lock: %w", err)
	}
	return held, nil
}
