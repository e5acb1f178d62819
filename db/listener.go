package db

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/pgcast/pgcast/triggers"
)

// The reader's dedicated connection: not a pooled one, since it LISTENs,
// with session settings of its own (see Listen), and a row in
// pgcast.listeners whose waiting flag tells writers whether to ring the
// doorbell (a NOTIFY without data on triggers.NotifyChannel).
//
// Every method runs its statements under the ctx it is given and nothing
// else: the caller bounds them (package stream stretches its bound after
// timeouts) and decides when a failure ends the connection.

// ListenConfig configures Listen.
type ListenConfig struct {
	// URL of the database. Required.
	URL string
	// Register keeps a row for the connection in pgcast.listeners (writers
	// ring only while it says waiting); false for a reader that only polls.
	Register bool
	// Timeout bounds connecting and the setup statement; it is also the
	// connect timeout unless the URL sets one. Required (> 0).
	Timeout time.Duration
}

// ListenConn is the reader's dedicated, listening connection.
type ListenConn struct {
	conn *pgx.Conn
}

// CheckURL reports whether url is a connection string Listen can use
// (the error is pgx's, which redacts the password).
func CheckURL(url string) error {
	_, err := pgx.ParseConfig(url)
	return err
}

// Listen opens the dedicated connection, registers it as a listener (when
// cfg.Register) and LISTENs, in one statement, before any catch-up read.
// It ignores ctx's cancellation (a statement cut mid-flight closes the
// connection) but not its values.
func Listen(ctx context.Context, cfg ListenConfig) (*ListenConn, error) {
	cc, err := pgx.ParseConfig(cfg.URL)
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
	// batch ending in COMMIT (ReadDelta, DeltaBounds), and a read larger
	// than a page reads its pages in statements of their own (ReadPage);
	// any failure closes the connection. As a guard against a bug, the
	// server ends the session after idleInTransactionTimeout idle in a
	// transaction (the reader then reconnects and resumes where it stopped,
	// losing nothing): far above any legitimate gap, which is milliseconds.
	cc.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(idleInTransactionTimeout.Milliseconds(), 10)
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = cfg.Timeout
	}
	// Interrupt waits by deadline, never by a cancel request: a cancel
	// request opens a new connection each time, and leaves a listening
	// connection usable no better.
	cc.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Timeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connect reader: %w", err)
	}
	setup := `LISTEN ` + triggers.NotifyChannel
	if cfg.Register {
		setup = `DELETE FROM pgcast.listeners WHERE pid NOT IN (SELECT pid FROM pg_stat_activity);
INSERT INTO pgcast.listeners (pid) VALUES (pg_backend_pid()) ON CONFLICT (pid) DO UPDATE SET waiting = false, updated_at = now();
` + setup
	}
	if _, err := conn.Exec(cctx, setup); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("listen: %w", err)
	}
	return &ListenConn{conn: conn}, nil
}

// idleInTransactionTimeout is the reader connection's
// idle_in_transaction_session_timeout (see Listen).
const idleInTransactionTimeout = time.Minute

// Close closes the connection.
func (c *ListenConn) Close(ctx context.Context) error { return c.conn.Close(ctx) }

// Unregister drops the connection's row in pgcast.listeners: a clean stop,
// after which writers stop ringing for it.
func (c *ListenConn) Unregister(ctx context.Context) error {
	_, err := c.conn.Exec(ctx, `DELETE FROM pgcast.listeners WHERE pid = pg_backend_pid()`)
	return err
}

// Backend identifies a Postgres backend: its pid, and its start to tell it
// from a later backend given the same pid.
type Backend struct {
	PID   int32
	Start time.Time
}

// Identify returns when the server started (pg_postmaster_start_time: a
// restart or failover changes it) and the connection's own backend.
func (c *ListenConn) Identify(ctx context.Context) (serverStart time.Time, self Backend, err error) {
	err = c.conn.QueryRow(ctx, `SELECT pg_postmaster_start_time(), pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()`).
		Scan(&serverStart, &self.PID, &self.Start)
	return serverStart, self, err
}

// Terminate ends backend b if it is still there (same pid, same start) and
// reports whether it did.
func (c *ListenConn) Terminate(ctx context.Context, b Backend) (ended bool, err error) {
	err = c.conn.QueryRow(ctx, `SELECT coalesce(bool_or(pg_terminate_backend(pid)), false)
FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2`, b.PID, b.Start).Scan(&ended)
	return ended, err
}

// DropListener drops the pgcast.listeners row of backend pid.
func (c *ListenConn) DropListener(ctx context.Context, pid int32) error {
	_, err := c.conn.Exec(ctx, `DELETE FROM pgcast.listeners WHERE pid = $1`, pid)
	return err
}

// SetWaiting says, in the connection's listeners row, that the reader waits
// for the doorbell: writers ring from their next commit on. (ReadDelta
// clears it.)
func (c *ListenConn) SetWaiting(ctx context.Context) error {
	_, err := c.conn.Exec(ctx, `UPDATE pgcast.listeners SET waiting = true, updated_at = now() WHERE pid = pg_backend_pid()`)
	return err
}

// Wait blocks until a doorbell, idle, or ctx. A doorbell or idle returns
// nil; a failed connection returns its error, ctx's end ctx.Err().
func (c *ListenConn) Wait(ctx context.Context, idle time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, idle)
	_, err := c.conn.WaitForNotification(wctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if wctx.Err() == nil || c.conn.IsClosed() {
			return fmt.Errorf("wait for notification: %w", err)
		}
	}
	// Several doorbells may have queued up: one read answers them all.
	done, cancelDone := context.WithCancel(ctx)
	cancelDone()
	for {
		if n, _ := c.conn.WaitForNotification(done); n == nil {
			return nil
		}
	}
}
