package server

import (
	"net/http"
	"strings"
)

// muxWriter is the ResponseWriter of a request that no route of pgcast's
// takes. net/http's ServeMux answers those itself: 404 and 405 in
// text/plain, and a 307 to the canonical path (for //api/posts, /api/./x or
// /ws/events/tasks without its slash) in HTML. muxWriter keeps the status and
// the headers that matter (Location, Allow) and writes pgcast's JSON error
// body instead, so that every response is JSON as the contract says.
type muxWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *muxWriter) WriteHeader(status int) {
	if w.wrote {
		return
	}
	w.wrote = true
	h := w.Header()
	e := &apiError{status: status, code: "internal", message: "internal error, try again"}
	switch {
	case status >= 300 && status < 400:
		// Not an error, but the body is the error shape all the same: one
		// shape for clients to read, and it says where to go.
		e.code, e.message = "moved", "use "+h.Get("Location")+" (the path in canonical form)"
	case status == http.StatusNotFound:
		e.code, e.message = "not_found", "no such endpoint"
	case status == http.StatusMethodNotAllowed:
		e.code, e.message = "method_not_allowed", "use "+h.Get("Allow")
	case status < 500:
		e.code = strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_"))
		e.message = http.StatusText(status)
	}
	h.Del("Content-Length") // the mux's, for its own body
	writeAPIError(w.ResponseWriter, e)
}

// Write drops the mux's own body: WriteHeader has written pgcast's (the
// mux's handlers always set a status first).
func (w *muxWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusInternalServerError)
	}
	return len(p), nil
}

// Unwrap lets http.ResponseController reach the connection.
func (w *muxWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
