package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/pgcast/pgcast/internal/startstop"
)

func runRealtime(ctx context.Context, cfg RealtimeConfig, srv *server, run RealtimeRun) (res RealtimeResult, err error) {
	res = RealtimeResult{RealtimeRun: run, DurationS: run.Duration.Seconds()}
	sc, err := srv.newScenario(ctx, "realtime_"+run.Name)
	if err != nil {
		return res, err
	}
	defer sc.drop()
	setup, err := connect(ctx, sc.url)
	if err != nil {
		return res, err
	}
	defer setup.Close(context.WithoutCancel(ctx))
	// Before the server starts: none of this is delivered.
	ids, fieldKey, err := preparePosts(ctx, setup, run, cfg.records)
	if err != nil {
		return res, err
	}
	writers, err := connectN(ctx, sc.url, cfg.Writers)
	if err != nil {
		return res, err
	}
	defer closeAll(ctx, writers)
	for _, c := range writers {
		if _, err := c.Prepare(ctx, "update", fmt.Sprintf(updateSQL, captureTable)); err != nil {
			return res, fmt.Errorf("prepare: %w", err)
		}
		if _, err := c.Prepare(ctx, "reference", realtimeReferenceSQL); err != nil {
			return res, fmt.Errorf("prepare: %w", err)
		}
	}

	secret := newSecret()
	auth, err := newWSAuth(secret, connectParallel)
	if err != nil {
		return res, err
	}
	defer auth.closeIdle()
	p, err := startServer(ctx, serverOptions{
		executable: cfg.Executable, databaseURL: sc.url, secret: secret,
		messageTime: 100 * time.Millisecond, messageLimit: 1000, // Catalyst settings: unused here
		logger: cfg.Logger,
	})
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := p.stop(); err == nil && serr != nil {
			err = serr
		}
	}()

	capacity := int(float64(run.Rate)*run.Duration.Seconds()) + 1
	recv := &rtReceiver{run: newLatencyRun(capacity)}
	connStart := time.Now()
	warms := make([]*warmFlag, run.Clients)
	clients, err := openClients(ctx, run.Clients, connectParallel, func(ctx context.Context, i int) (*wsClient, error) {
		tok, err := auth.token(i)
		if err != nil {
			return nil, err
		}
		conn, err := auth.dial(ctx, p.wsBase+"/api/realtime", http.Header{"Authorization": {"Bearer " + tok}})
		if err != nil {
			return nil, err
		}
		if err := subscribeRealtime(conn, realtimeChannel); err != nil {
			conn.Close()
			return nil, err
		}
		c := newWSClient(conn)
		warms[i] = &warmFlag{}
		go c.run(recv.handle(i, warms[i]))
		return c, nil
	})
	if err != nil {
		return res, err
	}
	defer clients.close()
	// An acknowledgement may precede the subscription taking effect:
	// warm-up changes (negative seq) until every client has had one.
	if err := warmUp(ctx, writers[0], ids[0], fieldKey, warms); err != nil {
		return res, err
	}
	res.ConnectS = round3(time.Since(connStart).Seconds())
	cfg.Logger.Info("realtime clients subscribed", "clients", run.Clients, "took", time.Since(connStart).Round(time.Millisecond).String())

	// The reference first, while the clients idle.
	refDur := min(cfg.ReferenceDuration, run.Duration)
	if res.Reference, err = runReference(ctx, sc, writers, run.Rate, refDur, ids, fieldKey); err != nil {
		return res, fmt.Errorf("reference: %w", err)
	}

	meter, err := startCPUMeter(p)
	if err != nil {
		return res, err
	}
	committed, took, err := pace(ctx, writers, run.Rate, run.Duration, capacity, func(ctx context.Context, c *pgx.Conn, seq int64) error {
		tx, err := c.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		if _, err := tx.Exec(ctx, "update", ids[seq%int64(len(ids))], fieldKey, seq); err != nil {
			return fmt.Errorf("update: %w", err)
		}
		recv.run.sent[seq].Store(recv.run.now())
		return tx.Commit(ctx)
	})
	if err != nil {
		return res, err
	}
	st, err := settle(ctx, cfg.Logger, "realtime", p, meter, clients, committed, cfg.DrainTimeout, 200*time.Millisecond) // 200 ms: let a duplicate show
	if err != nil {
		return res, err
	}
	res.CPU, res.ServerRSSMB = st.cpu, st.rssMB
	d, drain, cpuAll := st.counts, st.drain, st.cpuAll
	samples, p50, p99, maxMs := recv.hist.stats()
	res.Latency = LatencyStats{Samples: int(samples), RatePerS: round1(perSecond(committed, took)), P50Ms: p50, P99Ms: p99, MaxMs: maxMs, Missing: int(d.lost)}
	res.Changes, res.ChangesPerS, res.ExpectedPerClient = committed, round1(perSecond(committed, took)), committed
	res.WritingS = round3(took.Seconds())
	res.ReceivedMin, res.ReceivedMax, res.Received = d.min, d.max, d.total
	res.Lost, res.ClientsShort, res.Extra, res.Disconnected, res.Other = d.lost, d.short, d.extra, d.disconnected, d.other
	res.DrainS = round3(drain.Seconds())
	res.DeliveredPerS = round1(perSecond(d.total, took+drain))
	if d.total > 0 {
		res.ServerCPUPerEventUs = round3(float64(cpuAll.Microseconds()) / float64(d.total))
	}
	res.PassLoss = committed > 0 && d.lost == 0 && d.extra == 0 && d.disconnected == 0
	if run.TargetP99Ms > 0 {
		ok := res.Latency.Samples > 0 && res.Latency.P99Ms <= run.TargetP99Ms
		res.PassP99 = &ok
	}
	if run.TargetServerCores > 0 {
		ok := res.CPU.Server < run.TargetServerCores
		res.PassCPU = &ok
	}
	if run.TargetDeliveriesPerS > 0 {
		ok := res.DeliveredPerS >= run.TargetDeliveriesPerS
		res.PassDeliveries = &ok
	}
	if d.firstDisconnect != nil {
		cfg.Logger.Warn("clients disconnected", "count", d.disconnected, "first", d.firstDisconnect.Error())
	}
	cfg.Logger.Info("realtime run done", "name", run.Name, "delivered_per_s", res.DeliveredPerS, "lost", res.Lost,
		"p99_ms", res.Latency.P99Ms, "reference_p99_ms", res.Reference.P99Ms)
	return res, nil
}

// subscribeRealtime does the client's side of the handshake: connected,
// subscribe, subscribed.
func subscribeRealtime(conn *websocket.Conn, channel string) error {
	if err := conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return err
	}
	var m struct {
		Type     string `json:"type"`
		ClientID string `json:"clientId"`
		Channel  string `json:"channel"`
		Code     string `json:"code"`
		Message  string `json:"message"`
	}
	if err := conn.ReadJSON(&m); err != nil {
		return fmt.Errorf("read connected: %w", err)
	}
	if m.Type != "connected" || !strings.HasPrefix(m.ClientID, "rt_") {
		return fmt.Errorf("first message is %+v, want connected with a clientId", m)
	}
	sub, _ := json.Marshal(map[string]string{"action": "subscribe", "channel": channel})
	if err := conn.WriteMessage(websocket.TextMessage, sub); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	for {
		m = struct {
			Type     string `json:"type"`
			ClientID string `json:"clientId"`
			Channel  string `json:"channel"`
			Code     string `json:"code"`
			Message  string `json:"message"`
		}{}
		if err := conn.ReadJSON(&m); err != nil {
			return fmt.Errorf("read subscribed: %w", err)
		}
		switch {
		case m.Type == "subscribed" && m.Channel == channel:
			return conn.SetReadDeadline(time.Time{})
		case m.Type == "error":
			return fmt.Errorf("subscribe %s: %s: %s", channel, m.Code, m.Message)
		}
	}
}

// warmUp commits changes with negative seq values until every client has
// received one (a client that has is subscribed for what follows).
func warmUp(ctx context.Context, conn *pgx.Conn, id int64, fieldKey string, warms []*warmFlag) error {
	deadline := time.Now().Add(time.Minute)
	for seq := int64(-1); ; seq-- {
		if _, err := conn.Exec(ctx, "update", id, fieldKey, seq); err != nil {
			return fmt.Errorf("warm-up update: %w", err)
		}
		wait := time.Now().Add(time.Second)
		for {
			all := true
			for _, w := range warms {
				if !w.get() {
					all = false
					break
				}
			}
			if all {
				return nil
			}
			if time.Now().After(wait) {
				break
			}
			if err := startstop.Sleep(ctx, 5*time.Millisecond); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			n := 0
			for _, w := range warms {
				if !w.get() {
					n++
				}
			}
			return fmt.Errorf("%d clients received no event within a minute of subscribing", n)
		}
	}
}

// runReference measures a bare LISTEN connection receiving a NOTIFY
// committed the way the run's changes are (the same UPDATE of the same
// records, in the table without triggers, with the NOTIFY in its
// transaction), at rate for d.
func runReference(ctx context.Context, sc *scenario, writers []*pgx.Conn, rate int, d time.Duration, ids []int64, fieldKey string) (LatencyStats, error) {
	capacity := int(float64(rate)*d.Seconds()) + 1
	run := newLatencyRun(capacity)
	stop, err := startNotifyReceiver(ctx, sc, run)
	if err != nil {
		return LatencyStats{}, err
	}
	sent, took, err := pace(ctx, writers, rate, d, capacity, func(ctx context.Context, c *pgx.Conn, seq int64) error {
		tx, err := c.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(context.WithoutCancel(ctx))
		if _, err := tx.Exec(ctx, "reference", ids[seq%int64(len(ids))], fieldKey, seq); err != nil {
			return err
		}
		run.sent[seq].Store(run.now())
		return tx.Commit(ctx)
	})
	if err == nil {
		deadline := time.Now().Add(5 * time.Second)
		for run.got.Load() < sent && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if serr := stop(); err == nil {
		err = serr
	}
	if err != nil {
		return LatencyStats{}, err
	}
	var samples []time.Duration
	missing := run.collect(sent, &samples)
	return latencyStats(samples, sent, took, missing), nil
}

// WriteTable prints the report as aligned tables.
func (r *RealtimeReport) WriteTable(w io.Writer) error {
	bw := &errWriter{w: w}
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }
	writeHeader(bw, "realtime", r.Started, r.TookS, r.Command, r.Machine)
	p("\nEach run: clients on /api/realtime (a user and token each) subscribed to %s; changes are UPDATEs of posts\n", realtimeChannel)
	p("records committed at a fixed rate over %d connections, each one posts.updated event for every client.\n", r.Config.Writers)
	p("Latency: just before COMMIT → event parsed by a client, every delivery counted. Reference: a bare pgx\n")
	p("connection LISTENing, the writers committing the same UPDATEs the same way on a copy of the records without\n")
	p("triggers, with a pg_notify() in each transaction, at the same rate, for up to %s before the run while the\n", secs(r.Config.ReferenceDurationS))
	p("clients idle.\n")
	p("read owner: every record lists every client among its owners, so deliveries equal public's.\n")

	p("\n")
	tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tread\tclients\tchanges/s\tduration\tdelivered/s\tlost\tp50 ms\tp99 ms\tmax ms\tNOTIFY p99 ms\tserver cores\t")
	for _, x := range r.Runs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%s\t%.0f\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.3f\t\n", x.Name, x.Read, x.Clients, x.ChangesPerS, secs(x.DurationS),
			x.DeliveredPerS, x.Lost, x.Latency.P50Ms, x.Latency.P99Ms, x.Latency.MaxMs, x.Reference.P99Ms, x.CPU.Server)
	}
	_ = tw.Flush()

	for _, x := range r.Runs {
		p("\n%s: %d clients, read %s, %d changes/s for %s\n", x.Name, x.Clients, x.Read, x.Rate, secs(x.DurationS))
		tw = tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  delivery\t%d changes (%.1f/s)%s, each expected by every client; received min %d, max %d per client\n",
			x.Changes, x.ChangesPerS, behind(x.ChangesPerS, x.Rate), x.ReceivedMin, x.ReceivedMax)
		fmt.Fprintf(tw, "  lost / extra / disconnected\t%d / %d / %d (target 0: %s)", x.Lost, x.Extra, x.Disconnected, passFail(x.PassLoss))
		if x.ClientsShort > 0 {
			fmt.Fprintf(tw, "; %d clients short after a drain of up to %s", x.ClientsShort, secs(r.Config.DrainTimeoutS))
		}
		if x.Other > 0 {
			fmt.Fprintf(tw, "; %d unexpected messages", x.Other)
		}
		fmt.Fprintln(tw)
		fmt.Fprintf(tw, "  events delivered/s\t%.0f (%d events; the last %.3f s after the writers stopped)%s\n", x.DeliveredPerS, x.Received, x.DrainS,
			verdict(x.PassDeliveries, fmt.Sprintf("≥ %.0f", x.TargetDeliveriesPerS)))
		fmt.Fprintf(tw, "  latency\tp50 %.2f ms, p99 %.2f ms, max %.2f ms over %d deliveries%s\n", x.Latency.P50Ms, x.Latency.P99Ms, x.Latency.MaxMs, x.Latency.Samples,
			verdict(x.PassP99, fmt.Sprintf("p99 ≤ %.0f ms", x.TargetP99Ms)))
		fmt.Fprintf(tw, "  bare NOTIFY (before)\tp50 %.2f ms, p99 %.2f ms, max %.2f ms over %d notifications, %d missing\n", x.Reference.P50Ms, x.Reference.P99Ms, x.Reference.MaxMs, x.Reference.Samples, x.Reference.Missing)
		fmt.Fprintf(tw, "  server CPU\t%.3f cores while writing, %.3f in the kernel%s; benchmark process %.3f, whole machine %.3f\n", x.CPU.Server, x.CPU.ServerSys,
			verdict(x.PassCPU, fmt.Sprintf("< %.1f", x.TargetServerCores)), x.CPU.Bench, x.CPU.Machine)
		fmt.Fprintf(tw, "  server CPU per event\t%.3f µs (from the first change to the last event received)\n", x.ServerCPUPerEventUs)
		if x.CPU.ServerWritesPerS > 0 {
			fmt.Fprintf(tw, "  server write system calls\t%.0f/s while writing, %.1f events delivered per call, %.2f µs of kernel time per call\n",
				x.CPU.ServerWritesPerS, x.ChangesPerS*float64(x.Clients)/x.CPU.ServerWritesPerS, x.CPU.ServerSysUsPerWrite)
		}
		fmt.Fprintf(tw, "  server RSS at the end\t%.1f MB; clients connected and subscribed in %.1f s\n", x.ServerRSSMB, x.ConnectS)
		if x.Compare != "" {
			fmt.Fprintf(tw, "  vs %s\tp99 × %.2f, server CPU per event × %.2f\n", x.Compare, x.P99Ratio, x.CPURatio)
		}
		_ = tw.Flush()
	}
	return bw.err
}

// behind is a warning when the writers committed under 95 % of rate: the
// machine could not keep up, and the run measured a lighter load.
func behind(achieved float64, rate int) string {
	if achieved >= 0.95*float64(rate) {
		return ""
	}
	return fmt.Sprintf(" — WRITERS FELL BEHIND the %d/s asked", rate)
}

// verdict is " (target …: PASS)" or "" when no target applies.
func verdict(pass *bool, target string) string {
	if pass == nil {
		return ""
	}
	return fmt.Sprintf(" (target %s: %s)", target, passFail(*pass))
}
