package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// pruneLockKey is the advisory lock that lets one node at a time prune.
const pruneLockKey = 7428190332

// PruneOptions describes one pruning round.
type PruneOptions struct {
	// Now is the round's time: the mark it records, and the origin of the
	// retention.
	Now time.Time
	// Retention is how long entries are kept.
	Retention time.Duration
	// BatchSize is how many entries one DELETE removes (> 0).
	BatchSize int
}

// Prune runs one pruning round in one transaction, unless another node
// holds the pruning lock (then it does nothing): it advances the count
// checkpoint to now (see counts.go), drops the listener rows of gone
// readers, records a mark (the log's last position, o.Now) and deletes, in
// batches, the entries at or below the newest mark older than the
// retention that the checkpoint counts in (so pruning never removes an
// entry a checkpoint still needs: those of transactions its snapshot did
// not see stay until a later checkpoint sees them), recording that horizon
// in pgcast.event_log.pruned_through. The log is never scanned by time. It
// returns how many entries it deleted.
//
// The checkpoint and the deletes commit together: a reader's snapshot sees
// both or neither, so the checkpoint it starts from always has the entries
// after it.
func Prune(ctx context.Context, pool *Pool, o PruneOptions) (int64, error) {
	var deleted int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, pruneLockKey).Scan(&locked); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if !locked {
			return nil
		}
		if err := advanceCheckpoint(ctx, tx, o.Now); err != nil {
			return err
		}
		// Drop the listener rows of readers whose backend is gone (a node
		// that crashed or was killed): a row saying a reader waits makes
		// every capturing commit ring, and a NOTIFY serialises commits.
		// A reader also does this when it connects (Listen), but another
		// node's reader may not reconnect for days.
		if _, err := tx.Exec(ctx, `DELETE FROM pgcast.listeners WHERE pid NOT IN (SELECT pid FROM pg_stat_activity)`); err != nil {
			return fmt.Errorf("drop stale listeners: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO pgcast.event_log_marks (position, marked_at)
SELECT coalesce(max(id), 0), $1 FROM pgcast.events ON CONFLICT (position) DO NOTHING`, o.Now); err != nil {
			return fmt.Errorf("mark: %w", err)
		}
		var through *int64
		if err := tx.QueryRow(ctx, `SELECT max(position) FROM pgcast.event_log_marks WHERE marked_at <= $1`, o.Now.Add(-o.Retention)).Scan(&through); err != nil {
			return fmt.Errorf("find horizon: %w", err)
		}
		if through == nil {
			return nil
		}
		for {
			tag, err := tx.Exec(ctx, `DELETE FROM pgcast.events WHERE id IN (
  SELECT id FROM pgcast.events
  WHERE id <= $1 AND pg_visible_in_snapshot(xid, (SELECT snapshot FROM pgcast.count_checkpoint))
  ORDER BY id LIMIT $2)`, *through, o.BatchSize)
			if err != nil {
				return fmt.Errorf("delete: %w", err)
			}
			deleted += tag.RowsAffected()
			if tag.RowsAffected() < int64(o.BatchSize) {
				break
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE pgcast.event_log SET pruned_through = greatest(pruned_through, $1)`, *through); err != nil {
			return fmt.Errorf("record horizon: %w", err)
		}
		_, err := tx.Exec(ctx, `DELETE FROM pgcast.event_log_marks WHERE position < $1`, *through)
		return err
	})
	return deleted, err
}
