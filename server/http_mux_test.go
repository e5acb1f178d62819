package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pgcast/pgcast/internal/collections"
)

// TestEveryResponseIsJSON (issue 10 item 10): what the router answers itself (a
// path to clean, a missing trailing slash, an unknown path, a wrong
// method) is JSON in the REST error shape, status and headers kept.
func TestEveryResponseIsJSON(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range []struct {
		method, path string
		status       int
		code, header string
	}{
		{"GET", "//api/posts", http.StatusTemporaryRedirect, "moved", "/api/posts"},
		{"POST", "//api/posts", http.StatusTemporaryRedirect, "moved", "/api/posts"},
		{"GET", "/api/./posts/../collections?x=1", http.StatusTemporaryRedirect, "moved", "/api/collections?x=1"},
		{"GET", "/ws/events/tasks", http.StatusTemporaryRedirect, "moved", "/ws/events/tasks/"},
		{"GET", "/api", http.StatusTemporaryRedirect, "moved", "/api/"},
		{"GET", "/nope", http.StatusNotFound, "not_found", ""},
		{"GET", "/", http.StatusNotFound, "not_found", ""},
		{"POST", "/livez", http.StatusMethodNotAllowed, "method_not_allowed", "GET, HEAD"},
		{"DELETE", "/readyz", http.StatusMethodNotAllowed, "method_not_allowed", "GET, HEAD"},
	} {
		req, err := http.NewRequest(c.method, s.base+c.path, strings.NewReader(""))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct { // the REST error body
			Error struct {
				Code    string                `json:"code"`
				Message string                `json:"message"`
				Details []collections.Problem `json:"details"`
			} `json:"error"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		switch {
		case resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/json":
			t.Errorf("%s %s: %d %s %s, want %d JSON", c.method, c.path, resp.StatusCode, resp.Header.Get("Content-Type"), body, c.status)
		case dec.Decode(&e) != nil || e.Error.Code != c.code || e.Error.Message == "" || e.Error.Details == nil:
			t.Errorf("%s %s: body %s, want code %s, a message and details", c.method, c.path, body, c.code)
		}
		switch c.status {
		case http.StatusTemporaryRedirect:
			if got := resp.Header.Get("Location"); got != c.header {
				t.Errorf("%s %s: Location %q, want %q", c.method, c.path, got, c.header)
			}
		case http.StatusMethodNotAllowed:
			if got := resp.Header.Get("Allow"); got != c.header {
				t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.header)
			}
		}
	}
}
