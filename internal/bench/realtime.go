package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
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
