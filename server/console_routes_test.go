package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pgcast/pgcast/server/auth"
)

func getBody(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// The console is served at /console/ unless turned off; its dev-token
// endpoint exists only where the server mints development tokens, and
// answers a token the server itself accepts.
func TestConsoleRoutes(t *testing.T) {
	t.Parallel()
	on := newStack(t, nil)
	if code, h, body := getBody(t, on.base+"/console/"); code != 200 || !strings.Contains(h.Get("Content-Type"), "text/html") || !strings.Contains(body, "<") {
		t.Fatalf("console: %d %s", code, h.Get("Content-Type"))
	}
	if code, _, _ := getBody(t, on.base+"/console/dev-token"); code != http.StatusNotFound {
		t.Fatalf("dev-token without a minter: %d, want 404", code)
	}

	off := newStack(t, func(c *Config) { c.NoConsole = true })
	if code, h, body := getBody(t, off.base+"/console/"); code != http.StatusNotFound || !strings.Contains(h.Get("Content-Type"), "json") {
		t.Fatalf("console turned off: %d %s %s", code, h.Get("Content-Type"), body)
	}

	dev := newStack(t, func(c *Config) {
		a := c.Auth
		c.DevToken = func() (string, error) { return a.Mint("dev", auth.RoleAdmin, 1, time.Hour) }
	})
	code, h, body := getBody(t, dev.base+"/console/dev-token")
	var got struct{ Token string }
	if err := json.Unmarshal([]byte(body), &got); code != 200 || err != nil || got.Token == "" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("dev-token: %d %q %s", code, h.Get("Cache-Control"), body)
	}
	if _, _, err := dev.auth.Verify(got.Token); err != nil {
		t.Fatalf("the minted token is refused: %v", err)
	}

	broken := newStack(t, func(c *Config) { c.DevToken = func() (string, error) { return "", errors.New("no secret") } })
	if code, _, body := getBody(t, broken.base+"/console/dev-token"); code != http.StatusInternalServerError || strings.Contains(body, "no secret") {
		t.Fatalf("a failing minter: %d %s", code, body)
	}
}
