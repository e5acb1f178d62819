package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pgcast/pgcast/internal/bench"
	"github.com/pgcast/pgcast/internal/pgcluster"
)

func (a *app) benchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure pgcast against references taken in the same run",
		Long: `Benchmarks that print every figure next to its reference, measured in the
same run on the same server, so that a number means something on any machine.`,
		Example: "  pgcast bench capture\n  pgcast bench catalyst --quick\n  pgcast bench realtime --runs steady --json",
	}
	cmd.AddCommand(a.benchCaptureCmd(), a.benchCatalystCmd(), a.benchRealtimeCmd())
	return cmd
}

func (a *app) benchCaptureCmd() *cobra.Command {
	var (
		asJSON                     bool
		quick                      bool
		duration, latency, sustain time.Duration
		rate                       int
		scenarios                  []string
	)
	cmd := &cobra.Command{
		Use:   "capture",
		Short: "Measure the capture triggers' write overhead, the commit-to-decode latency and the sustained decode rate",
		Long: `Measure change capture against references, each scenario in its own fresh
database (created on the server, migrated, dropped at the end):

  write overhead  rows/s of single-row INSERT and UPDATE transactions with
                  pgcast's capture ÷ the same statements on an identical table
                  without triggers, with 1 and 8 writers, for three variants:
                  the default doorbell, a poll-only reader, and a NOTIFY on every
                  commit. Targets: ≥ 0.80 with 1 writer, ≥ 0.60 with 8.
  latency         just before COMMIT → event decoded by the reader, p50/p99/max at
                  --rate changes/s, against a bare connection receiving a NOTIFY
                  committed the same way (the same change, into the identical
                  table without triggers, with a NOTIFY in its transaction).
                  Target: p99 ≤ the reference's + 2 ms. A NOTIFY alone (a
                  transaction that writes nothing) is shown for comparison.
  sustained       record_created events decoded per second while writers insert
                  transactions of 100 rows as fast as they can, and a check that
                  every record was decoded exactly once. Target: ≥ 20,000/s.
  watched         write overhead of a watched application table (pgcast watch;
                  8 columns of mixed types, an identity key and 2 indexes):
                  rows/s of single-row INSERT and UPDATE transactions on it ÷
                  the same on the identical table unwatched, with 1 and 8
                  writers, the reader running, and a check that every watched
                  transaction was decoded as one event. Targets: ≥ 0.80 with 1
                  writer, ≥ 0.60 with 8.
  watched_sustained
                  sustained, on the watched table: record_created events
                  decoded per second, each row exactly once. Target: ≥ 20,000/s.

Without --database-url (or DATABASE_URL) a throwaway local cluster is started
with durable commits (fsync and synchronous_commit on) and stopped at the end.
With one, the user needs CREATEDB; run it against a server that is otherwise
idle, or the numbers measure the other load. The full run takes about ten
minutes; --quick takes about one; --scenarios runs only some.`,
		Example: "  pgcast bench capture\n  pgcast bench capture --quick --json\n  pgcast bench capture --scenarios latency --latency-duration 60s\n  pgcast bench capture --scenarios watched,watched_sustained\n  pgcast bench capture --database-url postgres://postgres@db/postgres --duration 20s",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			if quick {
				if !fs.Changed("duration") {
					duration = 2 * time.Second
				}
				if !fs.Changed("latency-duration") {
					latency = 3 * time.Second
				}
				if !fs.Changed("sustained-duration") {
					sustain = 5 * time.Second
				}
			}
			for name, d := range map[string]time.Duration{"--duration": duration, "--latency-duration": latency, "--sustained-duration": sustain} {
				if d <= 0 {
					return fmt.Errorf("%s must be positive, got %s", name, d)
				}
			}
			if rate < 1 || rate > 100000 {
				return fmt.Errorf("--rate must be between 1 and 100000, got %d", rate)
			}
			for _, sc := range scenarios {
				if !slices.Contains(bench.CaptureScenarios, sc) {
					return fmt.Errorf("--scenarios: unknown scenario %q (want %s)", sc, strings.Join(bench.CaptureScenarios, ", "))
				}
			}
			cfg := bench.CaptureConfig{
				Duration:          duration,
				LatencyDuration:   latency,
				SustainedDuration: sustain,
				Rate:              rate,
				Scenarios:         scenarios,
				Logger:            a.logger,
			}
			return a.benchCapture(cmd.Context(), cfg, asJSON, commandLine(cmd))
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print one JSON document instead of tables")
	f.BoolVar(&quick, "quick", false, "short durations for a smoke run (2s cells, 3s latency, 5s sustained) unless set explicitly")
	f.DurationVar(&duration, "duration", 10*time.Second, "duration of each write-overhead cell (each of capture and plain)")
	f.DurationVar(&latency, "latency-duration", 20*time.Second, "duration of each latency measurement (each of pgcast, the reference and NOTIFY only)")
	f.DurationVar(&sustain, "sustained-duration", 60*time.Second, "duration of the sustained-throughput run")
	f.IntVar(&rate, "rate", 1000, "changes per second of the latency measurement")
	f.StringSliceVar(&scenarios, "scenarios", nil, "scenarios to run, comma-separated: "+strings.Join(bench.CaptureScenarios, ", ")+" (default all)")
	return cmd
}

func (a *app) benchCapture(ctx context.Context, cfg bench.CaptureConfig, asJSON bool, command string) error {
	return a.runBench(ctx, asJSON, func(ctx context.Context, url string) (benchReport, error) {
		cfg.URL = url
		rep, err := bench.RunCapture(ctx, cfg)
		if err != nil {
			return nil, err
		}
		rep.Command = command
		return rep, nil
	})
}

// benchReport is what every benchmark returns.
type benchReport interface {
	WriteTable(io.Writer) error
}

// runBench runs a benchmark against --database-url, or a throwaway local
// cluster with durable commits, and prints its report. The first signal
// cancels the run, which cleans up (databases, server processes) and
// returns "interrupted".
func (a *app) runBench(ctx context.Context, asJSON bool, run func(ctx context.Context, url string) (benchReport, error)) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case s := <-a.signals:
			a.logger.Warn("interrupted: cleaning up", "signal", s.String())
			cancel()
		case <-ctx.Done():
		}
	}()
	url := a.databaseURL
	if url == "" {
		cluster, err := pgcluster.Start(ctx, pgcluster.Config{
			Durable:  true,
			Settings: map[string]string{"max_connections": "200"},
			Logger:   a.logger,
		})
		if err != nil {
			if errors.Is(err, pgcluster.ErrNoBinaries) {
				return pgcluster.ErrNoBinaries
			}
			return fmt.Errorf("start local postgres: %w", err)
		}
		defer func() {
			if serr := cluster.Stop(context.WithoutCancel(ctx)); serr != nil && err == nil {
				err = serr
			}
		}()
		url = cluster.DSN("postgres")
		a.logger.Info("throwaway postgres started (durable commits)", "port", cluster.Port())
	}
	rep, err := run(ctx, url)
	if err != nil {
		if ctx.Err() != nil {
			return errors.New("interrupted")
		}
		return err
	}
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteTable(a.stdout)
}

func (a *app) benchCatalystCmd() *cobra.Command {
	var (
		asJSON, quick              bool
		clients, rate, idleClients int
		duration, messageTime      time.Duration
		drainTimeout               time.Duration
		serverBinary               string
	)
	cmd := &cobra.Command{
		Use:   "catalyst",
		Short: "Measure delivery to many Catalyst WebSocket clients: loss, throughput, server CPU and memory per connection",
		Long: `Measure the Catalyst endpoint /ws/events/object-records/ end to end. The
server is a separate ` + "`pgcast serve`" + ` process (this binary, or --server-binary), so
that its CPU time and memory, read from /proc, are its own; the clients run in
this process, each with its own user, token (signed with a random secret the
server is given), ticket from /api/users/ws-auth/ and connection.

  delivery     --clients connections receive every change committed at --rate
               changes/s for --duration, each change an UPDATE of one record's
               cell (one item per client), the server batching every
               --message-time. Reported: items delivered/s, expected against
               received items per client, lost items once the clients have
               drained (up to --drain-timeout), and the server's average CPU
               while writing. Targets: zero loss; < 0.5 core at 1,000 clients
               × 500 changes/s.
  idle memory  a fresh server's RSS with --idle-clients idle connections minus
               its RSS with none, ÷ --idle-clients (the minimum of a few samples
               each, after the garbage collector settled). Target: ≤ 16 KiB per
               connection at 10,000. --idle-clients 0 skips it.

Without --database-url (or DATABASE_URL) a throwaway local cluster is started
with durable commits and stopped at the end; with one, the user needs CREATEDB.
Postgres, the server and the clients share this machine's CPUs: run it on an
otherwise idle machine. Linux only (/proc). The full run takes about two
minutes; --quick (100 clients × 200/s for 5 s, 1,000 idle) about twenty seconds.`,
		Example: `  pgcast bench catalyst
  pgcast bench catalyst --quick --json
  pgcast bench catalyst --clients 2000 --rate 1000 --duration 30s --idle-clients 0
  pgcast bench catalyst --server-binary ./bin/pgcast-previous`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			if quick {
				setUnless(fs, "clients", &clients, 100)
				setUnless(fs, "rate", &rate, 200)
				setUnless(fs, "duration", &duration, 5*time.Second)
				setUnless(fs, "idle-clients", &idleClients, 1000)
			}
			most, err := bench.MaxClients()
			if err != nil {
				return err
			}
			switch {
			case clients < 1 || clients > most:
				return fmt.Errorf("--clients must be between 1 and %d (the open-files limit, ulimit -n, less spare), got %d", most, clients)
			case idleClients < 0 || idleClients > most:
				return fmt.Errorf("--idle-clients must be between 0 (skip) and %d (the open-files limit, ulimit -n, less spare), got %d", most, idleClients)
			case rate < 1 || rate > 100000:
				return fmt.Errorf("--rate must be between 1 and 100000, got %d", rate)
			case duration <= 0:
				return fmt.Errorf("--duration must be positive, got %s", duration)
			case messageTime < time.Millisecond:
				return fmt.Errorf("--message-time must be at least 1ms, got %s", messageTime)
			case drainTimeout <= 0:
				return fmt.Errorf("--drain-timeout must be positive, got %s", drainTimeout)
			}
			cfg := bench.CatalystConfig{
				Executable:   serverBinary,
				Clients:      clients,
				Rate:         rate,
				Duration:     duration,
				IdleClients:  idleClients,
				SkipIdle:     idleClients == 0,
				MessageTime:  messageTime,
				DrainTimeout: drainTimeout,
				Logger:       a.logger,
			}
			command := commandLine(cmd)
			return a.runBench(cmd.Context(), asJSON, func(ctx context.Context, url string) (benchReport, error) {
				cfg.URL = url
				rep, err := bench.RunCatalyst(ctx, cfg)
				if err != nil {
					return nil, err
				}
				rep.Command = command
				return rep, nil
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print one JSON document instead of tables")
	f.BoolVar(&quick, "quick", false, "a smoke run (100 clients × 200 changes/s for 5s, 1000 idle clients) unless set explicitly")
	f.IntVar(&clients, "clients", 1000, "connections of the delivery phase")
	f.IntVar(&rate, "rate", 500, "changes per second of the delivery phase")
	f.DurationVar(&duration, "duration", 60*time.Second, "how long the delivery phase writes")
	f.IntVar(&idleClients, "idle-clients", 10000, "idle connections of the memory phase; 0 skips it")
	f.DurationVar(&messageTime, "message-time", 100*time.Millisecond, "the server's --message-time (batching period)")
	f.DurationVar(&drainTimeout, "drain-timeout", 60*time.Second, "after the writers stop, how long clients may take to receive everything before the rest counts as lost")
	f.StringVar(&serverBinary, "server-binary", "", "pgcast binary to run as the server (default: this one)")
	return cmd
}

func (a *app) benchRealtimeCmd() *cobra.Command {
	var (
		asJSON, quick          bool
		runs                   []string
		clients, rate, writers int
		duration               time.Duration
		read                   string
		reference, drainLimit  time.Duration
		serverBinary           string
	)
	presets := bench.RealtimePresets()
	names := make([]string, len(presets))
	for i, p := range presets {
		names[i] = p.Name
	}
	cmd := &cobra.Command{
		Use:   "realtime",
		Short: "Measure /api/realtime delivery to many subscribers: loss, commit-to-client latency, throughput, server CPU",
		Long: `Measure /api/realtime end to end. Each run has its own database and its own
` + "`pgcast serve`" + ` process (this binary, or --server-binary), whose CPU time is read
from /proc; the clients run in this process, each with its own user and token,
subscribed to posts.* on a posts collection. Changes are UPDATEs of posts
records committed at a fixed rate over --writers connections, each one
posts.updated event for every client. Reported per run: lost events once the clients have drained (up to
--drain-timeout), events delivered/s, latency from just before COMMIT to the
event parsed by a client (p50/p99/max over every delivery), the same for a bare
pgx connection receiving a NOTIFY committed the same way (the reference, run
first, for up to --reference-duration), and the server's average CPU.

Runs (--runs selects; all by default, in this order):
  steady        1,000 clients × 100 changes/s for 30s. Targets: p99 ≤ 15 ms, < 0.5 core
  steady_owner  the same with read: owner, every client among every record's
                owners (same deliveries): the permission check's cost, as a
                ratio to steady
  burst         1,000 clients × 1,000 changes/s for 10s. Target: p99 ≤ 500 ms
  fanout        10,000 clients × 100 changes/s for 10s. Target: ≥ 200,000 deliveries/s
Every run's target includes zero loss. --clients, --rate, --duration and --read
override the selected runs (their targets stay as printed).

Without --database-url (or DATABASE_URL) a throwaway local cluster is started
with durable commits and stopped at the end; with one, the user needs CREATEDB.
Postgres, the server and the clients share this machine's CPUs: run it on an
otherwise idle machine. Linux only (/proc). The full run takes about three
minutes; --quick (a tenth of the clients, a few seconds per run) well under one.`,
		Example: `  pgcast bench realtime
  pgcast bench realtime --quick --json
  pgcast bench realtime --runs steady,steady_owner
  pgcast bench realtime --runs burst --rate 2000 --duration 20s
  pgcast bench realtime --runs burst --writers 32`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			selected, err := selectRuns(presets, runs)
			if err != nil {
				return err
			}
			if quick {
				for i := range selected {
					selected[i].Clients = max(1, selected[i].Clients/10)
					selected[i].Duration = min(selected[i].Duration, 5*time.Second)
				}
				setUnless(fs, "reference-duration", &reference, 2*time.Second)
			}
			most, err := bench.MaxClients()
			if err != nil {
				return err
			}
			switch {
			case fs.Changed("clients") && (clients < 1 || clients > most):
				return fmt.Errorf("--clients must be between 1 and %d (the open-files limit, ulimit -n, less spare), got %d", most, clients)
			case fs.Changed("rate") && (rate < 1 || rate > 100000):
				return fmt.Errorf("--rate must be between 1 and 100000, got %d", rate)
			case fs.Changed("duration") && duration <= 0:
				return fmt.Errorf("--duration must be positive, got %s", duration)
			case fs.Changed("read") && read != bench.ReadPublic && read != bench.ReadOwner:
				return fmt.Errorf("--read must be %q or %q, got %q", bench.ReadPublic, bench.ReadOwner, read)
			case reference <= 0:
				return fmt.Errorf("--reference-duration must be positive, got %s", reference)
			case drainLimit <= 0:
				return fmt.Errorf("--drain-timeout must be positive, got %s", drainLimit)
			case writers < 1 || writers > 100:
				return fmt.Errorf("--writers must be between 1 and 100, got %d", writers)
			}
			for i := range selected {
				r := &selected[i]
				if fs.Changed("clients") {
					r.Clients = clients
				}
				if fs.Changed("rate") {
					r.Rate = rate
				}
				if fs.Changed("duration") {
					r.Duration = duration
				}
				if fs.Changed("read") {
					r.Read = read
				}
				if r.Clients > most {
					return fmt.Errorf("run %s needs %d clients but at most %d fit the open-files limit (ulimit -n) less spare: lower --clients or skip it with --runs", r.Name, r.Clients, most)
				}
				if r.Compare != "" && !slices.ContainsFunc(selected[:i], func(o bench.RealtimeRun) bool { return o.Name == r.Compare }) {
					r.Compare = "" // its reference run was not selected
				}
			}
			cfg := bench.RealtimeConfig{
				Executable:        serverBinary,
				Runs:              selected,
				ReferenceDuration: reference,
				DrainTimeout:      drainLimit,
				Writers:           writers,
				Logger:            a.logger,
			}
			command := commandLine(cmd)
			return a.runBench(cmd.Context(), asJSON, func(ctx context.Context, url string) (benchReport, error) {
				cfg.URL = url
				rep, err := bench.RunRealtime(ctx, cfg)
				if err != nil {
					return nil, err
				}
				rep.Command = command
				return rep, nil
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print one JSON document instead of tables")
	f.BoolVar(&quick, "quick", false, "a smoke run: a tenth of each run's clients, at most 5s each, a 2s reference")
	f.StringSliceVar(&runs, "runs", nil, "runs to do, comma-separated: "+strings.Join(names, ", ")+" (default all)")
	f.IntVar(&clients, "clients", 0, "override every selected run's number of clients")
	f.IntVar(&rate, "rate", 0, "override every selected run's changes per second")
	f.DurationVar(&duration, "duration", 0, "override every selected run's duration")
	f.StringVar(&read, "read", "", `override every selected run's read rule: "public" or "owner"`)
	f.DurationVar(&reference, "reference-duration", 10*time.Second, "how long each run's bare NOTIFY reference lasts (at most the run's duration)")
	f.DurationVar(&drainLimit, "drain-timeout", 2*time.Minute, "after the writers stop, how long clients may take to receive everything before the rest counts as lost")
	f.IntVar(&writers, "writers", 8, "database connections sharing the paced changes (and the reference's NOTIFYs)")
	f.StringVar(&serverBinary, "server-binary", "", "pgcast binary to run as the server (default: this one)")
	return cmd
}

// selectRuns returns the named presets in their own order (all when names
// is empty), or an error naming the unknown one.
func selectRuns(presets []bench.RealtimeRun, names []string) ([]bench.RealtimeRun, error) {
	if len(names) == 0 {
		return slices.Clone(presets), nil
	}
	want := map[string]bool{}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if !slices.ContainsFunc(presets, func(p bench.RealtimeRun) bool { return p.Name == n }) {
			var known []string
			for _, p := range presets {
				known = append(known, p.Name)
			}
			return nil, fmt.Errorf("--runs: unknown run %q (known: %s)", n, strings.Join(known, ", "))
		}
		want[n] = true
	}
	var out []bench.RealtimeRun
	for _, p := range presets {
		if want[p.Name] {
			out = append(out, p)
		}
	}
	return out, nil
}

// setUnless sets *v to quick unless the flag was given.
func setUnless[T any](fs *pflag.FlagSet, name string, v *T, quick T) {
	if !fs.Changed(name) {
		*v = quick
	}
}

// commandLine reconstructs the command as run, secrets redacted.
func commandLine(cmd *cobra.Command) string {
	parts := []string{cmd.CommandPath()}
	visit := func(f *pflag.Flag) {
		if !f.Changed {
			return
		}
		v := redact(f)
		if sv, ok := f.Value.(pflag.SliceValue); ok && len(f.Annotations[secretAnnotation]) == 0 {
			v = strings.Join(sv.GetSlice(), ",") // as typed, not "[a,b]"
		}
		if f.Value.Type() == "bool" && v == "true" {
			parts = append(parts, "--"+f.Name)
			return
		}
		parts = append(parts, "--"+f.Name+" "+v)
	}
	cmd.Flags().VisitAll(visit)
	return strings.Join(parts, " ")
}
