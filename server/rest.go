package server

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/pgcast/pgcast/internal/collections"
	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/internal/httpjson"
)

// REST limits.
const (
	// MaxRESTBody is the largest request body the REST API reads (1 MiB):
	// enough for a record with a large text cell, small enough that a
	// handful of concurrent requests cannot exhaust memory. A larger body
	// gets 413.
	MaxRESTBody = 1 << 20
	// DefaultListLimit is how many records GET /api/{collection} returns
	// without ?limit=; MaxListLimit the most ?limit= may ask for.
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// routeREST adds the collections REST API, /api/collections and
// /api/events (see ../shared/spec/realtime.md):
//
//	GET    /api/{collection}        {"items":[record…]} newest first; ?limit= (default 100, at most 1000)
//	                                 and ?before=<id> (records with a smaller id: the next page);
//	                                 "truncated":true added when the page stopped at HTTPConfig.MaxListBytes
//	POST   /api/{collection}        201 record
//	GET    /api/{collection}/{id}   200 record
//	PUT    /api/{collection}/{id}   200 record (partial update: only the fields given)
//	DELETE /api/{collection}/{id}   204
//	GET    /api/collections         (admin) {"items":[collection…]}
//	POST   /api/collections         (admin) 201 collection
//	GET    /api/collections/{name}  (admin) 200 collection
//	POST   /api/events              (admin) 201 event
//	GET    /api/watches[/{name}]    (admin) watches; PUT and DELETE /api/watches/{name}: rest_watches.go
//
// Patterns carry no method so that every response, 405 included, is JSON
// (the mux's own 405 is text/plain) and so that they never conflict with a
// method-specific pattern such as GET /api/realtime. Anything else under
// /api/ gets a JSON 404.
func (s *Server) routeREST() error {
	s.mux.Handle("/api/", s.api(func(http.ResponseWriter, *http.Request) error {
		return &apiError{status: http.StatusNotFound, code: "not_found", message: "no such endpoint"}
	}))
	s.mux.Handle("/api/collections", s.api(s.handleCollections))
	s.mux.Handle("/api/collections/{name}", s.api(s.handleCollection))
	s.mux.Handle("/api/events", s.api(s.handleEvents))
	s.mux.Handle("/api/watches", s.api(s.handleWatches))
	s.mux.Handle("/api/watches/{name}", s.api(s.handleWatch))
	s.mux.Handle("/api/{collection}", s.api(s.handleRecords))
	s.mux.Handle("/api/{collection}/{id}", s.api(s.handleRecord))
	return nil
}

// apiError is a REST error response:
// {"error":{"code","message","details":[{"field","rule","message"}]}}.
// Codes: validation_error, bad_request, unauthorized, forbidden, not_found,
// method_not_allowed, too_many_requests (429), moved (a 307 to the canonical
// path, see muxWriter), and internal for a 500.
type apiError struct {
	status  int
	code    string
	message string
	details collections.Problems
	allow   string // the Allow header of a 405
	cause   error  // logged, never sent
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

type apiErrorBody struct {
	Error struct {
		Code    string                `json:"code"`
		Message string                `json:"message"`
		Details []collections.Problem `json:"details"`
	} `json:"error"`
}

// validationError is a 400 listing every problem found.
func validationError(ps collections.Problems) *apiError {
	msg := "invalid request: " + ps.Error()
	if len(msg) > 500 { // the details list everything; keep the summary short
		msg = msg[:497]
		for !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
		msg += "..."
	}
	return &apiError{status: http.StatusBadRequest, code: "validation_error", message: msg, details: ps}
}

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "bad_request", message: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *apiError {
	return &apiError{status: http.StatusNotFound, code: "not_found", message: fmt.Sprintf(format, args...)}
}

func methodNotAllowed(allow ...string) *apiError {
	a := strings.Join(allow, ", ")
	return &apiError{status: http.StatusMethodNotAllowed, code: "method_not_allowed", message: "use " + a, allow: a}
}

// denied is the answer to a caller a rule refuses: 401 to an anonymous
// caller (signing in may help), 403 to a signed-in one.
func denied(id auth.Identity, what string) *apiError {
	if id.Anonymous() {
		return &apiError{status: http.StatusUnauthorized, code: "unauthorized", message: "authentication required to " + what}
	}
	return &apiError{status: http.StatusForbidden, code: "forbidden", message: "not allowed to " + what}
}

// api adapts a handler that returns an error: an *apiError is written as
// is, anything else is logged and answered with a 500 that says nothing of
// the cause.
func (s *Server) api(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Responses depend on the caller's token: never cache them.
		w.Header().Set("Cache-Control", "no-store")
		err := h(w, r)
		if err == nil {
			return
		}
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = &apiError{status: http.StatusInternalServerError, code: "internal", message: "internal error, try again", cause: err}
		}
		if ae.status >= 500 {
			if r.Context().Err() == nil {
				s.cfg.Logger.ErrorContext(r.Context(), "rest request failed", "method", r.Method, "path", r.URL.Path, "err", ae.cause)
			}
		}
		if ae.status == http.StatusRequestTimeout {
			s.httpMetrics.timeouts.WithLabelValues(timeoutRead).Inc()
		}
		writeAPIError(w, ae)
	})
}

// writeAPIError writes e as the REST error body.
func writeAPIError(w http.ResponseWriter, e *apiError) {
	if e.allow != "" {
		w.Header().Set("Allow", e.allow)
	}
	if e.status == http.StatusUnauthorized {
		// RFC 6750: tell the client which scheme is expected.
		w.Header().Set("WWW-Authenticate", `Bearer realm="pgcast"`)
	}
	var body apiErrorBody
	body.Error.Code, body.Error.Message, body.Error.Details = e.code, e.message, e.details
	if body.Error.Details == nil {
		body.Error.Details = []collections.Problem{}
	}
	_ = httpjson.Write(w, e.status, body)
}

// identity is the caller: anonymous (environment 1) without an
// Authorization header; a 401 when the header is there but its token is
// unusable, expired or not (a caller who meant to sign in must learn that
// they are not, rather than be served as anonymous).
func (s *Server) identity(r *http.Request) (auth.Identity, error) {
	token, present := auth.BearerToken(r)
	if !present {
		return auth.Identity{Environment: 1}, nil
	}
	if token == "" {
		return auth.Identity{}, &apiError{status: http.StatusUnauthorized, code: "unauthorized", message: "invalid Authorization header: want Bearer <jwt>"}
	}
	id, _, err := s.cfg.Auth.Verify(token)
	switch {
	case errors.Is(err, auth.ErrTokenExpired):
		return auth.Identity{}, &apiError{status: http.StatusUnauthorized, code: "unauthorized", message: "token expired"}
	case err != nil:
		// Verify's errors never contain the token.
		return auth.Identity{}, &apiError{status: http.StatusUnauthorized, code: "unauthorized", message: err.Error()}
	}
	return id, nil
}

// requireAdmin returns the caller if it is an admin.
func (s *Server) requireAdmin(r *http.Request, what string) (auth.Identity, error) {
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
		return &apiError{status: http.StatusUnsupportedMediaType, code: "bad_request", message: fmt.Sprintf("Content-Type %q is not supported: send application/json", ct)}
	}
	return nil
}

// readBody reads a request body of at most MaxRESTBody bytes (413 beyond).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if err := checkContentType(r); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRESTBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &apiError{status: http.StatusRequestEntityTooLarge, code: "bad_request", message: fmt.Sprintf("request body is larger than %d bytes", MaxRESTBody)}
		}
		if errors.Is(err, os.ErrDeadlineExceeded) { // HTTPConfig.ReadTimeout
			return nil, &apiError{status: http.StatusRequestTimeout, code: "bad_request", message: "the request body did not arrive in time"}
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
