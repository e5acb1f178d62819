package server

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/server/rest"
	"github.com/pgcast/pgcast/server/ws"
)

// HTTPConfig bounds plain HTTP requests: every request but a WebSocket past
// its handshake (net/http clears a connection's deadlines when it is
// hijacked, so none of these timeouts applies to a WebSocket). Together they
// keep memory flat under clients that hold connections idle, trickle request
// bodies or never read their responses: what each holds is bounded in size
// and released within a timeout. The zero value means the defaults.
type HTTPConfig struct {
	// IdleTimeout closes a keep-alive connection that has not begun another
	// request for this long. Behind a load balancer that reuses connections
	// it must exceed the balancer's own idle timeout (60 s on AWS ALB and
	// nginx), or the balancer may send a request on a connection pgcast is
	// closing. Default 75 s (nginx's).
	IdleTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included, from its
	// first byte: a body that has not arrived by then is answered 408 (as
	// net/http does, a handler still running then has its context
	// cancelled). Default 30 s.
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from the end of its headers to the end
	// of its response: a client that does not read its response is cut.
	// Default 60 s. None of the timeouts may be negative.
	WriteTimeout time.Duration
	// MaxRequestsPerIP caps the requests one client address has in flight
	// at once; beyond it a request is answered 429 too_many_requests. The
	// WebSocket endpoints are not counted (ws.Config.MaxConnsPerIP caps
	// them). The address is the peer's or, from ws.Config.TrustedProxies,
	// the one X-Forwarded-For names. Default 64; negative: no cap.
	MaxRequestsPerIP int
	// MaxListBytes is the byte budget of a page of GET /api/{collection}:
	// the page ends before the first record that would take it over, says
	// "truncated": true, and the client goes on with ?before=. The first
	// record is always served, whatever its size. Default 1 MiB (the
	// largest request body); negative: no budget.
	MaxListBytes int
}

// Defaults of HTTPConfig.
const (
	DefaultHTTPIdleTimeout  = 75 * time.Second
	DefaultHTTPReadTimeout  = 30 * time.Second
	DefaultHTTPWriteTimeout = 60 * time.Second
	DefaultMaxRequestsPerIP = 64
	DefaultMaxListBytes     = rest.DefaultMaxListBytes
)

// Labels of pgcast_http_timeouts_total{phase}.
const (
	timeoutRead  = "read"
	timeoutWrite = "write"
)

func (c HTTPConfig) withDefaults() HTTPConfig {
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultHTTPIdleTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultHTTPReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultHTTPWriteTimeout
	}
	if c.MaxRequestsPerIP == 0 {
		c.MaxRequestsPerIP = DefaultMaxRequestsPerIP
	}
	if c.MaxListBytes == 0 {
		c.MaxListBytes = DefaultMaxListBytes
	}
	return c
}

func (c HTTPConfig) validate() error {
	if c.IdleTimeout < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0 {
		return fmt.Errorf("server: HTTP timeouts must not be negative (idle %v, read %v, write %v)", c.IdleTimeout, c.ReadTimeout, c.WriteTimeout)
	}
	return nil
}

// httpMetrics count what the HTTP bounds refuse or cut.
type httpMetrics struct {
	refused   prometheus.Counter
	timeouts  *prometheus.CounterVec
	conns     *prometheus.GaugeVec
	truncated prometheus.Counter
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgcast_http_requests_refused_total",
			Help: "Requests refused with 429 because their client address had the most requests in flight allowed."}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgcast_http_timeouts_total",
			Help: "Requests cut by a timeout: phase read (the body did not arrive in time), write (the response was not taken in time)."}, []string{"phase"}),
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pgcast_http_connections",
			Help: "Open HTTP connections (WebSockets excepted) by state: new (no request yet), active (in a request), idle (keep-alive, between requests)."}, []string{"state"}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{Name: "pgcast_rest_list_truncated_total",
			Help: "Pages of GET /api/{collection} that stopped early at the byte budget."}),
	}
	for _, c := range []prometheus.Collector{m.refused, m.timeouts, m.conns, m.truncated} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, p := range []string{timeoutRead, timeoutWrite} {
		m.timeouts.WithLabelValues(p)
	}
	return m, nil
}

// rest are the counters the REST API moves.
func (m *httpMetrics) rest() rest.Metrics {
	return rest.Metrics{
		ReadTimeouts:  m.timeouts.WithLabelValues(timeoutRead),
		WriteTimeouts: m.timeouts.WithLabelValues(timeoutWrite),
		Truncated:     m.truncated,
	}
}

// connStates keeps pgcast_http_connections: http.Server reports each
// connection's state changes, and the gauge of its last state is moved.
type connStates struct {
	m    *httpMetrics
	mu   sync.Mutex
	last map[net.Conn]http.ConnState
}

func newConnStates(m *httpMetrics) *connStates {
	return &connStates{m: m, last: map[net.Conn]http.ConnState{}}
}

func (c *connStates) track(nc net.Conn, state http.ConnState) {
	label := func(s http.ConnState) string {
		switch s {
		case http.StateNew:
			return "new"
		case http.StateActive:
			return "active"
		case http.StateIdle:
			return "idle"
		}
		return "" // hijacked or closed: no longer an HTTP connection
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := label(c.last[nc]); l != "" {
		c.m.conns.WithLabelValues(l).Dec()
	}
	if l := label(state); l != "" {
		c.m.conns.WithLabelValues(l).Inc()
		c.last[nc] = state
	} else {
		delete(c.last, nc)
	}
}

// requestCap counts the requests in flight per client address.
type requestCap struct {
	max      int // ≤ 0: no cap
	trusted  []netip.Prefix
	mu       sync.Mutex
	inFlight map[string]int
}

// acquire counts a request of r's client address, unless that address has
// max in flight already. It returns the address to release.
func (c *requestCap) acquire(r *http.Request) (ip string, ok bool) {
	if c.max <= 0 {
		return "", true
	}
	ip = ws.ClientIP(r, c.trusted)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inFlight[ip] >= c.max {
		return "", false
	}
	c.inFlight[ip]++
	return ip, true
}

func (c *requestCap) release(ip string) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inFlight[ip]--; c.inFlight[ip] <= 0 {
		delete(c.inFlight, ip)
	}
}

// routes is the public mux. Every handler registered through it is marked
// as pgcast's (route): the front handler (Server.ServeHTTP) can then tell a
// request that no route takes, which the mux answers itself in text or
// HTML, and plain requests are counted against MaxRequestsPerIP while
// WebSocket endpoints are not.
type routes struct {
	*http.ServeMux
	s *Server
}

func (m *routes) Handle(pattern string, h http.Handler) {
	m.ServeMux.Handle(pattern, route{h: h, s: m.s})
}

// HandleWebSocket registers a WebSocket endpoint: no CORS, and not counted
// against MaxRequestsPerIP (ws.Config.MaxConnsPerIP caps it).
func (m *routes) HandleWebSocket(pattern string, h http.Handler) {
	m.ServeMux.Handle(pattern, route{h: h, s: m.s, ws: true})
}

func (m *routes) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(f))
}

// route is a handler of pgcast's. ws marks the WebSocket endpoints.
type route struct {
	h  http.Handler
	s  *Server
	ws bool
}

func (rt route) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rt.ws {
		rt.h.ServeHTTP(w, r)
		return
	}
	ip, ok := rt.s.requests.acquire(r)
	if !ok {
		rt.s.httpMetrics.refused.Inc()
		w.Header().Set("Retry-After", "1")
		rest.NewError(http.StatusTooManyRequests, "too_many_requests",
			fmt.Sprintf("at most %d requests in flight per client address", rt.s.requests.max)).Write(w)
		return
	}
	defer rt.s.requests.release(ip)
	rt.h.ServeHTTP(w, r)
}

// ServeHTTP is the public handler: CORS (but for WebSocket endpoints), then
// the routes; what no route takes is answered by the mux in JSON (see
// muxWriter).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, _ := s.mux.Handler(r)
	rt, ours := h.(route)
	if !ours || !rt.ws {
		if s.cors(w, r) {
			return // a preflight, answered
		}
	}
	if !ours {
		w = &muxWriter{ResponseWriter: w}
	}
	s.mux.ServeHTTP(w, r)
}
