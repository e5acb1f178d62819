package ws

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/server/internal/httpjson"
)

// Transport is what the WebSocket endpoints of one server share: the
// settings, the upgrader, the connection caps, the registry of open
// connections (for shutdown) and the metrics. Each endpoint serves through
// an Endpoint of it.
type Transport struct {
	cfg      Config
	logger   *slog.Logger
	upgrader *websocket.Upgrader
	caps     *connCaps
	conns    *registry
	metrics  *metrics
}

// NewTransport registers the WebSocket metrics with reg. cfg's zero fields
// mean the defaults.
func NewTransport(cfg Config, reg prometheus.Registerer, logger *slog.Logger) (*Transport, error) {
	cfg = cfg.WithDefaults()
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Transport{
		cfg: cfg, logger: logger, upgrader: newUpgrader(cfg.AllowedOrigins),
		caps:  newConnCaps(cfg.MaxConnsPerUser, cfg.MaxConnsPerIP, cfg.TrustedProxies),
		conns: newRegistry(), metrics: m,
	}, nil
}

// Config is the transport's settings, defaults filled in.
func (t *Transport) Config() Config { return t.cfg }

// CloseAll closes every connection with 1001, batchSize at a time with a
// pause between batches, and refuses new ones; then it waits for the
// connections to end or ctx to.
func (t *Transport) CloseAll(ctx context.Context, batchSize int, pause time.Duration) {
	t.conns.closeAll(ctx, batchSize, pause)
}

// Conns returns the open connections, in no order.
func (t *Transport) Conns() []*Conn {
	t.conns.mu.Lock()
	defer t.conns.mu.Unlock()
	out := make([]*Conn, 0, len(t.conns.conns))
	for c := range t.conns.conns {
		out = append(out, c)
	}
	return out
}

// Endpoint is one WebSocket endpoint of a Transport: its metrics label and
// its writers' pool of FrameBufs.
type Endpoint struct {
	t    *Transport
	name string
	bufs sync.Pool // the writers' *FrameBuf
}

// Endpoint returns the endpoint named name (the endpoint label of the
// metrics).
func (t *Transport) Endpoint(name string) *Endpoint { return &Endpoint{t: t, name: name} }

// Config is the transport's settings.
func (e *Endpoint) Config() Config { return e.t.cfg }

// OriginAllowed applies Config.AllowedOrigins to r (see OriginAllowed).
func (e *Endpoint) OriginAllowed(r *http.Request) bool {
	return OriginAllowed(r, e.t.cfg.AllowedOrigins)
}

// Draining reports whether the server is shutting down: no new
// connection is taken.
func (e *Endpoint) Draining() bool { return e.t.conns.draining() }

// Admit counts a connection of user userID (anonymous when "") in
// environment env against the caps, for a handshake: a refusal calls
// refused (unless nil) first, so that what the handshake took (its ticket)
// is given back before the client can retry, then is answered with 429
// too_many_connections and counted, and ok is false. release uncounts the
// connection.
func (e *Endpoint) Admit(w http.ResponseWriter, r *http.Request, env int64, userID string, refused func()) (release func(), ok bool) {
	release, reason, msg := e.t.caps.acquire(r, env, userID)
	if release == nil {
		if refused != nil {
			refused()
		}
		e.t.metrics.refusedConns.WithLabelValues(e.name, reason).Inc()
		httpjson.Error(w, http.StatusTooManyRequests, "too_many_connections", msg)
		return nil, false
	}
	return release, true
}

// Upgrade performs the handshake and returns the connection, not yet
// started (SetOutbox, then Opened and Start). On an error the upgrader has
// answered.
func (e *Endpoint) Upgrade(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	return upgrade(e.t.upgrader, w, r, e.t.cfg, e.t.logger, &e.bufs)
}

// Frames and Items count the data frames and the events an endpoint's
// Outboxes hand the writers.
func (e *Endpoint) Frames() prometheus.Counter { return e.t.metrics.frames.WithLabelValues(e.name) }
func (e *Endpoint) Items() prometheus.Counter  { return e.t.metrics.items.WithLabelValues(e.name) }

// RefusedMessages counts the client frames refused over the message rate.
func (e *Endpoint) RefusedMessages() prometheus.Counter {
	return e.t.metrics.refusedMsgs.WithLabelValues(e.name)
}

// Opened counts c open and registers it for shutdown (a connection opened
// while the server shuts down is closed at once with 1001).
func (e *Endpoint) Opened(c *Conn) {
	e.t.metrics.connections.WithLabelValues(e.name).Inc()
	e.t.conns.add(c)
}

// Closed is Opened's counterpart, once the connection is over (Finish):
// a connection closed as a slow consumer is counted.
func (e *Endpoint) Closed(c *Conn) {
	e.t.conns.remove(c)
	e.t.metrics.connections.WithLabelValues(e.name).Dec()
	if code, _ := c.CloseCode(); code == CloseSlowConsumer {
		e.t.metrics.slowCloses.WithLabelValues(e.name).Inc()
	}
}

// metrics are per-endpoint WebSocket metrics.
type metrics struct {
	connections   *prometheus.GaugeVec
	frames, items *prometheus.CounterVec
	slowCloses    *prometheus.CounterVec
	refusedConns  *prometheus.CounterVec // by endpoint and cap ("user", "ip")
	refusedMsgs   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pgcast_ws_connections", Help: "Open WebSocket connections."}, []string{"endpoint"}),
		frames:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgcast_ws_frames_total", Help: "Data frames sent."}, []string{"endpoint"}),
		items:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgcast_ws_events_delivered_total", Help: "Events delivered to clients."}, []string{"endpoint"}),
		slowCloses:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgcast_ws_slow_consumer_closes_total", Help: "Connections closed with 4008 (slow consumer): their buffer overflowed or a write was not taken within the write timeout."}, []string{"endpoint"}),
		refusedConns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgcast_ws_connections_refused_total",
			Help: "Handshakes refused with 429 because the user or the client address held the most connections allowed."}, []string{"endpoint", "cap"}),
		refusedMsgs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgcast_ws_messages_refused_total",
			Help: "Client frames refused because the client sent faster than the message rate."}, []string{"endpoint"}),
	}
	for _, c := range []prometheus.Collector{m.connections, m.frames, m.items, m.slowCloses, m.refusedConns, m.refusedMsgs} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// registry tracks open connections for graceful shutdown.
type registry struct {
	mu     sync.Mutex
	conns  map[*Conn]struct{}
	closed bool
}

func newRegistry() *registry { return &registry{conns: map[*Conn]struct{}{}} }

func (r *registry) add(c *Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.Close(CloseGoingAway, "server shutting down")
	}
	r.conns[c] = struct{}{}
}

func (r *registry) remove(c *Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, c)
}

func (r *registry) draining() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// closeAll closes every connection with 1001, batchSize at a time with a
// pause between batches, so that clients do not all reconnect in the same
// instant; then waits for the writers to finish or ctx to end.
func (r *registry) closeAll(ctx context.Context, batchSize int, pause time.Duration) {
	r.mu.Lock()
	r.closed = true
	all := make([]*Conn, 0, len(r.conns))
	for c := range r.conns {
		all = append(all, c)
	}
	r.mu.Unlock()
	for i, c := range all {
		c.Close(CloseGoingAway, "server shutting down")
		if (i+1)%batchSize == 0 && i+1 < len(all) {
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
		}
	}
	for _, c := range all {
		select {
		case <-c.done:
		case <-ctx.Done():
			return
		}
	}
}
