package bench

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/pgcast/pgcast/internal/startstop"
)

// runtimeUse is the server's heap and stacks in use and its goroutines.
type runtimeUse struct{ heap, stack, goroutines float64 }

func readRuntimeUse(ctx context.Context, p *serverProc) (u runtimeUse, err error) {
	for _, m := range []struct {
		name string
		v    *float64
	}{{metricHeapInuse, &u.heap}, {metricStackInuse, &u.stack}, {metricGoroutines, &u.goroutines}} {
		if *m.v, err = p.gauge(ctx, m.name); err != nil {
			return u, err
		}
	}
	return u, nil
}

func runIdleMemory(ctx context.Context, cfg CatalystConfig, sc *scenario, auth *wsAuth, opts serverOptions) (res IdleMemory, err error) {
	res = IdleMemory{Clients: cfg.IdleClients, TargetKiB: TargetIdleConnKiB}
	// A fresh server: the delivery phase's garbage would blur the base.
	p, err := startServer(ctx, opts)
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := p.stop(); err == nil && serr != nil {
			err = serr
		}
	}()
	// Warm up first, so that the base includes what the first connections
	// set up once for all (the database pool's connections, handler
	// state): a few connections opened and closed.
	warm, err := openCatalystClients(ctx, min(64, cfg.IdleClients), p, auth, sc.classID)
	if err != nil {
		return res, err
	}
	if err := p.waitGauge(ctx, catalystConnections, float64(len(warm.clients)), time.Minute); err != nil {
		warm.close()
		return res, err
	}
	warm.close()
	auth.closeIdle() // the ticket requests' keep-alive connections
	if err := p.waitGauge(ctx, catalystConnections, 0, time.Minute); err != nil {
		return res, err
	}
	const samples, every = 5, 300 * time.Millisecond
	if err := startstop.Sleep(ctx, time.Second); err != nil {
		return res, err
	}
	base, err := p.minRSS(ctx, samples, every)
	if err != nil {
		return res, err
	}
	use0, err := readRuntimeUse(ctx, p)
	if err != nil {
		return res, err
	}
	start := time.Now()
	clients, err := openCatalystClients(ctx, cfg.IdleClients, p, auth, sc.classID)
	if err != nil {
		return res, err
	}
	defer clients.close()
	if err := p.waitGauge(ctx, catalystConnections, float64(cfg.IdleClients), 2*time.Minute); err != nil {
		return res, err
	}
	res.ConnectS = round3(time.Since(start).Seconds())
	auth.closeIdle() // the ticket requests' keep-alive connections
	cfg.Logger.Info("idle clients connected", "clients", cfg.IdleClients, "took", time.Since(start).Round(time.Millisecond).String())
	if err := startstop.Sleep(ctx, cfg.IdleSettle); err != nil {
		return res, err
	}
	idle, err := p.minRSS(ctx, samples, every)
	if err != nil {
		return res, err
	}
	use1, err := readRuntimeUse(ctx, p)
	if err != nil {
		return res, err
	}
	if err := p.alive(); err != nil {
		return res, err
	}
	if d := clients.counts(0); d.disconnected > 0 {
		return res, fmt.Errorf("%d idle clients were disconnected (first: %v)", d.disconnected, d.firstDisconnect)
	}
	n := float64(cfg.IdleClients)
	res.BaseRSSMB = round1(float64(base) / (1 << 20))
	res.IdleRSSMB = round1(float64(idle) / (1 << 20))
	res.PerConnKiB = round1(float64(idle-base) / 1024 / n)
	res.HeapPerConnKiB = round1((use1.heap - use0.heap) / 1024 / n)
	res.StackPerConnKiB = round1((use1.stack - use0.stack) / 1024 / n)
	res.GoroutinesPerConn = round3((use1.goroutines - use0.goroutines) / n)
	res.Pass = res.PerConnKiB <= res.TargetKiB
	cfg.Logger.Info("idle memory done", "per_conn_kib", res.PerConnKiB, "heap_per_conn_kib", res.HeapPerConnKiB)
	return res, nil
}

// WriteTable prints the report as aligned tables.
func (r *CatalystReport) WriteTable(w io.Writer) error {
	bw := &errWriter{w: w}
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	writeHeader(bw, "catalyst", r.Started, r.TookS, r.Command, r.Machine)

	d := r.Delivery
	p("\nDelivery: %d clients on /ws/events/object-records/ (a user, ticket and connection each), %d changes/s for %s;\n",
		d.Clients, r.Config.Rate, secs(r.Config.DurationS))
	p("each change is an UPDATE of one record's cell, one item for every client; server --message-time %s, --message-limit %d\n",
		time.Duration(r.Config.MessageTimeMs*float64(time.Millisecond)), r.Config.MessageLimit)
	tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "changes committed\t%d (%.1f/s over %d connections)%s\n", d.Changes, d.ChangesPerS, r.Config.Writers, behind(d.ChangesPerS, r.Config.Rate))
	fmt.Fprintf(tw, "items per client\t%d expected; received min %d, max %d\n", d.ExpectedPerClient, d.ReceivedMin, d.ReceivedMax)
	fmt.Fprintf(tw, "lost / extra / disconnected\t%d / %d / %d (target 0: %s)\n", d.Lost, d.Extra, d.Disconnected, passFail(d.PassLoss))
	if d.ClientsShort > 0 {
		fmt.Fprintf(tw, "clients short\t%d of %d, after a drain of up to %s\n", d.ClientsShort, d.Clients, secs(r.Config.DrainTimeoutS))
	}
	fmt.Fprintf(tw, "items delivered/s\t%.0f (%d items in %d frames; the last %.3f s after the writers stopped)\n", d.DeliveredPerS, d.Received, d.Frames, d.DrainS)
	fmt.Fprintf(tw, "server CPU\t%.3f cores average while writing, %.3f of them in the kernel (target < %.1f: %s)\n", d.CPU.Server, d.CPU.ServerSys, d.TargetServerCores, passFail(d.PassCPU))
	if d.CPU.ServerWritesPerS > 0 {
		fmt.Fprintf(tw, "server write system calls\t%.0f/s while writing, %.2f µs of kernel time per call\n", d.CPU.ServerWritesPerS, d.CPU.ServerSysUsPerWrite)
	}
	fmt.Fprintf(tw, "server CPU per item\t%.3f µs (from the first change to the last item received)\n", d.ServerCPUPerItemUs)
	fmt.Fprintf(tw, "other CPU\t%.3f cores in the benchmark process (clients, writers); %.3f cores busy on the whole machine\n", d.CPU.Bench, d.CPU.Machine)
	fmt.Fprintf(tw, "server RSS at the end\t%.1f MB\n", d.ServerRSSMB)
	_ = tw.Flush()

	if m := r.Idle; m != nil {
		p("\nIdle memory: a fresh server's RSS with %d idle connections minus its RSS with none, ÷ %d\n", m.Clients, m.Clients)
		p("(each the minimum of 5 samples, after the garbage collector settled)\n")
		tw = tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "connections opened in\t%.1f s (a ticket and an upgrade each)\n", m.ConnectS)
		fmt.Fprintf(tw, "server RSS\t%.1f MB with none, %.1f MB with %d\n", m.BaseRSSMB, m.IdleRSSMB, m.Clients)
		fmt.Fprintf(tw, "per idle connection\t%.1f KiB (target ≤ %.0f KiB: %s)\n", m.PerConnKiB, m.TargetKiB, passFail(m.Pass))
		fmt.Fprintf(tw, "of which\tGo heap %.1f KiB (garbage not yet collected included), stacks %.1f KiB of %.2f goroutines\n",
			m.HeapPerConnKiB, m.StackPerConnKiB, m.GoroutinesPerConn)
		_ = tw.Flush()
	}
	return bw.err
}
