package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgcast/pgcast/internal/pgtest"
)

// buildPgcast builds the pgcast command into a temporary directory: the
// WebSocket scenarios run it as their server (the test binary is not it).
// Without -race: the server's CPU figures should not measure the detector.
func buildPgcast(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	exe := filepath.Join(t.TempDir(), "pgcast")
	cmd := exec.Command(goBin, "build", "-o", exe, "github.com/pgcast/pgcast/cmd/pgcast")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/pgcast: %v\n%s", err, out)
	}
	return exe
}

// leftDatabases counts scenario databases of this process whose name ends
// in one of labels. Not the templates: other tests of the package run in
// parallel, each with its own (TestRunCapture, which runs alone, checks
// that templates are dropped too).
func leftDatabases(t *testing.T, ctx context.Context, labels ...string) int {
	t.Helper()
	conn, err := pgx.Connect(ctx, pgtest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	for _, l := range labels {
		var c int
		pattern := fmt.Sprintf("pgcast_bench_%d_%%_%s", os.Getpid(), l)
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname LIKE $1`, pattern).Scan(&c); err != nil {
			t.Fatal(err)
		}
		n += c
	}
	return n
}

// TestRunCatalyst runs both phases with a few clients: every item
// delivered, every figure measured, the server stopped, the database gone.
func TestRunCatalyst(t *testing.T) {
	t.Parallel()
	exe := buildPgcast(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := RunCatalyst(ctx, CatalystConfig{
		URL:          pgtest.AdminURL(),
		Executable:   exe,
		Clients:      20,
		Rate:         200,
		Duration:     2 * time.Second,
		IdleClients:  50,
		IdleSettle:   200 * time.Millisecond,
		Writers:      3,
		DrainTimeout: 30 * time.Second,
		Logger:       testLogger(t),
		records:      16,
	})
	if err != nil {
		t.Fatal(err)
	}
	d := rep.Delivery
	if d.Changes < 100 || d.ChangesPerS <= 0 || d.DurationS <= 0 {
		t.Errorf("delivery %+v: too few changes", d)
	}
	if d.Lost != 0 || d.Extra != 0 || d.Disconnected != 0 || d.ClientsShort != 0 || !d.PassLoss {
		t.Errorf("delivery: lost %d, extra %d, disconnected %d, short %d; want zero", d.Lost, d.Extra, d.Disconnected, d.ClientsShort)
	}
	if d.ExpectedPerClient != d.Changes || d.ReceivedMin != d.Changes || d.ReceivedMax != d.Changes || d.Received != d.Changes*int64(d.Clients) {
		t.Errorf("delivery %+v: counts disagree", d)
	}
	// Batching: with 100 ms ticks a client gets far fewer frames than items.
	if d.Frames <= 0 || d.Frames >= d.Received {
		t.Errorf("delivery: %d frames for %d items", d.Frames, d.Received)
	}
	if d.DeliveredPerS <= 0 || d.CPU.Server <= 0 || d.CPU.Bench <= 0 || d.CPU.Machine <= 0 || d.ServerRSSMB <= 0 || d.ServerCPUPerItemUs <= 0 {
		t.Errorf("delivery %+v: a figure is not positive", d)
	}
	m := rep.Idle
	if m == nil {
		t.Fatal("no idle memory phase")
	}
	if m.Clients != 50 || m.BaseRSSMB <= 0 || m.IdleRSSMB <= 0 || m.ConnectS <= 0 {
		t.Errorf("idle %+v: a figure is not positive", m)
	}
	// Each connection holds its read loop (its writer runs only while there
	// is something to send). The figure is a difference of two samples of
	// the server's goroutines, either of which may hold a transient one
	// (an HTTP keep-alive, a timer): ±1 over 50 connections.
	if m.GoroutinesPerConn < 0.95 {
		t.Errorf("idle: %.2f goroutines per connection", m.GoroutinesPerConn)
	}

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pgcast catalyst benchmark", "Delivery: 20 clients", "lost / extra / disconnected", "server CPU", "Idle memory", "per idle connection"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	t.Logf("\n%s", table.String())
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back CatalystReport
	if err := json.Unmarshal(b, &back); err != nil || back.Delivery != rep.Delivery || back.Idle == nil {
		t.Errorf("JSON round trip: %v", err)
	}
	if n := leftDatabases(t, ctx, "catalyst"); n != 0 {
		t.Errorf("%d scenario databases left behind", n)
	}
}

func TestCatalystConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  CatalystConfig
		want string
	}{
		{CatalystConfig{}, "URL is required"},
		{CatalystConfig{URL: "x", Clients: -1}, "Clients must be positive"},
		{CatalystConfig{URL: "x", Rate: 1_000_000}, "Rate must be between"},
		{CatalystConfig{URL: "x", IdleClients: 10_000_000}, "IdleClients is 10000000"},
		{CatalystConfig{URL: "x", IdleClients: 10_000_000, SkipIdle: true}, ""},
		{CatalystConfig{URL: "x", MessageTime: time.Microsecond}, "MessageTime must be at least 1ms"},
	} {
		cfg, err := tc.cfg.withDefaults()
		if err == nil {
			err = cfg.validate()
		}
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: got %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	t.Parallel()
	// A command name with a space and a parenthesis; utime 250, stime 50.
	stat := []byte("1234 (pg cast) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 100 1000 200 18446744073709551615\n")
	total, sys, err := parseProcStat(stat)
	if err != nil || total != 3*time.Second || sys != 500*time.Millisecond {
		t.Errorf("parseProcStat = %v, %v, %v; want 3s, 500ms", total, sys, err)
	}
	if _, _, err := parseProcStat([]byte("garbage")); err == nil {
		t.Error("parseProcStat(garbage): no error")
	}
	self, err := procCPUTime("self")
	if err != nil || self <= 0 {
		t.Errorf("procCPUTime(self) = %v, %v", self, err)
	}
	if busy, err := machineBusy(); err != nil || busy <= 0 {
		t.Errorf("machineBusy = %v, %v", busy, err)
	}
}

func TestLatencyHist(t *testing.T) {
	t.Parallel()
	// Every bucket's value maps back to the bucket, and buckets are
	// contiguous and increasing.
	prev := -1.0
	for i := range histIndex(histMaxUs) + 1 {
		v := histValue(i)
		if v <= prev {
			t.Fatalf("bucket %d value %v not above %v", i, v, prev)
		}
		if got := histIndex(int64(v)); got != i {
			t.Fatalf("histIndex(histValue(%d) = %v) = %d", i, v, got)
		}
		prev = v
	}
	var h latencyHist
	// 1 ms … 100 ms, one each: p50 ≈ 50 ms, p99 ≈ 99 ms, max 100 ms.
	for i := 1; i <= 100; i++ {
		h.record(i, time.Duration(i)*time.Millisecond)
	}
	n, p50, p99, maxMs := h.stats()
	if n != 100 || maxMs != 100 {
		t.Errorf("stats: n %d, max %v", n, maxMs)
	}
	for _, c := range []struct{ got, want float64 }{{p50, 50}, {p99, 99}} {
		if c.got < c.want*0.99 || c.got > c.want*1.01 {
			t.Errorf("percentile %v, want %v ± 1 %%", c.got, c.want)
		}
	}
	var empty latencyHist
	if n, _, _, _ := empty.stats(); n != 0 {
		t.Errorf("empty histogram: %d samples", n)
	}
}

// TestRunRealtime runs a public run and an owner run compared with it, with
// a few clients: every event delivered, latencies and the reference
// measured.
func TestRunRealtime(t *testing.T) {
	t.Parallel()
	exe := buildPgcast(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := RunRealtime(ctx, RealtimeConfig{
		URL:        pgtest.AdminURL(),
		Executable: exe,
		Runs: []RealtimeRun{
			{Name: "public", Clients: 20, Rate: 200, Duration: 2 * time.Second, TargetP99Ms: 60_000, TargetServerCores: 2, TargetDeliveriesPerS: 1},
			{Name: "owner", Clients: 20, Rate: 200, Duration: 2 * time.Second, Read: ReadOwner, Compare: "public"},
		},
		ReferenceDuration: time.Second,
		DrainTimeout:      30 * time.Second,
		Writers:           3,
		Logger:            testLogger(t),
		records:           16,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 2 {
		t.Fatalf("%d runs, want 2", len(rep.Runs))
	}
	for _, x := range rep.Runs {
		if x.Changes < 100 || x.ChangesPerS <= 0 || x.ConnectS <= 0 {
			t.Errorf("%s %+v: too few changes", x.Name, x)
		}
		if x.Lost != 0 || x.Extra != 0 || x.Disconnected != 0 || x.ClientsShort != 0 || x.Other != 0 || !x.PassLoss {
			t.Errorf("%s: lost %d, extra %d, disconnected %d, short %d, other %d; want zero", x.Name, x.Lost, x.Extra, x.Disconnected, x.ClientsShort, x.Other)
		}
		if x.ReceivedMin != x.Changes || x.ReceivedMax != x.Changes || x.Received != x.Changes*int64(x.Clients) {
			t.Errorf("%s %+v: counts disagree", x.Name, x)
		}
		for name, st := range map[string]LatencyStats{"latency": x.Latency, "reference": x.Reference} {
			if st.Samples <= 0 || st.RatePerS <= 0 || st.P50Ms <= 0 || st.P50Ms > st.P99Ms || st.P99Ms > st.MaxMs || st.Missing != 0 {
				t.Errorf("%s %s %+v: not sane", x.Name, name, st)
			}
		}
		if int64(x.Latency.Samples) != x.Received {
			t.Errorf("%s: %d latency samples for %d deliveries", x.Name, x.Latency.Samples, x.Received)
		}
		if x.DeliveredPerS <= 0 || x.CPU.Server <= 0 || x.ServerRSSMB <= 0 || x.ServerCPUPerEventUs <= 0 {
			t.Errorf("%s %+v: a figure is not positive", x.Name, x)
		}
		// The server is this process's child: its /proc/<pid>/io is
		// readable, and it wrote to its clients while the writers ran.
		if x.CPU.ServerWritesPerS <= 0 || x.CPU.ServerSysUsPerWrite <= 0 {
			t.Errorf("%s %+v: no write system calls counted", x.Name, x.CPU)
		}
	}
	pub, own := rep.Runs[0], rep.Runs[1]
	if pub.PassP99 == nil || !*pub.PassP99 || pub.PassCPU == nil || pub.PassDeliveries == nil || !*pub.PassDeliveries {
		t.Errorf("public verdicts: p99 %v, cpu %v, deliveries %v", pub.PassP99, pub.PassCPU, pub.PassDeliveries)
	}
	if own.PassP99 != nil || own.P99Ratio <= 0 || own.CPURatio <= 0 {
		t.Errorf("owner: verdict %v, ratios %v %v", own.PassP99, own.P99Ratio, own.CPURatio)
	}

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pgcast realtime benchmark", "NOTIFY p99 ms", "public: 20 clients", "owner: 20 clients, read owner", "vs public", "bare NOTIFY"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	t.Logf("\n%s", table.String())
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back RealtimeReport
	if err := json.Unmarshal(b, &back); err != nil || len(back.Runs) != 2 || back.Runs[1].Read != ReadOwner {
		t.Errorf("JSON round trip: %v", err)
	}
	if n := leftDatabases(t, ctx, "realtime_public", "realtime_owner"); n != 0 {
		t.Errorf("%d scenario databases left behind", n)
	}
}

func TestRealtimeConfigValidate(t *testing.T) {
	t.Parallel()
	ok := RealtimeRun{Name: "a", Clients: 1, Rate: 1, Duration: time.Second}
	for _, tc := range []struct {
		runs []RealtimeRun
		want string
	}{
		{nil, ""},
		{[]RealtimeRun{ok}, ""},
		{[]RealtimeRun{ok, ok}, `Runs[1].Name "a" is used twice`},
		{[]RealtimeRun{{Clients: 1, Rate: 1, Duration: time.Second}}, "Runs[0].Name is required"},
		{[]RealtimeRun{{Name: "a", Rate: 1, Duration: time.Second}}, "Runs[0].Clients must be positive"},
		{[]RealtimeRun{{Name: "a", Clients: 1, Duration: time.Second}}, "Runs[0].Rate must be between"},
		{[]RealtimeRun{{Name: "a", Clients: 1, Rate: 1}}, "Runs[0].Duration must be positive"},
		{[]RealtimeRun{{Name: "a", Clients: 1, Rate: 1, Duration: time.Second, Read: "admin"}}, `Read must be "public" or "owner"`},
		{[]RealtimeRun{{Name: "a", Clients: 1, Rate: 1, Duration: time.Second, Compare: "b"}}, `Compare "b" names no earlier run`},
		{[]RealtimeRun{{Name: "a", Clients: 10_000_000, Rate: 1, Duration: time.Second}}, "Runs[0].Clients is 10000000"},
	} {
		cfg, err := RealtimeConfig{URL: "x", Runs: tc.runs}.withDefaults()
		if err == nil {
			err = cfg.validate()
		}
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: got %v, want %q", tc.runs, err, tc.want)
		}
	}
}

func TestParseRealtimeSeq(t *testing.T) {
	t.Parallel()
	const none = -100
	for _, tc := range []struct {
		msg  string
		want int64
	}{
		// The server's encoding, with the record as jsonb prints it.
		{`{"type":"event","event":{"id":"evt_7","type":"posts.updated","timestamp":"2026-06-08T12:00:00.000Z","source":"collections","payload":{"id": 3, "seq": 42, "createdAt": "x", "updatedAt": "y"}}}`, 42},
		{`{"type":"event","event":{"id":"evt_8","type":"posts.updated","payload":{"id":3,"seq":-2}}}`, -2},
		// Another key order: decoded.
		{`{"event":{"payload":{"seq":5},"type":"posts.updated"},"type":"event"}`, 5},
		// Not events of a record with seq.
		{`{"type":"subscribed","channel":"posts.*"}`, none},
		{`{"type":"event","event":{"type":"posts.deleted","payload":{"id":3}}}`, none},
		{`not json`, none},
	} {
		got, ok := parseRealtimeSeq([]byte(tc.msg))
		if tc.want == none && ok || tc.want != none && (!ok || got != tc.want) {
			t.Errorf("parseRealtimeSeq(%s) = %d, %v; want %d", tc.msg, got, ok, tc.want)
		}
	}
}
