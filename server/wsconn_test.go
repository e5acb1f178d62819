package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/catalyst"
	"github.com/pgcast/pgcast/server/internal/wstest"
	pgws "github.com/pgcast/pgcast/server/ws"
)

// TestSlowConsumerIsClosedOthersUnaffected is R9 / the slow-consumer rule: a
// client that stops reading is closed with 4008 once its buffer overflows,
// while another client's stream is complete.
func TestSlowConsumerIsClosedOthersUnaffected(t *testing.T) {
	t.Parallel()
	s := newStack(t, func(c *Config) {
		c.Catalyst = catalyst.Config{MessageLimit: 100, MessageTime: 50 * time.Millisecond}
		c.WS.MaxBuffer = 1000
	})
	cls, _ := s.class(1, "posts", "public")
	// The slow client's socket receive buffer is tiny and it never reads, so
	// the server's writes stall and its buffer fills.
	dialer := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			return errors.Join(err, serr)
		}}
		return d.DialContext(ctx, network, addr)
	}}
	wsURL := "ws" + strings.TrimPrefix(s.base, "http") + recordsPath + "?uuid="
	slow, _, err := dialer.Dial(wsURL+s.ticket("slow", auth.RoleAuthenticated, 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast := s.connect(recordsPath + "?uuid=" + s.ticket("fast", auth.RoleAuthenticated, 1))

	// Records go in by chunks, each read in full by the fast client before
	// the next: it never has more than a chunk waiting (far below
	// MaxBuffer), however slow the machine, while the slow client's buffer
	// only grows.
	const chunk, most = 200, 100_000
	created := 0
	readChunk := func(want int) {
		t.Helper()
		for created < want {
			f, err := readFrame(t, fast, 30*time.Second)
			if err != nil {
				t.Fatalf("fast client, after %d items: %v", created, err)
			}
			for _, it := range f.items {
				if it.Event == "object_record_created" {
					created++
				}
			}
		}
	}
	for s.metric("pgcast_hub_overflows_total") < 1 {
		if created >= most {
			t.Fatalf("the slow client never overflowed (%d items)", created)
		}
		s.exec(`INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, $2)`, cls, chunk)
		readChunk(created + chunk)
	}
	code, err := wstest.ReadUntilClose(slow, 30*time.Second)
	if code != pgws.CloseSlowConsumer {
		t.Fatalf("slow client ended with %v (code %d), want 4008", err, code)
	}
	// The fast client is still served.
	s.exec(`INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, $2)`, cls, chunk)
	readChunk(created + chunk)
	s.waitMetric("pgcast_ws_slow_consumer_closes_total", 1)
}

func TestOriginCheck(t *testing.T) {
	t.Parallel()
	s := newStack(t, func(c *Config) { c.WS.AllowedOrigins = []string{"https://app.example.com"} })
	for _, origin := range []string{"https://evil.example", "null", "https://app.example.com.evil.io", "https://evilapp.example.com", "http://app.example.com", "https://app.example.com@evil.io"} {
		h := http.Header{"Origin": {origin}}
		_, code, body := s.dial(recordsPath+"?uuid="+s.ticket("u", auth.RoleAuthenticated, 1), h)
		if code != http.StatusForbidden {
			t.Errorf("origin %q: %d %s", origin, code, body)
		}
	}
	ws, code, _ := s.dial(recordsPath+"?uuid="+s.ticket("u", auth.RoleAuthenticated, 1), http.Header{"Origin": {"https://app.example.com"}})
	if ws == nil {
		t.Fatalf("allowed origin refused: %d", code)
	}
	s.connect(recordsPath + "?uuid=" + s.ticket("u", auth.RoleAuthenticated, 1)) // no Origin: non-browser client
}

func TestSameOriginDefault(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	host := strings.TrimPrefix(s.base, "http://")
	if ws, code, _ := s.dial(recordsPath+"?uuid="+s.ticket("u", auth.RoleAuthenticated, 1), http.Header{"Origin": {"http://" + host}}); ws == nil {
		t.Fatalf("same origin refused: %d", code)
	}
	if _, code, _ := s.dial(recordsPath+"?uuid="+s.ticket("u", auth.RoleAuthenticated, 1), http.Header{"Origin": {"http://other:1"}}); code != 403 {
		t.Fatalf("cross origin: %d", code)
	}
}

// TestOversizedClientFrame is S6: a frame over 4 KiB closes with 1009.
func TestOversizedClientFrame(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	ws := s.connect(recordsPath + "?uuid=" + s.ticket("u", auth.RoleAuthenticated, 1))
	if err := ws.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("x", 4000))); err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("x", 5000))); err != nil {
		t.Fatal(err)
	}
	if code, err := wstest.ReadUntilClose(ws, 10*time.Second); code != pgws.CloseTooBig {
		t.Fatalf("closed with %d (%v), want 1009", code, err)
	}
}

// TestUnansweredPings is S12: a peer that stops answering pings is closed
// within ping interval + timeout.
func TestUnansweredPings(t *testing.T) {
	t.Parallel()
	s := newStack(t, func(c *Config) { c.WS.PingInterval, c.WS.PongWait = 100*time.Millisecond, 300*time.Millisecond })
	ws := s.connect(recordsPath + "?uuid=" + s.ticket("u", auth.RoleAuthenticated, 1))
	ws.SetPingHandler(func(string) error { return nil }) // never pong
	start := time.Now()
	_, err := wstest.ReadUntilClose(ws, 5*time.Second)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("server never closed the silent peer")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("closed after %s", took)
	}
	// A peer that answers stays.
	ok := s.connect(recordsPath + "?uuid=" + s.ticket("u", auth.RoleAuthenticated, 1))
	_ = ok.SetReadDeadline(time.Now().Add(time.Second))
	if _, _, err := ok.ReadMessage(); err == nil || wstest.CloseCode(err) != 0 {
		t.Fatalf("answering peer: %v", err)
	}
}

// TestShutdownClosesWith1001 is R8 in small: readiness fails first, every
// socket gets 1001, in batches, and Stop returns within its timeout.
func TestShutdownClosesWith1001(t *testing.T) {
	t.Parallel()
	s := newStack(t, func(c *Config) { c.CloseBatch, c.CloseBatchPause = 3, 10*time.Millisecond })
	var conns []*websocket.Conn
	for range 10 {
		conns = append(conns, s.connect(recordsPath+"?uuid="+s.ticket("u", auth.RoleAuthenticated, 1)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.srv.Stop(ctx) }()
	for i, ws := range conns {
		if code, err := wstest.ReadUntilClose(ws, 5*time.Second); code != pgws.CloseGoingAway {
			t.Errorf("conn %d: %v", i, err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestNoSecretsInLogs is S2: after JWTs and tickets have been used, none
// appears in the server's debug log.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	tok := s.token("u", auth.RoleAuthenticated, 1)
	tk := s.ticket("u", auth.RoleAuthenticated, 1)
	s.connect(recordsPath + "?uuid=" + tk)
	s.dial(recordsPath+"?uuid="+tk, nil) // reuse: rejected
	req, _ := http.NewRequest(http.MethodGet, s.base+"/api/users/ws-auth/", nil)
	req.Header.Set("Authorization", "Bearer "+tok+"x")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	logs := s.logBuf.String()
	for _, secret := range []string{tok, tk, testSecret} {
		if strings.Contains(logs, secret) {
			t.Fatalf("secret in logs")
		}
	}
}
