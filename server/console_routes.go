package server

import (
	"net/http"

	"github.com/pgcast/pgcast/server/console"
	"github.com/pgcast/pgcast/server/internal/httpjson"
)

// routeConsole serves the live console under /console/ unless turned off,
// and, when the server mints development tokens, the endpoint its sign-in
// asks for one (see package console).
func (s *Server) routeConsole() {
	if s.cfg.NoConsole {
		return
	}
	s.mux.Handle(console.Prefix, console.Handler())
	if mint := s.cfg.DevToken; mint != nil {
		s.mux.HandleFunc("GET "+console.Prefix+"dev-token", func(w http.ResponseWriter, _ *http.Request) {
			token, err := mint()
			if err != nil {
				s.cfg.Logger.Error("mint a development token", "err", err)
				httpjson.Error(w, http.StatusInternalServerError, "internal", "Could not mint a development token")
				return
			}
			w.Header().Set("Cache-Control", "no-store")
			_ = httpjson.Write(w, http.StatusOK, struct {
				Token string `json:"token"`
			}{token})
		})
	}
}
