package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/pgcast/pgcast/internal/startstop"
)

// Read rules of the realtime runs.
const (
	ReadPublic = "public" // every client may read every record
	ReadOwner  = "owner"  // every client is one of every record's owners
)

// RealtimeRun is one scenario of RunRealtime: Clients connections to
// /api/realtime subscribed to posts.*, receiving the UPDATEs committed at
// Rate for Duration. Zero loss is always a target; the others apply when
// set.
type RealtimeRun struct {
	// Name identifies the run in the report. Required, unique.
	Name string `json:"name"`
	// Clients is how many connections, each with its own user and token.
	// Required.
	Clients int `json:"clients"`
	// Rate is the changes committed per second. Required.
	Rate int `json:"rate"`
	// Duration of the writing. Required.
	Duration time.Duration `json:"-"`
	// Read is the posts collection's read rule: ReadPublic (default) or
	// ReadOwner, where every record lists every client among its owners,
	// so that the deliveries are those of ReadPublic and only the
	// permission check differs.
	Read string `json:"read"`
	// TargetP99Ms is the most commit → client p99, in milliseconds.
	TargetP99Ms float64 `json:"target_p99_ms,omitempty"`
	// TargetServerCores is the most server CPU while writing, in cores.
	TargetServerCores float64 `json:"target_server_cores,omitempty"`
	// TargetDeliveriesPerS is the fewest events delivered per second.
	TargetDeliveriesPerS float64 `json:"target_deliveries_per_s,omitempty"`
	// Compare names an earlier run this one's latency and CPU are compared
	// with (the owner rule against the public one).
	Compare string `json:"compare,omitempty"`
}

// RealtimePresets are the runs of the targets, in the order
// RunRealtime runs them by default:
//
//	steady        1,000 clients × 100 changes/s for 30 s: p99 ≤ 15 ms, < 0.5 core
//	steady_owner  the same with read: owner, compared with steady
//	burst         1,000 clients × 1,000 changes/s for 10 s: p99 ≤ 500 ms
//	fanout        10,000 clients × 100 changes/s for 10 s: ≥ 200,000 deliveries/s
//
// and zero loss for every one.
func RealtimePresets() []RealtimeRun {
	return []RealtimeRun{
		{Name: "steady", Clients: 1000, Rate: 100, Duration: 30 * time.Second, Read: ReadPublic, TargetP99Ms: 15, TargetServerCores: 0.5},
		{Name: "steady_owner", Clients: 1000, Rate: 100, Duration: 30 * time.Second, Read: ReadOwner, Compare: "steady"},
		{Name: "burst", Clients: 1000, Rate: 1000, Duration: 10 * time.Second, Read: ReadPublic, TargetP99Ms: 500},
		{Name: "fanout", Clients: 10_000, Rate: 100, Duration: 10 * time.Second, Read: ReadPublic, TargetDeliveriesPerS: 200_000},
	}
}

// RealtimeConfig configures RunRealtime. The zero value, with URL set,
// means the defaults below.
type RealtimeConfig struct {
	// URL of the Postgres server, as for CaptureConfig.URL. Required.
	URL string
	// Executable is the pgcast binary run as the server, as for
	// CatalystConfig.Executable. Default: os.Executable.
	Executable string
	// Runs are run in order, each with its own database and server
	// process. Default RealtimePresets().
	Runs []RealtimeRun
	// ReferenceDuration is how long the bare NOTIFY reference of each run
	// lasts (at the run's rate, before it). Default 10 s, at most the
	// run's duration.
	ReferenceDuration time.Duration
	// DrainTimeout bounds the wait, after the writers stop, for every
	// client to have every event. Default 2 min.
	DrainTimeout time.Duration
	// Writers is how many connections share the paced changes. Default 8.
	Writers int
	// Logger receives progress. Default: discard.
	Logger *slog.Logger

	// records is how many records the changes update, round robin.
	// Default 256.
	records int
}

func (c RealtimeConfig) withDefaults() (RealtimeConfig, error) {
	if c.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return c, fmt.Errorf("bench: find the pgcast executable: %w", err)
		}
		c.Executable = exe
	}
	if len(c.Runs) == 0 {
		c.Runs = RealtimePresets()
	} else {
		c.Runs = append([]RealtimeRun(nil), c.Runs...)
	}
	for i := range c.Runs {
		if c.Runs[i].Read == "" {
			c.Runs[i].Read = ReadPublic
		}
	}
	if c.ReferenceDuration == 0 {
		c.ReferenceDuration = 10 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 2 * time.Minute
	}
	if c.Writers == 0 {
		c.Writers = 8
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.records == 0 {
		c.records = 256
	}
	return c, nil
}

func (c RealtimeConfig) validate() error {
	switch {
	case c.URL == "":
		return errors.New("bench: RealtimeConfig.URL is required")
	case c.ReferenceDuration < 0 || c.DrainTimeout < 0:
		return errors.New("bench: RealtimeConfig.ReferenceDuration and DrainTimeout must be positive")
	case c.Writers < 1 || c.Writers > 100:
		return fmt.Errorf("bench: RealtimeConfig.Writers must be between 1 and 100, got %d", c.Writers)
	}
	seen := map[string]bool{}
	for i, r := range c.Runs {
		field := fmt.Sprintf("RealtimeConfig.Runs[%d]", i)
		switch {
		case r.Name == "":
			return fmt.Errorf("bench: %s.Name is required", field)
		case seen[r.Name]:
			return fmt.Errorf("bench: %s.Name %q is used twice", field, r.Name)
		case r.Clients < 1:
			return fmt.Errorf("bench: %s.Clients must be positive, got %d", field, r.Clients)
		case r.Rate < 1 || r.Rate > 100_000:
			return fmt.Errorf("bench: %s.Rate must be between 1 and 100000, got %d", field, r.Rate)
		case r.Duration <= 0:
			return fmt.Errorf("bench: %s.Duration must be positive, got %s", field, r.Duration)
		case r.Read != ReadPublic && r.Read != ReadOwner:
			return fmt.Errorf("bench: %s.Read must be %q or %q, got %q", field, ReadPublic, ReadOwner, r.Read)
		case r.Compare != "" && !seen[r.Compare]:
			return fmt.Errorf("bench: %s.Compare %q names no earlier run", field, r.Compare)
		}
		if err := checkClients(field+".Clients", r.Clients); err != nil {
			return err
		}
		seen[r.Name] = true
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		return errors.New("bench: the WebSocket benchmarks need Linux's /proc to read the server's CPU time and memory")
	}
	return nil
}

// RealtimeReport is the result of RunRealtime.
type RealtimeReport struct {
	// Command is the command line that produced the report, when the
	// caller sets it.
	Command string               `json:"command,omitempty"`
	Started time.Time            `json:"started"`
	TookS   float64              `json:"took_s"`
	Machine Machine              `json:"machine"`
	Config  RealtimeReportConfig `json:"config"`
	Runs    []RealtimeResult     `json:"runs"`
}

// RealtimeReportConfig is the effective configuration shared by the runs.
type RealtimeReportConfig struct {
	Writers            int     `json:"writers"`
	ReferenceDurationS float64 `json:"reference_duration_s"`
	DrainTimeoutS      float64 `json:"drain_timeout_s"`
}

// RealtimeResult is one run's figures.
type RealtimeResult struct {
	RealtimeRun
	// DurationS is the run's Duration; WritingS how long the writing took.
	DurationS float64 `json:"duration_s"`
	WritingS  float64 `json:"writing_s"`
	// ConnectS is how long opening and subscribing the clients took.
	ConnectS float64 `json:"connect_s"`
	// Changes were committed, each one posts.updated event for every
	// client: ExpectedPerClient = Changes.
	Changes           int64   `json:"changes"`
	ChangesPerS       float64 `json:"changes_per_s"`
	ExpectedPerClient int64   `json:"expected_per_client"`
	ReceivedMin       int64   `json:"received_min"`
	ReceivedMax       int64   `json:"received_max"`
	Received          int64   `json:"received"`
	// Lost, ClientsShort, Extra and Disconnected are as in
	// CatalystDelivery; Other counts messages that were neither one of
	// the run's events nor a reply.
	Lost         int64 `json:"lost"`
	ClientsShort int   `json:"clients_short"`
	Extra        int64 `json:"extra"`
	Disconnected int   `json:"disconnected"`
	Other        int64 `json:"other"`
	// DeliveredPerS is Received over the time from the first change to
	// the last event received (writing plus DrainS).
	DeliveredPerS float64 `json:"delivered_per_s"`
	DrainS        float64 `json:"drain_s"`
	// Latency is just before COMMIT → event parsed by a client, over every
	// delivery (percentiles within 1 %); Reference the same for a bare
	// LISTEN connection receiving a NOTIFY committed the same way.
	Latency   LatencyStats `json:"latency"`
	Reference LatencyStats `json:"reference"`
	// CPU is the average use while the writers ran.
	CPU CPUUse `json:"cpu"`
	// ServerCPUPerEventUs is the server's CPU time from the first change
	// to the end of the drain ÷ Received, in microseconds: its cost per
	// delivery even when it falls behind.
	ServerCPUPerEventUs float64 `json:"server_cpu_per_event_us"`
	ServerRSSMB         float64 `json:"server_rss_mb"`
	// P99Ratio and CPURatio are this run's p99 and server CPU per event ÷
	// those of the run named by Compare.
	P99Ratio float64 `json:"p99_ratio,omitempty"`
	CPURatio float64 `json:"cpu_ratio,omitempty"`
	// Verdicts; nil where no target applies.
	PassLoss       bool  `json:"pass_loss"`
	PassP99        *bool `json:"pass_p99,omitempty"`
	PassCPU        *bool `json:"pass_cpu,omitempty"`
	PassDeliveries *bool `json:"pass_deliveries,omitempty"`
}

// realtimeChannel is what every client subscribes to.
const realtimeChannel = "posts.*"

// RunRealtime runs the realtime benchmark: for each run, a pgcast server
// process delivering posts.updated events to many /api/realtime clients.
func RunRealtime(ctx context.Context, cfg RealtimeConfig) (*RealtimeReport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	srv, err := newServer(cfg.URL)
	if err != nil {
		return nil, err
	}
	defer srv.close()
	rep := &RealtimeReport{
		Started: time.Now().UTC().Truncate(time.Second),
		Config: RealtimeReportConfig{
			Writers:            cfg.Writers,
			ReferenceDurationS: cfg.ReferenceDuration.Seconds(),
			DrainTimeoutS:      cfg.DrainTimeout.Seconds(),
		},
	}
	t0 := time.Now()
	if rep.Machine, err = machineInfo(ctx, cfg.URL); err != nil {
		return nil, err
	}
	for _, run := range cfg.Runs {
		cfg.Logger.Info("realtime run", "name", run.Name, "clients", run.Clients, "rate", run.Rate, "duration", run.Duration.String(), "read", run.Read)
		res, err := runRealtime(ctx, cfg, srv, run)
		if err != nil {
			return nil, fmt.Errorf("run %s: %w", run.Name, err)
		}
		if run.Compare != "" {
			for _, o := range rep.Runs {
				if o.Name != run.Compare {
					continue
				}
				if o.Latency.P99Ms > 0 {
					res.P99Ratio = round3(res.Latency.P99Ms / o.Latency.P99Ms)
				}
				if o.ServerCPUPerEventUs > 0 {
					res.CPURatio = round3(res.ServerCPUPerEventUs / o.ServerCPUPerEventUs)
				}
			}
		}
		rep.Runs = append(rep.Runs, res)
	}
	rep.Machine.LoadAvgEnd = loadAvg()
	rep.TookS = time.Since(t0).Round(time.Millisecond).Seconds()
	return rep, nil
}

// rtReceiver is what the clients of one run share: the commit times and
// the latency histogram.
type rtReceiver struct {
	run  *latencyRun // sent[seq]: just before the COMMIT of change seq
	hist latencyHist
}

// handle counts one message: an event of a change (latency recorded), a
// warm-up event, or anything else.
func (r *rtReceiver) handle(shard int, warm *warmFlag) func(c *wsClient, msg []byte) {
	return func(c *wsClient, msg []byte) {
		seq, ok := parseRealtimeSeq(msg)
		switch {
		case !ok:
			c.other.Add(1)
		case seq < 0:
			warm.set()
		case seq >= int64(len(r.run.sent)):
			c.other.Add(1)
		default:
			at := r.run.now()
			sent := r.run.sent[seq].Load()
			if sent == 0 { // never committed by this run
				c.other.Add(1)
				return
			}
			r.hist.record(shard, time.Duration(at-sent))
			c.got.Add(1)
		}
	}
}

// warmFlag is set once a client has received a warm-up event.
type warmFlag struct{ v atomic.Bool }

func (w *warmFlag) set()      { w.v.Store(true) }
func (w *warmFlag) get() bool { return w.v.Load() }

var (
	eventPrefix = []byte(`{"type":"event"`)
	seqKey      = []byte(`"seq":`)
	payloadKey  = []byte(`"payload":`)
)

// parseRealtimeSeq returns the seq field of a posts event's record. The
// server's encoding (type first, payload last) is scanned without decoding;
// anything else is decoded properly.
func parseRealtimeSeq(msg []byte) (int64, bool) {
	if bytes.HasPrefix(msg, eventPrefix) {
		if i := bytes.Index(msg, payloadKey); i >= 0 {
			p := msg[i+len(payloadKey):]
			if j := bytes.Index(p, seqKey); j >= 0 {
				p = bytes.TrimLeft(p[j+len(seqKey):], " ")
				end := 0
				for end < len(p) && (p[end] == '-' && end == 0 || p[end] >= '0' && p[end] <= '9') {
					end++
				}
				if v, err := strconv.ParseInt(string(p[:end]), 10, 64); err == nil {
					return v, true
				}
			}
		}
	}
	var m struct {
		Type  string `json:"type"`
		Event struct {
			Payload struct {
				Seq *int64 `json:"seq"`
			} `json:"payload"`
		} `json:"event"`
	}
	if json.Unmarshal(msg, &m) != nil || m.Type != "event" || m.Event.Payload.Seq == nil {
		return 0, false
	}
	return *m.Event.Payload.Seq, true
}

// preparePosts creates the posts collection (field seq, the given read rule)
// and its records, every client among the owners under ReadOwner, and
// returns the records' ids and the seq field's cell key.
func preparePosts(ctx context.Context, conn *pgx.Conn, run RealtimeRun, records int) (ids []int64, fieldKey string, err error) {
	var classID, fieldID int64
	if err := conn.QueryRow(ctx, `INSERT INTO pgcast.object_classes (name, read_rule) VALUES ('posts', $1) RETURNING id`, run.Read).Scan(&classID); err != nil {
		return nil, "", fmt.Errorf("create collection posts: %w", err)
	}
	if err := conn.QueryRow(ctx, `INSERT INTO pgcast.object_class_fields (object_class_id, name, type) VALUES ($1, 'seq', 'integer') RETURNING id`, classID).Scan(&fieldID); err != nil {
		return nil, "", fmt.Errorf("create field: %w", err)
	}
	fieldKey = strconv.FormatInt(fieldID, 10)
	owners := []string{}
	if run.Read == ReadOwner {
		owners = make([]string, run.Clients)
		for i := range owners {
			owners[i] = benchUser(i)
		}
	}
	rows, err := conn.Query(ctx, `INSERT INTO pgcast.object_records (object_class_id, cells, owners)
SELECT $1, jsonb_build_object($2::text, 0), $4::text[] FROM generate_series(1, $3::int) RETURNING id`, classID, fieldKey, records, owners)
	if err != nil {
		return nil, "", fmt.Errorf("create records: %w", err)
	}
	if ids, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
		return nil, "", fmt.Errorf("create records: %w", err)
	}
	// The reference updates the same records, copied to the table without
	// triggers.
	if _, err := conn.Exec(ctx, `INSERT INTO public.plain_records SELECT * FROM pgcast.object_records`); err != nil {
		return nil, "", fmt.Errorf("copy records for the reference: %w", err)
	}
	return ids, fieldKey, nil
}

// realtimeReferenceSQL is the reference's change: the run's UPDATE of the
// same record in the table without triggers, and a NOTIFY carrying the
// sequence number, sent only if the row was updated.
var realtimeReferenceSQL = withNotify(fmt.Sprintf(updateSQL, plainTable))

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
	if res.CPU, err = meter.read(); err != nil {
		return res, err
	}
	cfg.Logger.Info("realtime writers done", "changes", committed, "server_cores", res.CPU.Server)
	drain, err := clients.waitDelivered(ctx, committed, cfg.DrainTimeout)
	if err != nil {
		return res, err
	}
	cpuAll, err := meter.serverCPU()
	if err != nil {
		return res, err
	}
	if err := startstop.Sleep(ctx, 200*time.Millisecond); err != nil { // let a duplicate show
		return res, err
	}
	if err := p.alive(); err != nil {
		return res, err
	}
	d := clients.counts(committed)
	if rss, err := p.rss(); err == nil {
		res.ServerRSSMB = round1(float64(rss) / (1 << 20))
	}
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
