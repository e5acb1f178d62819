package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/internal/httpjson"
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
	tickets  *auth.TicketStore
	upgrader *websocket.Upgrader
	conns    *connRegistry
	caps     *connCaps
	metrics  *wsMetrics
	logger   *slog.Logger
	bufs     sync.Pool // the writers' *frameBuf
}

func (h *catalystHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		httpjson.Error(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET with a WebSocket upgrade")
		return
	}
	q := r.URL.Query()
	// Filters first: a 400 must not burn the ticket.
	classIDs, err := parseIDList("object_class_ids", q.Get("object_class_ids"))
	if err != nil {
		httpjson.Error(w, http.StatusBadRequest, "invalid_filter", err.Error())
		return
	}
	var fieldIDs []int64
	if h.protocol == stream.ProtocolRecords {
		if fieldIDs, err = parseIDList("field_ids", q.Get("field_ids")); err != nil {
			httpjson.Error(w, http.StatusBadRequest, "invalid_filter", err.Error())
			return
		}
	}
	if !originAllowed(r, h.ws.AllowedOrigins) {
		httpjson.Error(w, http.StatusForbidden, "forbidden", "origin not allowed")
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		httpjson.Error(w, http.StatusBadRequest, "bad_request", "a WebSocket upgrade is required")
		return
	}
	if msg := handshakeProblem(r); msg != "" {
		httpjson.Error(w, http.StatusBadRequest, "bad_request", msg)
		return
	}
	if h.conns.draining() {
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "server shutting down")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	claimed, err := h.tickets.Claim(ctx, q.Get("uuid"))
	cancel()
	if err != nil {
		if errors.Is(err, auth.ErrInvalidTicket) {
			httpjson.Error(w, http.StatusUnauthorized, "invalid_ticket", "the uuid is missing, unknown, expired or already used: fetch a new one from /api/users/ws-auth/")
			return
		}
		h.logger.Error("redeem ticket", "err", err)
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "could not check the ticket")
		return
	}
	// From here on a refused handshake gives the ticket back before it
	// answers: the client may retry with it.
	id, giveBack := claimed.Identity(), func() { h.giveBack(r, claimed) }
	release, ok := h.caps.admitOr(w, r, id.Environment, id.UserID, h.metrics, h.endpoint(), giveBack)
	if !ok {
		return
	}
	// Subscribed before the upgrade answers 101: the client may commit (or
	// learn of a commit) as soon as it has the 101, and that event is its.
	b := newBatcher(h.cfg.MessageLimit, h.ws.MaxBuffer, h.cfg.MessageTime,
		h.metrics.frames.WithLabelValues(h.endpoint()), h.metrics.items.WithLabelValues(h.endpoint()))
	sub, err := h.hub.Subscribe(stream.SubscribeOptions{
		Viewer:   stream.Viewer{UserID: id.UserID, Admin: id.IsAdmin(), Environment: id.Environment},
		Protocol: h.protocol,
		ClassIDs: classIDs,
		FieldIDs: fieldIDs,
		Queue:    b,
	})
	if err != nil {
		release()
		h.logger.Error("catalyst subscribe", "err", err)
		giveBack()
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "could not subscribe")
		return
	}
	conn, err := upgrade(h.upgrader, w, r, h.ws, h.logger, &h.bufs)
	if err != nil {
		h.hub.Unsubscribe(sub)
		release()
		giveBack() // the upgrader has answered (the handshake was checked: rare)
		return
	}
	h.tickets.Redeemed()
	conn.onRefused = h.metrics.refusedMsgs.WithLabelValues(h.endpoint()).Inc
	b.attach(conn)
	conn.out = b
	h.metrics.connections.WithLabelValues(h.endpoint()).Inc()
	h.conns.add(conn)
	conn.start()
	// The read loop gets a goroutine of its own and this one returns: the
	// HTTP server's buffers for the request (8 KiB) are then let go.
	go h.serve(conn, sub, release)
}

// giveBack returns a ticket claimed for a handshake that is refused.
func (h *catalystHandler) giveBack(r *http.Request, c auth.ClaimedTicket) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	if err := h.tickets.GiveBack(ctx, c); err != nil {
		h.logger.Warn("refused handshake: ticket lost", "err", err)
	}
}

// serve runs the connection's read loop, then ends the connection.
func (h *catalystHandler) serve(conn *wsConn, sub *stream.Subscription, release func()) {
	conn.readLoop(nil)
	h.hub.Unsubscribe(sub)
	conn.finish()
	release()
	h.conns.remove(conn)
	h.metrics.connections.WithLabelValues(h.endpoint()).Dec()
	if code, _ := conn.closeCode(); code == CloseSlowConsumer {
		h.metrics.slowCloses.WithLabelValues(h.endpoint()).Inc()
	}
}

func (h *catalystHandler) endpoint() string {
	if h.protocol == stream.ProtocolTasks {
		return "tasks"
	}
	return "object-records"
}

// batcherKeepCap is the item capacity a batcher keeps once it empties
// (4 KiB): enough for steady batches without reallocating, while a burst's
// larger array is let go.
const batcherKeepCap = 128

// batcher is a Catalyst connection's buffer: items in commit order, at most
// one count item per object class (a newer count replaces the buffered one
// in place), bounded by max items. Full frames are written at once; the
// rest waits for the next tick, a multiple of tick after the connection
// started. The tick's timer is armed only while items wait, so an idle
// connection has no timer firing.
type batcher struct {
	limit, max int
	tick       time.Duration
	start      time.Time
	// conn is nil until attach: the batcher subscribes before the upgrade,
	// so that no event committed after the client's 101 can be missed, and
	// keeps what arrives until the connection exists and starts.
	conn atomic.Pointer[wsConn]

	mu      sync.Mutex
	q       []stream.Item // the items are q[head:]
	head    int
	countAt map[int64]int // object class → index of its count item in q[head:]
	closed  bool
	timer   *time.Timer // the next tick
	armed   bool        // timer is set and has not fired
	due     bool        // a tick has fired: the next take sends a frame

	frames, sent prometheus.Counter
}

func newBatcher(limit, max int, tick time.Duration, frames, sent prometheus.Counter) *batcher {
	return &batcher{limit: limit, max: max, tick: tick, start: time.Now(), frames: frames, sent: sent}
}

// attach gives the batcher its connection (before the connection starts,
// which writes what waits); one that overflowed meanwhile is closed.
func (b *batcher) attach(c *wsConn) {
	b.conn.Store(c)
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		c.close(CloseSlowConsumer, "slow consumer")
	}
}

// notify wakes the connection's writer, once there is a connection.
func (b *batcher) notify(inline bool) {
	if c := b.conn.Load(); c != nil {
		c.wake(inline)
	}
}

func (b *batcher) lenLocked() int { return len(b.q) - b.head }

// Enqueue is called by the hub; it never blocks.
func (b *batcher) Enqueue(it stream.Item) bool {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false
	}
	if it.Event.Kind == stream.KindRecordsCountChanged {
		if i, ok := b.countAt[it.Event.ClassID]; ok {
			b.q[b.head+i] = it
			b.mu.Unlock()
			return true
		}
	}
	if b.lenLocked() >= b.max {
		b.closed = true
		b.releaseLocked()
		b.mu.Unlock()
		if c := b.conn.Load(); c != nil {
			c.close(CloseSlowConsumer, "slow consumer")
		} // else attach closes it
		return false
	}
	if it.Event.Kind == stream.KindRecordsCountChanged {
		if b.countAt == nil {
			b.countAt = map[int64]int{}
		}
		b.countAt[it.Event.ClassID] = b.lenLocked()
	}
	if b.head > 0 && len(b.q) == cap(b.q) {
		n := copy(b.q, b.q[b.head:])
		clear(b.q[n:])
		b.q, b.head = b.q[:n], 0
	}
	b.q = append(b.q, it)
	full := b.lenLocked() >= b.limit
	if !full && !b.armed {
		b.armLocked()
	}
	b.mu.Unlock()
	if full {
		b.notify(false)
	}
	return true
}

// armLocked sets the timer for the next tick.
func (b *batcher) armLocked() {
	d := b.tick - time.Since(b.start)%b.tick
	if b.timer == nil {
		b.timer = time.AfterFunc(d, b.ticked)
	} else {
		b.timer.Reset(d)
	}
	b.armed = true
}

// ticked runs on the timer's goroutine, which becomes the writer unless
// one is running.
func (b *batcher) ticked() {
	b.mu.Lock()
	b.armed = false
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.due = true
	b.mu.Unlock()
	b.notify(true)
}

// take adds to fb every full frame of exactly limit items and, after a
// tick, one frame of up to limit items; never an empty frame. It stops
// after catalystWriteBudget bytes; the writer comes back for the rest.
// The items are copied out under the lock, the frames built outside it.
func (b *batcher) take(fb *frameBuf) {
	b.mu.Lock()
	size, frames := 0, 0
	for size < catalystWriteBudget && (b.lenLocked() >= b.limit || (b.due && b.lenLocked() > 0)) {
		n := min(b.lenLocked(), b.limit)
		items := b.q[b.head : b.head+n]
		for _, it := range items {
			size += len(it.Bytes) + 1
		}
		fb.items = append(fb.items, items...)
		fb.groups = append(fb.groups, n)
		frames++
		b.drop(n)
		b.due = false // one frame per tick; full frames continue
	}
	if b.lenLocked() == 0 {
		b.due = false
	} else if !b.armed {
		b.armLocked()
	}
	b.mu.Unlock()
	if frames == 0 {
		return
	}
	b.frames.Add(float64(frames))
	b.sent.Add(float64(len(fb.items)))
	body := slices.Grow(fb.body[:0], size+frames*(maxFrameHeader+2))
	items := fb.items
	for _, n := range fb.groups {
		body = appendCatalystFrame(body, items[:n])
		items = items[n:]
	}
	fb.body = body
	fb.owned(body)
}

// drop removes the first n items and reindexes the count positions.
func (b *batcher) drop(n int) {
	clear(b.q[b.head : b.head+n])
	b.head += n
	if b.head == len(b.q) {
		b.head = 0
		if cap(b.q) > batcherKeepCap {
			b.q = nil // let a burst's backing array go
		} else {
			b.q = b.q[:0]
		}
	}
	for class, i := range b.countAt {
		if i < n {
			delete(b.countAt, class)
		} else {
			b.countAt[class] = i - n
		}
	}
}

func (b *batcher) releaseLocked() {
	b.q, b.head, b.countAt = nil, 0, nil
	if b.timer != nil {
		b.timer.Stop()
		b.armed = false
	}
}

func (b *batcher) discard() {
	b.mu.Lock()
	b.closed = true
	b.releaseLocked()
	b.mu.Unlock()
}

// wsMetrics are per-endpoint WebSocket metrics.
type wsMetrics struct {
	connections   *prometheus.GaugeVec
	frames, items *prometheus.CounterVec
	slowCloses    *prometheus.CounterVec
	refusedConns  *prometheus.CounterVec // by endpoint and cap ("user", "ip")
	refusedMsgs   *prometheus.CounterVec
}

func newWSMetrics(reg prometheus.Registerer) (*wsMetrics, error) {
	m := &wsMetrics{
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
