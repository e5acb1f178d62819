package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pruneLockKey is the advisory lock that lets one node at a time prune.
const pruneLockKey = 7428190332

// PrunerConfig configures a Pruner. The zero value, with Pool set, means the
// defaults below.
type PrunerConfig struct {
	// Pool is the database pool. Required.
	Pool *pgxpool.Pool
	// Retention is how long log entries are kept (resume positions older than
	// that get a reset). Default 24 h.
	Retention time.Duration
	// Interval between pruning rounds; it is also the precision of the
	// retention. Default 1 min.
	Interval time.Duration
	// BatchSize is how many entries one DELETE removes, which bounds lock
	// time and WAL per transaction. Default 10000.
	BatchSize int
	// Logger. Default: discard.
	Logger *slog.Logger
}

func (c PrunerConfig) withDefaults() PrunerConfig {
	if c.Retention == 0 {
		c.Retention = 24 * time.Hour
	}
	if c.Interval == 0 {
		c.Interval = time.Minute
	}
	if c.BatchSize == 0 {
		c.BatchSize = 10000
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Pruner deletes log entries older than the retention. Each round it records
// a mark (current last position, now); entries at or below the newest mark
// older than the retention are deleted, in batches, by whichever node holds
// the advisory lock. The log is never scanned by time.
type Pruner struct {
	cfg    PrunerConfig
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// NewPruner validates cfg.
func NewPruner(cfg PrunerConfig) (*Pruner, error) {
	cfg = cfg.withDefaults()
	if cfg.Pool == nil {
		return nil, errors.New("stream: PrunerConfig.Pool is required")
	}
	if cfg.Retention < 0 || cfg.Interval < 0 || cfg.BatchSize < 0 {
		return nil, errors.New("stream: PrunerConfig values must be positive")
	}
	return &Pruner{cfg: cfg}, nil
}

// Start runs rounds every Interval until Stop.
func (p *Pruner) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel != nil {
		return errors.New("stream: pruner already started")
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel, p.done = cancel, make(chan struct{})
	go func() {
		defer close(p.done)
		t := time.NewTicker(p.cfg.Interval)
		defer t.Stop()
		for {
			if _, err := p.Prune(runCtx, time.Now()); err != nil && runCtx.Err() == nil {
				p.cfg.Logger.Warn("prune event log", "err", err)
			}
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return nil
}

// Stop ends the pruner. Idempotent.
func (p *Pruner) Stop(ctx context.Context) error {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stream: stop pruner: %w", ctx.Err())
	}
}

// Prune runs one round as of now and returns how many entries it deleted.
// It does nothing when another node holds the lock.
func (p *Pruner) Prune(ctx context.Context, now time.Time) (int64, error) {
	var deleted int64
	err := pgx.BeginFunc(ctx, p.cfg.Pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, pruneLockKey).Scan(&locked); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if !locked {
			return nil
		}
		// Fold the count shards of backends that have exited into shard 0
		// (see pgcast.object_class_counts). A live backend that reused a
		// pid and is writing its shard makes the DELETE wait and recheck,
		// and then keep the row.
		if _, err := tx.Exec(ctx, `WITH gone AS (
    DELETE FROM pgcast.object_class_counts c
    WHERE c.shard <> 0 AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = c.shard)
    RETURNING c.object_class_id, c.n)
INSERT INTO pgcast.object_class_counts AS cc (object_class_id, shard, n)
SELECT object_class_id, 0, sum(n) FROM gone GROUP BY object_class_id
ON CONFLICT (object_class_id, shard) DO UPDATE SET n = cc.n + EXCLUDED.n`); err != nil {
			return fmt.Errorf("fold count shards: %w", err)
		}
		// Drop the listener rows of readers whose backend is gone (a node
		// that crashed or was killed): a row saying a reader waits makes
		// every capturing commit ring, and a NOTIFY serialises commits.
		// A reader also does this when it connects, but another node's
		// reader may not reconnect for days.
		if _, err := tx.Exec(ctx, `DELETE FROM pgcast.listeners WHERE pid NOT IN (SELECT pid FROM pg_stat_activity)`); err != nil {
			return fmt.Errorf("drop stale listeners: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO pgcast.event_log_marks (position, marked_at)
SELECT coalesce(max(id), 0), $1 FROM pgcast.events ON CONFLICT (position) DO NOTHING`, now); err != nil {
			return fmt.Errorf("mark: %w", err)
		}
		var through *int64
		if err := tx.QueryRow(ctx, `SELECT max(position) FROM pgcast.event_log_marks WHERE marked_at <= $1`, now.Add(-p.cfg.Retention)).Scan(&through); err != nil {
			return fmt.Errorf("find horizon: %w", err)
		}
		if through == nil {
			return nil
		}
		for {
			tag, err := tx.Exec(ctx, `DELETE FROM pgcast.events WHERE id IN (SELECT id FROM pgcast.events WHERE id <= $1 ORDER BY id LIMIT $2)`, *through, p.cfg.BatchSize)
			if err != nil {
				return fmt.Errorf("delete: %w", err)
			}
			deleted += tag.RowsAffected()
			if tag.RowsAffected() < int64(p.cfg.BatchSize) {
				break
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE pgcast.event_log SET pruned_through = greatest(pruned_through, $1)`, *through); err != nil {
			return fmt.Errorf("record horizon: %w", err)
		}
		_, err := tx.Exec(ctx, `DELETE FROM pgcast.event_log_marks WHERE position < $1`, *through)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	if deleted > 0 {
		p.cfg.Logger.Info("pruned event log", "deleted", deleted)
	}
	return deleted, nil
}
