package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/triggers"
)

// ReaderConfig configures a Reader. The zero value, with URL and Handler set,
// means the defaults below.
type ReaderConfig struct {
	// URL of the database. The Reader opens its own dedicated connection (not
	// a pooled one): point it past poolers in transaction mode, which break
	// LISTEN. Required.
	URL string
	// Handler receives every new event, in log-position order, a page at a
	// time, from the reader's goroutine. It must not block (hand off to
	// bounded queues) and must not modify the events. Required.
	Handler func([]*Event)
	// PollInterval is how long the reader waits for a doorbell before reading
	// anyway: a lost NOTIFY costs at most this much latency, never data.
	// Default 1 s.
	PollInterval time.Duration
	// PollOnly disables the doorbell: writers never NOTIFY and the reader
	// reads every PollInterval. Default false.
	PollOnly bool
	// DoorbellMaxRate is the commit rate, in transactions per second that
	// the reader sees in the log, above which the reader stops waiting for
	// the doorbell and reads every DrainInterval instead, so that writers
	// find no waiting reader and stop ringing: a NOTIFY takes a cluster-wide
	// lock held through the commit flush, and at high rates commits queue on
	// it. Below two thirds of it the reader waits for the doorbell again,
	// and every commit wakes it: the latency of a NOTIFY and one read. The
	// default, 1500, keeps a read per commit to at most about 1.5 times the
	// reads of draining every millisecond. Negative: never wait for the
	// doorbell while the log is busy.
	DoorbellMaxRate int
	// DrainInterval is the pause between reads while the log is busy (see
	// DoorbellMaxRate): it bounds the latency added under load. An empty
	// read always sends the reader back to the doorbell. Default 1 ms;
	// negative: read again at once.
	DrainInterval time.Duration
	// PingInterval bounds how long an idle connection goes unchecked. Default
	// 5 s (the poll read doubles as the ping when PollInterval is shorter).
	// The ping is a read, bounded by QueryTimeout: a connection gone silent
	// (no RST, no FIN) is replaced within min(PollInterval, PingInterval) +
	// QueryTimeout, without relying on TCP timeouts. It is also how often
	// the reader samples the NOTIFY queue's usage (pgcast_notify_queue_usage),
	// on a read it makes anyway.
	PingInterval time.Duration
	// QueryTimeout bounds every statement; a connection that stays silent
	// this long is considered dead and replaced. Default 5 s.
	QueryTimeout time.Duration
	// PageSize is how many entries are fetched and handed over at once, which
	// bounds the reader's memory under a statement of a million rows.
	// Default 1000.
	PageSize int
	// ReconnectMin and ReconnectMax bound the exponential backoff, with full
	// jitter, between connection attempts. Defaults 100 ms and 5 s.
	ReconnectMin, ReconnectMax time.Duration
	// Logger. Default: discard.
	Logger *slog.Logger
	// Registerer receives the reader's metrics. Default: none.
	Registerer prometheus.Registerer
}

func (c ReaderConfig) withDefaults() ReaderConfig {
	if c.DrainInterval == 0 {
		c.DrainInterval = time.Millisecond
	}
	if c.DoorbellMaxRate == 0 {
		c.DoorbellMaxRate = 1500
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.PingInterval == 0 {
		c.PingInterval = 5 * time.Second
	}
	if c.QueryTimeout == 0 {
		c.QueryTimeout = 5 * time.Second
	}
	if c.PageSize == 0 {
		c.PageSize = 1000
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = 100 * time.Millisecond
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c ReaderConfig) validate() error {
	switch {
	case c.URL == "":
		return errors.New("stream: ReaderConfig.URL is required")
	case c.Handler == nil:
		return errors.New("stream: ReaderConfig.Handler is required")
	case c.PollInterval < 0 || c.PingInterval < 0 || c.QueryTimeout < 0:
		return errors.New("stream: ReaderConfig intervals must be positive")
	case c.PageSize < 0:
		return errors.New("stream: ReaderConfig.PageSize must be positive")
	case c.ReconnectMin > c.ReconnectMax:
		return errors.New("stream: ReaderConfig.ReconnectMin exceeds ReconnectMax")
	}
	if _, err := pgx.ParseConfig(c.URL); err != nil {
		return fmt.Errorf("stream: ReaderConfig.URL: %w", err)
	}
	return nil
}

// Reader reads new entries of the event log in commit-safe order (see the
// package documentation), decodes each once and hands them to the Handler.
type Reader struct {
	cfg     ReaderConfig
	metrics readerMetrics

	// Owned by the run goroutine.
	prev     *snapshot // snapshot of the last completed read
	partials []partial // reads interrupted since, whose delivered entries must not repeat
	waiting  bool      // our listeners row says waiting
	// backend is the current (or last) connection's backend, retired when
	// the next connection starts (see retire).
	backend backend
	// serverStart identifies the Postgres instance prev was taken on
	// (pg_postmaster_start_time). maxPos is the highest position handed
	// over. afterRestart, when non-zero, is maxPos at the moment a restart
	// was noticed (see readDelta).
	serverStart  time.Time
	maxPos       int64
	afterRestart int64
	// busy: the commit rate is above DoorbellMaxRate (see observe), over
	// windows starting at windowStart.
	busy        bool
	windowStart time.Time
	windowTxs   int
	// recent are the classes of the count events of the last read that had
	// any, whose counts the next read fetches up front; next collects them
	// during a read (at most maxRecentClasses).
	recent, next []int64
	// usageAt is when a read last sampled the NOTIFY queue's usage into
	// usage (see readDelta).
	usageAt time.Time
	usage   float64

	position  atomic.Int64 // last delivered position
	connected atomic.Bool
	lastRead  atomic.Int64 // unix nanos of the last successful read

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// partial records a read that failed after handing over entries up to lastID.
type partial struct {
	snap   snapshot
	lastID int64
}

// NewReader validates cfg.
func NewReader(cfg ReaderConfig) (*Reader, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Reader{cfg: cfg, metrics: newReaderMetrics(), busy: cfg.DoorbellMaxRate < 0}
	if cfg.Registerer != nil {
		if err := r.metrics.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("stream: register reader metrics: %w", err)
		}
	}
	return r, nil
}

// Start connects, takes the starting snapshot and returns: every entry
// committed after Start returns is delivered. It keeps retrying the first
// connection until ctx ends. The reader then runs until Stop.
func (r *Reader) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return errors.New("stream: reader already started")
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	first := make(chan error, 1)
	r.cancel, r.done, r.started = cancel, make(chan struct{}), true
	go r.run(runCtx, first)
	select {
	case err := <-first:
		if err != nil {
			cancel()
			<-r.done
			return err
		}
		return nil
	case <-ctx.Done():
		cancel()
		<-r.done
		return fmt.Errorf("stream: start reader: %w", ctx.Err())
	}
}

// Stop ends the reader and waits for it (or for ctx). Idempotent.
func (r *Reader) Stop(ctx context.Context) error {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stream: stop reader: %w", ctx.Err())
	}
}

// Ready reports whether the reader is connected and has read recently.
func (r *Reader) Ready() error {
	if !r.connected.Load() {
		return errors.New("reader not connected")
	}
	last := time.Unix(0, r.lastRead.Load())
	limit := 3*max(r.cfg.PollInterval, r.cfg.PingInterval) + r.cfg.QueryTimeout
	if age := time.Since(last); age > limit {
		return fmt.Errorf("reader has not read for %s", age.Round(time.Millisecond))
	}
	return nil
}

// Position is the log position of the last event handed to the Handler.
func (r *Reader) Position() int64 { return r.position.Load() }

func (r *Reader) run(ctx context.Context, first chan<- error) {
	defer close(r.done)
	attempt := 0
	for {
		err := r.session(ctx, first)
		r.connected.Store(false)
		if ctx.Err() != nil {
			return
		}
		if first != nil && r.prev != nil {
			first = nil
		}
		r.metrics.reconnects.Inc()
		wait := backoff(attempt, r.cfg.ReconnectMin, r.cfg.ReconnectMax)
		attempt++
		if r.prev != nil && r.lastRead.Load() > 0 && time.Since(time.Unix(0, r.lastRead.Load())) < wait {
			attempt = 1 // it worked until just now: come back quickly
		}
		r.cfg.Logger.Warn("reader connection lost; reconnecting", "err", err, "retry_in", wait.String())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// backoff is exponential with full jitter.
func backoff(attempt int, lo, hi time.Duration) time.Duration {
	d := hi
	if attempt < 30 {
		d = min(hi, lo<<attempt)
	}
	return lo/2 + rand.N(d-lo/2+1)
}

// session runs one connection until it fails or ctx ends.
func (r *Reader) session(ctx context.Context, first chan<- error) error {
	conn, err := r.connect(ctx)
	if err != nil {
		return err
	}
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
		r.lastRead.Store(time.Now().UnixNano())
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
	// Plan the delta for its real size: with the default cursor_tuple_fraction
	// (0.1) the planner prefers to walk the whole primary key in id order,
	// filtering on xid, over picking the few new entries from the xid index
	// and sorting them, so every read would scan the entire log. (For the
	// cursor of a large delta; the first page has a LIMIT.)
	cc.RuntimeParams["cursor_tuple_fraction"] = "1"
	// And plan it the same way before the log has statistics (a fresh or
	// fast-growing log, before autovacuum's ANALYZE): without them every
	// range looks like a third of the table, and the planner reads it all
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
	// keeps its transaction only across its FETCHes and the hand-over of
	// each page, which the Handler must not block; any failure closes the
	// connection. As a guard against a bug or a wedged Handler, the server
	// ends the session after idleInTransactionTimeout idle in a transaction
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

// Statements are bounded by QueryTimeout but never cut by Stop: cancelling a
// statement mid-flight makes pgx close the connection, and a clean stop
// wants to unregister on it. Stop is honoured between statements.

func (r *Reader) exec(ctx context.Context, conn *pgx.Conn, sql string, args ...any) error {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.QueryTimeout)
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
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.QueryTimeout)
	return timedRow{row: q.QueryRow(qctx, sql, args...), cancel: cancel}
}

// The delta: the entries of transactions that committed since the previous
// read's snapshot ($1 xmax, $2 xip) or, after a restart, above position $3.
// It orders by id + 0 so that no index can provide the order: the planner
// then never walks the whole primary key to avoid a sort of what it wrongly
// thinks is much of the log; it takes the delta from the indexes and sorts
// what it found. Its plan is the same whatever the parameters, so the first
// page runs on the connection's cached generic plan: no planning per read.
//
// The last column is a count event's class count in the read's snapshot,
// for classes not among $4, whose counts the batch reads up front: the
// classes of the count events of the last read that had any, likely those
// of this one while writes keep coming (one query for the usual few classes
// rather than a sum per count event), and never more than the last writes
// touched.
const (
	deltaColumns = `SELECT id, xid::text, created_at, kind, environment_id, object_class_id, object_record_id, task_id, data::text,
  CASE WHEN kind = 'records_count_changed' AND object_class_id <> ALL ($4::bigint[])
    THEN (SELECT coalesce(sum(c.n), 0)::bigint FROM pgcast.object_class_counts c WHERE c.object_class_id = e.object_class_id) END
FROM pgcast.events e
WHERE (xid >= $1::text::xid8 OR xid = ANY ($2::text[]::xid8[]) OR id > $3)`
	deltaFirstPage = deltaColumns + `
ORDER BY id + 0
LIMIT $5`
	// deltaCursor reads a delta larger than a page (see readLarge).
	deltaCursor = `DECLARE pgcast_delta NO SCROLL CURSOR FOR ` + deltaColumns + `
ORDER BY id + 0`
)

const countsQuery = `SELECT object_class_id, sum(n)::bigint FROM pgcast.object_class_counts WHERE object_class_id = ANY ($1) GROUP BY 1`

// readDelta reads and hands over every entry committed since the previous
// read, and returns how many.
//
// Round trips: one pipelined batch begins the repeatable-read transaction,
// takes its snapshot, reads the counts of the classes of the previous read,
// reads the first page, commits and, when the reader stops waiting for the
// doorbell, clears its flag. A first page shorter than PageSize is the whole
// delta: one round trip. A full one is handed over and the delta is read
// again through a cursor (readLarge), skipping what the page handed over.
//
// At most once per PingInterval the snapshot's statement also samples the
// NOTIFY queue's usage (the read is the ping): no statement or round trip
// added, and none of the cluster-wide locking of
// pg_notification_queue_usage() on every read.
func (r *Reader) readDelta(ctx context.Context, conn *pgx.Conn) (int, error) {
	clear := r.waiting && r.busy
	var usage *float64
	started := time.Now()
	if r.usageAt.IsZero() || started.Sub(r.usageAt) >= r.cfg.PingInterval {
		usage = &r.usage
	}
	recent := r.recent
	if recent == nil {
		recent = []int64{} // an empty array: nil would be NULL, and x <> ALL (NULL) is NULL
	}
	r.next = r.next[:0]
	var (
		text   string
		counts map[int64]int64
	)
	page, raw, err := func() ([]pageEntry, int, error) {
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.QueryTimeout)
		defer cancel()
		br, snap, cs, err := sendRead(qctx, conn, recent, usage, func(b *pgx.Batch) {
			b.Queue(deltaFirstPage, append(r.deltaArgs(recent), r.cfg.PageSize)...)
			b.Queue(`COMMIT`)
			if clear {
				// In its own transaction: the read-only one cannot write.
				b.Queue(`UPDATE pgcast.listeners SET waiting = false, updated_at = now() WHERE pid = pg_backend_pid()`)
			}
		})
		if err != nil {
			return nil, 0, err
		}
		defer br.Close()
		text, counts = snap, cs
		rows, err := br.Query()
		if err != nil {
			return nil, 0, fmt.Errorf("read delta: %w", err)
		}
		page, raw, err := r.scanPage(rows)
		if err != nil {
			return nil, 0, err
		}
		if _, err := br.Exec(); err != nil {
			return nil, 0, fmt.Errorf("end read: %w", err)
		}
		if clear {
			if _, err := br.Exec(); err != nil {
				return nil, 0, fmt.Errorf("clear waiting: %w", err)
			}
			r.waiting = false
		}
		return page, raw, br.Close()
	}()
	if err != nil {
		return 0, err
	}
	if usage != nil {
		r.usageAt = started
		r.metrics.notifyQueue.Set(*usage)
		if *usage >= 0.5 {
			r.cfg.Logger.Warn("the NOTIFY queue is filling up: a session listening in a long transaction holds it (see pg_stat_activity); when it is full, commits that NOTIFY fail", "usage", *usage)
		}
	}
	snap, err := parseSnapshot(text)
	if err != nil {
		return 0, err
	}
	var txs int
	total, lastID := r.handOver(page, counts, &txs)
	if raw >= r.cfg.PageSize {
		r.interrupted(snap, lastID)
		n, large, err := r.readLarge(ctx, conn, recent, &txs)
		if err != nil {
			return 0, err
		}
		total, snap = total+n, large
	}
	r.prev, r.partials, r.afterRestart = &snap, nil, 0
	if len(r.next) > 0 { // an idle poll keeps the classes of the last writes
		r.recent, r.next = r.next, r.recent[:0]
	}
	now := time.Now()
	r.lastRead.Store(now.UnixNano())
	r.observe(now, txs)
	if total == 0 {
		r.metrics.lag.Set(0)
	}
	r.metrics.position.Set(float64(r.position.Load()))
	return total, nil
}

// deltaArgs are the delta queries' parameters $1 to $4.
func (r *Reader) deltaArgs(recent []int64) []any {
	above := int64(math.MaxInt64) // nothing: the snapshot alone decides
	if r.afterRestart > 0 {
		above = r.afterRestart
	}
	return []any{strconv.FormatUint(r.prev.xmax, 10), r.prev.xipText(), above, recent}
}

// sendRead sends a read's batch: a repeatable-read transaction, its snapshot
// (and, when usage is not nil, the NOTIFY queue's usage into it), for the
// classes recent their counts, then what queue adds. It reads the snapshot
// and the counts; the caller reads the rest of br and closes it.
func sendRead(ctx context.Context, conn *pgx.Conn, recent []int64, usage *float64, queue func(*pgx.Batch)) (br pgx.BatchResults, snap string, counts map[int64]int64, err error) {
	b := &pgx.Batch{}
	b.Queue(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`)
	dest := []any{&snap}
	if usage != nil {
		b.Queue(`SELECT pg_current_snapshot()::text, pg_notification_queue_usage()`)
		dest = append(dest, usage)
	} else {
		b.Queue(`SELECT pg_current_snapshot()::text`)
	}
	if len(recent) > 0 {
		b.Queue(countsQuery, recent)
	}
	queue(b)
	br = conn.SendBatch(ctx, b)
	counts = make(map[int64]int64, len(recent))
	if err := func() error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("begin read: %w", err)
		}
		if err := br.QueryRow().Scan(dest...); err != nil {
			return fmt.Errorf("take snapshot: %w", err)
		}
		if len(recent) == 0 {
			return nil
		}
		rows, _ := br.Query()
		var id, n int64
		if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { counts[id] = n; return nil }); err != nil {
			return fmt.Errorf("read counts: %w", err)
		}
		return nil
	}(); err != nil {
		_ = br.Close()
		return nil, "", nil, err
	}
	return br, snap, counts, nil
}

// handOver hands a page over (without what interrupted reads already handed
// over), counts its transactions into txs (as changes of xid from one entry
// to the next: interleaved transactions count more than once, which only errs
// towards draining when commits overlap), and returns how many entries it
// handed over and the page's last position.
func (r *Reader) handOver(page []pageEntry, counts map[int64]int64, txs *int) (int, int64) {
	if len(page) == 0 {
		return 0, 0
	}
	r.fillCounts(page, counts)
	events := r.skipDelivered(page)
	if len(events) > 0 {
		r.cfg.Handler(events)
		r.position.Store(events[len(events)-1].Position)
		for _, ev := range events {
			r.maxPos = max(r.maxPos, ev.Position)
		}
		r.metrics.events.Add(float64(len(events)))
		r.metrics.lag.Set(time.Since(events[len(events)-1].Time).Seconds())
	}
	var lastXid uint64
	for _, p := range page {
		if p.xid != lastXid {
			*txs, lastXid = *txs+1, p.xid
		}
	}
	return len(events), page[len(page)-1].Position
}

// readLarge reads a delta larger than a page, the way one batch cannot: in
// a repeatable-read transaction of its own, through a cursor, a page at a
// time (bounded memory however large the delta). Its snapshot, which it
// returns, is newer than the first page's, so it also takes what committed
// in between; what the first page handed over is skipped, as after an
// interrupted read. Counts are those of its snapshot.
func (r *Reader) readLarge(ctx context.Context, conn *pgx.Conn, recent []int64, txs *int) (int, snapshot, error) {
	open := false
	defer func() {
		if open {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.QueryTimeout)
			defer cancel()
			_, _ = conn.Exec(rctx, `ROLLBACK`)
		}
	}()
	fetch := `FETCH ` + strconv.Itoa(r.cfg.PageSize) + ` FROM pgcast_delta`
	var (
		text   string
		counts map[int64]int64
	)
	page, raw, err := func() ([]pageEntry, int, error) {
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.QueryTimeout)
		defer cancel()
		open = true // from here on a failure may leave the transaction open
		br, snap, cs, err := sendRead(qctx, conn, recent, nil, func(b *pgx.Batch) {
			b.Queue(deltaCursor, r.deltaArgs(recent)...)
			b.Queue(fetch)
		})
		if err != nil {
			return nil, 0, err
		}
		defer br.Close()
		text, counts = snap, cs
		if _, err := br.Exec(); err != nil {
			return nil, 0, fmt.Errorf("open delta: %w", err)
		}
		rows, err := br.Query()
		if err != nil {
			return nil, 0, fmt.Errorf("fetch: %w", err)
		}
		return r.scanPage(rows)
	}()
	if err != nil {
		return 0, snapshot{}, err
	}
	snap, err := parseSnapshot(text)
	if err != nil {
		return 0, snapshot{}, err
	}
	total := 0
	var lastID int64
	for {
		n, last := r.handOver(page, counts, txs)
		total += n
		if len(page) > 0 {
			lastID = last
		}
		if raw < r.cfg.PageSize {
			break // a short page is the cursor's last
		}
		if err := ctx.Err(); err != nil {
			r.interrupted(snap, lastID)
			return 0, snapshot{}, err
		}
		if page, raw, err = r.fetchPage(ctx, conn, fetch); err != nil {
			r.interrupted(snap, lastID)
			return 0, snapshot{}, err
		}
	}
	if err := r.exec(ctx, conn, `COMMIT`); err != nil {
		r.interrupted(snap, lastID)
		return 0, snapshot{}, fmt.Errorf("end read: %w", err)
	}
	open = false
	return total, snap, nil
}

// observe updates the commit-rate estimate with a read that found entries
// of txs transactions, and with it whether the reader is busy: above
// DoorbellMaxRate it stops waiting for the doorbell (writers stop ringing)
// and reads every DrainInterval; below two thirds of it, it waits again.
func (r *Reader) observe(now time.Time, txs int) {
	if r.windowStart.IsZero() {
		r.windowStart = now
	}
	r.windowTxs += txs
	elapsed := now.Sub(r.windowStart)
	if elapsed < rateWindow {
		return
	}
	rate := float64(r.windowTxs) / elapsed.Seconds()
	r.windowStart, r.windowTxs = now, 0
	switch {
	case r.cfg.DoorbellMaxRate < 0:
		r.busy = true
	case rate > float64(r.cfg.DoorbellMaxRate):
		r.busy = true
	case rate < float64(r.cfg.DoorbellMaxRate)*2/3:
		r.busy = false
	}
}

// rateWindow is how long the reader counts transactions for one estimate of
// the commit rate.
const rateWindow = 100 * time.Millisecond

// maxRecentClasses bounds the classes whose counts a read fetches up front.
const maxRecentClasses = 64

// interrupted remembers a read that handed over entries up to lastID before
// failing, so the retry does not hand them over again.
func (r *Reader) interrupted(snap snapshot, lastID int64) {
	if lastID > 0 {
		r.partials = append(r.partials, partial{snap: snap, lastID: lastID})
	}
}

// skipDelivered drops entries an interrupted read already handed over: those
// at or below its last position that its snapshot could see.
func (r *Reader) skipDelivered(page []pageEntry) []*Event {
	out := make([]*Event, 0, len(page))
	for _, p := range page {
		dup := false
		for _, pt := range r.partials {
			if p.Position <= pt.lastID && pt.snap.sees(p.xid) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, p.Event)
		}
	}
	return out
}

type pageEntry struct {
	*Event
	xid   uint64
	count pgtype.Int8 // a count event's class count, when the query computed it
}

func (r *Reader) fetchPage(ctx context.Context, conn *pgx.Conn, fetch string) ([]pageEntry, int, error) {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.QueryTimeout)
	defer cancel()
	rows, err := conn.Query(qctx, fetch)
	if err != nil {
		return nil, 0, fmt.Errorf("fetch: %w", err)
	}
	return r.scanPage(rows)
}

// scanPage decodes one fetched page and returns it with the number of rows
// fetched (undecodable entries are counted but skipped).
func (r *Reader) scanPage(rows pgx.Rows) ([]pageEntry, int, error) {
	defer rows.Close()
	page := make([]pageEntry, 0, min(r.cfg.PageSize, 64))
	raw := 0
	var en entry
	var xid string
	var count pgtype.Int8
	for rows.Next() {
		raw++
		if err := rows.Scan(&en.id, &xid, &en.createdAt, &en.kind, &en.environment, &en.classID, &en.recordID, &en.taskID, &en.data, &count); err != nil {
			return nil, 0, fmt.Errorf("scan entry: %w", err)
		}
		x, err := strconv.ParseUint(xid, 10, 64)
		if err != nil {
			return nil, 0, fmt.Errorf("entry %d: xid %q: %w", en.id, xid, err)
		}
		ev, err := decode(&en)
		if err != nil {
			// A malformed entry is a bug in triggers or a hand-made row:
			// skip it loudly rather than wedge the stream.
			r.metrics.decodeErrors.Inc()
			r.cfg.Logger.Error("skipping undecodable log entry", "position", en.id, "err", err)
			continue
		}
		page = append(page, pageEntry{Event: ev, xid: x, count: count})
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("fetch: %w", err)
	}
	return page, raw, nil
}

// fillCounts sets Count on count events to the class's count in the read's
// snapshot: computed by the delta query itself, or read up front for the
// classes of the previous read (one without shards counts zero).
func (r *Reader) fillCounts(page []pageEntry, counts map[int64]int64) {
	for _, p := range page {
		if p.Kind != KindRecordsCountChanged {
			continue
		}
		if p.count.Valid {
			p.Count = p.count.Int64
		} else {
			p.Count = counts[p.ClassID]
		}
		if len(r.next) < maxRecentClasses && !slices.Contains(r.next, p.ClassID) {
			r.next = append(r.next, p.ClassID)
		}
	}
}

type readerMetrics struct {
	events, reconnects, decodeErrors prometheus.Counter
	lag, position, notifyQueue       prometheus.Gauge
}

func newReaderMetrics() readerMetrics {
	return readerMetrics{
		events:       prometheus.NewCounter(prometheus.CounterOpts{Name: "pgcast_reader_events_total", Help: "Log entries read and decoded."}),
		reconnects:   prometheus.NewCounter(prometheus.CounterOpts{Name: "pgcast_reader_reconnects_total", Help: "Times the reader's connection was lost and re-established."}),
		decodeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgcast_reader_decode_errors_total", Help: "Log entries skipped because they could not be decoded."}),
		lag:          prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgcast_reader_lag_seconds", Help: "Age of the last entry read when it was read (0 when caught up)."}),
		position:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgcast_reader_position", Help: "Log position of the last entry handed over."}),
		notifyQueue: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pgcast_notify_queue_usage",
			Help: "Fraction of the cluster's NOTIFY queue in use, from pg_notification_queue_usage(); near 1 NOTIFY fails."}),
	}
}

func (m readerMetrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.events, m.reconnects, m.decodeErrors, m.lag, m.position, m.notifyQueue} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
