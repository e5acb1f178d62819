package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
		Example: "  pgcast bench capture\n  pgcast bench capture --quick --json",
	}
	cmd.AddCommand(a.benchCaptureCmd())
	return cmd
}

func (a *app) benchCaptureCmd() *cobra.Command {
	var (
		asJSON                     bool
		quick                      bool
		duration, latency, sustain time.Duration
		rate                       int
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
                  committed the same way. Target: p99 ≤ the reference's + 2 ms.
  sustained       record_created events decoded per second while writers insert
                  transactions of 100 rows as fast as they can, and a check that
                  every record was decoded exactly once. Target: ≥ 20,000/s.

Without --database-url (or DATABASE_URL) a throwaway local cluster is started
with durable commits (fsync and synchronous_commit on) and stopped at the end.
With one, the user needs CREATEDB; run it against a server that is otherwise
idle, or the numbers measure the other load. The full run takes about seven
minutes; --quick takes about one.`,
		Example: "  pgcast bench capture\n  pgcast bench capture --quick --json\n  pgcast bench capture --database-url postgres://postgres@db/postgres --duration 20s",
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
			cfg := bench.CaptureConfig{
				Duration:          duration,
				LatencyDuration:   latency,
				SustainedDuration: sustain,
				Rate:              rate,
				Logger:            a.logger,
			}
			return a.benchCapture(cmd.Context(), cfg, asJSON, commandLine(cmd))
		},
	}
	f := cmd.Flags()
	f.BoolVar(&asJSON, "json", false, "print one JSON document instead of tables")
	f.BoolVar(&quick, "quick", false, "short durations for a smoke run (2s cells, 3s latency, 5s sustained) unless set explicitly")
	f.DurationVar(&duration, "duration", 10*time.Second, "duration of each write-overhead cell (each of capture and plain)")
	f.DurationVar(&latency, "latency-duration", 20*time.Second, "duration of each latency measurement (each of pgcast and the reference)")
	f.DurationVar(&sustain, "sustained-duration", 60*time.Second, "duration of the sustained-throughput run")
	f.IntVar(&rate, "rate", 1000, "changes per second of the latency measurement")
	return cmd
}

func (a *app) benchCapture(ctx context.Context, cfg bench.CaptureConfig, asJSON bool, command string) (err error) {
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
	cfg.URL = a.databaseURL
	if cfg.URL == "" {
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
		cfg.URL = cluster.DSN("postgres")
		a.logger.Info("throwaway postgres started (durable commits)", "port", cluster.Port())
	}
	rep, err := bench.RunCapture(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return errors.New("interrupted")
		}
		return err
	}
	rep.Command = command
	if asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteTable(a.stdout)
}

// commandLine reconstructs the command as run, secrets redacted.
func commandLine(cmd *cobra.Command) string {
	parts := []string{cmd.CommandPath()}
	visit := func(f *pflag.Flag) {
		if !f.Changed {
			return
		}
		v := redact(f)
		if f.Value.Type() == "bool" && v == "true" {
			parts = append(parts, "--"+f.Name)
			return
		}
		parts = append(parts, "--"+f.Name+" "+v)
	}
	cmd.Flags().VisitAll(visit)
	return strings.Join(parts, " ")
}
