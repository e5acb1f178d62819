package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/pgcast/pgcast/server/rest"
	"github.com/pgcast/pgcast/server/ws"
)

// CORS lets browser apps on the origins of ws.Config.AllowedOrigins call the
// ticket endpoint and the REST API (a browser opening a WebSocket sends no
// preflight: the handshake checks Origin itself, with a 403). Requests
// carry their token in the Authorization header, never in a cookie, so no
// credentials are allowed.
const (
	corsMethods = "GET, POST, PUT, DELETE"
	corsHeaders = "Authorization, Content-Type"
	// corsExpose are the response headers an app may read besides the
	// CORS-safelisted ones: why a 401 or 405, when to retry a 429.
	corsExpose = "WWW-Authenticate, Allow, Retry-After, Location"
	// corsMaxAge is how long a browser may cache a preflight: short, so that
	// a change of --allowed-origins takes effect soon.
	corsMaxAge = 10 * time.Minute
)

// cors adds the CORS headers to a response for an allowed Origin, and
// answers a preflight: 204 for an allowed origin, 403 forbidden for another.
// An origin not allowed is never named in a response. It reports whether it
// has answered the request.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) (answered bool) {
	h := w.Header()
	// Every answer depends on Origin (a cache must not serve one origin's
	// to another), even the ones without CORS headers.
	h.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	preflight := r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != ""
	if preflight {
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
	}
	if origin == "" {
		return false
	}
	if !ws.OriginAllowed(r, s.cfg.WS.AllowedOrigins) {
		if preflight {
			rest.NewError(http.StatusForbidden, "forbidden", "origin not allowed: see --allowed-origins").Write(w)
		}
		return preflight
	}
	h.Set("Access-Control-Allow-Origin", origin)
	if !preflight {
		h.Set("Access-Control-Expose-Headers", corsExpose)
		return false
	}
	h.Set("Access-Control-Allow-Methods", corsMethods)
	h.Set("Access-Control-Allow-Headers", corsHeaders)
	h.Set("Access-Control-Max-Age", strconv.Itoa(int(corsMaxAge/time.Second)))
	w.WriteHeader(http.StatusNoContent)
	return true
}
