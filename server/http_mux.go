package server

import (
	"net/http"
	"strings"

	"github.com/pgcast/pgcast/server/rest"
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
	code, message := "internal", "internal error, try again"
	switch {
	case status >= 300 && status < 400:
		// Not an error, but the body is the error shape all the same: one
		// shape for clients to read, and it says where to go.
		code, message = "moved", "use "+h.Get("Location")+" (the path in canonical form)"
	case status == http.StatusNotFound:
		code, message = "not_found", "no such endpoint"
	case status == http.StatusMethodNotAllowed:
		code, message = "method_not_allowed", "use "+h.Get("Allow")
	case status < 500:
		code = strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_"))
		message = http.StatusText(status)
	}
	h.Del("Content-Length") // the mux's, for its own body
	rest.NewError(status, code, message).Write(w.ResponseWriter)
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
