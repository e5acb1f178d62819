package ws

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pgcast/pgcast/server/internal/wstest"
)

func TestFrameHeader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n    int
		want []byte
	}{
		{0, []byte{0x81, 0}},
		{125, []byte{0x81, 125}},
		{126, []byte{0x81, 126, 0, 126}},
		{65535, []byte{0x81, 126, 0xff, 0xff}},
		{65536, []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
		{1 << 20, []byte{0x81, 127, 0, 0, 0, 0, 0, 0x10, 0, 0}},
	} {
		if got := appendFrameHeader(nil, opText, tc.n); !bytes.Equal(got, tc.want) {
			t.Errorf("%d: % x, want % x", tc.n, got, tc.want)
		}
	}
	var fb FrameBuf
	fb.closeFrame(4008, strings.Repeat("é", 100)) // 200 bytes: cut to 123, on a rune boundary
	frames, err := wstest.ParseFrames(fb.Bytes())
	if err != nil || len(frames) != 1 || frames[0].Op != opClose {
		t.Fatalf("%v %v", frames, err)
	}
	if p := frames[0].Payload; len(p) != 124 || binary.BigEndian.Uint16(p) != 4008 || string(p[2:]) != strings.Repeat("é", 61) {
		t.Fatalf("close payload %d bytes: %q", len(p), p)
	}
	fb.reset()
	fb.closeFrame(closeNoStatus, "x")
	if got := fb.Bytes(); !bytes.Equal(got, []byte{0x88, 0}) {
		t.Fatalf("1005 echo: % x", got)
	}
}

// testOutbox is a plain queue of frames for Conn tests.
type testOutbox struct {
	conn *Conn
	mu   sync.Mutex
	q    [][]byte
	gate *FanoutGate // nil: push wakes the writer at once
}

func (o *testOutbox) push(b ...[]byte) {
	o.mu.Lock()
	o.q = append(o.q, b...)
	gate := o.gate
	o.mu.Unlock()
	if gate != nil {
		gate.Enqueued()
		gate.Hold(o.conn)
		return
	}
	o.conn.Notify()
}

func (o *testOutbox) Take(fb *FrameBuf) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := min(len(o.q), fb.Room())
	for _, b := range o.q[:n] {
		fb.Text(b)
	}
	o.q = o.q[:copy(o.q, o.q[n:])]
}

func (o *testOutbox) Discard() {
	o.mu.Lock()
	o.q = nil
	o.mu.Unlock()
}

// wsPair is a server Conn and the gorilla client connected to it.
type wsPair struct {
	server *Conn
	out    *testOutbox
	client *websocket.Conn
	ended  chan struct{} // the server's read loop and finish are done
}

// newWSPair upgrades a connection through upgrade and connects a gorilla
// client to it. With start false the server connection is not started:
// the test drives the writer (flush) itself.
func newWSPair(t *testing.T, cfg Config, start bool) *wsPair {
	t.Helper()
	p := &wsPair{ended: make(chan struct{})}
	ready := make(chan struct{})
	bufs := &sync.Pool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrade(newUpgrader(nil), w, r, cfg, slog.New(slog.DiscardHandler), bufs)
		if err != nil {
			t.Error(err)
			return
		}
		p.server, p.out = conn, &testOutbox{conn: conn}
		conn.out = p.out
		close(ready)
		if !start {
			return
		}
		conn.Start()
		go func() {
			defer close(p.ended)
			conn.ReadLoop(nil, nil)
			conn.Finish()
		}()
	}))
	t.Cleanup(srv.Close)
	client, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	<-ready
	p.client = client
	t.Cleanup(func() {
		client.Close()
		if start {
			<-p.ended
		} else {
			p.server.nc.Close()
		}
	})
	return p
}

// TestFramesReadByGorilla: the hand-made frames, all written by one flush
// (one writev), are read by a gorilla client as separate messages, in
// order, for payload lengths on every header-size boundary.
func TestFramesReadByGorilla(t *testing.T) {
	t.Parallel()
	p := newWSPair(t, Config{}, false)
	var payloads [][]byte
	for i, n := range []int{0, 125, 126, 65535, 65536, 1<<20 + 3, 1, 2, 3} {
		b := bytes.Repeat([]byte{'a' + byte(i)}, n)
		payloads = append(payloads, b)
	}
	p.out.q = payloads
	done := make(chan error, 1)
	go func() {
		fb := new(FrameBuf)
		wrote, final, err := p.server.Flush(fb)
		if err == nil && (!wrote || final || len(p.out.q) != 0) {
			err = fmt.Errorf("flush: wrote %v, final %v, %d left", wrote, final, len(p.out.q))
		}
		done <- err
	}()
	for i, want := range payloads {
		_ = p.client.SetReadDeadline(time.Now().Add(10 * time.Second))
		typ, got, err := p.client.ReadMessage()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if typ != websocket.TextMessage || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: type %d, %d bytes, want %d", i, typ, len(got), len(want))
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestWriterQueuedInOrder: events queued while the writer runs arrive as
// separate frames, in order, more than one write's worth included.
func TestWriterQueuedInOrder(t *testing.T) {
	t.Parallel()
	p := newWSPair(t, Config{}, true)
	const n = 1000
	go func() {
		for i := range n {
			p.out.push([]byte(fmt.Sprintf(`{"n":%d}`, i)))
		}
	}()
	for i := range n {
		_ = p.client.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, got, err := p.client.ReadMessage()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if want := fmt.Sprintf(`{"n":%d}`, i); string(got) != want {
			t.Fatalf("frame %d: %s, want %s", i, got, want)
		}
	}
}

// TestWriterPingPong: the server pings on its interval and answers the
// client's ping with a pong carrying its payload, both through the writer.
func TestWriterPingPong(t *testing.T) {
	t.Parallel()
	p := newWSPair(t, Config{PingInterval: 20 * time.Millisecond}, true)
	pings := make(chan struct{}, 100)
	pongs := make(chan string, 1)
	p.client.SetPingHandler(func(data string) error {
		pings <- struct{}{}
		return p.client.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	p.client.SetPongHandler(func(data string) error { pongs <- data; return nil })
	go func() {
		for {
			if _, _, err := p.client.ReadMessage(); err != nil {
				return
			}
		}
	}()
	for range 3 {
		select {
		case <-pings:
		case <-time.After(5 * time.Second):
			t.Fatal("no ping from the server")
		}
	}
	if err := p.client.WriteControl(websocket.PingMessage, []byte("hello"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-pongs:
		if got != "hello" {
			t.Fatalf("pong %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong from the server")
	}
}

// TestWriterCloseCodes: a close asked of the connection reaches the client
// with its code; the client's close is echoed; a frame over the read limit
// gets gorilla's 1009, sent by the writer.
func TestWriterCloseCodes(t *testing.T) {
	t.Parallel()
	for _, code := range []int{CloseGoingAway, ClosePolicy, CloseTooBig, 4001 /* realtime: token expired */, CloseSlowConsumer} {
		p := newWSPair(t, Config{}, true)
		p.out.push([]byte("before"))
		p.server.Close(code, "bye")
		got, err := wstest.ReadUntilClose(p.client, 5*time.Second)
		if got != code {
			t.Fatalf("closed with %d (%v), want %d", got, err, code)
		}
		select {
		case <-p.ended:
		case <-time.After(5 * time.Second):
			t.Fatal("server connection did not end")
		}
	}

	p := newWSPair(t, Config{}, true)
	if err := p.client.WriteMessage(websocket.TextMessage, make([]byte, clientFrameLimit+1)); err != nil {
		t.Fatal(err)
	}
	if got, err := wstest.ReadUntilClose(p.client, 5*time.Second); got != CloseTooBig {
		t.Fatalf("oversized frame: closed with %d (%v)", got, err)
	}

	// A protocol error (reserved opcode 3): gorilla's 1002 goes through the
	// writer too.
	p = newWSPair(t, Config{}, true)
	if _, err := p.client.NetConn().Write([]byte{0x83, 0x80, 1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	if got, err := wstest.ReadUntilClose(p.client, 5*time.Second); got != websocket.CloseProtocolError {
		t.Fatalf("protocol error: closed with %d (%v)", got, err)
	}

	p = newWSPair(t, Config{}, true)
	if err := p.client.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4321, "client"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, err := wstest.ReadUntilClose(p.client, 5*time.Second); got != 4321 {
		t.Fatalf("echo: closed with %d (%v)", got, err)
	}
	<-p.ended
}

// BenchmarkWriteFrames writes N queued realtime frames (about 100 bytes
// each) to a loopback TCP connection: one writev per 64 frames.
func BenchmarkWriteFrames(b *testing.B) {
	for _, n := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("frames=%d", n), func(b *testing.B) {
			nc := wstest.DrainConn(b)
			conn := newConn(nil, nc, Config{}, slog.New(slog.DiscardHandler), nil)
			o := &testOutbox{conn: conn}
			conn.out = o
			payload := bytes.Repeat([]byte("x"), 100)
			batch := make([][]byte, n)
			for i := range batch {
				batch[i] = payload
			}
			fb := new(FrameBuf)
			b.ReportAllocs()
			b.SetBytes(int64(n * len(payload)))
			for b.Loop() {
				o.q = append(o.q[:0], batch...)
				for len(o.q) > 0 {
					if _, _, err := conn.Flush(fb); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkGorillaWriteMessage is the reference: the same frames written
// through gorilla, one WriteMessage (one write) each.
func BenchmarkGorillaWriteMessage(b *testing.B) {
	for _, n := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("frames=%d", n), func(b *testing.B) {
			srvConn := make(chan *websocket.Conn, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ws, err := (&websocket.Upgrader{WriteBufferPool: &sync.Pool{}}).Upgrade(w, r, nil)
				if err != nil {
					b.Error(err)
					return
				}
				srvConn <- ws
			}))
			defer srv.Close()
			client, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer client.Close()
			go func() { _, _ = io.Copy(io.Discard, client.NetConn()) }()
			ws := <-srvConn
			defer ws.Close()
			payload := bytes.Repeat([]byte("x"), 100)
			b.ReportAllocs()
			b.SetBytes(int64(n * len(payload)))
			for b.Loop() {
				for range n {
					_ = ws.SetWriteDeadline(time.Now().Add(WriteTimeout))
					if err := ws.WriteMessage(websocket.TextMessage, payload); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// woken reports whether c was woken (before Start: a wake only marks it)
// since the last call.
func woken(c *Conn) bool { return c.state.And(^wsAgain)&wsAgain != 0 }

// TestFanoutGate: a held wake is released once the hub has been quiet for
// gateQuiet, never before; while the hub keeps enqueueing it is released
// within gateMaxDelay anyway.
func TestFanoutGate(t *testing.T) {
	t.Parallel()
	var g FanoutGate
	waitWoken := func(c *Conn, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for !woken(c) {
			if time.Since(start) > within {
				t.Fatalf("not woken within %s", within)
			}
			time.Sleep(50 * time.Microsecond)
		}
		return time.Since(start)
	}
	mk := func() *Conn { return newConn(nil, nil, Config{}, slog.New(slog.DiscardHandler), nil) }

	quiet := []*Conn{mk(), mk(), mk()}
	start := time.Now()
	for _, c := range quiet {
		g.Hold(c)
		if woken(c) {
			t.Fatal("woken at once")
		}
	}
	for _, c := range quiet {
		waitWoken(c, 5*time.Second)
	}
	if took := time.Since(start); took < gateQuiet {
		t.Fatalf("released after %s, before gateQuiet", took)
	}

	// A hub that keeps enqueueing.
	busy := mk()
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				g.activity.Add(1)
				time.Sleep(10 * time.Microsecond)
			}
		}
	}()
	g.Hold(busy)
	took := waitWoken(busy, 5*time.Second)
	close(stop)
	if took < gateQuiet {
		t.Fatalf("released after %s while the hub was busy", took)
	}
}
