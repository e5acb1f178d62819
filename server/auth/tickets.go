package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/server/internal/httpjson"
)

// ErrInvalidTicket is returned by Redeem for a ticket that is not a UUID,
// unknown, already used or expired. Clients get the same answer in every
// case, so the detail after the sentinel is for tests and debugging only.
var ErrInvalidTicket = errors.New("invalid or expired ticket")

// DefaultTicketTTL is how long a ticket stays redeemable when NewTicketStore
// is given 0: long enough for a client to open a WebSocket right after
// fetching it, short enough that a leaked one is soon useless.
const DefaultTicketTTL = 60 * time.Second

// TicketMetrics counts ticket outcomes. Create it with NewTicketMetrics,
// register it once, and pass it to NewTicketStore with WithTicketMetrics.
// A nil *TicketMetrics counts nothing.
type TicketMetrics struct {
	issued   prometheus.Counter
	redeemed prometheus.Counter
	rejected *prometheus.CounterVec
}

// Reasons of pgcast_tickets_rejected_total. An unknown ticket and a used one
// are indistinguishable once the row is gone, so both count as "used".
const (
	rejectInvalid = "invalid" // not a UUID
	rejectExpired = "expired"
	rejectUsed    = "used" // unknown or already redeemed
)

// NewTicketMetrics creates the ticket counters:
// pgcast_tickets_issued_total, pgcast_tickets_redeemed_total and
// pgcast_tickets_rejected_total{reason="invalid|expired|used"}.
func NewTicketMetrics() *TicketMetrics {
	m := &TicketMetrics{
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgcast_tickets_issued_total",
			Help: "WebSocket connection tickets issued by GET /api/users/ws-auth/.",
		}),
		redeemed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pgcast_tickets_redeemed_total",
			Help: "WebSocket connection tickets redeemed successfully.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgcast_tickets_rejected_total",
			Help: `Ticket redemptions refused, by reason: "invalid" (not a UUID), "expired", "used" (unknown or already redeemed).`,
		}, []string{"reason"}),
	}
	// Export every reason from the start, so rate() works before the first
	// rejection.
	for _, r := range []string{rejectInvalid, rejectExpired, rejectUsed} {
		m.rejected.WithLabelValues(r)
	}
	return m
}

// Register registers the counters with reg.
func (m *TicketMetrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.issued, m.redeemed, m.rejected} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register ticket metrics: %w", err)
		}
	}
	return nil
}

func (m *TicketMetrics) incIssued() {
	if m != nil {
		m.issued.Inc()
	}
}

func (m *TicketMetrics) incRedeemed() {
	if m != nil {
		m.redeemed.Inc()
	}
}

func (m *TicketMetrics) incRejected(reason string) {
	if m != nil {
		m.rejected.WithLabelValues(reason).Inc()
	}
}

// TicketStore issues and redeems one-time WebSocket connection tickets kept
// in pgcast.tickets, so any node can redeem a ticket another node issued.
//
// Expiry uses this process's clock both when issuing and when redeeming on
// another node, so nodes' clocks must agree to well within the TTL (NTP).
type TicketStore struct {
	pool    *db.Pool
	ttl     time.Duration
	now     func() time.Time
	metrics *TicketMetrics
}

// TicketOption configures a TicketStore.
type TicketOption func(*TicketStore)

// WithTicketMetrics makes the store count into m. Default: no metrics.
func WithTicketMetrics(m *TicketMetrics) TicketOption {
	return func(s *TicketStore) { s.metrics = m }
}

// NewTicketStore returns a store on pool whose tickets live for ttl
// (0 means DefaultTicketTTL, 60 s).
func NewTicketStore(pool *db.Pool, ttl time.Duration, opts ...TicketOption) (*TicketStore, error) {
	if pool == nil {
		return nil, errors.New("auth: NewTicketStore: pool is required")
	}
	if ttl < 0 {
		return nil, fmt.Errorf("auth: NewTicketStore: ticket TTL must not be negative, got %s", ttl)
	}
	if ttl == 0 {
		ttl = DefaultTicketTTL
	}
	s := &TicketStore{pool: pool, ttl: ttl, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Issue stores a ticket for ident and returns it with its expiry. The
// anonymous identity gets no ticket.
func (s *TicketStore) Issue(ctx context.Context, ident Identity) (uuid.UUID, time.Time, error) {
	return s.IssueUntil(ctx, ident, time.Time{})
}

// IssueUntil is Issue with the ticket's expiry capped at notAfter (ignored
// when zero): a ticket must not outlive the token it was issued for.
func (s *TicketStore) IssueUntil(ctx context.Context, ident Identity, notAfter time.Time) (uuid.UUID, time.Time, error) {
	if ident.Anonymous() {
		return uuid.UUID{}, time.Time{}, errors.New("issue ticket: anonymous identity")
	}
	if ident.Environment < 1 {
		return uuid.UUID{}, time.Time{}, fmt.Errorf("issue ticket: environment must be ≥ 1, got %d", ident.Environment)
	}
	id, err := uuid.NewRandom()
	if err != nil {
		return uuid.UUID{}, time.Time{}, fmt.Errorf("issue ticket: generate id: %w", err)
	}
	// timestamptz keeps microseconds: truncate so the expiry returned is
	// exactly the one stored.
	expires := s.now().Add(s.ttl)
	if !notAfter.IsZero() && notAfter.Before(expires) {
		expires = notAfter
	}
	expires = expires.Truncate(time.Microsecond)
	err = db.IssueTicket(ctx, s.pool, db.Ticket{
		ID: id.String(), UserID: ident.UserID, Role: ident.Role.String(), Environment: ident.Environment, ExpiresAt: expires,
	})
	if err != nil {
		return uuid.UUID{}, time.Time{}, fmt.Errorf("issue ticket: %w", err)
	}
	s.metrics.incIssued()
	return id, expires, nil
}

// Redeem consumes a ticket and returns the identity it was issued for. The
// DELETE ... RETURNING is one atomic statement: of concurrent redemptions of
// one ticket exactly one gets the row. An expired ticket is deleted too. A
// ticket that is not a UUID is refused without a query. Errors other than
// ErrInvalidTicket are database failures; no error contains the ticket.
func (s *TicketStore) Redeem(ctx context.Context, ticket string) (Identity, error) {
	c, err := s.Claim(ctx, ticket)
	if err != nil {
		return Identity{}, err
	}
	s.metrics.incRedeemed()
	return c.ident, nil
}

// ClaimedTicket is a ticket taken out of the store by Claim, for a
// handshake that may still be refused: then GiveBack stores it again.
type ClaimedTicket struct {
	id               uuid.UUID
	ident            Identity
	expires, created time.Time
}

// Identity is who the ticket was issued for.
func (c ClaimedTicket) Identity() Identity { return c.ident }

// Claim is Redeem without counting the ticket redeemed: the caller counts
// it (Redeemed) once its handshake has gone through, or gives it back
// (GiveBack).
func (s *TicketStore) Claim(ctx context.Context, ticket string) (ClaimedTicket, error) {
	id, err := uuid.Parse(ticket)
	if err != nil {
		s.metrics.incRejected(rejectInvalid)
		return ClaimedTicket{}, fmt.Errorf("%w: not a UUID", ErrInvalidTicket)
	}
	t, err := db.TakeTicket(ctx, s.pool, id.String())
	if errors.Is(err, db.ErrTicketNotFound) {
		s.metrics.incRejected(rejectUsed)
		return ClaimedTicket{}, fmt.Errorf("%w: unknown or already used", ErrInvalidTicket)
	}
	if err != nil {
		return ClaimedTicket{}, fmt.Errorf("redeem ticket: %w", err)
	}
	if !s.now().Before(t.ExpiresAt) {
		s.metrics.incRejected(rejectExpired)
		return ClaimedTicket{}, fmt.Errorf("%w: expired", ErrInvalidTicket)
	}
	c := ClaimedTicket{id: id, ident: Identity{UserID: t.UserID, Environment: t.Environment}, expires: t.ExpiresAt, created: t.CreatedAt}
	if c.ident.Role, err = ParseRole(t.Role); err != nil {
		return ClaimedTicket{}, fmt.Errorf("redeem ticket: stored %w", err)
	}
	return c, nil
}

// Redeemed counts a claimed ticket whose handshake went through.
func (s *TicketStore) Redeemed() { s.metrics.incRedeemed() }

// GiveBack stores a claimed ticket again, as it was, for a handshake
// refused after the ticket was taken (429 over a connection cap, 503): a
// refused handshake leaves the ticket usable, until it expires. A ticket
// still opens one connection at most: a concurrent redemption of it, while
// it was out, was refused.
func (s *TicketStore) GiveBack(ctx context.Context, c ClaimedTicket) error {
	err := db.RestoreTicket(ctx, s.pool, db.Ticket{
		ID: c.id.String(), UserID: c.ident.UserID, Role: c.ident.Role.String(), Environment: c.ident.Environment,
		ExpiresAt: c.expires, CreatedAt: c.created,
	})
	if err != nil {
		return fmt.Errorf("give a ticket back: %w", err)
	}
	return nil
}

// PruneExpired deletes expired tickets (those never redeemed) and returns
// how many. Run it every few TTLs; expired tickets are harmless, only
// clutter.
func (s *TicketStore) PruneExpired(ctx context.Context) (int64, error) {
	n, err := db.DeleteExpiredTickets(ctx, s.pool, s.now())
	if err != nil {
		return 0, fmt.Errorf("prune expired tickets: %w", err)
	}
	return n, nil
}

// ticketResponse is the 200 body of ws-auth, Catalyst's shape.
type ticketResponse struct {
	UUID      string `json:"uuid"`
	ExpiresAt string `json:"expires_at"`
}

// WSAuthHandler serves GET /api/users/ws-auth/: it verifies the caller's JWT
// (BearerToken) and answers {"uuid": ticket, "expires_at": RFC 3339} with a
// single-use ticket for the WebSocket upgrade. The ticket expires after the
// store's TTL, or with the JWT if that comes first. No JWT, a bad JWT or an
// expired one gets 401 with an error body saying which; other methods get
// 405. Neither the JWT nor the ticket is ever logged; outcomes are logged at
// Debug. logger may be nil.
//
// Register it without a method in the pattern so that its JSON 405 answers
// instead of the mux's plain-text one.
func WSAuthHandler(auth *Authenticator, store *TicketStore, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Tickets and auth errors are per-caller: never cache them.
		w.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			httpjson.Error(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET")
			return
		}
		reject := func(reason, message string) {
			logger.DebugContext(r.Context(), "ws-auth rejected", "reason", reason)
			// RFC 6750: tell the client which scheme is expected.
			w.Header().Set("WWW-Authenticate", `Bearer realm="pgcast"`)
			httpjson.Error(w, http.StatusUnauthorized, "unauthorized", message)
		}
		token, present := BearerToken(r)
		if !present {
			reject("missing_token", "missing token: send Authorization: Bearer <jwt>")
			return
		}
		if token == "" {
			reject("malformed_header", "invalid Authorization header: want Bearer <jwt> or JWT <jwt>")
			return
		}
		ident, exp, err := auth.VerifyContext(r.Context(), token)
		switch {
		case errors.Is(err, ErrTokenExpired):
			reject("token_expired", "token expired")
			return
		case err != nil:
			reject("invalid_token", err.Error())
			return
		case ident.Anonymous():
			reject("anonymous", "anonymous callers cannot get a ticket")
			return
		}
		id, expires, err := store.IssueUntil(r.Context(), ident, exp)
		if err != nil {
			if r.Context().Err() == nil {
				logger.ErrorContext(r.Context(), "issue ws ticket", "err", err)
			}
			httpjson.Error(w, http.StatusInternalServerError, "internal", "could not issue a ticket, try again")
			return
		}
		logger.DebugContext(r.Context(), "ws ticket issued",
			"user_id", ident.UserID, "role", ident.Role.String(), "environment_id", ident.Environment)
		_ = httpjson.Write(w, http.StatusOK, ticketResponse{UUID: id.String(), ExpiresAt: expires.UTC().Format(time.RFC3339)})
	})
}
