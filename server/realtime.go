package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/internal/httpjson"
	"github.com/pgcast/pgcast/stream"
)

// /api/realtime (see ../shared/spec/realtime.md). Decisions where the
// contract is silent, binding for this implementation:
//
//   - The token comes from "Authorization: Bearer" or, without that header,
//     from ?token=. A token parameter that is present but empty is a present,
//     invalid token (401), like an empty Bearer header.
//   - A channel over 200 bytes gets invalid_channel with its own message,
//     "Channel name is too long (maximum 200 characters)".
//   - Known namespaces are the viewer's environment's collections, the five
//     built-in ones, and the application namespaces registered in
//     pgcast.publish_namespaces (they can be published to, so they can be
//     subscribed to). Another namespace gets unknown_namespace, a channel
//     no event can match invalid_channel (see realtime_channels.go).
//   - A database failure while checking a namespace is answered with code
//     internal_error (the connection stays open; retrying may work).
//   - Resume: "since" must be a string "evt_<position>" (digits only); any
//     other value is answered with code invalid_since and nothing is
//     subscribed. A resume is refused when the position is older than
//     retention only if entries after it were pruned (since <
//     pruned_through): the client then gets {"type":"reset"} and live events.
//     A replay that fails (database down) also ends in a reset: the client
//     reloads rather than risk a silent gap.
//   - A subscribe with "since" for a channel the connection already has is
//     acknowledged without a replay: the connection has delivered everything
//     on it since it was subscribed.
//   - While a replay runs, the connection's live events (all channels) wait
//     until it ends; replies (pong, acknowledgements) do not wait.
//   - A replayed event that this connection already received live through
//     another channel is sent again (the client asked for the channel's
//     history); events replayed by an earlier resume on the connection are
//     not.

// Limits of the realtime protocol.
const (
	maxRealtimeChannels = 50  // subscriptions per connection (contract)
	maxChannelLen       = 200 // bytes per channel name (contract)
	// maxPendingResumes bounds the resumes queued on one connection (a
	// client alternating subscribe-with-since and unsubscribe).
	maxPendingResumes = 2 * maxRealtimeChannels
	// maxConcurrentReplays bounds the replay queries one node runs at once,
	// so that every client reconnecting at the same moment costs Postgres a
	// bounded load (R10); the others wait, holding their live events.
	maxConcurrentReplays = 4
	// namespaceTimeout bounds the database lookup of a subscribe.
	namespaceTimeout = 5 * time.Second
	// knownNamespacesCache bounds the namespaces a connection remembers as
	// existing (so that subscribing posts.created then posts.updated queries
	// once).
	knownNamespacesCache = 64
)

// realtimeHandler serves GET /api/realtime.
type realtimeHandler struct {
	ws       WSConfig
	hub      *stream.Hub
	auth     *auth.Authenticator
	pool     *pgxpool.Pool
	upgrader *websocket.Upgrader
	conns    *connRegistry
	caps     *connCaps
	metrics  *wsMetrics
	logger   *slog.Logger
	// replaySlots is a semaphore of maxConcurrentReplays page queries.
	replaySlots chan struct{}
	// dedupWindow is how long the positions of a finished replay are kept to
	// drop their live copies (see rtOutbox).
	dedupWindow time.Duration
	bufs        sync.Pool // the writers' *frameBuf
	gate        fanoutGate
}

const realtimeEndpoint = "realtime" // metrics label

// routeRealtime adds GET /api/realtime. Every method is registered
// explicitly (rather than a method-less pattern) so that the path never
// conflicts with method patterns such as "POST /api/{collection}", and
// other methods still get a JSON 405.
func (s *Server) routeRealtime(upgrader *websocket.Upgrader, caps *connCaps, metrics *wsMetrics) error {
	h := &realtimeHandler{
		ws: s.cfg.WS, hub: s.cfg.Hub, auth: s.cfg.Auth, pool: s.cfg.Pool, upgrader: upgrader,
		conns: s.conns, caps: caps, metrics: metrics, logger: s.cfg.Logger,
		replaySlots: make(chan struct{}, maxConcurrentReplays),
		dedupWindow: defaultDedupWindow,
	}
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		s.mux.Handle(m+" /api/realtime", h)
	}
	return nil
}

func (h *realtimeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		httpjson.Error(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET with a WebSocket upgrade")
		return
	}
	// Origin first: a cross-site page learns nothing about its token.
	if !originAllowed(r, h.ws.AllowedOrigins) {
		httpjson.Error(w, http.StatusForbidden, "forbidden", "origin not allowed")
		return
	}
	viewer, expires, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		httpjson.Error(w, http.StatusBadRequest, "bad_request", "a WebSocket upgrade is required")
		return
	}
	if h.conns.draining() {
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "server shutting down")
		return
	}
	release, ok := h.caps.admit(w, r, viewer.Environment, viewer.UserID, h.metrics, realtimeEndpoint)
	if !ok {
		return
	}
	conn, err := upgrade(h.upgrader, w, r, h.ws, h.logger, &h.bufs)
	if err != nil {
		release()
		return // the upgrader has answered
	}
	h.open(context.WithoutCancel(r.Context()), conn, viewer, expires, release)
}

// authenticate returns the viewer: anonymous (environment 1) without a
// token, the token's claims with one. A present but unusable token is
// answered with 401 and ok false. The token is never logged.
func (h *realtimeHandler) authenticate(w http.ResponseWriter, r *http.Request) (v stream.Viewer, expires time.Time, ok bool) {
	token, present := auth.BearerToken(r)
	if !present {
		if vals, has := r.URL.Query()["token"]; has {
			present = true
			if len(vals) == 1 {
				token = vals[0]
			}
		}
	}
	if !present {
		return stream.Viewer{Environment: 1}, time.Time{}, true
	}
	id, exp, err := h.auth.Verify(token)
	if err != nil {
		msg := err.Error()
		if errors.Is(err, auth.ErrTokenExpired) {
			msg = "token expired"
		}
		h.logger.Debug("realtime upgrade rejected", "reason", msg)
		w.Header().Set("WWW-Authenticate", `Bearer realm="pgcast"`)
		httpjson.Error(w, http.StatusUnauthorized, "unauthorized", msg)
		return stream.Viewer{}, time.Time{}, false
	}
	return stream.Viewer{UserID: id.UserID, Admin: id.IsAdmin(), Environment: id.Environment}, exp, true
}

// rtConn is one /api/realtime connection. The read loop owns known; the
// outbox's lock guards everything shared with the hub and the replay worker.
type rtConn struct {
	h      *realtimeHandler
	conn   *wsConn
	out    *rtOutbox
	sub    *stream.Subscription
	viewer stream.Viewer
	ctx    context.Context // ends with the connection
	cancel context.CancelFunc
	expiry *time.Timer // closes with 4001; nil without a token
	// release uncounts the connection from the per-user and per-IP caps.
	release func()

	known      map[string]nsKind // namespaces found in the database
	workerDone chan struct{}     // non-nil once the replay worker runs
}

// open sets the connection up and starts it; its read loop runs on a
// goroutine of its own (the HTTP handler returns, letting the server's
// request buffers go).
func (h *realtimeHandler) open(parent context.Context, conn *wsConn, viewer stream.Viewer, expires time.Time, release func()) {
	ctx, cancel := context.WithCancel(parent)
	out := newRTOutbox(h.ws.MaxBuffer, h.dedupWindow, conn,
		h.metrics.frames.WithLabelValues(realtimeEndpoint), h.metrics.items.WithLabelValues(realtimeEndpoint))
	out.gate = &h.gate
	conn.out = out
	c := &rtConn{h: h, conn: conn, out: out, viewer: viewer, ctx: ctx, cancel: cancel, release: release, known: map[string]nsKind{}}
	refused := h.metrics.refusedMsgs.WithLabelValues(realtimeEndpoint)
	conn.onRefused = func() {
		refused.Inc()
		c.reply(errRateLimited.frame())
	}
	// Queued before the subscription exists, so it is the first frame.
	c.reply(mustJSON(struct {
		Type     string `json:"type"`
		ClientID string `json:"clientId"`
	}{"connected", "rt_" + uuid.NewString()}))
	sub, err := h.hub.Subscribe(stream.SubscribeOptions{Viewer: viewer, Protocol: stream.ProtocolRealtime, Queue: out})
	if err != nil {
		h.logger.Error("realtime subscribe", "err", err)
		cancel()
		conn.abort()
		release()
		return
	}
	c.sub = sub
	h.metrics.connections.WithLabelValues(realtimeEndpoint).Inc()
	h.conns.add(conn)
	if !expires.IsZero() {
		// With the leeway Verify allowed, so that a token accepted at the
		// upgrade is not dropped the same instant. Fires at once if the
		// token expired since it was verified.
		c.expiry = time.AfterFunc(time.Until(expires.Add(h.auth.Leeway())), func() { conn.close(CloseTokenExpired, "token expired") })
	}
	conn.start()
	go c.run()
}

// run is the connection's goroutine: the read loop, then the end.
func (c *rtConn) run() {
	h := c.h
	c.conn.readLoop(c.onMessage)
	c.cancel()
	if c.expiry != nil {
		c.expiry.Stop()
	}
	h.hub.Unsubscribe(c.sub)
	if c.workerDone != nil {
		<-c.workerDone
	}
	c.conn.finish()
	c.release()
	h.conns.remove(c.conn)
	h.metrics.connections.WithLabelValues(realtimeEndpoint).Dec()
	if code, _ := c.conn.closeCode(); code == CloseSlowConsumer {
		h.metrics.slowCloses.WithLabelValues(realtimeEndpoint).Inc()
	}
}

// onMessage handles one client frame, on the read loop. Errors are replies;
// none closes the connection.
func (c *rtConn) onMessage(data []byte) {
	m, cerr := parseClientMessage(data)
	if cerr != nil {
		c.reply(cerr.frame())
		return
	}
	switch m.action {
	case actionPing:
		c.reply([]byte(`{"type":"pong"}`))
	case actionSubscribe:
		c.subscribe(m)
	case actionUnsubscribe:
		c.unsubscribe(m.channel)
	}
}

// reply queues a reply frame.
func (c *rtConn) reply(b []byte) {
	if c.out.reply(b) {
		c.conn.notify()
	}
}

func (c *rtConn) subscribe(m clientMessage) {
	o := c.out
	o.mu.Lock()
	_, have := o.channels[m.channel]
	n := len(o.channels)
	o.mu.Unlock()
	if have {
		c.reply(channelReply("subscribed", m.channel))
		return
	}
	if n >= maxRealtimeChannels {
		c.reply(errSubscriptionLimit.frame())
		return
	}
	if reply, ok := c.checkChannel(m.channel); !ok {
		if reply != nil {
			c.reply(reply)
		}
		return
	}
	if !m.resume {
		// Acknowledge first: the channel's events can only follow it.
		if o.subscribe(m.channel, channelReply("subscribed", m.channel), false) {
			c.h.hub.AddChannel(c.sub, m.channel)
			c.conn.notify()
		}
		return
	}
	if !o.subscribe(m.channel, channelReply("subscribed", m.channel), true) {
		c.reply((&clientError{code: "subscription_limit", message: "Too many resumes in progress on this connection"}).frame())
		return
	}
	c.conn.notify()
	// The hub now offers the channel's live events, which the outbox holds;
	// only then may the replay read the log (see rtOutbox).
	c.h.hub.AddChannel(c.sub, m.channel)
	o.queueReplay(&replayReq{channel: m.channel, after: m.since, set: &replayedSet{}})
	if c.workerDone == nil {
		c.workerDone = make(chan struct{})
		go c.replayWorker()
	}
}

func (c *rtConn) unsubscribe(channel string) {
	// Out of the hub first: every live event of the channel is then queued
	// (or held) before the acknowledgement.
	c.h.hub.RemoveChannel(c.sub, channel)
	if c.out.unsubscribe(channel, channelReply("unsubscribed", channel)) {
		c.conn.notify()
	}
}

// replayWorker runs the connection's resumes one at a time, off the read
// loop (which keeps answering pings meanwhile), until the connection ends.
func (c *rtConn) replayWorker() {
	defer close(c.workerDone)
	for c.ctx.Err() == nil {
		req := c.out.nextReplay()
		if req == nil {
			select {
			case <-c.out.replayWake:
			case <-c.ctx.Done():
			}
			continue
		}
		c.replay(req)
	}
}

var (
	errReplayCancelled = errors.New("replay cancelled")
	errOutboxClosed    = errors.New("connection closed")
)

// replay sends the channel's events after req.after, then releases the held
// live events.
func (c *rtConn) replay(req *replayReq) {
	o := c.out
	defer func() {
		if o.finishReplay(req) {
			c.conn.notify()
		}
	}()
	if !o.startReplay(req) {
		return
	}
	ns, _, _ := strings.Cut(req.channel, ".")
	err := stream.Replay(c.ctx, c.h.pool, stream.ReplayOptions{
		Environment: c.viewer.Environment, After: req.after, Namespace: ns, Logger: c.h.logger,
		Acquire: c.h.acquireReplaySlot,
	}, func(ev *stream.Event) error {
		typ := stream.RealtimeType(ev)
		if !stream.ChannelMatches(req.channel, typ) || !stream.Visible(c.viewer, ev) {
			return nil
		}
		return o.pushReplayed(c.ctx, req, stream.AppendRealtimeEvent(nil, ev, typ), ev.Position)
	})
	switch {
	case err == nil, errors.Is(err, errReplayCancelled), errors.Is(err, errOutboxClosed), c.ctx.Err() != nil:
	case errors.Is(err, stream.ErrPruned):
		o.replyFor(req, channelReply("reset", req.channel))
	default:
		c.h.logger.Warn("realtime resume failed; sending reset", "err", err)
		o.replyFor(req, channelReply("reset", req.channel))
	}
}

// acquireReplaySlot bounds the replay queries this node runs at once. A
// slot is held for one page's query, never while a client consumes it.
func (h *realtimeHandler) acquireReplaySlot(ctx context.Context) (func(), error) {
	select {
	case h.replaySlots <- struct{}{}:
		return func() { <-h.replaySlots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Client messages.

const (
	actionSubscribe   = "subscribe"
	actionUnsubscribe = "unsubscribe"
	actionPing        = "ping"
)

// clientMessage is a decoded, validated client frame.
type clientMessage struct {
	action  string
	channel string // subscribe, unsubscribe
	since   int64  // subscribe with resume
	resume  bool
}

// clientError is an error reply.
type clientError struct {
	code, message string
}

var (
	errSubscriptionLimit = &clientError{code: "subscription_limit", message: fmt.Sprintf("Maximum %d subscriptions per connection", maxRealtimeChannels)}
	// errRateLimited answers a message over the connection's message rate;
	// the message is not handled.
	errRateLimited = &clientError{code: "rate_limited", message: "Too many messages: this one was not handled; slow down or the connection is closed"}
)

func (e *clientError) frame() []byte {
	return mustJSON(struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}{"error", e.code, e.message})
}

func channelReply(typ, channel string) []byte {
	return mustJSON(struct {
		Type    string `json:"type"`
		Channel string `json:"channel"`
	}{typ, channel})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only fixed struct shapes of strings are marshalled
	}
	return b
}

// parseClientMessage decodes and validates one client frame: a JSON object
// whose keys are matched exactly ("Action" is not "action"); unknown keys
// are ignored.
func parseClientMessage(data []byte) (clientMessage, *clientError) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		if err == nil || json.Valid(data) {
			return clientMessage{}, &clientError{code: "invalid_json", message: "Message must be a JSON object"}
		}
		return clientMessage{}, &clientError{code: "invalid_json", message: "Message is not valid JSON"}
	}
	action, ok := stringField(fields, "action")
	if !ok {
		if raw, has := fields["action"]; !has || string(raw) == "null" {
			return clientMessage{}, &clientError{code: "invalid_action", message: "Action is required"}
		}
	}
	m := clientMessage{action: action}
	switch action {
	case actionPing:
		return m, nil
	case actionSubscribe, actionUnsubscribe:
	default:
		return clientMessage{}, &clientError{code: "invalid_action", message: "Unknown action: want subscribe, unsubscribe or ping"}
	}
	raw, has := fields["channel"]
	channel, isString := stringField(fields, "channel")
	switch {
	case !has || string(raw) == "null" || (isString && channel == ""):
		return clientMessage{}, &clientError{code: "invalid_channel", message: "Channel name is required"}
	case !isString:
		return clientMessage{}, &clientError{code: "invalid_channel", message: "Channel name is invalid"}
	case len(channel) > maxChannelLen:
		return clientMessage{}, &clientError{code: "invalid_channel", message: fmt.Sprintf("Channel name is too long (maximum %d characters)", maxChannelLen)}
	case !validChannel(channel):
		return clientMessage{}, &clientError{code: "invalid_channel", message: "Channel name is invalid"}
	}
	m.channel = channel
	if action == actionUnsubscribe {
		return m, nil
	}
	if raw, has := fields["since"]; has && string(raw) != "null" {
		s, _ := stringField(fields, "since")
		pos, ok := parseEventID(s)
		if !ok {
			return clientMessage{}, &clientError{code: "invalid_since", message: `since must be an event id such as "evt_123"`}
		}
		m.since, m.resume = pos, true
	}
	return m, nil
}

// stringField returns fields[key] when it is a JSON string.
func stringField(fields map[string]json.RawMessage, key string) (string, bool) {
	raw, ok := fields[key]
	if !ok || len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// validChannel checks the grammar: segments of [A-Za-z0-9_-]+ separated by
// dots, the last of which may be "*".
func validChannel(s string) bool {
	seg := 0 // length of the current segment
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if seg == 0 {
				return false
			}
			seg = 0
		case c == '*':
			// Only as a whole, last segment.
			if seg != 0 || i != len(s)-1 {
				return false
			}
			seg = 1
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
			seg++
		default:
			return false
		}
	}
	return seg > 0
}

// parseEventID parses "evt_<digits>" into a position.
func parseEventID(s string) (int64, bool) {
	digits, ok := strings.CutPrefix(s, "evt_")
	if !ok || digits == "" || len(digits) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
