package server

import (
	"bytes"
	"sync"
	"testing"
	"time"

	pgws "github.com/pgcast/pgcast/server/ws"

	"github.com/gorilla/websocket"

	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/internal/wstest"
)

// endpoints opens one connection to each protocol.
func (s *stack) endpoints() map[string]*websocket.Conn {
	s.t.Helper()
	return map[string]*websocket.Conn{
		"catalyst": s.connect(recordsPath + "?uuid=" + s.ticket("u", auth.RoleAuthenticated, 1)),
		"realtime": s.rtConnect(""),
	}
}

// rawFrame is a masked client frame (mask key 0: the payload as is).
func rawFrame(b0 byte, payload []byte) []byte {
	f := []byte{b0, 0x80 | byte(len(payload)), 0, 0, 0, 0}
	return append(f, payload...)
}

// sendUntilClosed sends frames on ws from a goroutine until the connection
// fails or n have gone, and returns the close code the client reads.
func sendUntilClosed(t *testing.T, ws *websocket.Conn, n int, send func() error) int {
	t.Helper()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for range n {
			if send() != nil {
				return
			}
		}
	})
	code, err := wstest.ReadUntilClose(ws, 30*time.Second)
	ws.Close() // ends the sender
	if code == 0 {
		t.Errorf("ended with %v", err)
	}
	return code
}

// TestEveryClientFrameCounts is S9 for frames gorilla handles itself or
// folds into a message: unsolicited pongs, and empty continuation frames,
// are counted against the message rate like any frame (default rate and
// burst), so a flood of them is closed with 1008.
func TestEveryClientFrameCounts(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	for name, ws := range s.endpoints() {
		if code := sendUntilClosed(t, ws, 10_000, func() error {
			return ws.WriteControl(websocket.PongMessage, nil, time.Now().Add(10*time.Second))
		}); code != pgws.ClosePolicy {
			t.Errorf("%s, 10,000 pongs: closed with %d, want 1008", name, code)
		}
	}
	for name, ws := range s.endpoints() {
		// A text frame without FIN, then empty continuation frames without
		// FIN, a thousand at a time.
		nc := ws.UnderlyingConn()
		if _, err := nc.Write(rawFrame(websocket.TextMessage, []byte("{"))); err != nil {
			t.Fatal(err)
		}
		batch := bytes.Repeat(rawFrame(0x00, nil), 1000)
		if code := sendUntilClosed(t, ws, 1000, func() error {
			_, err := nc.Write(batch)
			return err
		}); code != pgws.ClosePolicy {
			t.Errorf("%s, 1,000,000 continuation frames: closed with %d, want 1008", name, code)
		}
	}
	if n := s.metric("pgcast_ws_messages_refused_total"); n < 4 {
		t.Errorf("pgcast_ws_messages_refused_total = %v", n)
	}
}

// TestClientFrameChecks is RFC 6455 for what gorilla lets through: a text
// message that is not UTF-8 closes with 1007, a close frame with a 1-byte
// payload with 1002, a binary message on /api/realtime (JSON text only)
// with 1003, while a Catalyst client's binary message is dropped like its
// text ones.
func TestClientFrameChecks(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	expect := func(what string, ws *websocket.Conn, want int) {
		t.Helper()
		if code, err := wstest.ReadUntilClose(ws, 30*time.Second); code != want {
			t.Errorf("%s: closed with %d (%v), want %d", what, code, err, want)
		}
	}
	for name, ws := range s.endpoints() {
		if err := ws.WriteMessage(websocket.TextMessage, []byte("{\"action\":\"ping\",\"x\":\"\xff\"}")); err != nil {
			t.Fatal(err)
		}
		expect(name+", invalid UTF-8", ws, pgws.CloseInvalidUTF8)
	}
	for name, ws := range s.endpoints() {
		if err := ws.WriteControl(websocket.CloseMessage, []byte{0x03}, time.Now().Add(10*time.Second)); err != nil {
			t.Fatal(err)
		}
		expect(name+", 1-byte close payload", ws, pgws.CloseProtocolError)
	}
	ws := s.rtConnect("")
	if err := ws.WriteMessage(websocket.BinaryMessage, []byte(`{"action":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	expect("realtime, binary message", ws, pgws.CloseUnsupported)

	// A Catalyst client's binary message is dropped: the connection still
	// answers a ping afterwards.
	ws = s.connect(recordsPath + "?uuid=" + s.ticket("u", auth.RoleAuthenticated, 1))
	pong := make(chan struct{}, 1)
	ws.SetPongHandler(func(string) error { pong <- struct{}{}; return nil })
	if err := ws.WriteMessage(websocket.BinaryMessage, []byte{0xff, 0x00}); err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() { code, _ := wstest.ReadUntilClose(ws, 30*time.Second); done <- code }()
	select {
	case <-pong:
	case code := <-done:
		t.Fatalf("catalyst, binary message: closed with %d", code)
	}
	ws.Close()
	<-done
}

// TestPongWaitIgnoresOtherFrames is S12 for a client that keeps sending but
// never answers pings: only a pong answers, so it is closed after the pong
// wait all the same.
func TestPongWaitIgnoresOtherFrames(t *testing.T) {
	t.Parallel()
	s := newStack(t, func(c *Config) {
		c.WS.PingInterval, c.WS.PongWait = 100*time.Millisecond, 500*time.Millisecond
		c.WS.MessageRate = -1
	})
	for name, ws := range s.endpoints() {
		ws.SetPingHandler(func(string) error { return nil }) // never pong
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			tick := time.NewTicker(20 * time.Millisecond) // the client's traffic
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if ws.WriteMessage(websocket.TextMessage, []byte(`{"action":"ping"}`)) != nil {
					return
				}
			}
		})
		code, err := wstest.ReadUntilClose(ws, 30*time.Second)
		close(stop)
		wg.Wait()
		if code != pgws.ClosePolicy {
			t.Errorf("%s: ended with %d (%v), want 1008 after the pong wait", name, code, err)
		}
	}
}
