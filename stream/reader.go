package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/startstop"
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
	// this long is considered dead and replaced. A statement that times out
	// doubles the bound for the next connection's statements (up to 16
	// times QueryTimeout, and at least a minute), and each read that
	// completes halves it back: a slow statement is retried with more time
	// rather than failing the same way for ever (see reader_timeout.go).
	// Connection attempts keep QueryTimeout. Default 5 s.
	QueryTimeout time.Duration
	// PageSize is how many entries are fetched and handed over at once, which
	// bounds the reader's memory under a statement of a million rows; a
	// delta larger than a page is read a page per statement (see
	// reader_large.go). Default 1000.
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
	if err := db.CheckURL(c.URL); err != nil {
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
	backend db.Backend
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
	// counts are every class's record count as of prev (see counts.go);
	// pending are the classes whose changes were handed over without
	// their count event yet, in a run of steps of transaction runXid.
	counts  map[int64]int64
	pending []pendingCount
	runXid  uint64
	// usageAt is when a read last sampled the NOTIFY queue's usage into
	// usage (see readDelta).
	usageAt time.Time
	usage   float64

	position  atomic.Int64 // last delivered position
	connected atomic.Bool
	// lastRead is when the last read, or page of a large read, completed
	// (unix nanos): progress, for Ready.
	lastRead atomic.Int64
	// queryTimeout bounds the next statement (nanoseconds): QueryTimeout,
	// stretched after timeouts (see reader_timeout.go).
	queryTimeout atomic.Int64

	// Start once, Stop, Started (the starting snapshot is taken), Stopped.
	startstop.Base
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
	r.Name = "stream: reader"
	r.setTimeout(cfg.QueryTimeout)
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
	runCtx, started, stopped, err := r.StartInit(ctx)
	if err != nil {
		return err
	}
	first := make(chan error, 1)
	go func() {
		defer stopped()
		r.run(runCtx, first)
	}()
	select {
	case err := <-first:
		if err != nil {
			_ = r.Stop(context.Background())
			return err
		}
		started()
		return nil
	case <-r.Stopped():
		return errors.New("stream: reader stopped while starting")
	case <-ctx.Done():
		_ = r.Stop(context.Background())
		return fmt.Errorf("stream: start reader: %w", ctx.Err())
	}
}

// Ready reports whether the reader is connected and making progress: it
// completed a read, or a page of a large read (a statement of a million
// entries is read a thousand pages at a time), within three idle waits and
// a statement's bound.
func (r *Reader) Ready() error {
	if !r.connected.Load() {
		return errors.New("reader not connected")
	}
	last := time.Unix(0, r.lastRead.Load())
	limit := 3*max(r.cfg.PollInterval, r.cfg.PingInterval) + r.timeout()
	if age := time.Since(last); age > limit {
		return fmt.Errorf("reader has not read for %s", age.Round(time.Millisecond))
	}
	return nil
}

// Position is the log position of the last event handed to the Handler.
func (r *Reader) Position() int64 { return r.position.Load() }

func (r *Reader) run(ctx context.Context, first chan<- error) {
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
