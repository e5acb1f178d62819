package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
)

// Machine describes where the benchmark ran.
type Machine struct {
	CPUs      int     `json:"cpus"`
	CPUModel  string  `json:"cpu_model,omitempty"`
	MemoryGB  float64 `json:"memory_gb,omitempty"`
	OS        string  `json:"os"`
	GoVersion string  `json:"go_version"`
	// Postgres is the server's version(); ServerHost where it runs
	// ("local" when reached over loopback or a unix socket, i.e. on this
	// machine).
	Postgres string `json:"postgres"`
	// LoadAvg is /proc/loadavg's 1-minute figure at the start and the end:
	// other load on the machine skews every figure.
	LoadAvgStart float64           `json:"load_avg_start,omitempty"`
	LoadAvgEnd   float64           `json:"load_avg_end,omitempty"`
	ServerHost   string            `json:"server_host"`
	Settings     map[string]string `json:"settings"`
}

// settingsShown are the server settings that decide commit cost.
var settingsShown = []string{"fsync", "synchronous_commit", "wal_sync_method", "full_page_writes", "shared_buffers", "max_wal_size", "max_connections"}

func machineInfo(ctx context.Context, u string) (Machine, error) {
	m := Machine{
		CPUs:      runtime.NumCPU(),
		OS:        runtime.GOOS + "/" + runtime.GOARCH,
		GoVersion: runtime.Version(),
		Settings:  map[string]string{},
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.OS += " " + strings.TrimSpace(string(b))
	}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	m.LoadAvgStart = loadAvg()
	if kb, err := strconv.ParseFloat(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal"), " kB"), 64); err == nil {
		m.MemoryGB = float64(int(kb/1024/1024*10+0.5)) / 10
	}
	cc, err := pgx.ParseConfig(u)
	if err != nil {
		return m, fmt.Errorf("invalid database URL: %w", err)
	}
	m.ServerHost = cc.Host
	if strings.HasPrefix(cc.Host, "/") || cc.Host == "localhost" || strings.HasPrefix(cc.Host, "127.") || cc.Host == "::1" {
		m.ServerHost = "local"
	}
	conn, err := connect(ctx, u)
	if err != nil {
		return m, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, `SELECT version()`).Scan(&m.Postgres); err != nil {
		return m, fmt.Errorf("read server version: %w", err)
	}
	rows, err := conn.Query(ctx, `SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name = ANY ($1)`, settingsShown)
	if err != nil {
		return m, fmt.Errorf("read server settings: %w", err)
	}
	var name, value string
	if _, err := pgx.ForEachRow(rows, []any{&name, &value}, func() error { m.Settings[name] = value; return nil }); err != nil {
		return m, fmt.Errorf("read server settings: %w", err)
	}
	return m, nil
}

// loadAvg is the 1-minute load average, 0 when unknown.
func loadAvg() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// WriteTable prints the report as aligned tables.
func (r *CaptureReport) WriteTable(w io.Writer) error {
	bw := &errWriter{w: w}
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	writeHeader(bw, "capture", r.Started, r.TookS, r.Command, r.Machine)

	if len(r.WriteOverhead) > 0 {
		p("\nWrite overhead: single-row autocommit transactions, rows/s with pgcast's capture ÷ the same statements\n")
		p("on an identical table without triggers; each %s, alternated capture, plain, plain, capture\n", secs(r.Config.DurationS))
		tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "variant\tstatement\twriters\tcapture rows/s\tplain rows/s\tratio\ttarget\t\treader reads/tx\t")
		for _, c := range r.WriteOverhead {
			target, verdict := "-", "(comparison)"
			if c.Pass != nil {
				target = fmt.Sprintf("≥ %.2f", c.Target)
				verdict = passFail(*c.Pass)
			}
			perTx := 0.0
			if c.CaptureTx > 0 {
				perTx = float64(c.ReaderReads) / float64(c.CaptureTx)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.0f\t%.3f\t%s\t%s\t%.3f\t\n", c.Variant, c.Op, c.Writers, c.CaptureRowsPerS, c.PlainRowsPerS, c.Ratio, target, verdict, perTx)
		}
		_ = tw.Flush()
		p("doorbell: reader running, writers ring only while it waits; poll_only: reader polls, writers never ring;\n")
		p("ring_every_commit: a listener row that always waits, so every capturing commit NOTIFYs.\n")
		p("reader reads/tx: the reader's non-empty reads per capture transaction (≈ 1: woken for nearly every commit).\n")

	}
	if l := r.Latency; l != nil {
		p("\nLatency: just before COMMIT → event decoded by the reader, %d changes/s over %d connections, each %s;\n", l.Rate, l.Writers, secs(r.Config.LatencyDurationS))
		p("reference: a bare pgx connection LISTENing; the writers commit the same change the same way into the identical\n")
		p("table without triggers, with a pg_notify() in the transaction. NOTIFY only: a transaction that writes nothing\n")
		p("and NOTIFYs (its COMMIT flushes nothing), for comparison\n")
		tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "receiver\tsamples\trate/s\tp50 ms\tp99 ms\tmax ms\tmissing\tCOMMIT p50 / p99 ms\tafter COMMIT p50 / p99 ms\t")
		for _, s := range []struct {
			name string
			st   LatencyStats
		}{{"pgcast reader", l.Pgcast}, {"reference", l.Reference}, {"NOTIFY only", l.NotifyOnly}} {
			split := "-\t-"
			if x := s.st.Split; x != nil {
				split = fmt.Sprintf("%.2f / %.2f\t%.2f / %.2f", x.CommitP50Ms, x.CommitP99Ms, x.AfterP50Ms, x.AfterP99Ms)
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t%s\t\n", s.name, s.st.Samples, s.st.RatePerS, s.st.P50Ms, s.st.P99Ms, s.st.MaxMs, s.st.Missing, split)
		}
		_ = tw.Flush()
		p("target: pgcast p99 ≤ reference p99 + %.0f ms = %.2f ms: %s\n", TargetLatencySlackMs, l.TargetP99Ms, passFail(l.Pass))
		p("COMMIT: how long the writer's COMMIT took (flushing the transaction; a capturing one writes the change and\n")
		p("its log entry, and NOTIFYs under a cluster-wide lock while the reader waits); after COMMIT: from its reply to\n")
		p("the change received. Percentiles of each part separately.\n")

	}
	if s := r.Sustained; s != nil {
		p("\nSustained: %d writers inserting transactions of %d rows as fast as they can for %s\n", s.Writers, s.RowsPerTx, secs(s.DurationS))
		writeSustained(bw, s)
	}
	if len(r.WatchedOverhead) > 0 || r.WatchedSustained != nil {
		p("\nWatched table (pgcast watch): an application table, the same DDL watched (every column, read public)\n")
		p("and unwatched (no triggers):\n  %s\n", strings.ReplaceAll(r.WatchedTable, "\n", "\n  "))
	}
	if len(r.WatchedOverhead) > 0 {
		p("\nWatched table write overhead: single-row autocommit INSERT (values as parameters) and UPDATE (status,\n")
		p("total, updated_at of a random row), rows/s watched ÷ unwatched, the reader running; each %s, alternated\n", secs(r.Config.DurationS))
		p("watched, unwatched, unwatched, watched\n")
		tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "statement\twriters\twatched rows/s\tunwatched rows/s\tratio\ttarget\t\tevents decoded\treader reads/tx\t")
		for _, c := range r.WatchedOverhead {
			target, verdict := "-", ""
			if c.Pass != nil {
				target, verdict = fmt.Sprintf("≥ %.2f", c.Target), passFail(*c.Pass)
			}
			perTx := 0.0
			if c.CaptureTx > 0 {
				perTx = float64(c.ReaderReads) / float64(c.CaptureTx)
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.3f\t%s\t%s\t%d\t%.3f\t\n", c.Op, c.Writers, c.CaptureRowsPerS, c.PlainRowsPerS, c.Ratio, target, verdict, c.EventsDecoded, perTx)
		}
		_ = tw.Flush()
		p("reader reads/tx: the reader's non-empty reads per watched transaction (≈ 1: nearly every commit rang the doorbell).\n")
		if c := r.WatchedCheck; c != nil {
			p("every watched transaction (warm-up included) decoded as one event: %d transactions, %d events\n", c.Transactions, c.Events)
		}
	}
	if s := r.WatchedSustained; s != nil {
		p("\nSustained, watched table: %d writers inserting transactions of %d rows as fast as they can for %s\n", s.Writers, s.RowsPerTx, secs(s.DurationS))
		writeSustained(bw, s)
	}
	return bw.err
}

// writeSustained prints a sustained scenario's figures.
func writeSustained(w io.Writer, s *SustainedResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "rows inserted\t%d (%.0f/s)\n", s.RowsInserted, s.InsertedPerS)
	fmt.Fprintf(tw, "record_created decoded/s\t%.0f mean while writing, %.0f slowest second (target ≥ %.0f: %s)\n", s.DecodedPerS, s.MinDecodedPerS, s.Target, passFail(s.Pass))
	fmt.Fprintf(tw, "all entries decoded\t%d (counts included)\n", s.AllEventsDecoded)
	fmt.Fprintf(tw, "drain after writers stop\t%.3f s\n", s.DrainS)
	fmt.Fprintf(tw, "lost / duplicated / unexpected\t%d / %d / %d\n", s.Lost, s.Duplicates, s.Unexpected)
	_ = tw.Flush()
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func secs(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

// firstWords returns the first n words of s ("PostgreSQL 15.14").
func firstWords(s string, n int) string {
	f := strings.Fields(s)
	return strings.Join(f[:min(n, len(f))], " ")
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

// writeHeader prints what every report starts with: the run, the machine
// and the Postgres server.
func writeHeader(w io.Writer, name string, started time.Time, tookS float64, command string, m Machine) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	p("pgcast %s benchmark, %s, took %s\n", name, started.Format(time.RFC3339), (time.Duration(tookS * float64(time.Second))).Round(time.Second))
	if command != "" {
		p("command:  %s\n", command)
	}
	p("machine:  %d CPUs", m.CPUs)
	if m.CPUModel != "" {
		p(" (%s)", m.CPUModel)
	}
	if m.MemoryGB > 0 {
		p(", %.1f GB RAM", m.MemoryGB)
	}
	p(", %s, %s", m.OS, m.GoVersion)
	if m.LoadAvgStart > 0 || m.LoadAvgEnd > 0 {
		p(", load average %.2f at start, %.2f at end", m.LoadAvgStart, m.LoadAvgEnd)
	}
	p("\n")
	p("postgres: %s, server %s\n", firstWords(m.Postgres, 2), m.ServerHost)
	var set []string
	for _, k := range settingsShown {
		if v, ok := m.Settings[k]; ok {
			set = append(set, k+"="+v)
		}
	}
	p("settings: %s\n", strings.Join(set, " "))
}
