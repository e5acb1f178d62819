package catalyst

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/internal/httpjson"
	"github.com/pgcast/pgcast/server/ws"
	"github.com/pgcast/pgcast/stream"
)

// Handler serves one Catalyst endpoint: /ws/events/object-records/
// (stream.ProtocolRecords) or /ws/events/tasks/ (stream.ProtocolTasks).
type Handler struct {
	protocol stream.Protocol
	cfg      Config
	bounds   ws.QueueLimits // a connection's queue's (ws.Config.MaxBuffer, MaxBufferBytes)
	hub      *stream.Hub
	tickets  *auth.TicketStore
	ep       *ws.Endpoint
	logger   *slog.Logger
}

// New returns the handler of protocol's endpoint, whose connections redeem
// tickets of tickets, subscribe to hub and are served through transport.
// cfg's zero fields mean the defaults.
func New(protocol stream.Protocol, cfg Config, hub *stream.Hub, tickets *auth.TicketStore, transport *ws.Transport, logger *slog.Logger) *Handler {
	h := &Handler{
		protocol: protocol, cfg: cfg.WithDefaults(), bounds: transport.Config().QueueLimits(),
		hub: hub, tickets: tickets, logger: logger,
	}
	h.ep = transport.Endpoint(h.endpoint())
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
	if !h.ep.OriginAllowed(r) {
		httpjson.Error(w, http.StatusForbidden, "forbidden", "origin not allowed")
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		httpjson.Error(w, http.StatusBadRequest, "bad_request", "a WebSocket upgrade is required")
		return
	}
	if msg := ws.HandshakeProblem(r); msg != "" {
		httpjson.Error(w, http.StatusBadRequest, "bad_request", msg)
		return
	}
	if h.ep.Draining() {
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
	release, ok := h.ep.Admit(w, r, id.Environment, id.UserID, giveBack)
	if !ok {
		return
	}
	// Subscribed before the upgrade answers 101: the client may commit (or
	// learn of a commit) as soon as it has the 101, and that event is its.
	b := newBatcher(h.cfg.MessageLimit, h.bounds, h.cfg.MessageTime, h.ep.Frames(), h.ep.Items())
	sub, err := h.hub.Subscribe(stream.SubscribeOptions{
		Viewer:   id.Viewer(),
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
	conn, err := h.ep.Upgrade(w, r)
	if err != nil {
		h.hub.Unsubscribe(sub)
		release()
		giveBack() // the upgrader has answered (the handshake was checked: rare)
		return
	}
	h.tickets.Redeemed()
	b.attach(conn)
	conn.SetOutbox(b)
	h.ep.Opened(conn)
	conn.Start()
	// The read loop gets a goroutine of its own and this one returns: the
	// HTTP server's buffers for the request (8 KiB) are then let go.
	go h.serve(conn, sub, release)
}

// giveBack returns a ticket claimed for a handshake that is refused.
func (h *Handler) giveBack(r *http.Request, c auth.ClaimedTicket) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	if err := h.tickets.GiveBack(ctx, c); err != nil {
		h.logger.Warn("refused handshake: ticket lost", "err", err)
	}
}

// serve runs the connection's read loop, then ends the connection.
func (h *Handler) serve(conn *ws.Conn, sub *stream.Subscription, release func()) {
	conn.ReadLoop(nil, h.ep.RefusedMessages().Inc)
	h.hub.Unsubscribe(sub)
	conn.Finish()
	release()
	h.ep.Closed(conn)
}

func (h *Handler) endpoint() string {
	if h.protocol == stream.ProtocolTasks {
		return "tasks"
	}
	return "object-records"
}
