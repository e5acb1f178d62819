package stream

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/pgcast/pgcast/triggers"
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
			if _, err := conn.Exec(closeCtx, `DELETE FROM pgcast.listeners WHERE pid = pg_backend_pid()`); err != nil {
				r.cfg.Logger.Warn("unregister listener", "err", err)
			}
		}
		_ = conn.Close(closeCtx)
	}()
	r.connected.Store(true)
	r.waiting = false
	var (
		started time.Time
		self    backend
	)
	if err := r.queryRow(ctx, conn, `SELECT pg_postmaster_start_time(), pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()`).Scan(&started, &self.pid, &self.start); err != nil {
		return fmt.Errorf("read server start time: %w", err)
	}
	if r.backend.pid != 0 && started.Equal(r.serverStart) {
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
		var text string
		if err := r.queryRow(ctx, conn, `SELECT pg_current_snapshot()::text, coalesce((SELECT max(id) FROM pgcast.events), 0)`).Scan(&text, &r.maxPos); err != nil {
			return fmt.Errorf("take starting snapshot: %w", err)
		}
		sn, err := parseSnapshot(text)
		if err != nil {
			return err
		}
		r.prev = &sn
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
				if err := sleepCtx(ctx, r.cfg.DrainInterval); err != nil {
					return err
				}
			}
			continue
		}
		if !r.cfg.PollOnly && !r.waiting {
			// Say we are waiting, then read once more: a writer that
			// committed before it could see the flag is caught by that read.
			if err := r.exec(ctx, conn, `UPDATE pgcast.listeners SET waiting = true, updated_at = now() WHERE pid = pg_backend_pid()`); err != nil {
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
		if err := r.wait(ctx, conn, timeout); err != nil {
			return err
		}
	}
}

// backend identifies a Postgres backend: its pid, and its start to tell it
// from a later backend given the same pid.
type backend struct {
	pid   int32
	start time.Time
}

// retire ends the backend of the reader's previous connection if it is
// still there, and drops its listeners row. A connection given up because it
// went silent (a dead network path: no RST reached either side) leaves its
// backend alive until the server's TCP gives up, minutes or hours later:
// meanwhile its row would say a reader waits, and every writer's commit
// would ring a doorbell no one hears (a NOTIFY serialises commits). Failing
// to retire it (no permission to signal it) costs only that, so it is
// logged, not fatal.
func (r *Reader) retire(ctx context.Context, conn *pgx.Conn, old backend) {
	var ended bool
	err := r.queryRow(ctx, conn, `SELECT coalesce(bool_or(pg_terminate_backend(pid)), false)
FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2`, old.pid, old.start).Scan(&ended)
	if err == nil {
		err = r.exec(ctx, conn, `DELETE FROM pgcast.listeners WHERE pid = $1`, old.pid)
	}
	switch {
	case err != nil:
		r.cfg.Logger.Warn("could not retire the previous reader backend", "pid", old.pid, "err", err)
	case ended:
		r.cfg.Logger.Info("ended the previous reader backend, still running after its connection was given up", "pid", old.pid)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// connect opens the dedicated connection, registers it as a listener and
// LISTENs before any catch-up read.
func (r *Reader) connect(ctx context.Context) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(r.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parse reader URL: %w", err)
	}
	cc.RuntimeParams["application_name"] = "pgcast-reader"
	// Flipping the unlogged waiting flag needs no durable commit.
	cc.RuntimeParams["synchronous_commit"] = "off"
	// Plan the delta from the xid index also before the log has
	// statistics (a fresh or fast-growing log, before autovacuum's
	// ANALYZE): without them every range looks like a third of the table,
	// and the planner reads it all
	// by a sequential scan, or in parallel, paying a worker launch (~5 ms)
	// on every read. With sequential scans priced out, the only way left is
	// the bitmap of the index ranges, which costs what the delta holds.
	cc.RuntimeParams["enable_seqscan"] = "off"
	cc.RuntimeParams["max_parallel_workers_per_gather"] = "0"
	// Those estimates can also cross jit_above_cost, and compiling the
	// delta costs 10 to 200 ms, each read, for what runs in microseconds.
	cc.RuntimeParams["jit"] = "off"
	// With the choices above the delta's plan is the same for any
	// parameters, so plan its first page once per connection, not per read
	// (planning cost as much as running it).
	cc.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	// A listening backend reads the NOTIFY queue only outside a transaction:
	// one left idle in a transaction holds the cluster's queue tail, and
	// once the queue is full every NOTIFY (every writer's commit that rings)
	// fails. The reader never leaves one open: a read is one pipelined
	// batch ending in COMMIT, and a read larger than a page (readLarge)
	// reads its pages in statements of their own; any failure closes the
	// connection. As a guard against a bug, the server ends the session
	// after idleInTransactionTimeout idle in a transaction
	// (the reader then reconnects and resumes where it stopped, losing
	// nothing): far above any legitimate gap, which is milliseconds.
	cc.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(idleInTransactionTimeout.Milliseconds(), 10)
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = r.cfg.QueryTimeout
	}
	// Interrupt waits by deadline, never by a cancel request: a cancel
	// request opens a new connection each time, and leaves a listening
	// connection usable no better.
	cc.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.QueryTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect reader: %w", err)
	}
	setup := `LISTEN ` + triggers.NotifyChannel
	if !r.cfg.PollOnly {
		setup = `DELETE FROM pgcast.listeners WHERE pid NOT IN (SELECT pid FROM pg_stat_activity);
INSERT INTO pgcast.listeners (pid) VALUES (pg_backend_pid()) ON CONFLICT (pid) DO UPDATE SET waiting = false, updated_at = now();
` + setup
	}
	if _, err := conn.Exec(cctx, setup); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("listen: %w", err)
	}
	return conn, nil
}

// idleInTransactionTimeout is the reader connection's
// idle_in_transaction_session_timeout (see connect).
const idleInTransactionTimeout = time.Minute

// wait blocks until a doorbell, the idle timeout, or ctx.
func (r *Reader) wait(ctx context.Context, conn *pgx.Conn, idle time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, idle)
	_, err := conn.WaitForNotification(wctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if wctx.Err() == nil || conn.IsClosed() {
			return fmt.Errorf("wait for notification: %w", err)
		}
	}
	// Several doorbells may have queued up: one read answers them all.
	done, cancelDone := context.WithCancel(ctx)
	cancelDone()
	for {
		if n, _ := conn.WaitForNotification(done); n == nil {
			return nil
		}
	}
}

// Statements are bounded by timeout() but never cut by Stop: cancelling a
// statement mid-flight makes pgx close the connection, and a clean stop
// wants to unregister on it. Stop is honoured between statements.

func (r *Reader) exec(ctx context.Context, conn *pgx.Conn, sql string, args ...any) error {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout())
	defer cancel()
	_, err := conn.Exec(qctx, sql, args...)
	return err
}

type timedRow struct {
	row    pgx.Row
	cancel context.CancelFunc
}

func (t timedRow) Scan(dest ...any) error { defer t.cancel(); return t.row.Scan(dest...) }

func (r *Reader) queryRow(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, sql string, args ...any) pgx.Row {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout())
	return timedRow{row: q.QueryRow(qctx, sql, args...), cancel: cancel}
}
