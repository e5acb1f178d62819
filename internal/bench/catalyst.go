package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// CatalystConfig configures RunCatalyst. The zero value, with URL set, means
// the defaults below.
type CatalystConfig struct {
	// URL of the Postgres server, as for CaptureConfig.URL. Required.
	URL string
	// Executable is the pgcast binary run as the server (`pgcast serve`).
	// Default: this process's executable (os.Executable), which is right
	// for the pgcast command and wrong for a test binary.
	Executable string
	// Clients is how many Catalyst clients receive every change during the
	// delivery phase. Default 1,000.
	Clients int
	// Rate is the changes per second committed during the delivery phase:
	// each an UPDATE of one record's cell, which every client receives as
	// one object_record_value_changed item. Default 500.
	Rate int
	// Duration of the delivery phase's writing. Default 60 s.
	Duration time.Duration
	// IdleClients is how many idle connections the memory phase opens.
	// Default 10,000.
	IdleClients int
	// SkipIdle skips the memory phase.
	SkipIdle bool
	// MessageTime is the server's --message-time, the batching period: it
	// bounds how long an item waits in the server. Default 100 ms.
	MessageTime time.Duration
	// MessageLimit is the server's --message-limit. Default 1000.
	MessageLimit int
	// DrainTimeout bounds the wait, after the writers stop, for every
	// client to have every item; what has not arrived by then is lost.
	// Default 60 s.
	DrainTimeout time.Duration
	// Writers is how many connections share the paced changes. Default 8.
	Writers int
	// IdleSettle is how long the memory phase waits, after the last
	// connection opened, before sampling the server's RSS. Default 3 s.
	IdleSettle time.Duration
	// Logger receives progress. Default: discard.
	Logger *slog.Logger

	// records is how many records the changes update, round robin.
	// Default 256.
	records int
}

func (c CatalystConfig) withDefaults() (CatalystConfig, error) {
	if c.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return c, fmt.Errorf("bench: find the pgcast executable: %w", err)
		}
		c.Executable = exe
	}
	if c.Clients == 0 {
		c.Clients = 1000
	}
	if c.Rate == 0 {
		c.Rate = 500
	}
	if c.Duration == 0 {
		c.Duration = 60 * time.Second
	}
	if c.IdleClients == 0 {
		c.IdleClients = 10_000
	}
	if c.MessageTime == 0 {
		c.MessageTime = 100 * time.Millisecond
	}
	if c.MessageLimit == 0 {
		c.MessageLimit = 1000
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 60 * time.Second
	}
	if c.Writers == 0 {
		c.Writers = 8
	}
	if c.IdleSettle == 0 {
		c.IdleSettle = 3 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.records == 0 {
		c.records = 256
	}
	return c, nil
}

func (c CatalystConfig) validate() error {
	switch {
	case c.URL == "":
		return errors.New("bench: CatalystConfig.URL is required")
	case c.Clients < 1:
		return fmt.Errorf("bench: CatalystConfig.Clients must be positive, got %d", c.Clients)
	case c.Rate < 1 || c.Rate > 100_000:
		return fmt.Errorf("bench: CatalystConfig.Rate must be between 1 and 100000, got %d", c.Rate)
	case c.Duration < 0:
		return fmt.Errorf("bench: CatalystConfig.Duration must be positive, got %s", c.Duration)
	case c.IdleClients < 1:
		return fmt.Errorf("bench: CatalystConfig.IdleClients must be positive, got %d", c.IdleClients)
	case c.MessageTime < time.Millisecond:
		return fmt.Errorf("bench: CatalystConfig.MessageTime must be at least 1ms, got %s", c.MessageTime)
	case c.MessageLimit < 1:
		return fmt.Errorf("bench: CatalystConfig.MessageLimit must be positive, got %d", c.MessageLimit)
	case c.DrainTimeout < 0 || c.IdleSettle < 0:
		return errors.New("bench: CatalystConfig.DrainTimeout and IdleSettle must be positive")
	case c.Writers < 1 || c.Writers > 100:
		return fmt.Errorf("bench: CatalystConfig.Writers must be between 1 and 100, got %d", c.Writers)
	}
	if err := checkClients("CatalystConfig.Clients", c.Clients); err != nil {
		return err
	}
	if !c.SkipIdle {
		if err := checkClients("CatalystConfig.IdleClients", c.IdleClients); err != nil {
			return err
		}
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		return errors.New("bench: the WebSocket benchmarks need Linux's /proc to read the server's CPU time and memory")
	}
	return nil
}

// Targets of the issue for the Catalyst endpoints.
const (
	TargetCatalystServerCores = 0.5  // at 1,000 clients × 500 changes/s
	TargetIdleConnKiB         = 16.0 // server memory per idle connection, at 10,000
)

// CatalystReport is the result of RunCatalyst.
type CatalystReport struct {
	// Command is the command line that produced the report, when the
	// caller sets it.
	Command  string               `json:"command,omitempty"`
	Started  time.Time            `json:"started"`
	TookS    float64              `json:"took_s"`
	Machine  Machine              `json:"machine"`
	Config   CatalystReportConfig `json:"config"`
	Delivery CatalystDelivery     `json:"delivery"`
	// Idle is absent when the memory phase was skipped.
	Idle *IdleMemory `json:"idle,omitempty"`
}

// CatalystReportConfig is the effective configuration.
type CatalystReportConfig struct {
	Clients       int     `json:"clients"`
	Rate          int     `json:"rate"`
	DurationS     float64 `json:"duration_s"`
	IdleClients   int     `json:"idle_clients,omitempty"`
	MessageTimeMs float64 `json:"message_time_ms"`
	MessageLimit  int     `json:"message_limit"`
	Writers       int     `json:"writers"`
	DrainTimeoutS float64 `json:"drain_timeout_s"`
}

// CatalystDelivery is the delivery phase: Clients connections to
// /ws/events/object-records/ receiving every change committed at Rate.
type CatalystDelivery struct {
	Clients int `json:"clients"`
	// Changes were committed in DurationS, ChangesPerS on average; each
	// is one item for every client, so ExpectedPerClient = Changes.
	Changes           int64   `json:"changes"`
	DurationS         float64 `json:"duration_s"`
	ChangesPerS       float64 `json:"changes_per_s"`
	ExpectedPerClient int64   `json:"expected_per_client"`
	// ReceivedMin and ReceivedMax are the fewest and most items a client
	// received; Received the sum over clients.
	ReceivedMin int64 `json:"received_min"`
	ReceivedMax int64 `json:"received_max"`
	Received    int64 `json:"received"`
	// Lost is the items clients were short of, over ClientsShort clients,
	// once the drain ended; Extra the items beyond the expected (a
	// duplicate or a foreign item); Disconnected the clients whose
	// connection the server ended.
	Lost         int64 `json:"lost"`
	ClientsShort int   `json:"clients_short"`
	Extra        int64 `json:"extra"`
	Disconnected int   `json:"disconnected"`
	// Frames is how many frames carried the items.
	Frames int64 `json:"frames"`
	// DeliveredPerS is Received over the time from the first change to
	// the last item received (writing plus DrainS).
	DeliveredPerS float64 `json:"delivered_per_s"`
	// DrainS is how long after the writers stopped the last client had
	// everything (bounded by the drain timeout).
	DrainS float64 `json:"drain_s"`
	// CPU is the average use while the writers ran.
	CPU CPUUse `json:"cpu"`
	// ServerCPUPerItemUs is the server's CPU time from the first change
	// to the end of the drain ÷ Received, in microseconds.
	ServerCPUPerItemUs float64 `json:"server_cpu_per_item_us"`
	// ServerRSSMB is the server's resident memory at the end.
	ServerRSSMB       float64 `json:"server_rss_mb"`
	TargetServerCores float64 `json:"target_server_cores"`
	PassLoss          bool    `json:"pass_loss"`
	PassCPU           bool    `json:"pass_cpu"`
}

// IdleMemory is the memory phase: the memory of a fresh server (warmed up
// by a few connections opened and closed) with Clients idle connections
// against its memory with none.
type IdleMemory struct {
	Clients int `json:"clients"`
	// ConnectS is how long opening them took (a ticket and an upgrade
	// each).
	ConnectS float64 `json:"connect_s"`
	// BaseRSSMB and IdleRSSMB are the server's RSS (minimum of a few
	// samples) before and with the connections.
	BaseRSSMB float64 `json:"base_rss_mb"`
	IdleRSSMB float64 `json:"idle_rss_mb"`
	// PerConnKiB is (IdleRSSMB − BaseRSSMB) ÷ Clients.
	PerConnKiB float64 `json:"per_conn_kib"`
	// HeapPerConnKiB and StackPerConnKiB are the growth of the Go heap
	// and of goroutine stacks in use, and GoroutinesPerConn that of
	// goroutines, per connection (from the server's /metrics): what the
	// RSS figure is made of. The heap includes garbage not yet collected.
	HeapPerConnKiB    float64 `json:"heap_per_conn_kib"`
	StackPerConnKiB   float64 `json:"stack_per_conn_kib"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn"`
	TargetKiB         float64 `json:"target_kib"`
	Pass              bool    `json:"pass"`
}

// catalystPattern occurs once in every record item and in no count item.
var catalystPattern = []byte(`"object_record_id"`)

const catalystConnections = `pgcast_ws_connections{endpoint="object-records"}`

// connectParallel is how many clients connect at once.
const connectParallel = 32

// RunCatalyst runs the Catalyst benchmark: a pgcast server process, fed by
// changes committed at a fixed rate, delivering to many clients; then the
// server's memory per idle connection.
func RunCatalyst(ctx context.Context, cfg CatalystConfig) (*CatalystReport, error) {
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
	rep := &CatalystReport{
		Started: time.Now().UTC().Truncate(time.Second),
		Config: CatalystReportConfig{
			Clients:       cfg.Clients,
			Rate:          cfg.Rate,
			DurationS:     cfg.Duration.Seconds(),
			MessageTimeMs: float64(cfg.MessageTime.Microseconds()) / 1000,
			MessageLimit:  cfg.MessageLimit,
			Writers:       cfg.Writers,
			DrainTimeoutS: cfg.DrainTimeout.Seconds(),
		},
	}
	if !cfg.SkipIdle {
		rep.Config.IdleClients = cfg.IdleClients
	}
	t0 := time.Now()
	if rep.Machine, err = machineInfo(ctx, cfg.URL); err != nil {
		return nil, err
	}
	sc, err := srv.newScenario(ctx, "catalyst")
	if err != nil {
		return nil, err
	}
	defer sc.drop()
	secret := newSecret()
	auth, err := newWSAuth(secret, connectParallel)
	if err != nil {
		return nil, err
	}
	defer auth.closeIdle()
	opts := serverOptions{
		executable:   cfg.Executable,
		databaseURL:  sc.url,
		secret:       secret,
		messageTime:  cfg.MessageTime,
		messageLimit: cfg.MessageLimit,
		logger:       cfg.Logger,
	}
	cfg.Logger.Info("catalyst delivery", "clients", cfg.Clients, "rate", cfg.Rate, "duration", cfg.Duration.String())
	if rep.Delivery, err = runCatalystDelivery(ctx, cfg, sc, auth, opts); err != nil {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	if !cfg.SkipIdle {
		cfg.Logger.Info("catalyst idle memory", "clients", cfg.IdleClients)
		idle, err := runIdleMemory(ctx, cfg, sc, auth, opts)
		if err != nil {
			return nil, fmt.Errorf("idle memory: %w", err)
		}
		rep.Idle = &idle
	}
	rep.Machine.LoadAvgEnd = loadAvg()
	rep.TookS = time.Since(t0).Round(time.Millisecond).Seconds()
	return rep, nil
}

// openCatalystClients opens n clients of /ws/events/object-records/, each
// with its own user, token and ticket, filtered to the benchmark's class,
// counting record items.
func openCatalystClients(ctx context.Context, n int, p *serverProc, auth *wsAuth, classID int64) (*clientSet, error) {
	count := func(c *wsClient, msg []byte) {
		c.got.Add(int64(bytes.Count(msg, catalystPattern)))
	}
	return openClients(ctx, n, connectParallel, func(ctx context.Context, i int) (*wsClient, error) {
		tok, err := auth.token(i)
		if err != nil {
			return nil, err
		}
		ticket, err := auth.ticket(ctx, p.httpBase, tok)
		if err != nil {
			return nil, err
		}
		conn, err := auth.dial(ctx, p.wsBase+"/ws/events/object-records/?uuid="+ticket+"&object_class_ids="+strconv.FormatInt(classID, 10), nil)
		if err != nil {
			return nil, err
		}
		c := newWSClient(conn)
		go c.run(count)
		return c, nil
	})
}

func runCatalystDelivery(ctx context.Context, cfg CatalystConfig, sc *scenario, auth *wsAuth, opts serverOptions) (res CatalystDelivery, err error) {
	res = CatalystDelivery{Clients: cfg.Clients, TargetServerCores: TargetCatalystServerCores}
	setup, err := connect(ctx, sc.url)
	if err != nil {
		return res, err
	}
	defer setup.Close(context.WithoutCancel(ctx))
	// The records exist before the server starts: their creation is not
	// delivered (a reader starts at the end of the log).
	rows, err := setup.Query(ctx, `INSERT INTO pgcast.object_records (object_class_id, cells)
SELECT $1, jsonb_build_object($2::text, 0) FROM generate_series(1, $3::int) RETURNING id`, sc.classID, sc.fieldKey, cfg.records)
	if err != nil {
		return res, fmt.Errorf("create records: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return res, fmt.Errorf("create records: %w", err)
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
	}

	p, err := startServer(ctx, opts)
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := p.stop(); err == nil && serr != nil {
			err = serr
		}
	}()
	connStart := time.Now()
	clients, err := openCatalystClients(ctx, cfg.Clients, p, auth, sc.classID)
	if err != nil {
		return res, err
	}
	defer clients.close()
	// Subscribed: the gauge counts a connection once the hub offers it
	// events, so every change committed from now on is expected.
	if err := p.waitGauge(ctx, catalystConnections, float64(cfg.Clients), time.Minute); err != nil {
		return res, err
	}
	cfg.Logger.Info("catalyst clients connected", "clients", cfg.Clients, "took", time.Since(connStart).Round(time.Millisecond).String())

	meter, err := startCPUMeter(p)
	if err != nil {
		return res, err
	}
	capacity := int(float64(cfg.Rate)*cfg.Duration.Seconds()) + 1
	committed, took, err := pace(ctx, writers, cfg.Rate, cfg.Duration, capacity, func(ctx context.Context, c *pgx.Conn, seq int64) error {
		// seq+1 differs from every value the record had, so every UPDATE
		// changes a cell.
		if _, err := c.Exec(ctx, "update", ids[seq%int64(len(ids))], sc.fieldKey, seq+1); err != nil {
			return fmt.Errorf("update: %w", err)
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	// A duplicate would come in a later frame: give it time to show.
	st, err := settle(ctx, cfg.Logger, "catalyst", p, meter, clients, committed, cfg.DrainTimeout, 2*cfg.MessageTime)
	if err != nil {
		return res, err
	}
	res.CPU, res.ServerRSSMB = st.cpu, st.rssMB
	d, drain, cpuAll := st.counts, st.drain, st.cpuAll
	res.Changes = committed
	res.DurationS = round3(took.Seconds())
	res.ChangesPerS = round1(perSecond(committed, took))
	res.ExpectedPerClient = committed
	res.ReceivedMin, res.ReceivedMax, res.Received = d.min, d.max, d.total
	res.Lost, res.ClientsShort, res.Extra, res.Disconnected = d.lost, d.short, d.extra, d.disconnected
	res.Frames = d.frames
	res.DrainS = round3(drain.Seconds())
	res.DeliveredPerS = round1(perSecond(d.total, took+drain))
	if d.total > 0 {
		res.ServerCPUPerItemUs = round3(float64(cpuAll.Microseconds()) / float64(d.total))
	}
	res.PassLoss = d.lost == 0 && d.extra == 0 && d.disconnected == 0 && committed > 0
	res.PassCPU = res.CPU.Server < res.TargetServerCores
	if d.firstDisconnect != nil {
		cfg.Logger.Warn("clients disconnected", "count", d.disconnected, "first", d.firstDisconnect.Error())
	}
	cfg.Logger.Info("catalyst delivery done", "delivered_per_s", res.DeliveredPerS, "lost", res.Lost, "drain_s", res.DrainS)
	return res, nil
}

// Go runtime samples of the server's /metrics.
const (
	metricHeapInuse  = "go_memstats_heap_inuse_bytes"
	metricStackInuse = "go_memstats_stack_inuse_bytes"
	metricGoroutines = "go_goroutines"
)
