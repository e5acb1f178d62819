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

// A REST error is an *httpjson.APIError whose body always lists details:
// {"error":{"code","message","details":[{"field","rule","message"}]}}.
// Codes: validation_error, bad_request, unauthorized, forbidden, not_found,
// method_not_allowed, watched_table, too_many_requests (429), moved (a 307
// to the canonical path, see the server's muxWriter), and internal for a
// 500. A handler returns one as its error (see API.api).

// NewError is a REST error answered with status, code and message (shown
// to clients: never put a token in it), without details: its body has
// "details":[].
func NewError(status int, code, message string) *httpjson.APIError {
	return &httpjson.APIError{Status: status, Code: code, Message: message, Details: []httpjson.Detail{}}
}

// validationError is a 400 listing every problem found.
func validationError(ps collections.Problems) *httpjson.APIError {
	msg := "invalid request: " + ps.Error()
	if len(msg) > 500 { // the details list everything; keep the summary short
		msg = msg[:497]
		for !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
		msg += "..."
	}
	e := NewError(http.StatusBadRequest, "validation_error", msg)
	for _, p := range ps {
		e.Details = append(e.Details, httpjson.Detail(p))
	}
	return e
}

// conflict is a 409 validation_error: one problem of rule "unique" on
// field. The contract's code list has no "conflict"; the status tells
// clients that retrying the same request cannot succeed.
func conflict(field, message string) *httpjson.APIError {
	e := validationError(collections.Problems{{Field: field, Rule: "unique", Message: message}})
	e.Status = http.StatusConflict
	return e
}

func badRequest(format string, args ...any) *httpjson.APIError {
	return NewError(http.StatusBadRequest, "bad_request", fmt.Sprintf(format, args...))
}

func notFound(format string, args ...any) *httpjson.APIError {
	return NewError(http.StatusNotFound, "not_found", fmt.Sprintf(format, args...))
}

func methodNotAllowed(allow ...string) *httpjson.APIError {
	a := strings.Join(allow, ", ")
	e := NewError(http.StatusMethodNotAllowed, "method_not_allowed", "use "+a)
	e.Allow = a
	return e
}

// denied is the answer to a caller a rule refuses: 401 to an anonymous
// caller (signing in may help), 403 to a signed-in one.
func denied(id auth.Identity, what string) *httpjson.APIError {
	if id.Anonymous() {
		return NewError(http.StatusUnauthorized, "unauthorized", "authentication required to "+what)
	}
	return NewError(http.StatusForbidden, "forbidden", "not allowed to "+what)
}
