package realtime

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/internal/httpjson"
	"github.com/pgcast/pgcast/server/ws"
	"github.com/pgcast/pgcast/stream"
)

// /api/realtime (see docs/realtime.md). Decisions where the
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
//     no event can match invalid_channel (see channels.go).
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
	// MaxConcurrentReplays bounds the replay queries one node runs at once,
	// so that every client reconnecting at the same moment costs Postgres a
	// bounded load (R10); the others wait, holding their live events.
	MaxConcurrentReplays = 4
	// namespaceTimeout bounds the database lookup of a subscribe.
	namespaceTimeout = 5 * time.Second
	// knownNamespacesCache bounds the namespaces a connection remembers as
	// existing (so that subscribing posts.created then posts.updated queries
	// once).
	knownNamespacesCache = 64
)

// CloseTokenExpired closes a connection whose token expired (the client
// reconnects with a fresh one).
const CloseTokenExpired = 4001

// Handler serves GET /api/realtime. Register it for every method (the
// server does, so that other methods get a JSON 405).
type Handler struct {
	hub    *stream.Hub
	auth   *auth.Authenticator
	pool   *db.Pool
	ep     *ws.Endpoint
	logger *slog.Logger
	// replaySlots is a semaphore of MaxConcurrentReplays page queries.
	replaySlots chan struct{}
	// dedupWindow is how long the positions of a finished replay are kept to
	// drop their live copies (see rtOutbox).
	dedupWindow time.Duration
	gate        ws.FanoutGate
}

const endpoint = "realtime" // metrics label

// New returns the handler of /api/realtime: its connections verify their
// token with auth, subscribe to hub, look channels' namespaces up and
// replay from the log in pool, and are served through transport.
func New(hub *stream.Hub, auth *auth.Authenticator, pool *db.Pool, transport *ws.Transport, logger *slog.Logger) *Handler {
	return &Handler{
		hub: hub, auth: auth, pool: pool,
		ep: transport.Endpoint(endpoint), logger: logger,
		replaySlots: make(chan struct{}, MaxConcurrentReplays),
		dedupWindow: defaultDedupWindow,
	}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		httpjson.Error(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET with a WebSocket upgrade")
		return
	}
	// Origin first: a cross-site page learns nothing about its token.
	if !h.ep.OriginAllowed(r) {
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
	if h.ep.Draining() {
		httpjson.Error(w, http.StatusServiceUnavailable, "unavailable", "server shutting down")
		return
	}
	release, ok := h.ep.Admit(w, r, viewer.Environment, viewer.UserID, nil)
	if !ok {
		return
	}
	conn, err := h.ep.Upgrade(w, r)
	if err != nil {
		release()
		return // the upgrader has answered
	}
	h.open(context.WithoutCancel(r.Context()), conn, viewer, expires, release)
}

// authenticate returns the viewer: anonymous (environment 1) without a
// token, the token's claims with one. A present but unusable token is
// answered with 401 and ok false. The token is never logged.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request) (v stream.Viewer, expires time.Time, ok bool) {
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
	id, exp, err := h.auth.VerifyContext(r.Context(), token)
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
	return id.Viewer(), exp, true
}
