package rest

import (
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/pgcast/pgcast/internal/collections"
	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/internal/httpjson"
)

// Error is a REST error response:
// {"error":{"code","message","details":[{"field","rule","message"}]}}.
// Codes: validation_error, bad_request, unauthorized, forbidden, not_found,
// method_not_allowed, too_many_requests (429), moved (a 307 to the canonical
// path, see the server's muxWriter), and internal for a 500.
type Error struct {
	status  int
	code    string
	message string
	details collections.Problems
	allow   string // the Allow header of a 405
	cause   error  // logged, never sent
}

// NewError is an error answered with status, code and message (shown to
// clients: never put a token in it), without details.
func NewError(status int, code, message string) *Error {
	return &Error{status: status, code: code, message: message}
}

func (e *Error) Error() string { return e.code + ": " + e.message }

type apiErrorBody struct {
	Error struct {
		Code    string                `json:"code"`
		Message string                `json:"message"`
		Details []collections.Problem `json:"details"`
	} `json:"error"`
}

// validationError is a 400 listing every problem found.
func validationError(ps collections.Problems) *Error {
	msg := "invalid request: " + ps.Error()
	if len(msg) > 500 { // the details list everything; keep the summary short
		msg = msg[:497]
		for !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
		msg += "..."
	}
	return &Error{status: http.StatusBadRequest, code: "validation_error", message: msg, details: ps}
}

func badRequest(format string, args ...any) *Error {
	return &Error{status: http.StatusBadRequest, code: "bad_request", message: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *Error {
	return &Error{status: http.StatusNotFound, code: "not_found", message: fmt.Sprintf(format, args...)}
}

func methodNotAllowed(allow ...string) *Error {
	a := strings.Join(allow, ", ")
	return &Error{status: http.StatusMethodNotAllowed, code: "method_not_allowed", message: "use " + a, allow: a}
}

// denied is the answer to a caller a rule refuses: 401 to an anonymous
// caller (signing in may help), 403 to a signed-in one.
func denied(id auth.Identity, what string) *Error {
	if id.Anonymous() {
		return &Error{status: http.StatusUnauthorized, code: "unauthorized", message: "authentication required to " + what}
	}
	return &Error{status: http.StatusForbidden, code: "forbidden", message: "not allowed to " + what}
}

// Write answers with e: its status and the REST error body.
func (e *Error) Write(w http.ResponseWriter) {
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
