package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/startstop"
)

// PrunerConfig configures a Pruner. The zero value, with Pool set, means the
// defaults below.
type PrunerConfig struct {
	// Pool is the database pool. Required.
	Pool *db.Pool
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
// the advisory lock. The log is never scanned by time. The same round, under
// the same lock, advances the record counts' checkpoint to the round's
// snapshot, and deletes only entries that checkpoint counts in, so that a
// reader starting later finds every entry it needs after the checkpoint (see
// db.Prune and docs/design.md, "Counts").
type Pruner struct {
	startstop.Base // Start once, Stop, Started, Stopped
	cfg            PrunerConfig
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
	p := &Pruner{cfg: cfg}
	p.Name = "stream: pruner"
	return p, nil
}

// Start runs rounds every Interval until Stop.
func (p *Pruner) Start(ctx context.Context) error {
	runCtx, started, stopped, err := p.StartInit(ctx)
	if err != nil {
		return err
	}
	go func() {
		defer stopped()
		started()
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

// Prune runs one round as of now and returns how many entries it deleted.
// It does nothing when another node holds the lock.
func (p *Pruner) Prune(ctx context.Context, now time.Time) (int64, error) {
	deleted, err := db.Prune(ctx, p.cfg.Pool, db.PruneOptions{Now: now, Retention: p.cfg.Retention, BatchSize: p.cfg.BatchSize})
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	if deleted > 0 {
		p.cfg.Logger.Info("pruned event log", "deleted", deleted)
	}
	return deleted, nil
}
