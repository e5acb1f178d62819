package httpjson

import (
	"encoding/json"
	"net/http"
)

// Write writes v with the JSON content type every pgcast response has.
// An error is the connection's (the client is gone, or too slow): there is
// nothing left to answer.
func Write(w http.ResponseWriter, code int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	return json.NewEncoder(w).Encode(v)
}

// APIError is an error answer of any pgcast endpoint: its status and the
// body {"error":{"code","message","details":[{"field","rule","message"}]}}.
// The REST API's answers always have "details" ([] when there are none:
// its contract); the ticket endpoint's and the WebSocket handshakes' never
// do, and leave the key out. A REST handler returns one as its error.
type APIError struct {
	Status int
	// Code is a stable machine-readable word (the contracts list them).
	Code string
	// Message is shown to clients: never put a token or ticket in it.
	Message string
	// Details are the problems found in a request. nil leaves "details"
	// out of the body; non-nil, even empty, writes it.
	Details []Detail
	// Allow is the Allow header of a 405.
	Allow string
	// Cause is what a 500 hides: logged, never sent.
	Cause error
}

// Detail is one problem of a request the REST API refused: Field is a path
// into the input, Rule a stable machine-readable word.
type Detail struct {
	Field   string `json:"field"`
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

func (e *APIError) Error() string { return e.Code + ": " + e.Message }

type errorBody struct {
	Error errorDetail `json:"error"`
}

// errorDetail keeps a nil Details out of the body (omitzero) and writes an
// empty one as [] (omitempty would drop it too).
type errorDetail struct {
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Details []Detail `json:"details,omitzero"`
}

// Write answers with e: its status, its Allow header if any, and its body.
func (e *APIError) Write(w http.ResponseWriter) {
	if e.Allow != "" {
		w.Header().Set("Allow", e.Allow)
	}
	_ = Write(w, e.Status, errorBody{Error: errorDetail{Code: e.Code, Message: e.Message, Details: e.Details}})
}

// Error writes {"error":{"code":errCode,"message":message}} with status
// code: an APIError without details. message is shown to clients: never
// put a token or ticket in it.
func Error(w http.ResponseWriter, code int, errCode, message string) {
	(&APIError{Status: code, Code: errCode, Message: message}).Write(w)
}
