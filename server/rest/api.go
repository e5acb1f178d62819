package rest

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/collections"
	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/internal/httpjson"
)

// REST limits.
const (
	// MaxBody is the largest request body the REST API reads (1 MiB):
	// enough for a record with a large text cell, small enough that a
	// handful of concurrent requests cannot exhaust memory. A larger body
	// gets 413.
	MaxBody = 1 << 20
	// DefaultListLimit is how many records GET /api/{collection} returns
	// without ?limit=; MaxListLimit the most ?limit= may ask for.
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// Config configures the REST API.
type Config struct {
	// Pool is the database pool. Required.
	Pool *db.Pool
	// Auth verifies callers' JWTs. Required.
	Auth *auth.Authenticator
	// Logger. Default: discard.
	Logger *slog.Logger
	// MaxListBytes is the byte budget of a page of GET /api/{collection}
	// (see server.HTTPConfig.MaxListBytes); negative: no budget. Zero
	// means DefaultMaxListBytes.
	MaxListBytes int
	// Metrics are counted into. Required.
	Metrics Metrics
}

// Metrics are the counters the REST API moves; the server registers them.
type Metrics struct {
	// ReadTimeouts and WriteTimeouts count requests cut by the server's
	// read timeout (the body did not arrive in time) and write timeout (the
	// response was not taken in time).
	ReadTimeouts, WriteTimeouts prometheus.Counter
	// Truncated counts pages of GET /api/{collection} that stopped early at
	// the byte budget.
	Truncated prometheus.Counter
}

// DefaultMaxListBytes is the default byte budget of a list page: the
// largest request body.
const DefaultMaxListBytes = MaxBody

// API serves the REST API.
type API struct {
	pool         *db.Pool
	auth         *auth.Authenticator
	logger       *slog.Logger
	maxListBytes int
	metrics      Metrics
}

// New returns the REST API.
func New(cfg Config) *API {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxListBytes == 0 {
		cfg.MaxListBytes = DefaultMaxListBytes
	}
	return &API{pool: cfg.Pool, auth: cfg.Auth, logger: cfg.Logger, maxListBytes: cfg.MaxListBytes, metrics: cfg.Metrics}
}

// Mux is where Register adds the routes (the server's mux).
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// Register adds the collections REST API, /api/collections, /api/events
// and /api/watches to mux (see docs/realtime.md):
//
//	GET    /api/{collection}        {"items":[record…]} newest first; ?limit= (default 100, at most 1000)
//	                                 and ?before=<id> (records with a smaller id: the next page);
//	                                 "truncated":true added when the page stopped at Config.MaxListBytes
//	POST   /api/{collection}        201 record
//	GET    /api/{collection}/{id}   200 record
//	PUT    /api/{collection}/{id}   200 record (partial update: only the fields given)
//	DELETE /api/{collection}/{id}   204
//	GET    /api/collections         (admin) {"items":[collection…]}
//	POST   /api/collections         (admin) 201 collection
//	GET    /api/collections/{name}  (admin) 200 collection
//	POST   /api/events              (admin) 201 event
//	GET    /api/watches[/{name}]    (admin) watches; PUT and DELETE /api/watches/{name}: watches.go
//
// Patterns carry no method so that every response, 405 included, is JSON
// (the mux's own 405 is text/plain) and so that they never conflict with a
// method-specific pattern such as GET /api/realtime. Anything else under
// /api/ gets a JSON 404.
func (s *API) Register(mux Mux) {
	mux.Handle("/api/", s.api(func(http.ResponseWriter, *http.Request) error {
		return NewError(http.StatusNotFound, "not_found", "no such endpoint")
	}))
	mux.Handle("/api/collections", s.api(s.handleCollections))
	mux.Handle("/api/collections/{name}", s.api(s.handleCollection))
	mux.Handle("/api/events", s.api(s.handleEvents))
	mux.Handle("/api/watches", s.api(s.handleWatches))
	mux.Handle("/api/watches/{name}", s.api(s.handleWatch))
	mux.Handle("/api/{collection}", s.api(s.handleRecords))
	mux.Handle("/api/{collection}/{id}", s.api(s.handleRecord))
}

// countWriteTimeout counts err when it is the server's write timeout.
func (s *API) countWriteTimeout(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.metrics.WriteTimeouts.Inc()
	}
}

// api adapts a handler that returns an error: an *httpjson.APIError is
// written as is, anything else is logged and answered with a 500 that says
// nothing of the cause.
func (s *API) api(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Responses depend on the caller's token: never cache them.
		w.Header().Set("Cache-Control", "no-store")
		err := h(w, r)
		if err == nil {
			return
		}
		var ae *httpjson.APIError
		if !errors.As(err, &ae) {
			ae = NewError(http.StatusInternalServerError, "internal", "internal error, try again")
			ae.Cause = err
		}
		if ae.Status >= 500 {
			if r.Context().Err() == nil {
				s.logger.ErrorContext(r.Context(), "rest request failed", "method", r.Method, "path", r.URL.Path, "err", ae.Cause)
			}
		}
		if ae.Status == http.StatusRequestTimeout {
			s.metrics.ReadTimeouts.Inc()
		}
		if ae.Status == http.StatusUnauthorized {
			// RFC 6750: tell the client which scheme is expected.
			w.Header().Set("WWW-Authenticate", `Bearer realm="pgcast"`)
		}
		ae.Write(w)
	})
}

// identity is the caller: anonymous (environment 1) without an
// Authorization header; a 401 when the header is there but its token is
// unusable, expired or not (a caller who meant to sign in must learn that
// they are not, rather than be served as anonymous).
func (s *API) identity(r *http.Request) (auth.Identity, error) {
	token, present := auth.BearerToken(r)
	if !present {
		return auth.Identity{Environment: 1}, nil
	}
	if token == "" {
		return auth.Identity{}, NewError(http.StatusUnauthorized, "unauthorized", "invalid Authorization header: want Bearer <jwt>")
	}
	id, _, err := s.auth.VerifyContext(r.Context(), token)
	switch {
	case errors.Is(err, auth.ErrTokenExpired):
		return auth.Identity{}, NewError(http.StatusUnauthorized, "unauthorized", "token expired")
	case err != nil:
		// Verify's errors never contain the token.
		return auth.Identity{}, NewError(http.StatusUnauthorized, "unauthorized", err.Error())
	}
	return id, nil
}

// requireAdmin returns the caller if it is an admin.
func (s *API) requireAdmin(r *http.Request, what string) (auth.Identity, error) {
	id, err := s.identity(r)
	if err != nil {
		return auth.Identity{}, err
	}
	if !id.IsAdmin() {
		return auth.Identity{}, denied(id, what+" (admin only)")
	}
	return id, nil
}

// readObject reads a request body that must be one JSON object (see
// readBody).
func readObject(w http.ResponseWriter, r *http.Request) ([]collections.Member, error) {
	data, err := readBody(w, r)
	if err != nil {
		return nil, err
	}
	members, err := collections.ParseObject(data)
	if err != nil {
		var ps collections.Problems
		if errors.As(err, &ps) {
			return nil, validationError(ps)
		}
		return nil, badRequest("%s", err.Error())
	}
	return members, nil
}

// checkContentType refuses a Content-Type other than JSON (415). None at
// all is accepted: many HTTP clients send none. (curl -d without -H sends
// a form type, which is refused with a message saying what to send.)
func checkContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return NewError(http.StatusUnsupportedMediaType, "bad_request", fmt.Sprintf("Content-Type %q is not supported: send application/json", ct))
	}
	return nil
}

// readBody reads a request body of at most MaxBody bytes (413 beyond).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if err := checkContentType(r); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, NewError(http.StatusRequestEntityTooLarge, "bad_request", fmt.Sprintf("request body is larger than %d bytes", MaxBody))
		}
		if errors.Is(err, os.ErrDeadlineExceeded) { // HTTPConfig.ReadTimeout
			return nil, NewError(http.StatusRequestTimeout, "bad_request", "the request body did not arrive in time")
		}
		return nil, badRequest("read request body: %v", err)
	}
	// encoding/json would quietly replace invalid UTF-8, but raw values go
	// to Postgres as written, which refuses them.
	if !utf8.Valid(data) {
		return nil, badRequest("request body is not valid UTF-8")
	}
	return data, nil
}
