package server

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	pgws "github.com/pgcast/pgcast/server/ws"

	"github.com/gorilla/websocket"

	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/internal/wstest"
)

// TestRealtimeMessageFlood is S9: a client sending faster than the message
// rate gets its messages refused with rate_limited, then, as it goes on, is
// closed with 1008; another client is unaffected.
func TestRealtimeMessageFlood(t *testing.T) {
	t.Parallel()
	s := newStack(t, func(c *Config) { c.WS.MessageRate, c.WS.MessageBurst = 1, 5 })
	other := s.rtConnect("")
	ws := s.rtConnect("")
	for i := range 5 {
		if m := rtAsk(t, ws, `{"action":"ping"}`); m.Type != "pong" {
			t.Fatalf("ping %d of the burst: %s", i+1, m)
		}
	}
	// One token a second: the next replies are refusals (a second may have
	// passed since the burst began, earning one more pong).
	for i := 0; ; i++ {
		m := rtAsk(t, ws, `{"action":"ping"}`)
		if m.Type == "error" && m.Code == "rate_limited" {
			break
		}
		if m.Type != "pong" || i == 2 {
			t.Fatalf("ping over the rate: %s", m)
		}
	}
	if m := rtAsk(t, other, `{"action":"ping"}`); m.Type != "pong" {
		t.Fatalf("another client: %s", m)
	}
	for range 20 {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"action":"ping"}`)); err != nil {
			break // closed already
		}
	}
	if code, err := wstest.ReadUntilClose(ws, 10*time.Second); code != pgws.ClosePolicy {
		t.Fatalf("closed with %d (%v), want 1008", code, err)
	}
	if m := rtAsk(t, other, `{"action":"ping"}`); m.Type != "pong" {
		t.Fatalf("another client after the flood: %s", m)
	}
	if n := s.metric("pgcast_ws_messages_refused_total"); n < 1 {
		t.Errorf("pgcast_ws_messages_refused_total = %v", n)
	}
}

// TestCatalystMessageFlood: a Catalyst client is not meant to send
// anything; one that floods is closed with 1008 like a realtime one.
func TestCatalystMessageFlood(t *testing.T) {
	t.Parallel()
	s := newStack(t, func(c *Config) { c.WS.MessageRate, c.WS.MessageBurst = 1, 2 })
	ws := s.connect("/ws/events/object-records/?uuid=" + s.ticket("u1", auth.RoleAuthenticated, 1))
	for range 10 {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(`hello`)); err != nil {
			break // closed already
		}
	}
	if code, err := wstest.ReadUntilClose(ws, 10*time.Second); code != pgws.ClosePolicy {
		t.Fatalf("closed with %d (%v), want 1008", code, err)
	}
	if n := s.metric("pgcast_ws_messages_refused_total"); n < 1 {
		t.Errorf("pgcast_ws_messages_refused_total = %v", n)
	}
}

// TestConnectionCaps is S10: one user's connections, both protocols
// together, and one client address's are capped at the handshake with 429;
// a closed connection frees its place.
func TestConnectionCaps(t *testing.T) {
	t.Parallel()
	s := newStack(t, func(c *Config) { c.WS.MaxConnsPerUser, c.WS.MaxConnsPerIP = 2, 4 })
	bearer := http.Header{"Authorization": {"Bearer " + s.token("alice", auth.RoleAuthenticated, 1)}}
	first := s.rtConnect(s.token("alice", auth.RoleAuthenticated, 1))
	s.connect("/ws/events/object-records/?uuid=" + s.ticket("alice", auth.RoleAuthenticated, 1))
	refused := func(what, path string, h http.Header, want string) {
		t.Helper()
		ws, code, body := s.dial(path, h)
		if ws != nil || code != http.StatusTooManyRequests || !strings.Contains(body, `"too_many_connections"`) || !strings.Contains(body, want) {
			t.Fatalf("%s: %d %s, want 429 too_many_connections %q", what, code, body, want)
		}
	}
	refused("alice's third (realtime)", realtimePath, bearer, "at most 2 connections per user")
	refused("alice's third (Catalyst)", "/ws/events/tasks/?uuid="+s.ticket("alice", auth.RoleAuthenticated, 1), nil, "at most 2 connections per user")
	// Another user, and anonymous clients, count against the address only.
	s.rtConnect(s.token("bob", auth.RoleAuthenticated, 1))
	s.rtConnect("")
	refused("the address's fifth", realtimePath, nil, "at most 4 connections per client address")
	if n := s.metric("pgcast_ws_connections_refused_total"); n != 3 {
		t.Errorf("pgcast_ws_connections_refused_total = %v, want 3", n)
	}

	// Closing one of alice's frees a place for her once the server has
	// seen it go.
	first.Close()
	deadline := time.Now().Add(10 * time.Second)
	for s.metric("pgcast_ws_connections") > 3 {
		if time.Now().After(deadline) {
			t.Fatal("the closed connection is still counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.rtConnect(s.token("alice", auth.RoleAuthenticated, 1))
}

// TestSlowHeadersAreCut is S13: a client that trickles its request headers
// (slowloris) is disconnected at the header timeout, and meanwhile others
// are served.
func TestSlowHeadersAreCut(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	s := newStack(t, func(c *Config) { c.ReadHeaderTimeout = timeout })
	// Before the dial: the server's clock for the header starts once it has
	// accepted, which can be well before a busy test goroutine returns from
	// Dial (CI once measured 280 ms for a 300 ms timeout, start taken after).
	start := time.Now()
	nc, err := net.Dial("tcp", s.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := io.WriteString(nc, "GET /api/realtime HTTP/1.1\r\nHost: pgcast\r\nUpgrade: websocket\r\n"); err != nil {
		t.Fatal(err)
	}
	s.rtConnect("") // another client meanwhile
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadAll(nc) // until the server closes (it may first answer 400)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("the server never closed the connection: %v after %v", err, took)
	}
	if took < timeout || took > timeout+3*time.Second {
		t.Fatalf("closed after %v, want about the %v header timeout", took, timeout)
	}
}

// TestConnectionCapsBehindAProxy: with the proxy trusted, the per-address
// cap counts the clients X-Forwarded-For names, not the proxy.
func TestConnectionCapsBehindAProxy(t *testing.T) {
	t.Parallel()
	lb, err := pgws.ParseTrustedProxies([]string{"127.0.0.1", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, func(c *Config) { c.WS.MaxConnsPerIP, c.WS.TrustedProxies = 1, lb })
	via := func(client string) http.Header { return http.Header{"X-Forwarded-For": {client}} }
	for _, client := range []string{"198.51.100.1", "198.51.100.2"} {
		if ws, code, body := s.dial(realtimePath, via(client)); ws == nil {
			t.Fatalf("first connection of %s: %d %s", client, code, body)
		}
	}
	if ws, code, body := s.dial(realtimePath, via("203.0.113.9, 198.51.100.1")); ws != nil || code != http.StatusTooManyRequests {
		t.Fatalf("second connection of 198.51.100.1 (with a forged hop): %d %s, want 429", code, body)
	}
}

// TestRefusedHandshakeKeepsTicket: a Catalyst handshake refused after its
// ticket was taken (429 over the user's cap), or refused by the handshake
// check (400), leaves the ticket usable, as 400 and 403 before it do.
func TestRefusedHandshakeKeepsTicket(t *testing.T) {
	t.Parallel()
	s := newStack(t, func(c *Config) { c.WS.MaxConnsPerUser = 1 })
	first := s.connect(recordsPath + "?uuid=" + s.ticket("alice", auth.RoleAuthenticated, 1))
	tk := s.ticket("alice", auth.RoleAuthenticated, 1)
	if ws, code, body := s.dial(recordsPath+"?uuid="+tk, nil); ws != nil || code != http.StatusTooManyRequests {
		t.Fatalf("over the cap: %d %s, want 429", code, body)
	}
	req, _ := http.NewRequest(http.MethodGet, s.base+recordsPath+"?uuid="+tk, nil)
	req.Header = http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"12"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "Sec-WebSocket-Version") {
		t.Fatalf("WebSocket version 12: %d %s, want 400", resp.StatusCode, body)
	}
	first.Close()
	deadline := time.Now().Add(10 * time.Second)
	for s.metric("pgcast_ws_connections") > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the closed connection is still counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.connect(recordsPath + "?uuid=" + tk)
	// Counted once the 101 is written: the client can have it first.
	s.waitMetric("pgcast_tickets_redeemed_total", 2)
	if n := s.metric("pgcast_tickets_redeemed_total"); n != 2 {
		t.Errorf("pgcast_tickets_redeemed_total = %v, want 2", n)
	}
	if _, code, _ := s.dial(recordsPath+"?uuid="+tk, nil); code != http.StatusUnauthorized {
		t.Errorf("the ticket, once used: %d, want 401", code)
	}
}
