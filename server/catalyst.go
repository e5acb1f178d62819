package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/stream"
)

// CatalystConfig configures the Catalyst endpoints. The zero value means the
// defaults.
type CatalystConfig struct {
	// MessageLimit is the most items in one frame; a frame is sent as soon as
	// the buffer holds this many. Default 1000.
	MessageLimit int
	// MessageTime is the batching period, measured from the connection's
	// start: every tick sends up to MessageLimit buffered items. Default 5 s.
	MessageTime time.Duration
}

func (c CatalystConfig) withDefaults() CatalystConfig {
	if c.MessageLimit == 0 {
		c.MessageLimit = 1000
	}
	if c.MessageTime == 0 {
		c.MessageTime = 5 * time.Second
	}
	return c
}

// parseIDList parses a comma-separated list of positive integers; spaces
// around items are allowed and an empty parameter means no filter.
func parseIDList(name, raw string) ([]int64, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, nil
	}
	parts := strings.Split(raw, ",")
	ids := make([]int64, 0, len(parts))
	for _, p := range parts {
		item := strings.TrimSpace(p)
		id, err := strconv.ParseInt(item, 10, 64)
		if err != nil || id <= 0 || strings.HasPrefix(item, "+") {
			return nil, fmt.Errorf("%s: %q is not a positive integer", name, item)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// catalystHandler serves /ws/events/object-records/ and /ws/events/tasks/.
type catalystHandler struct {
	protocol stream.Protocol
	cfg      CatalystConfig
	ws       WSConfig
	hub      *stream.Hub
	tickets  *TicketStore
	upgrader *websocket.Upgrader
	conns    *connRegistry
	metrics  *wsMetrics
	logger   *slog.Logger
}

func (h *catalystHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET with a WebSocket upgrade")
		return
	}
	q := r.URL.Query()
	// Filters first: a 400 must not burn the ticket.
	classIDs, err := parseIDList("object_class_ids", q.Get("object_class_ids"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_filter", err.Error())
		return
	}
	var fieldIDs []int64
	if h.protocol == stream.ProtocolRecords {
		if fieldIDs, err = parseIDList("field_ids", q.Get("field_ids")); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_filter", err.Error())
			return
		}
	}
	if !originAllowed(r, h.ws.AllowedOrigins) {
		writeError(w, http.StatusForbidden, "forbidden", "origin not allowed")
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		writeError(w, http.StatusBadRequest, "bad_request", "a WebSocket upgrade is required")
		return
	}
	if h.conns.draining() {
		writeError(w, http.StatusServiceUnavailable, "unavailable", "server shutting down")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	id, err := h.tickets.Redeem(ctx, q.Get("uuid"))
	cancel()
	if err != nil {
		if errors.Is(err, ErrInvalidTicket) {
			writeError(w, http.StatusUnauthorized, "invalid_ticket", "the uuid is missing, unknown, expired or already used: fetch a new one from /api/users/ws-auth/")
			return
		}
		h.logger.Error("redeem ticket", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "could not check the ticket")
		return
	}
	wsc, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	conn := newWSConn(wsc, h.ws, h.logger, h.cfg.MessageTime)
	b := newBatcher(h.cfg.MessageLimit, h.ws.MaxBuffer, conn,
		h.metrics.frames.WithLabelValues(h.endpoint()), h.metrics.items.WithLabelValues(h.endpoint()))
	conn.out = b
	sub, err := h.hub.Subscribe(stream.SubscribeOptions{
		Viewer:   stream.Viewer{UserID: id.UserID, Admin: id.IsAdmin(), Environment: id.Environment},
		Protocol: h.protocol,
		ClassIDs: classIDs,
		FieldIDs: fieldIDs,
		Queue:    b,
	})
	if err != nil {
		_ = wsc.Close()
		return
	}
	h.metrics.connections.WithLabelValues(h.endpoint()).Inc()
	h.conns.add(conn)
	go conn.run()
	conn.readLoop(nil)
	h.hub.Unsubscribe(sub)
	<-conn.done
	h.conns.remove(conn)
	h.metrics.connections.WithLabelValues(h.endpoint()).Dec()
	if conn.code == CloseSlowConsumer {
		h.metrics.slowCloses.WithLabelValues(h.endpoint()).Inc()
	}
}

func (h *catalystHandler) endpoint() string {
	if h.protocol == stream.ProtocolTasks {
		return "tasks"
	}
	return "object-records"
}

// batcher is a Catalyst connection's buffer: items in commit order, at most
// one count item per object class (a newer count replaces the buffered one
// in place), bounded by max items.
type batcher struct {
	limit, max int
	conn       *wsConn

	mu      sync.Mutex
	items   []stream.Item
	countAt map[int64]int // object class → index of its count item in items
	closed  bool

	frames, sent prometheus.Counter
}

func newBatcher(limit, max int, conn *wsConn, frames, sent prometheus.Counter) *batcher {
	return &batcher{limit: limit, max: max, conn: conn, frames: frames, sent: sent}
}

// Enqueue is called by the hub; it never blocks.
func (b *batcher) Enqueue(it stream.Item) bool {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	if it.Event.Kind == stream.KindRecordsCountChanged {
		if i, ok := b.countAt[it.Event.ClassID]; ok {
			b.items[i] = it
			b.mu.Unlock()
			return true
		}
	}
	if len(b.items) >= b.max {
		b.closed = true
		b.items, b.countAt = nil, nil
		b.mu.Unlock()
		b.conn.close(CloseSlowConsumer, "slow consumer")
		return false
	}
	if it.Event.Kind == stream.KindRecordsCountChanged {
		if b.countAt == nil {
			b.countAt = map[int64]int{}
		}
		b.countAt[it.Event.ClassID] = len(b.items)
	}
	b.items = append(b.items, it)
	full := len(b.items) >= b.limit
	b.mu.Unlock()
	if full {
		b.conn.notify()
	}
	return true
}

// take returns the frames to send: every full frame of exactly limit items,
// and on a tick one frame of up to limit items. Never an empty frame.
func (b *batcher) take(tick bool) [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	var frames [][]byte
	for len(b.items) >= b.limit || (tick && len(b.items) > 0) {
		n := min(len(b.items), b.limit)
		frames = append(frames, encodeBatch(b.items[:n]))
		b.frames.Inc()
		b.sent.Add(float64(n))
		b.drop(n)
		tick = false // one frame per tick; full frames continue
	}
	return frames
}

// drop removes the first n items and reindexes the count positions.
func (b *batcher) drop(n int) {
	clear(b.items[:n])
	b.items = b.items[n:]
	if len(b.items) == 0 {
		b.items = nil // let a burst's backing array go
	}
	for class, i := range b.countAt {
		if i < n {
			delete(b.countAt, class)
		} else {
			b.countAt[class] = i - n
		}
	}
}

func (b *batcher) discard() {
	b.mu.Lock()
	b.closed = true
	b.items, b.countAt = nil, nil
	b.mu.Unlock()
}

// encodeBatch joins pre-encoded items into one JSON array.
func encodeBatch(items []stream.Item) []byte {
	size := 2 + len(items)
	for _, it := range items {
		size += len(it.Bytes)
	}
	buf := make([]byte, 0, size)
	buf = append(buf, '[')
	for i, it := range items {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, it.Bytes...)
	}
	return append(buf, ']')
}

// wsMetrics are per-endpoint WebSocket metrics.
type wsMetrics struct {
	connections   *prometheus.GaugeVec
	frames, items *prometheus.CounterVec
	slowCloses    *prometheus.CounterVec
}

func newWSMetrics(reg prometheus.Registerer) (*wsMetrics, error) {
	m := &wsMetrics{
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pgcast_ws_connections", Help: "Open WebSocket connections."}, []string{"endpoint"}),
		frames:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgcast_ws_frames_total", Help: "Data frames sent."}, []string{"endpoint"}),
		items:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgcast_ws_events_delivered_total", Help: "Events delivered to clients."}, []string{"endpoint"}),
		slowCloses:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgcast_ws_slow_consumer_closes_total", Help: "Connections closed with 4008 because their buffer overflowed."}, []string{"endpoint"}),
	}
	for _, c := range []prometheus.Collector{m.connections, m.frames, m.items, m.slowCloses} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// connRegistry tracks open connections for graceful shutdown.
type connRegistry struct {
	mu     sync.Mutex
	conns  map[*wsConn]struct{}
	closed bool
}

func newConnRegistry() *connRegistry { return &connRegistry{conns: map[*wsConn]struct{}{}} }

func (r *connRegistry) add(c *wsConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		c.close(CloseGoingAway, "server shutting down")
	}
	r.conns[c] = struct{}{}
}

func (r *connRegistry) remove(c *wsConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, c)
}

func (r *connRegistry) draining() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// closeAll closes every connection with 1001, batchSize at a time with a
// pause between batches, so that clients do not all reconnect in the same
// instant; then waits for the writers to finish or ctx to end.
func (r *connRegistry) closeAll(ctx context.Context, batchSize int, pause time.Duration) {
	r.mu.Lock()
	r.closed = true
	all := make([]*wsConn, 0, len(r.conns))
	for c := range r.conns {
		all = append(all, c)
	}
	r.mu.Unlock()
	for i, c := range all {
		c.close(CloseGoingAway, "server shutting down")
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
