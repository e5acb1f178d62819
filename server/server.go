package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/catalyst"
	"github.com/pgcast/pgcast/server/internal/httpjson"
	"github.com/pgcast/pgcast/server/realtime"
	"github.com/pgcast/pgcast/server/rest"
	"github.com/pgcast/pgcast/server/ws"
	"github.com/pgcast/pgcast/stream"
)

// Config configures a Server. The zero value (with Pool set) means the
// defaults below.
type Config struct {
	// Addr is the public listen address. Default ":8080".
	Addr string
	// InternalAddr serves /metrics (and nothing else public-facing). Default
	// "127.0.0.1:9090". "off" disables it.
	InternalAddr string
	// Pool is the database pool. Required.
	Pool *db.Pool
	// Logger. Default: discard.
	Logger *slog.Logger
	// Registry receives pgcast's metrics. Default: a new registry with the Go
	// and process collectors.
	Registry *prometheus.Registry
	// ReadHeaderTimeout bounds how long a client may take to send request
	// headers (slowloris). Default 10 s.
	ReadHeaderTimeout time.Duration
	// HTTP are the other bounds of plain HTTP requests (timeouts, requests
	// in flight per client address, the byte budget of a list page).
	HTTP HTTPConfig
	// ReadyChecks are run by /readyz besides the database and schema checks.
	ReadyChecks []ReadyCheck
	// Hub routes events to WebSocket connections. Without it (and Auth) the
	// WebSocket and ticket endpoints are not served.
	Hub *stream.Hub
	// Auth verifies JWTs. Required with Hub.
	Auth *auth.Authenticator
	// TicketTTL is how long a ws-auth ticket stays valid. Default 60 s.
	TicketTTL time.Duration
	// TicketPruneInterval is how often expired, never-redeemed tickets are
	// deleted. Default 5 × TicketTTL, between 10 s and 1 min.
	TicketPruneInterval time.Duration
	// WS are the WebSocket settings (origins, keep-alive, buffer bound).
	WS ws.Config
	// Catalyst are the batching settings of the Catalyst endpoints.
	Catalyst catalyst.Config
	// CloseBatch is how many WebSockets are closed at once on shutdown, with
	// CloseBatchPause between batches. Defaults 500 and 20 ms.
	CloseBatch      int
	CloseBatchPause time.Duration
	// ShutdownGrace is how long Stop keeps serving, with /readyz already
	// answering 503, before it closes the first WebSocket and stops
	// accepting connections: load balancers that poll readiness take the
	// node out before any client is cut. It is taken within Stop's context
	// and never more than half of the time that context leaves, so that
	// closing has the other half. Default 5 s; negative: none.
	ShutdownGrace time.Duration
	// NoConsole turns off the live console at /console/ (served by
	// default: it is static files on the public APIs and holds no secret).
	NoConsole bool
	// DevToken, when set, mints the development tokens the console's
	// "Mint a development token" button asks GET /console/dev-token for.
	// Only `pgcast dev` sets it; never set it on a server others can reach.
	DevToken func() (string, error)
}

// ReadyCheck is one named readiness condition.
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = ":8080"
	}
	if c.InternalAddr == "" {
		c.InternalAddr = "127.0.0.1:9090"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = NewRegistry()
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.TicketTTL == 0 {
		c.TicketTTL = 60 * time.Second
	}
	if c.TicketPruneInterval == 0 {
		c.TicketPruneInterval = min(max(5*c.TicketTTL, 10*time.Second), time.Minute)
	}
	if c.CloseBatch == 0 {
		c.CloseBatch = 500
	}
	if c.CloseBatchPause == 0 {
		c.CloseBatchPause = 20 * time.Millisecond
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 5 * time.Second
	}
	c.HTTP = c.HTTP.withDefaults()
	c.WS = c.WS.WithDefaults()
	c.Catalyst = c.Catalyst.WithDefaults()
	return c
}

func (c Config) validate() error {
	if c.Pool == nil {
		return errors.New("server: Config.Pool is required")
	}
	if c.Hub != nil && c.Auth == nil {
		return errors.New("server: Config.Auth is required with Config.Hub")
	}
	if c.Catalyst.MessageLimit < 1 || c.Catalyst.MessageTime < 0 || c.WS.MaxBuffer < c.Catalyst.MessageLimit {
		return fmt.Errorf("server: message limit %d must be ≥ 1 and ≤ the connection buffer %d", c.Catalyst.MessageLimit, c.WS.MaxBuffer)
	}
	if c.WS.MessageRate > 0 && c.WS.MessageBurst < 1 {
		return fmt.Errorf("server: client message burst must be ≥ 1, got %d", c.WS.MessageBurst)
	}
	return c.HTTP.validate()
}

// NewRegistry returns a metrics registry with the Go runtime and process
// collectors registered.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Server is pgcast's HTTP server.
type Server struct {
	cfg      Config
	mux      *routes
	draining atomic.Bool

	httpMetrics *httpMetrics
	requests    *requestCap
	connStates  *connStates

	transport *ws.Transport // nil without Config.Hub
	tickets   *auth.TicketStore

	mu       sync.Mutex
	started  bool
	stopped  bool
	public   *http.Server
	internal *http.Server
	addr     net.Addr
	intAddr  net.Addr
	done     chan struct{}
	// stopBackground ends background work (ticket pruning).
	stopBackground context.CancelFunc
}

// New validates cfg and builds the routes. Nothing listens until Start.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	hm, err := newHTTPMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("server: register metrics: %w", err)
	}
	s := &Server{
		cfg: cfg, done: make(chan struct{}),
		httpMetrics: hm, connStates: newConnStates(hm),
		requests: &requestCap{max: cfg.HTTP.MaxRequestsPerIP, trusted: cfg.WS.TrustedProxies, inFlight: map[string]int{}},
	}
	s.mux = &routes{ServeMux: http.NewServeMux(), s: s}
	s.mux.HandleFunc("GET /livez", s.handleLivez)
	s.mux.HandleFunc("GET /readyz", s.handleReadyz)
	s.routeConsole()
	if cfg.Hub != nil {
		if err := s.routeStreams(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// routeStreams adds the ticket endpoint and the WebSocket endpoints.
func (s *Server) routeStreams() error {
	cfg := s.cfg
	var err error
	if s.transport, err = ws.NewTransport(cfg.WS, cfg.Registry, cfg.Logger); err != nil {
		return fmt.Errorf("server: register metrics: %w", err)
	}
	tm := auth.NewTicketMetrics()
	if err := tm.Register(cfg.Registry); err != nil {
		return fmt.Errorf("server: register metrics: %w", err)
	}
	if s.tickets, err = auth.NewTicketStore(cfg.Pool, cfg.TicketTTL, auth.WithTicketMetrics(tm)); err != nil {
		return err
	}
	// Exactly this path, with or without its trailing slash (a subtree
	// pattern would also serve /api/users/ws-auth/anything, and without the
	// slash the request would fall to the collections REST API).
	wsAuth := auth.WSAuthHandler(cfg.Auth, s.tickets, cfg.Logger)
	s.mux.Handle("/api/users/ws-auth/{$}", wsAuth)
	s.mux.Handle("/api/users/ws-auth", wsAuth)
	for path, proto := range map[string]stream.Protocol{
		"/ws/events/object-records/": stream.ProtocolRecords,
		"/ws/events/tasks/":          stream.ProtocolTasks,
	} {
		s.mux.HandleWebSocket(path, catalyst.New(proto, cfg.Catalyst, cfg.Hub, s.tickets, s.transport, cfg.Logger))
	}
	// GET /api/realtime. Every method is registered explicitly (rather than
	// a method-less pattern) so that the path never conflicts with method
	// patterns such as "POST /api/{collection}", and other methods still get
	// a JSON 405.
	rt := realtime.New(cfg.Hub, cfg.Auth, cfg.Pool, s.transport, cfg.Logger)
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		s.mux.HandleWebSocket(m+" /api/realtime", rt)
	}
	rest.New(rest.Config{
		Pool: cfg.Pool, Auth: cfg.Auth, Logger: cfg.Logger, MaxListBytes: cfg.HTTP.MaxListBytes, Metrics: s.httpMetrics.rest(),
	}).Register(s.mux)
	return nil
}

// Handler is the public handler (for tests and embedding).
func (s *Server) Handler() http.Handler { return s }

// Addr is the bound public address (after Start).
func (s *Server) Addr() net.Addr { s.mu.Lock(); defer s.mu.Unlock(); return s.addr }

// InternalAddr is the bound internal address (after Start), nil when off.
func (s *Server) InternalAddr() net.Addr { s.mu.Lock(); defer s.mu.Unlock(); return s.intAddr }

// Start binds both listeners (so "address already in use" is reported here)
// and serves in the background.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("server: already started")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	var iln net.Listener
	if s.cfg.InternalAddr != "off" {
		iln, err = lc.Listen(ctx, "tcp", s.cfg.InternalAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen on internal address %s: %w", s.cfg.InternalAddr, err)
		}
	}
	errLog := slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelDebug)
	h := s.cfg.HTTP
	s.public = &http.Server{
		Handler: s, ErrorLog: errLog, ConnState: s.connStates.track,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout, ReadTimeout: h.ReadTimeout, WriteTimeout: h.WriteTimeout, IdleTimeout: h.IdleTimeout,
	}
	s.addr = ln.Addr()
	s.started = true
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.serve(s.public, ln, "public") }()
	if iln != nil {
		imux := http.NewServeMux()
		imux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{ErrorLog: errLog}))
		s.internal = &http.Server{
			Handler: imux, ErrorLog: errLog,
			ReadHeaderTimeout: s.cfg.ReadHeaderTimeout, ReadTimeout: h.ReadTimeout, WriteTimeout: h.WriteTimeout, IdleTimeout: h.IdleTimeout,
		}
		s.intAddr = iln.Addr()
		wg.Add(1)
		go func() { defer wg.Done(); s.serve(s.internal, iln, "internal") }()
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stopBackground = cancel
	if s.tickets != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.pruneTickets(bg) }()
	}
	go func() { wg.Wait(); close(s.done) }()
	s.cfg.Logger.Info("listening", "addr", s.addr.String(), "internal_addr", addrString(s.intAddr))
	return nil
}

// pruneTickets deletes expired, never-redeemed tickets every few TTLs
// (at least every minute) until ctx ends. Expired tickets cannot be redeemed
// anyway: this only keeps the table small.
func (s *Server) pruneTickets(ctx context.Context) {
	t := time.NewTicker(s.cfg.TicketPruneInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := s.tickets.PruneExpired(ctx)
			if err != nil && ctx.Err() == nil {
				s.cfg.Logger.Warn("prune expired tickets", "err", err)
			} else if n > 0 {
				s.cfg.Logger.Debug("pruned expired tickets", "count", n)
			}
		}
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}

func (s *Server) serve(hs *http.Server, ln net.Listener, name string) {
	if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.cfg.Logger.Error("http server stopped", "server", name, "err", err)
	}
}

// SetDraining makes /readyz answer 503 so load balancers stop sending new
// clients, without closing anything yet.
func (s *Server) SetDraining() { s.draining.Store(true) }

// Stop turns readiness off, keeps serving for the shutdown grace, then
// closes the WebSockets, stops accepting connections and waits for
// in-flight requests until ctx ends. Idempotent.
func (s *Server) Stop(ctx context.Context) error {
	s.SetDraining()
	s.mu.Lock()
	if !s.started || s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	s.stopBackground()
	s.shutdownGrace(ctx)
	// WebSockets are hijacked: http.Server.Shutdown does not see them.
	if s.transport != nil {
		s.transport.CloseAll(ctx, s.cfg.CloseBatch, s.cfg.CloseBatchPause)
	}
	var errs []error
	if err := s.public.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("shut down public server: %w", err))
		s.public.Close()
	}
	if s.internal != nil {
		if err := s.internal.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shut down internal server: %w", err))
			s.internal.Close()
		}
	}
	<-s.done
	return errors.Join(errs...)
}

// shutdownGrace waits, readiness failing, for Config.ShutdownGrace or half
// of the time ctx leaves, whichever is shorter.
func (s *Server) shutdownGrace(ctx context.Context) {
	d := s.cfg.ShutdownGrace
	if deadline, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(deadline)/2)
	}
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (s *Server) handleLivez(w http.ResponseWriter, _ *http.Request) {
	_ = httpjson.Write(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReadyz reports ready when the server is not draining, the database
// answers, the schema is at this binary's version, every extra check passes
// and every key set of the Authenticator has been loaded. Each check gets
// its own short deadline.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	checks := map[string]string{}
	ok := true
	if s.draining.Load() {
		checks["shutdown"] = "draining"
		ok = false
	}
	run := func(name string, f func(ctx context.Context) error) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := f(ctx); err != nil {
			checks[name] = err.Error()
			ok = false
			return
		}
		checks[name] = "ok"
	}
	run("database", func(ctx context.Context) error { return s.cfg.Pool.Ping(ctx) })
	if checks["database"] == "ok" {
		run("schema", func(ctx context.Context) error {
			st, err := db.ReadStatus(ctx, s.cfg.Pool)
			if err != nil {
				return err
			}
			return st.Check()
		})
	}
	for _, c := range s.cfg.ReadyChecks {
		run(c.Name, c.Check)
	}
	if a := s.cfg.Auth; a != nil && a.FetchesKeys() {
		// Not ready while a key set was never loaded; a failing refresh
		// with keys cached is only reported (see auth.KeyStatus).
		ready, detail := a.KeyStatus()
		checks["jwks"] = detail
		ok = ok && ready
	}
	status, code := "ready", http.StatusOK
	if !ok {
		status, code = "not ready", http.StatusServiceUnavailable
	}
	_ = httpjson.Write(w, code, map[string]any{"status": status, "checks": checks})
}
