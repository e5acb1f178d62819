package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcast/pgcast/stream"
)

// referenceChannel is the bare NOTIFY reference's channel.
const referenceChannel = "pgcast_bench"

// Statements of the latency scenario: one change per transaction, the
// change carrying its sequence number.
//
// The reference commits the same change the same way: the same row into the
// identical table without triggers (public.plain_records), and a NOTIFY
// carrying the sequence number, in one statement. Its COMMIT, like pgcast's,
// flushes the change to the WAL. The NOTIFY-only reference writes nothing, so
// its COMMIT writes no commit record and flushes nothing: it shows the
// notification path alone.
var (
	latencyInsertSQL      = fmt.Sprintf(insertSQL, captureTable)
	latencyWriteNotifySQL = withNotify(fmt.Sprintf(insertSQL, plainTable))
	latencyNotifySQL      = `SELECT pg_notify('` + referenceChannel + `', $1::text)`
)

// withNotify makes a reference statement of stmt, a change whose third
// parameter is the sequence number: the change, and a NOTIFY carrying the
// number on the reference channel, sent only if the change hit a row.
func withNotify(stmt string) string {
	return `WITH r AS (` + stmt + ` RETURNING id) SELECT pg_notify('` + referenceChannel + `', $3::text) FROM r`
}

// Kinds of latency half-runs (and names of their prepared statements).
const (
	latencyPgcast     = "pgcast"
	latencyReference  = "reference"
	latencyNotifyOnly = "notify_only"
)

// latencyRun records, per sequence number, when its transaction was about to
// commit, when the COMMIT returned (where the writer records it) and when the
// receiver had it, in nanoseconds since base plus one (0 means not yet).
type latencyRun struct {
	base             time.Time
	sent, done, recv []atomic.Int64
	got, bad         atomic.Int64
}

func newLatencyRun(capacity int) *latencyRun {
	return &latencyRun{base: time.Now(), sent: make([]atomic.Int64, capacity), done: make([]atomic.Int64, capacity), recv: make([]atomic.Int64, capacity)}
}

func (r *latencyRun) now() int64 { return int64(time.Since(r.base)) + 1 }

func (r *latencyRun) received(seq int64) {
	at := r.now()
	if seq < 0 || seq >= int64(len(r.recv)) || !r.recv[seq].CompareAndSwap(0, at) {
		r.bad.Add(1) // foreign or duplicate
		return
	}
	r.got.Add(1)
}

// collect appends the latencies of the first n sequence numbers and returns
// how many were committed but not received.
func (r *latencyRun) collect(n int64, into *[]time.Duration) (missing int) {
	for i := range n {
		s, v := r.sent[i].Load(), r.recv[i].Load()
		if s == 0 {
			continue
		}
		if v == 0 {
			missing++
			continue
		}
		*into = append(*into, time.Duration(v-s))
	}
	return missing
}

// split appends, for the first n sequence numbers received whose COMMIT's
// return was recorded, how long the COMMIT took and the time from its
// return to the receiver having the change (negative when the receiver was
// first).
func (r *latencyRun) split(n int64, commit, after *[]time.Duration) {
	for i := range n {
		s, d, v := r.sent[i].Load(), r.done[i].Load(), r.recv[i].Load()
		if s == 0 || d == 0 || v == 0 {
			continue
		}
		*commit = append(*commit, time.Duration(d-s))
		*after = append(*after, time.Duration(v-d))
	}
}

// runLatency measures commit → decoded-by-the-reader against commit →
// notification-received-by-a-bare-connection, for the same change (the
// reference) and for a NOTIFY alone, at the same rate, in halves run pgcast,
// reference, NOTIFY only, NOTIFY only, reference, pgcast.
func runLatency(ctx context.Context, cfg CaptureConfig, srv *server) (LatencyResult, error) {
	res := LatencyResult{Rate: cfg.Rate, Writers: cfg.LatencyWriters}
	sc, err := srv.newScenario(ctx, "latency")
	if err != nil {
		return res, err
	}
	defer sc.drop()
	conns, err := connectN(ctx, sc.url, cfg.LatencyWriters)
	if err != nil {
		return res, err
	}
	defer closeAll(ctx, conns)
	for _, c := range conns {
		for name, sql := range map[string]string{latencyPgcast: latencyInsertSQL, latencyReference: latencyWriteNotifySQL, latencyNotifyOnly: latencyNotifySQL} {
			if _, err := c.Prepare(ctx, name, sql); err != nil {
				return res, fmt.Errorf("prepare %s: %w", name, err)
			}
		}
	}
	type acc struct {
		samples       []time.Duration
		commit, after []time.Duration
		sent          int64
		took          time.Duration
		missing       int
	}
	accs := map[string]*acc{latencyPgcast: {}, latencyReference: {}, latencyNotifyOnly: {}}
	half := cfg.LatencyDuration / 2
	capacity := int(float64(cfg.Rate)*half.Seconds()) + 1
	for _, kind := range []string{latencyPgcast, latencyReference, latencyNotifyOnly, latencyNotifyOnly, latencyReference, latencyPgcast} {
		run := newLatencyRun(capacity)
		var stop func() error
		if kind == latencyPgcast {
			stop, err = startReaderReceiver(ctx, cfg, sc, run)
		} else {
			stop, err = startNotifyReceiver(ctx, sc, run)
		}
		if err != nil {
			return res, err
		}
		sent, took, err := pace(ctx, conns, cfg.Rate, half, capacity, func(ctx context.Context, c *pgx.Conn, seq int64) error {
			tx, err := c.Begin(ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback(context.WithoutCancel(ctx))
			if kind == latencyNotifyOnly {
				_, err = tx.Exec(ctx, kind, strconv.FormatInt(seq, 10))
			} else {
				_, err = tx.Exec(ctx, kind, sc.classID, sc.fieldKey, seq)
			}
			if err != nil {
				return err
			}
			run.sent[seq].Store(run.now())
			if err := tx.Commit(ctx); err != nil {
				return err
			}
			run.done[seq].Store(run.now())
			return nil
		})
		if err == nil {
			// Let the last ones arrive.
			deadline := time.Now().Add(5 * time.Second)
			for run.got.Load() < sent && time.Now().Before(deadline) && ctx.Err() == nil {
				time.Sleep(5 * time.Millisecond)
			}
		}
		if serr := stop(); err == nil {
			err = serr
		}
		if err != nil {
			return res, fmt.Errorf("%s: %w", kind, err)
		}
		a := accs[kind]
		a.missing += run.collect(sent, &a.samples)
		run.split(sent, &a.commit, &a.after)
		a.sent += sent
		a.took += took
		cfg.Logger.Debug("latency half", "kind", kind, "sent", sent, "received", run.got.Load(), "foreign_or_duplicate", run.bad.Load())
	}
	stats := func(a *acc) LatencyStats {
		st := latencyStats(a.samples, a.sent, a.took, a.missing)
		st.Split = latencySplit(a.commit, a.after)
		return st
	}
	res.Pgcast, res.Reference, res.NotifyOnly = stats(accs[latencyPgcast]), stats(accs[latencyReference]), stats(accs[latencyNotifyOnly])
	if err := conns[0].QueryRow(ctx, `SELECT (SELECT count(*) FROM pgcast.object_records), (SELECT count(*) FROM public.plain_records)`).Scan(&res.Pgcast.Written, &res.Reference.Written); err != nil {
		return res, fmt.Errorf("count rows written: %w", err)
	}
	res.TargetP99Ms = res.Reference.P99Ms + TargetLatencySlackMs
	res.Pass = res.Pgcast.Samples > 0 && res.Pgcast.Missing == 0 && res.Pgcast.P99Ms <= res.TargetP99Ms
	cfg.Logger.Info("latency done", "pgcast_p99_ms", res.Pgcast.P99Ms, "reference_p99_ms", res.Reference.P99Ms, "notify_only_p99_ms", res.NotifyOnly.P99Ms)
	return res, nil
}

// startReaderReceiver starts a pgcast reader (default doorbell mode) that
// records every record_created event's seq cell.
func startReaderReceiver(ctx context.Context, cfg CaptureConfig, sc *scenario, run *latencyRun) (func() error, error) {
	r, err := stream.NewReader(stream.ReaderConfig{
		URL: sc.url,
		Handler: func(evs []*stream.Event) {
			for _, ev := range evs {
				if ev.Kind != stream.KindRecordCreated {
					continue
				}
				var rec struct {
					Seq *int64 `json:"seq"`
				}
				if json.Unmarshal(ev.Record, &rec) != nil || rec.Seq == nil {
					run.bad.Add(1)
					continue
				}
				run.received(*rec.Seq)
			}
		},
		Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	return func() error {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return r.Stop(sctx)
	}, nil
}

// startNotifyReceiver opens a bare connection that LISTENs on the reference
// channel and records every notification's payload.
func startNotifyReceiver(ctx context.Context, sc *scenario, run *latencyRun) (func() error, error) {
	conn, err := connect(ctx, sc.url)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, `LISTEN `+referenceChannel); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("listen: %w", err)
	}
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		for {
			n, err := conn.WaitForNotification(lctx)
			if err != nil {
				if lctx.Err() != nil {
					err = nil
				}
				done <- err
				return
			}
			seq, perr := strconv.ParseInt(n.Payload, 10, 64)
			if perr != nil {
				run.bad.Add(1)
				continue
			}
			run.received(seq)
		}
	}()
	return func() error {
		cancel()
		err := <-done
		conn.Close(context.WithoutCancel(ctx))
		if err != nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
		return nil
	}, nil
}

// pace hands sequence numbers 0, 1, … to the connections at rate per second
// for d (at most capacity of them), each connection running f for the ones it
// takes. Slots late for want of a free connection go out at once, so the
// schedule catches up. It returns how many were run and how long it took.
func pace(ctx context.Context, conns []*pgx.Conn, rate int, d time.Duration, capacity int, f func(context.Context, *pgx.Conn, int64) error) (int64, time.Duration, error) {
	slots := make(chan int64)
	stop := make(chan struct{})
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		first    error
		stopOnce sync.Once
		done     atomic.Int64
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
		stopOnce.Do(func() { close(stop) })
	}
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	end := start.Add(d)
	wg.Go(func() {
		defer close(slots)
		for i := range int64(capacity) {
			at := start.Add(time.Duration(i) * interval)
			if !at.Before(end) {
				return
			}
			if wait := time.Until(at); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-stop:
					t.Stop()
					return
				case <-ctx.Done():
					t.Stop()
					return
				}
			}
			select {
			case slots <- i:
			case <-stop:
				return
			case <-ctx.Done():
				return
			}
		}
	})
	for _, c := range conns {
		wg.Go(func() {
			for seq := range slots {
				if err := f(ctx, c, seq); err != nil {
					fail(err)
					for range slots { // let the pacer finish
					}
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	if first != nil {
		return 0, 0, first
	}
	return done.Load(), took, nil
}

// latencyStats summarises samples (nearest-rank percentiles).
func latencyStats(samples []time.Duration, sent int64, took time.Duration, missing int) LatencyStats {
	st := LatencyStats{Samples: len(samples), RatePerS: round1(perSecond(sent, took)), Missing: missing}
	if len(samples) == 0 {
		return st
	}
	slices.Sort(samples)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	st.P50Ms = ms(percentile(samples, 0.50))
	st.P99Ms = ms(percentile(samples, 0.99))
	st.MaxMs = ms(samples[len(samples)-1])
	return st
}

// latencySplit summarises the two parts of the latencies split by
// latencyRun.split.
func latencySplit(commit, after []time.Duration) *LatencySplit {
	if len(commit) == 0 {
		return nil
	}
	slices.Sort(commit)
	slices.Sort(after)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return &LatencySplit{
		CommitP50Ms: ms(percentile(commit, 0.50)), CommitP99Ms: ms(percentile(commit, 0.99)),
		AfterP50Ms: ms(percentile(after, 0.50)), AfterP99Ms: ms(percentile(after, 0.99)),
	}
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(float64(len(sorted))*p)) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
