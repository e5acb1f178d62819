package server

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestMsgBucket(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_000_000, 0)
	b := newMsgBucket(1, 3)
	type want struct{ allowed, closeIt bool }
	for i, w := range []want{{true, false}, {true, false}, {true, false}, {false, false}, {false, false}, {false, true}} {
		if allowed, closeIt := b.take(t0); allowed != w.allowed || closeIt != w.closeIt {
			t.Fatalf("message %d at once: allowed %v close %v, want %+v", i+1, allowed, closeIt, w)
		}
	}
	// A client that was briefly too fast earns tokens back, up to the burst.
	later := t0.Add(time.Hour)
	for i := range 3 {
		if allowed, _ := b.take(later); !allowed {
			t.Fatalf("message %d an hour later refused", i+1)
		}
	}
	if allowed, _ := b.take(later); allowed {
		t.Fatal("the burst grew past its size")
	}
	// The refusal cost a token too: one second repays it, the next earns one.
	if allowed, _ := b.take(later.Add(time.Second)); allowed {
		t.Fatal("a refused message cost nothing")
	}
	if allowed, _ := b.take(later.Add(3 * time.Second)); !allowed {
		t.Fatal("one token a second: refused after two more seconds")
	}
	unlimited := newMsgBucket(-1, 1)
	for range 1000 {
		if allowed, closeIt := unlimited.take(t0); !allowed || closeIt {
			t.Fatal("a negative rate limits")
		}
	}
}

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
	if code, err := readUntilClose(ws, 10*time.Second); code != ClosePolicy {
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
	ws := s.connect("/ws/events/object-records/?uuid=" + s.ticket("u1", RoleAuthenticated, 1))
	for range 10 {
		if err := ws.WriteMessage(websocket.TextMessage, []byte(`hello`)); err != nil {
			break // closed already
		}
	}
	if code, err := readUntilClose(ws, 10*time.Second); code != ClosePolicy {
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
	bearer := http.Header{"Authorization": {"Bearer " + s.token("alice", RoleAuthenticated, 1)}}
	first := s.rtConnect(s.token("alice", RoleAuthenticated, 1))
	s.connect("/ws/events/object-records/?uuid=" + s.ticket("alice", RoleAuthenticated, 1))
	refused := func(what, path string, h http.Header, want string) {
		t.Helper()
		ws, code, body := s.dial(path, h)
		if ws != nil || code != http.StatusTooManyRequests || !strings.Contains(body, `"too_many_connections"`) || !strings.Contains(body, want) {
			t.Fatalf("%s: %d %s, want 429 too_many_connections %q", what, code, body, want)
		}
	}
	refused("alice's third (realtime)", realtimePath, bearer, "at most 2 connections per user")
	refused("alice's third (Catalyst)", "/ws/events/tasks/?uuid="+s.ticket("alice", RoleAuthenticated, 1), nil, "at most 2 connections per user")
	// Another user, and anonymous clients, count against the address only.
	s.rtConnect(s.token("bob", RoleAuthenticated, 1))
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
	s.rtConnect(s.token("alice", RoleAuthenticated, 1))
}

// TestSlowHeadersAreCut is S13: a client that trickles its request headers
// (slowloris) is disconnected at the header timeout, and meanwhile others
// are served.
func TestSlowHeadersAreCut(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	s := newStack(t, func(c *Config) { c.ReadHeaderTimeout = timeout })
	nc, err := net.Dial("tcp", s.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	start := time.Now()
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
