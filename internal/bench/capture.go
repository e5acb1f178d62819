package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// CaptureConfig configures RunCapture. The zero value, with URL set, means
// the defaults below.
type CaptureConfig struct {
	// URL of the server. RunCapture connects to the database it names only
	// to create (and finally drop) its own scenario databases, so the user
	// needs CREATEDB. Required.
	URL string
	// Duration of each write-overhead cell: each of the capture and the
	// plain run of every (variant, statement, writers) lasts this long, in
	// halves run capture, plain, plain, capture. Default 10 s.
	Duration time.Duration
	// LatencyDuration is how long each of pgcast's reader, the reference
	// (the same change and a NOTIFY) and a NOTIFY alone is measured (in
	// halves, interleaved). Default 20 s.
	LatencyDuration time.Duration
	// SustainedDuration is how long writers insert as fast as they can.
	// Default 60 s.
	SustainedDuration time.Duration
	// Rate of the latency scenario, in transactions (changes) per second.
	// Default 1000.
	Rate int
	// Writers are the numbers of concurrent writers of the write-overhead
	// scenario. Default 1 and 8.
	Writers []int
	// LatencyWriters is how many connections share the latency scenario's
	// paced transactions. Default 8.
	LatencyWriters int
	// SustainedWriters is how many connections insert in the sustained
	// scenario. Default 4.
	SustainedWriters int
	// Scenarios selects what runs, among CaptureScenarios. Default: all.
	Scenarios []string
	// Logger receives progress. Default: discard.
	Logger *slog.Logger

	// updateRows is how many rows each table holds for the UPDATE runs.
	// Default 10000 (tests use fewer).
	updateRows int
}

func (c CaptureConfig) withDefaults() CaptureConfig {
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.LatencyDuration == 0 {
		c.LatencyDuration = 20 * time.Second
	}
	if c.SustainedDuration == 0 {
		c.SustainedDuration = 60 * time.Second
	}
	if c.Rate == 0 {
		c.Rate = 1000
	}
	if len(c.Writers) == 0 {
		c.Writers = []int{1, 8}
	}
	if c.LatencyWriters == 0 {
		c.LatencyWriters = 8
	}
	if c.SustainedWriters == 0 {
		c.SustainedWriters = 4
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if len(c.Scenarios) == 0 {
		c.Scenarios = CaptureScenarios
	}
	if c.updateRows == 0 {
		c.updateRows = 10000
	}
	return c
}

func (c CaptureConfig) validate() error {
	switch {
	case c.URL == "":
		return errors.New("bench: CaptureConfig.URL is required")
	case c.Duration < 0 || c.LatencyDuration < 0 || c.SustainedDuration < 0:
		return errors.New("bench: durations must be positive")
	case c.Rate < 0 || c.Rate > 1_000_000:
		return fmt.Errorf("bench: rate must be between 1 and 1000000, got %d", c.Rate)
	case c.LatencyWriters < 0 || c.SustainedWriters < 0:
		return errors.New("bench: writer counts must be positive")
	}
	for _, sc := range c.Scenarios {
		if !slices.Contains(CaptureScenarios, sc) {
			return fmt.Errorf("bench: unknown capture scenario %q (want one of %s)", sc, strings.Join(CaptureScenarios, ", "))
		}
	}
	for _, w := range c.Writers {
		if w < 1 || w > 500 {
			return fmt.Errorf("bench: writers must be between 1 and 500, got %d", w)
		}
	}
	return nil
}

// Targets of the issue.
const (
	TargetRatioOneWriter   = 0.80 // write overhead with 1 writer
	TargetRatioManyWriters = 0.60 // with more
	TargetLatencySlackMs   = 2.0  // pgcast p99 ≤ reference (same change + NOTIFY) p99 + this
	TargetSustainedPerS    = 20000
)

// Scenarios of RunCapture.
const (
	ScenarioWrite     = "write"
	ScenarioLatency   = "latency"
	ScenarioSustained = "sustained"
	// ScenarioWatched is the write overhead of a watched application table
	// (`pgcast watch`) against the same table unwatched, ScenarioWatchedSustained
	// the sustained scenario on that table.
	ScenarioWatched          = "watched"
	ScenarioWatchedSustained = "watched_sustained"
)

// CaptureScenarios are all of RunCapture's scenarios, in the order they run.
var CaptureScenarios = []string{ScenarioWrite, ScenarioLatency, ScenarioSustained, ScenarioWatched, ScenarioWatchedSustained}

// Write-overhead variants.
const (
	VariantDoorbell = "doorbell"          // reader running; writers ring only while it waits
	VariantPollOnly = "poll_only"         // reader polls; writers never ring
	VariantRingAll  = "ring_every_commit" // a listener that always waits: every commit rings
	// VariantWatched: a watched application table against the same table
	// unwatched, the reader running (doorbell).
	VariantWatched = "watched"
)

// CaptureReport is the result of RunCapture.
type CaptureReport struct {
	// Command is the command line that produced the report, when the
	// caller sets it.
	Command       string           `json:"command,omitempty"`
	Started       time.Time        `json:"started"`
	TookS         float64          `json:"took_s"`
	Machine       Machine          `json:"machine"`
	Config        ReportConfig     `json:"config"`
	WriteOverhead []WriteResult    `json:"write_overhead,omitempty"`
	Latency       *LatencyResult   `json:"latency,omitempty"`
	Sustained     *SustainedResult `json:"sustained,omitempty"`
	// WatchedTable is the DDL of the watched-table scenarios' tables,
	// WatchedOverhead their write overhead (variant "watched": capture is
	// the watched table, plain the same table unwatched) and
	// WatchedSustained the sustained scenario on the watched table.
	// WatchedCheck: every watched transaction of the write overhead
	// scenario (warm-up included) was decoded as one event.
	WatchedTable     string           `json:"watched_table,omitempty"`
	WatchedOverhead  []WriteResult    `json:"watched_write_overhead,omitempty"`
	WatchedCheck     *DecodeCheck     `json:"watched_write_check,omitempty"`
	WatchedSustained *SustainedResult `json:"watched_sustained,omitempty"`
}

// ReportConfig is the effective configuration.
type ReportConfig struct {
	DurationS          float64 `json:"duration_s"`
	LatencyDurationS   float64 `json:"latency_duration_s"`
	SustainedDurationS float64 `json:"sustained_duration_s"`
	Rate               int     `json:"rate"`
	Writers            []int   `json:"writers"`
	LatencyWriters     int     `json:"latency_writers"`
	SustainedWriters   int     `json:"sustained_writers"`
}

// WriteResult is one write-overhead cell: rows/s of single-row autocommit
// transactions on pgcast.object_records (capture) and on an identical table
// without pgcast's triggers (plain).
type WriteResult struct {
	Variant         string  `json:"variant"`
	Op              string  `json:"op"`
	Writers         int     `json:"writers"`
	CaptureRowsPerS float64 `json:"capture_rows_per_s"`
	PlainRowsPerS   float64 `json:"plain_rows_per_s"`
	Ratio           float64 `json:"ratio"`
	// Target is the minimum ratio, 0 where none applies (the simulated
	// ring-every-commit variant is a comparison, not a configuration).
	Target float64 `json:"target,omitempty"`
	Pass   *bool   `json:"pass,omitempty"`
	// CaptureTx is how many transactions the capture runs committed,
	// EventsDecoded how many entries the reader decoded meanwhile (a sanity
	// check: it kept up) and ReaderReads in how many non-empty reads: about
	// one per transaction means the reader was woken for nearly every commit.
	CaptureTx     int64 `json:"capture_tx"`
	EventsDecoded int64 `json:"events_decoded"`
	ReaderReads   int64 `json:"reader_reads"`
}

// LatencyStats are the commit → delivery latencies of one receiver.
type LatencyStats struct {
	Samples  int     `json:"samples"`
	RatePerS float64 `json:"rate_per_s"` // achieved transaction rate
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
	Missing  int     `json:"missing"` // committed but never received
	// Written is how many rows the transactions measured left in their
	// table (pgcast.object_records; public.plain_records for the
	// reference; none for NOTIFY only): one per transaction.
	Written int64 `json:"rows_written"`
	// Split, where measured, divides the latency at the COMMIT's reply.
	Split *LatencySplit `json:"split,omitempty"`
}

// LatencySplit divides commit → received at the moment the writer has the
// COMMIT's reply: the COMMIT itself (Postgres writing and flushing the
// transaction's WAL; for a transaction that NOTIFYs, under the cluster-wide
// lock a NOTIFY takes) and what follows (negative where the receiver had the
// change first). Percentiles of each part, taken separately: they do not add
// up to those of the whole.
type LatencySplit struct {
	CommitP50Ms float64 `json:"commit_p50_ms"`
	CommitP99Ms float64 `json:"commit_p99_ms"`
	AfterP50Ms  float64 `json:"after_commit_p50_ms"`
	AfterP99Ms  float64 `json:"after_commit_p99_ms"`
}

// LatencyResult compares pgcast's reader with a bare LISTEN connection.
type LatencyResult struct {
	Rate    int          `json:"rate"`
	Writers int          `json:"writers"`
	Pgcast  LatencyStats `json:"pgcast"`
	// Reference: the same change committed the same way into the identical
	// table without triggers, with a NOTIFY in its transaction, received by
	// a bare LISTEN connection. The target is set from it.
	Reference LatencyStats `json:"reference"`
	// NotifyOnly: a transaction that only NOTIFYs (it writes nothing, so
	// its COMMIT flushes nothing), for comparison.
	NotifyOnly  LatencyStats `json:"notify_only"`
	TargetP99Ms float64      `json:"target_p99_ms"`
	Pass        bool         `json:"pass"`
}

// SustainedResult is the decoded throughput with writers as fast as they
// can go, in transactions of RowsPerTx rows.
type SustainedResult struct {
	DurationS    float64 `json:"duration_s"`
	Writers      int     `json:"writers"`
	RowsPerTx    int     `json:"rows_per_tx"`
	RowsInserted int64   `json:"rows_inserted"`
	InsertedPerS float64 `json:"inserted_per_s"`
	// DecodedPerS is record_created events decoded per second while the
	// writers ran (the ceiling); MinDecodedPerS the slowest whole second.
	DecodedPerS    float64 `json:"decoded_per_s"`
	MinDecodedPerS float64 `json:"min_decoded_per_s"`
	// AllEventsDecoded counts every event the reader handed over, its
	// count events included, from the start to the end of the drain.
	AllEventsDecoded int64 `json:"all_events_decoded"`
	// DrainS is how long the reader took, after the writers stopped, to
	// deliver everything committed.
	DrainS float64 `json:"drain_s"`
	// Lost records have no record_created event; Duplicates had more than
	// one; Unexpected events name a record that was never inserted.
	Lost       int64   `json:"lost"`
	Duplicates int64   `json:"duplicates"`
	Unexpected int64   `json:"unexpected"`
	Target     float64 `json:"target_per_s"`
	Pass       bool    `json:"pass"`
}

// RunCapture runs the capture benchmark against the server at cfg.URL.
func RunCapture(ctx context.Context, cfg CaptureConfig) (*CaptureReport, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	srv, err := newServer(cfg.URL)
	if err != nil {
		return nil, err
	}
	defer srv.close()
	rep := &CaptureReport{
		Started: time.Now().UTC().Truncate(time.Second),
		Config: ReportConfig{
			DurationS:          cfg.Duration.Seconds(),
			LatencyDurationS:   cfg.LatencyDuration.Seconds(),
			SustainedDurationS: cfg.SustainedDuration.Seconds(),
			Rate:               cfg.Rate,
			Writers:            cfg.Writers,
			LatencyWriters:     cfg.LatencyWriters,
			SustainedWriters:   cfg.SustainedWriters,
		},
	}
	t0 := time.Now()
	if rep.Machine, err = machineInfo(ctx, cfg.URL); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if slices.Contains(cfg.Scenarios, ScenarioWrite) {
		for _, v := range []string{VariantDoorbell, VariantPollOnly, VariantRingAll} {
			log.Info("write overhead", "variant", v, "writers", fmt.Sprint(cfg.Writers), "cell", cfg.Duration.String())
			res, err := runWriteOverhead(ctx, cfg, srv, v)
			if err != nil {
				return nil, fmt.Errorf("write overhead (%s): %w", v, err)
			}
			rep.WriteOverhead = append(rep.WriteOverhead, res...)
		}
	}
	if slices.Contains(cfg.Scenarios, ScenarioLatency) {
		log.Info("latency", "rate", cfg.Rate, "duration", cfg.LatencyDuration.String())
		res, err := runLatency(ctx, cfg, srv)
		if err != nil {
			return nil, fmt.Errorf("latency: %w", err)
		}
		rep.Latency = &res
	}
	if slices.Contains(cfg.Scenarios, ScenarioSustained) {
		log.Info("sustained", "writers", cfg.SustainedWriters, "duration", cfg.SustainedDuration.String())
		res, err := runSustained(ctx, cfg, srv, recordsTarget)
		if err != nil {
			return nil, fmt.Errorf("sustained: %w", err)
		}
		rep.Sustained = &res
	}
	if slices.Contains(cfg.Scenarios, ScenarioWatched) {
		log.Info("watched table", "writers", fmt.Sprint(cfg.Writers), "cell", cfg.Duration.String())
		res, check, err := runWatchedOverhead(ctx, cfg, srv)
		if err != nil {
			return nil, fmt.Errorf("watched table: %w", err)
		}
		rep.WatchedTable, rep.WatchedOverhead, rep.WatchedCheck = WatchedTableDDL, res, check
	}
	if slices.Contains(cfg.Scenarios, ScenarioWatchedSustained) {
		log.Info("sustained, watched table", "writers", cfg.SustainedWriters, "duration", cfg.SustainedDuration.String())
		res, err := runSustained(ctx, cfg, srv, watchedTarget)
		if err != nil {
			return nil, fmt.Errorf("sustained, watched table: %w", err)
		}
		rep.WatchedTable, rep.WatchedSustained = WatchedTableDDL, &res
	}
	rep.Machine.LoadAvgEnd = loadAvg()
	rep.TookS = time.Since(t0).Round(time.Millisecond).Seconds()
	return rep, nil
}
