package server

import (
	"context"
	"errors"
	"net"
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

// dialSlow opens a WebSocket whose socket receive buffer is tiny: a client
// that does not read stalls the server's writes after a few KB.
func (s *stack) dialSlow(path string) *websocket.Conn {
	s.t.Helper()
	dialer := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			return errors.Join(err, serr)
		}}
		return d.DialContext(ctx, network, addr)
	}}
	ws, resp, err := dialer.Dial("ws"+strings.TrimPrefix(s.base, "http")+path, nil)
	if err != nil {
		s.t.Fatalf("dial %s: %v", path, err)
	}
	resp.Body.Close()
	s.t.Cleanup(func() { ws.Close() })
	return ws
}

// shrinkServerBuffers sets the send buffer of the server's end of every open
// WebSocket (want of them) to a few KB. The kernel otherwise grows it to
// megabytes (net.ipv4.tcp_wmem), which a test would have to push through
// the reader before a client that does not read stalls its writer: seconds
// of work on a loaded machine.
func (s *stack) shrinkServerBuffers(want int) {
	s.t.Helper()
	conns := s.srv.transport.Conns()
	if len(conns) != want {
		s.t.Fatalf("%d connections open, want %d", len(conns), want)
	}
	for _, c := range conns {
		raw, err := c.NetConn().(syscall.Conn).SyscallConn()
		if err != nil {
			s.t.Fatal(err)
		}
		var serr error
		err = raw.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4096) })
		if err = errors.Join(err, serr); err != nil {
			s.t.Fatal(err)
		}
	}
}

// waitMetricFor is waitMetric with a bound of its own.
func (s *stack) waitMetricFor(name string, v float64, bound time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(bound)
	for s.metric(name) < v {
		if time.Now().After(deadline) {
			s.t.Fatalf("%s stayed at %v, want ≥ %v", name, s.metric(name), v)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSlowConsumerWriteTimeout is R9 with the default flags: a client that
// stops reading meets the write timeout (10 s) long before its queue
// (100,000 items) overflows. It is a slow consumer all the same: closed with
// 4008 and counted, on both protocols. Its window is closed when the server
// gives up, and reopens only after the server has closed the socket: the
// close frame still reaches it, the kernel having taken it.
func TestSlowConsumerWriteTimeout(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	cls, _ := s.class(1, "posts", "public")
	catalyst := s.dialSlow(recordsPath + "?uuid=" + s.ticket("u", auth.RoleAuthenticated, 1))
	realtime := s.dialSlow(realtimePath)
	rtRead(t, realtime, 10*time.Second) // connected
	rtSubscribe(t, realtime, "posts.*")
	s.shrinkServerBuffers(2)
	start := time.Now()
	// Far more than the socket buffers hold (items of ~150 bytes), far
	// less than a queue holds.
	s.exec(`INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, 2000)`, cls)
	// Counted once each connection is over: after its writer has given up.
	s.waitMetricFor("pgcast_ws_slow_consumer_closes_total", 2, 2*time.Minute)
	if took := time.Since(start); took < pgws.WriteTimeout/2 {
		t.Fatalf("closed after %s, before any write could time out", took)
	}
	if n := s.metric("pgcast_hub_overflows_total"); n != 0 {
		t.Fatalf("pgcast_hub_overflows_total = %v: a queue overflowed, the write timeout was to trip first", n)
	}
	for name, ws := range map[string]*websocket.Conn{"catalyst": catalyst, "realtime": realtime} {
		if code, err := wstest.ReadUntilClose(ws, 30*time.Second); code != pgws.CloseSlowConsumer {
			t.Errorf("%s client ended with %v (code %d), want 4008", name, err, code)
		}
	}
}

// TestSlowConsumerOverflowWhileWriteBlocked: the queue overflows while the
// writer is blocked on the full socket; the close frame (4008) waits for
// that write, which times out, and still goes out after the rest of the
// frame in progress. The client reads only once the server is done.
func TestSlowConsumerOverflowWhileWriteBlocked(t *testing.T) {
	t.Parallel()
	// A write timeout with room for the reader's pages to come first on a
	// busy machine.
	s := newStack(t, func(c *Config) { c.WS.MaxBuffer, c.WS.WriteTimeout = 1100, 15*time.Second })
	cls, _ := s.class(1, "posts", "public")
	slow := s.dialSlow(realtimePath)
	rtRead(t, slow, 10*time.Second)
	rtSubscribe(t, slow, "posts.*")
	s.shrinkServerBuffers(1)
	s.exec(`INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, 3000)`, cls)
	s.waitMetricFor("pgcast_ws_slow_consumer_closes_total", 1, 2*time.Minute)
	if n := s.metric("pgcast_hub_overflows_total"); n < 1 {
		t.Fatalf("pgcast_hub_overflows_total = %v, want ≥ 1", n)
	}
	n := 0
	for {
		_ = slow.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, data, err := slow.ReadMessage()
		if err != nil {
			if code := wstest.CloseCode(err); code != pgws.CloseSlowConsumer {
				t.Fatalf("after %d frames: %v (code %d), want 4008", n, err, code)
			}
			break
		}
		if !strings.HasPrefix(string(data), "{") || !strings.HasSuffix(string(data), "}") {
			t.Fatalf("frame %d is cut: %q", n, data)
		}
		n++
	}
}

// TestMinBufferHoldsTwoPages: with the smallest buffer --max-buffer accepts
// (MinBuffer), clients that read get a 2,000-row statement (two reader
// pages) whole, on both protocols, however late their writers run.
func TestMinBufferHoldsTwoPages(t *testing.T) {
	t.Parallel()
	const limit = 100
	s := newStack(t, func(c *Config) {
		c.Catalyst.MessageLimit = limit
		c.WS.MaxBuffer = catalyst.MinBuffer(limit)
	})
	cls, _ := s.class(1, "posts", "public")
	catalyst := s.connect(recordsPath + "?uuid=" + s.ticket("u", auth.RoleAuthenticated, 1))
	realtime := s.rtConnect("")
	rtSubscribe(t, realtime, "posts.*")
	s.exec(`INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, 2000)`, cls)
	for created := 0; created < 2000; {
		f, err := readFrame(t, catalyst, 30*time.Second)
		if err != nil {
			t.Fatalf("catalyst client, after %d items: %v", created, err)
		}
		for _, it := range f.items {
			if it.Event == "object_record_created" {
				created++
			}
		}
	}
	for n := range 2000 {
		if m, err := rtTryRead(realtime, 30*time.Second); err != nil || m.Type != "event" {
			t.Fatalf("realtime client, after %d events: %v %s", n, err, m)
		}
	}
	if n := s.metric("pgcast_hub_overflows_total"); n != 0 {
		t.Fatalf("pgcast_hub_overflows_total = %v", n)
	}
}
