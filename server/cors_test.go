package server

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/pgcast/pgcast/server/auth"
)

// TestCORS (issue 10 item 16): with --allowed-origins, a browser app on an allowed
// origin can fetch a ticket and call the REST API: preflights are answered,
// responses carry Access-Control-Allow-Origin for that origin only, and
// every response varies on Origin. Any other origin is never named, and its
// preflight is refused.
func TestCORS(t *testing.T) {
	t.Parallel()
	const app = "http://localhost:3000"
	s := newStack(t, func(c *Config) { c.WS.AllowedOrigins = []string{app} })
	s.define(1, `{"name":"posts","fields":[{"name":"title","type":"string"}],"permissions":{"create":"public","read":"public"}}`)
	tok := s.token("u1", auth.RoleAuthenticated, 1)
	varies := func(r apiResp) bool { return slices.Contains(r.header.Values("Vary"), "Origin") }

	preflight := func(path, origin, method, headers string) apiResp {
		t.Helper()
		req, err := http.NewRequest(http.MethodOptions, s.base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", method)
		req.Header.Set("Access-Control-Request-Headers", headers)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return apiResp{status: resp.StatusCode, header: resp.Header}
	}
	for _, c := range []struct{ path, method, headers string }{
		{"/api/users/ws-auth/", "GET", "authorization"},
		{"/api/users/ws-auth", "GET", "authorization"},
		{"/api/posts", "POST", "authorization,content-type"},
		{"/api/posts/1", "PUT", "content-type"},
		{"/api/collections", "GET", "authorization"},
	} {
		r := preflight(c.path, app, c.method, c.headers)
		h := r.header
		switch {
		case r.status != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != app || !varies(r):
			t.Errorf("preflight %s %s: %d %v", c.method, c.path, r.status, h)
		case !strings.Contains(h.Get("Access-Control-Allow-Methods"), c.method) || h.Get("Access-Control-Max-Age") == "":
			t.Errorf("preflight %s %s: %v", c.method, c.path, h)
		}
		for _, want := range strings.Split(c.headers, ",") {
			if !strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), want) {
				t.Errorf("preflight %s %s: header %s not allowed: %v", c.method, c.path, want, h)
			}
		}
		if h.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("preflight %s %s allows credentials", c.method, c.path)
		}
	}

	// Requests from the app: readable by it.
	for _, r := range []apiResp{
		s.do("GET", "/api/users/ws-auth/", tok, nil, "Origin", app),
		s.do("POST", "/api/posts", "", `{"title":"x"}`, "Origin", app),
		s.do("GET", "/api/posts", "", nil, "Origin", app),
		s.do("GET", "/api/nope/1", "", nil, "Origin", app),         // an error too
		s.do("GET", "/api/users/ws-auth/", "", nil, "Origin", app), // a 401 too
	} {
		if r.header.Get("Access-Control-Allow-Origin") != app || !varies(r) || r.status >= 500 {
			t.Errorf("request from the app: %s %v", r, r.header)
		}
		if r.status == http.StatusUnauthorized && !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
			t.Errorf("401 without WWW-Authenticate exposed: %v", r.header)
		}
	}

	// Other origins: never named, preflight refused, the request itself
	// answered as to any client (the browser keeps it from the page).
	for _, origin := range []string{"http://evil.example", "http://localhost:3000.evil.example", "https://localhost:3000", "null", "http://localhost"} {
		r := preflight("/api/users/ws-auth/", origin, "GET", "authorization")
		if r.status != http.StatusForbidden || r.header.Get("Access-Control-Allow-Origin") != "" || !varies(r) {
			t.Errorf("preflight from %s: %d %v", origin, r.status, r.header)
		}
		if r := s.do("GET", "/api/users/ws-auth/", tok, nil, "Origin", origin); r.header.Get("Access-Control-Allow-Origin") != "" || !varies(r) {
			t.Errorf("request from %s: %s %v", origin, r, r.header)
		}
	}
	// No Origin: no CORS headers, but the response still varies on it.
	if r := s.do("GET", "/api/posts", "", nil); r.header.Get("Access-Control-Allow-Origin") != "" || !varies(r) {
		t.Errorf("without Origin: %v", r.header)
	}
	// An OPTIONS that is no preflight is an ordinary request.
	s.expectError(s.do("OPTIONS", "/api/posts", "", nil, "Origin", app), http.StatusMethodNotAllowed, "method_not_allowed")
}

// TestCORSSameOriginByDefault: without --allowed-origins no other origin
// is allowed, and a WebSocket endpoint answers no preflight.
func TestCORSSameOriginByDefault(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	req, _ := http.NewRequest(http.MethodOptions, s.base+"/api/users/ws-auth/", nil)
	req.Header.Set("Origin", "http://localhost:3000")
	req.Header.Set("Access-Control-Request-Method", "GET")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("cross-origin preflight: %d %v", resp.StatusCode, resp.Header)
	}
	r := s.do("GET", "/api/users/ws-auth/", s.token("u1", auth.RoleAuthenticated, 1), nil, "Origin", s.base)
	if r.status != http.StatusOK || r.header.Get("Access-Control-Allow-Origin") != s.base {
		t.Errorf("same origin: %s %v", r, r.header)
	}
	req, _ = http.NewRequest(http.MethodOptions, s.base+realtimePath, nil)
	req.Header.Set("Origin", s.base)
	req.Header.Set("Access-Control-Request-Method", "GET")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight of /api/realtime: %d %v", resp.StatusCode, resp.Header)
	}
}
