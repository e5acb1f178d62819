package stream

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/startstop"
)

// session runs one connection until it fails or ctx ends.
func (r *Reader) session(ctx context.Context, first chan<- error) (err error) {
	conn, err := r.connect(ctx)
	if err != nil {
		return err
	}
	defer func() { r.stretch(err) }()
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if !r.cfg.PollOnly && ctx.Err() != nil {
			if err := conn.Unregister(closeCtx); err != nil {
				r.cfg.Logger.Warn("unregister listener", "err", err)
			}
		}
		_ = conn.Close(closeCtx)
	}()
	r.connected.Store(true)
	r.waiting = false
	qctx, cancel := r.bounded(ctx)
	started, self, err := conn.Identify(qctx)
	cancel()
	if err != nil {
		return fmt.Errorf("read server start time: %w", err)
	}
	if r.backend.PID != 0 && started.Equal(r.serverStart) {
		r.retire(ctx, conn, r.backend)
	}
	r.backend = self
	if r.prev != nil && !started.Equal(r.serverStart) {
		// A crashed (or failed-over) server hands out again the transaction
		// ids that never reached durable storage, so a transaction after the
		// restart may carry an id the previous snapshot calls finished. The
		// next read also takes every entry after the highest position handed
		// over: entries of durable transactions all lie below it or are
		// caught by the snapshot; entries written after the restart lie
		// above it.
		r.afterRestart = max(r.maxPos, 1)
		r.cfg.Logger.Warn("database restarted since the last read; the next read also takes every entry above the last position", "position", r.maxPos)
	}
	r.serverStart = started
	if r.prev == nil {
		// The highest position at start stands in for "handed over" until
		// something is: see afterRestart.
		// The counts as of the starting snapshot are read with it: the
		// checkpoint and the log after it (see counts.go).
		qctx, cancel := r.bounded(ctx)
		sp, err := conn.StartingPoint(qctx)
		cancel()
		if err != nil {
			return fmt.Errorf("take starting snapshot: %w", err)
		}
		r.maxPos = sp.MaxPos
		sn, err := parseSnapshot(sp.Snapshot)
		if err != nil {
			return err
		}
		r.prev, r.counts = &sn, sp.Counts
		r.progressed()
		if first != nil {
			first <- nil
		}
	}
	idle := min(r.cfg.PollInterval, r.cfg.PingInterval)
	// suspects are transactions that were running when the reader said it
	// waits: they may have looked at the flag before it was set and will
	// commit without ringing. Until they end, the reader waits only briefly
	// (1 ms, doubling), so a missed doorbell costs milliseconds, not a poll
	// interval.
	var suspects []uint64
	fresh := false
	var backoff time.Duration
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := r.readDelta(ctx, conn)
		if err != nil {
			return err
		}
		if n > 0 && (r.busy || r.cfg.PollOnly) {
			if r.cfg.DrainInterval > 0 && !r.cfg.PollOnly {
				if err := startstop.Sleep(ctx, r.cfg.DrainInterval); err != nil {
					return err
				}
			}
			continue
		}
		if !r.cfg.PollOnly && !r.waiting {
			// Say we are waiting, then read once more: a writer that
			// committed before it could see the flag is caught by that read.
			qctx, cancel := r.bounded(ctx)
			err := conn.SetWaiting(qctx)
			cancel()
			if err != nil {
				return fmt.Errorf("set waiting: %w", err)
			}
			r.waiting, fresh = true, true
			continue
		}
		timeout := idle
		if !r.cfg.PollOnly {
			if fresh {
				suspects, fresh, backoff = append(suspects[:0], r.prev.xip...), false, time.Millisecond
			} else {
				suspects = slices.DeleteFunc(suspects, func(x uint64) bool { return !r.prev.running(x) })
			}
			if len(suspects) > 0 {
				timeout, backoff = min(backoff, idle), 2*backoff
			}
		}
		if err := conn.Wait(ctx, timeout); err != nil {
			return err
		}
	}
}

// retire ends the backend of the reader's previous connection if it is
// still there, and drops its listeners row. A connection given up because it
// went silent (a dead network path: no RST reached either side) leaves its
// backend alive until the server's TCP gives up, minutes or hours later:
// meanwhile its row would say a reader waits, and every writer's commit
// would ring a doorbell no one hears (a NOTIFY serialises commits). Failing
// to retire it (no permission to signal it) costs only that, so it is
// logged, not fatal.
func (r *Reader) retire(ctx context.Context, conn *db.ListenConn, old db.Backend) {
	qctx, cancel := r.bounded(ctx)
	ended, err := conn.Terminate(qctx, old)
	cancel()
	if err == nil {
		qctx, cancel := r.bounded(ctx)
		err = conn.DropListener(qctx, old.PID)
		cancel()
	}
	switch {
	case err != nil:
		r.cfg.Logger.Warn("could not retire the previous reader backend", "pid", old.PID, "err", err)
	case ended:
		r.cfg.Logger.Info("ended the previous reader backend, still running after its connection was given up", "pid", old.PID)
	}
}

// connect opens the dedicated connection, registers it as a listener
// (unless PollOnly) and LISTENs before any catch-up read (see db.Listen).
func (r *Reader) connect(ctx context.Context) (*db.ListenConn, error) {
	return db.Listen(ctx, db.ListenConfig{URL: r.cfg.URL, Register: !r.cfg.PollOnly, Timeout: r.cfg.QueryTimeout})
}

// bounded is the context of one statement: bounded by timeout() but never
// cut by Stop, since cancelling a statement mid-flight closes the
// connection, and a clean stop wants to unregister on it. Stop is honoured
// between statements.
func (r *Reader) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), r.timeout())
}
