package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pgcast/pgcast/server/auth"
)

// The server deletes expired, never-redeemed tickets in the background.
func TestServerPrunesExpiredTickets(t *testing.T) {
	t.Parallel()
	st := newStack(t, func(c *Config) { c.TicketTTL = 50 * time.Millisecond; c.TicketPruneInterval = 20 * time.Millisecond })
	tok, err := st.auth.Mint("u1", auth.RoleAuthenticated, 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", st.base+"/api/users/ws-auth/", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("ws-auth: %d", resp.StatusCode)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var n int
		if err := st.pool.QueryRow(t.Context(), `SELECT count(*) FROM pgcast.tickets`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d expired tickets left after 20 s", n)
		}
		time.Sleep(20 * time.Millisecond) // polling the table: there is no signal to await
	}
}

// The ticket endpoint is exactly /api/users/ws-auth/, also without the
// slash; nothing below it issues tickets.
func TestWSAuthPath(t *testing.T) {
	t.Parallel()
	st := newStack(t, nil)
	tok, err := st.auth.Mint("u1", auth.RoleAuthenticated, 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{"/api/users/ws-auth/": 200, "/api/users/ws-auth": 200, "/api/users/ws-auth/x": 404, "/api/users/ws-auth/x/": 404} {
		res := st.do("GET", path, tok, nil)
		if res.status != want {
			t.Errorf("GET %s: %s, want %d", path, res, want)
		}
		if want == 200 && !strings.Contains(string(res.body), `"uuid"`) {
			t.Errorf("GET %s: %s, want a ticket", path, res)
		}
	}
}
