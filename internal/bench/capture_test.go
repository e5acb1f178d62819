package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcast/pgcast/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestRunCapture runs the whole benchmark with tiny durations: it checks the
// machinery (every figure measured, zero loss, databases dropped), not the
// numbers, which mean nothing on the test cluster (fsync off) under -race.
func TestRunCapture(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := RunCapture(ctx, CaptureConfig{
		URL:               pgtest.AdminURL(),
		Duration:          150 * time.Millisecond,
		LatencyDuration:   400 * time.Millisecond,
		SustainedDuration: time.Second,
		Rate:              500,
		Writers:           []int{2},
		LatencyWriters:    3,
		SustainedWriters:  2,
		Logger:            testLogger(t),
		updateRows:        500,
	})
	if err != nil {
		t.Fatal(err)
	}

	if got, want := len(rep.WriteOverhead), 3*2; got != want {
		t.Fatalf("write overhead: %d cells, want %d", got, want)
	}
	for _, c := range rep.WriteOverhead {
		if c.CaptureRowsPerS <= 0 || c.PlainRowsPerS <= 0 || c.Ratio <= 0 {
			t.Errorf("write overhead %+v: a figure is not positive", c)
		}
		if c.EventsDecoded <= 0 && c.Variant != VariantPollOnly { // it polls every second: maybe not within a cell
			t.Errorf("write overhead %s/%s/%d: reader decoded no events", c.Variant, c.Op, c.Writers)
		}
		if (c.Pass == nil) != (c.Variant == VariantRingAll) {
			t.Errorf("write overhead %s: pass verdict %v", c.Variant, c.Pass)
		}
	}

	if rep.Latency == nil || rep.Sustained == nil || rep.WatchedOverhead == nil || rep.WatchedSustained == nil {
		t.Fatalf("every scenario runs by default: latency %v, sustained %v, watched %v, watched sustained %v",
			rep.Latency, rep.Sustained, rep.WatchedOverhead, rep.WatchedSustained)
	}
	checkWatched(t, rep, []int{2})
	l := rep.Latency
	for name, st := range map[string]LatencyStats{"pgcast": l.Pgcast, "reference": l.Reference, "notify only": l.NotifyOnly} {
		if st.Samples <= 0 || st.RatePerS <= 0 || st.P50Ms <= 0 || st.P99Ms <= 0 || st.MaxMs <= 0 {
			t.Errorf("latency %s %+v: a figure is not positive", name, st)
		}
		if st.Missing != 0 {
			t.Errorf("latency %s: %d changes never received", name, st.Missing)
		}
		if st.P50Ms > st.P99Ms || st.P99Ms > st.MaxMs {
			t.Errorf("latency %s %+v: percentiles out of order", name, st)
		}
		// The COMMIT takes time; what follows its reply is the whole less
		// that, so never above the whole (it is negative when the receiver
		// had the change before the writer had the reply, which is also why
		// the COMMIT's part may exceed the whole).
		switch x := st.Split; {
		case x == nil:
			t.Errorf("latency %s: no split at the COMMIT's reply", name)
		case x.CommitP50Ms <= 0 || x.CommitP50Ms > x.CommitP99Ms || x.AfterP50Ms > x.AfterP99Ms:
			t.Errorf("latency %s split %+v: not positive or out of order", name, *x)
		case x.AfterP99Ms > st.MaxMs:
			t.Errorf("latency %s split %+v: after the COMMIT above the whole's max %v", name, *x, st.MaxMs)
		}
	}
	// The reference commits the same change (a row each), NOTIFY only none.
	for name, c := range map[string]struct {
		st   LatencyStats
		want int64
	}{"pgcast": {l.Pgcast, int64(l.Pgcast.Samples)}, "reference": {l.Reference, int64(l.Reference.Samples)}, "notify only": {l.NotifyOnly, 0}} {
		if c.st.Written != c.want {
			t.Errorf("latency %s: %d rows written, want %d", name, c.st.Written, c.want)
		}
	}
	if l.TargetP99Ms != l.Reference.P99Ms+TargetLatencySlackMs {
		t.Errorf("latency target %v, want reference p99 + 2 ms", l.TargetP99Ms)
	}

	s := rep.Sustained
	if s.RowsInserted <= 0 || s.InsertedPerS <= 0 || s.DecodedPerS <= 0 || s.AllEventsDecoded <= s.RowsInserted || s.DrainS < 0 {
		t.Errorf("sustained %+v: a figure is not positive", s)
	}
	if s.Lost != 0 || s.Duplicates != 0 || s.Unexpected != 0 {
		t.Errorf("sustained: lost %d, duplicates %d, unexpected %d; want zero", s.Lost, s.Duplicates, s.Unexpected)
	}
	if s.RowsInserted%sustainedRowsPerTx != 0 {
		t.Errorf("sustained: %d rows inserted, not whole transactions", s.RowsInserted)
	}

	if rep.Machine.CPUs <= 0 || !strings.HasPrefix(rep.Machine.Postgres, "PostgreSQL") || rep.Machine.Settings["fsync"] == "" {
		t.Errorf("machine %+v incomplete", rep.Machine)
	}

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Write overhead", "ring_every_commit", "pgcast reader", "reference", "NOTIFY only", "Sustained", "lost / duplicated / unexpected"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back CaptureReport
	if err := json.Unmarshal(b, &back); err != nil || len(back.WriteOverhead) != len(rep.WriteOverhead) {
		t.Errorf("JSON round trip: %v", err)
	}

	// Every scenario database is gone.
	conn, err := pgx.Connect(ctx, pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var left int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname LIKE 'pgcast_bench_%'`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d scenario databases left behind", left)
	}
}

func TestCompareIDs(t *testing.T) {
	for _, tc := range []struct {
		want, got              []int64
		lost, dups, unexpected int64
	}{
		{nil, nil, 0, 0, 0},
		{[]int64{1, 2, 3}, []int64{1, 2, 3}, 0, 0, 0},
		{[]int64{1, 2, 3}, []int64{1, 3}, 1, 0, 0},
		{[]int64{1, 2, 3}, []int64{1, 1, 2, 3, 3, 3}, 0, 3, 0},
		{[]int64{2, 3}, []int64{1, 2, 3, 4}, 0, 0, 2},
		{[]int64{1, 5}, []int64{2, 2}, 2, 0, 2},
	} {
		l, d, u := compareIDs(tc.want, tc.got)
		if l != tc.lost || d != tc.dups || u != tc.unexpected {
			t.Errorf("compareIDs(%v, %v) = %d, %d, %d; want %d, %d, %d", tc.want, tc.got, l, d, u, tc.lost, tc.dups, tc.unexpected)
		}
	}
}

func TestWithDatabase(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:p@h:5432/postgres?sslmode=disable": "postgres://u:p@h:5432/x?sslmode=disable",
		"postgresql://h":            "postgresql://h/x",
		"postgres://h/db?dbname=db": "postgres://h/x",
		"host=h dbname=postgres":    "host=h dbname=postgres dbname=x",
	} {
		got, err := withDatabase(in, "x")
		if err != nil || got != want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestRunCaptureWatched runs the watched-table scenarios alone, short, with
// 1 and 3 writers.
func TestRunCaptureWatched(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := RunCapture(ctx, CaptureConfig{
		URL:               pgtest.AdminURL(),
		Scenarios:         []string{ScenarioWatched, ScenarioWatchedSustained},
		Duration:          150 * time.Millisecond,
		SustainedDuration: time.Second,
		Writers:           []int{1, 3},
		SustainedWriters:  2,
		Logger:            testLogger(t),
		updateRows:        300,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.WriteOverhead) != 0 || rep.Latency != nil || rep.Sustained != nil {
		t.Errorf("only the watched scenarios must run: %+v", rep)
	}
	checkWatched(t, rep, []int{1, 3})
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Watched table", "CREATE TABLE <table>", "watched rows/s", "Sustained, watched table", "lost / duplicated / unexpected"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if strings.Contains(table.String(), "Write overhead:") || strings.Contains(table.String(), "\nSustained:") {
		t.Errorf("table shows scenarios that did not run:\n%s", table.String())
	}
}

// checkWatched checks the watched-table scenarios' figures: rows written on
// both tables, every watched transaction decoded as one event, every row of
// the sustained run decoded once.
func checkWatched(t *testing.T, rep *CaptureReport, writers []int) {
	t.Helper()
	if got, want := len(rep.WatchedOverhead), 2*len(writers); got != want {
		t.Fatalf("watched: %d cells, want %d", got, want)
	}
	var tx int64
	for i, c := range rep.WatchedOverhead {
		if c.Variant != VariantWatched || c.Writers != writers[i/2] || c.Op != []string{"insert", "update"}[i%2] {
			t.Errorf("watched cell %d: %s/%s/%d", i, c.Variant, c.Op, c.Writers)
		}
		if c.CaptureTx <= 0 || c.CaptureRowsPerS <= 0 || c.PlainRowsPerS <= 0 || c.Ratio <= 0 {
			t.Errorf("watched %s/%d %+v: no rows written", c.Op, c.Writers, c)
		}
		want := TargetRatioOneWriter
		if c.Writers > 1 {
			want = TargetRatioManyWriters
		}
		if c.Target != want || c.Pass == nil || *c.Pass != (c.Ratio >= want) {
			t.Errorf("watched %s/%d: target %v, pass %v for ratio %v", c.Op, c.Writers, c.Target, c.Pass, c.Ratio)
		}
		tx += c.CaptureTx
	}
	// The warm-up adds 50 transactions per connection and statement.
	warm := int64(2 * 50 * slices.Max(writers))
	if ch := rep.WatchedCheck; ch == nil || ch.Transactions != tx+warm || ch.Events != ch.Transactions {
		t.Errorf("watched: check %+v, want %d transactions decoded as as many events", ch, tx+warm)
	}
	if !strings.Contains(rep.WatchedTable, "jsonb") || strings.Count(rep.WatchedTable, "CREATE INDEX") != 2 {
		t.Errorf("watched table DDL: %s", rep.WatchedTable)
	}
	s := rep.WatchedSustained
	if s == nil {
		t.Fatal("watched: no sustained result")
	}
	if s.RowsInserted <= 0 || s.InsertedPerS <= 0 || s.DecodedPerS <= 0 || s.AllEventsDecoded < s.RowsInserted {
		t.Errorf("watched sustained %+v: no rows written or decoded", s)
	}
	if s.Lost != 0 || s.Duplicates != 0 || s.Unexpected != 0 || s.RowsInserted%sustainedRowsPerTx != 0 {
		t.Errorf("watched sustained: %d rows, lost %d, duplicates %d, unexpected %d", s.RowsInserted, s.Lost, s.Duplicates, s.Unexpected)
	}
}

// TestRunCaptureScenarios runs one selected scenario and rejects unknown ones.
func TestRunCaptureScenarios(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := RunCapture(ctx, CaptureConfig{URL: pgtest.AdminURL(), Scenarios: []string{"latency", "nope"}}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown scenario: err %v", err)
	}
	rep, err := RunCapture(ctx, CaptureConfig{URL: pgtest.AdminURL(), Scenarios: []string{ScenarioLatency},
		LatencyDuration: 200 * time.Millisecond, Rate: 200, LatencyWriters: 2, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.WriteOverhead) != 0 || rep.Sustained != nil || rep.Latency == nil || rep.Latency.Pgcast.Samples == 0 {
		t.Fatalf("only latency must run: %+v", rep)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(table.String(), "Write overhead") || strings.Contains(table.String(), "Sustained") || !strings.Contains(table.String(), "Latency") {
		t.Fatalf("table shows scenarios that did not run:\n%s", table.String())
	}
}
