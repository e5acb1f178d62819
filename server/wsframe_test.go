package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/stream"
)

// testFrame is one server frame as parsed by parseFrames.
type testFrame struct {
	op      byte
	payload []byte
}

// parseFrames parses server frames (final, unmasked, no RSV bits, as the
// framer writes them).
func parseFrames(b []byte) ([]testFrame, error) {
	var frames []testFrame
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, errors.New("short header")
		}
		if b[0]&0xf0 != finBit || b[1]&0x80 != 0 {
			return nil, fmt.Errorf("header %#x %#x: want FIN, no RSV, no mask", b[0], b[1])
		}
		op, n, h := b[0]&0x0f, int(b[1]&0x7f), 2
		switch n {
		case 126:
			n, h = int(binary.BigEndian.Uint16(b[2:])), 4
		case 127:
			n, h = int(binary.BigEndian.Uint64(b[2:])), 10
		}
		if len(b) < h+n {
			return nil, fmt.Errorf("frame of %d bytes, %d left", n, len(b)-h)
		}
		frames = append(frames, testFrame{op: op, payload: b[h : h+n]})
		b = b[h+n:]
	}
	return frames, nil
}

// fbBytes is what fb would write.
func fbBytes(fb *frameBuf) []byte {
	var b []byte
	for _, v := range fb.iov[:fb.niov] {
		b = append(b, v...)
	}
	return b
}

// fbTexts returns the payloads of fb's frames, which must all be text.
func fbTexts(fb *frameBuf) []string {
	frames, err := parseFrames(fbBytes(fb))
	if err != nil {
		panic(err)
	}
	var out []string
	for _, f := range frames {
		if f.op != opText {
			panic(fmt.Sprintf("opcode %d", f.op))
		}
		out = append(out, string(f.payload))
	}
	return out
}

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
	var fb frameBuf
	fb.closeFrame(4008, strings.Repeat("é", 100)) // 200 bytes: cut to 123, on a rune boundary
	frames, err := parseFrames(fbBytes(&fb))
	if err != nil || len(frames) != 1 || frames[0].op != opClose {
		t.Fatalf("%v %v", frames, err)
	}
	if p := frames[0].payload; len(p) != 124 || binary.BigEndian.Uint16(p) != 4008 || string(p[2:]) != strings.Repeat("é", 61) {
		t.Fatalf("close payload %d bytes: %q", len(p), p)
	}
	fb.reset()
	fb.closeFrame(closeNoStatus, "x")
	if got := fbBytes(&fb); !bytes.Equal(got, []byte{0x88, 0}) {
		t.Fatalf("1005 echo: % x", got)
	}
}

// testOutbox is a plain queue of frames for wsConn tests.
type testOutbox struct {
	conn *wsConn
	mu   sync.Mutex
	q    [][]byte
}

func (o *testOutbox) Enqueue(it stream.Item) bool { o.push(it.Bytes); return true }

func (o *testOutbox) push(b ...[]byte) {
	o.mu.Lock()
	o.q = append(o.q, b...)
	o.mu.Unlock()
	o.conn.notify()
}

func (o *testOutbox) take(fb *frameBuf) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := min(len(o.q), fb.room())
	for _, b := range o.q[:n] {
		fb.text(b)
	}
	o.q = o.q[:copy(o.q, o.q[n:])]
}

func (o *testOutbox) discard() {
	o.mu.Lock()
	o.q = nil
	o.mu.Unlock()
}

// wsPair is a server wsConn and the gorilla client connected to it.
type wsPair struct {
	server *wsConn
	out    *testOutbox
	client *websocket.Conn
	ended  chan struct{} // the server's read loop and finish are done
}

// newWSPair upgrades a connection through upgrade and connects a gorilla
// client to it. With start false the server connection is not started:
// the test drives the writer (flush) itself.
func newWSPair(t *testing.T, cfg WSConfig, start bool) *wsPair {
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
		conn.start()
		go func() {
			defer close(p.ended)
			conn.readLoop(nil)
			conn.finish()
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
	p := newWSPair(t, WSConfig{}, false)
	var payloads [][]byte
	for i, n := range []int{0, 125, 126, 65535, 65536, 1<<20 + 3, 1, 2, 3} {
		b := bytes.Repeat([]byte{'a' + byte(i)}, n)
		payloads = append(payloads, b)
	}
	p.out.q = payloads
	done := make(chan error, 1)
	go func() {
		fb := new(frameBuf)
		wrote, final, err := p.server.flush(fb)
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
	p := newWSPair(t, WSConfig{}, true)
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
	p := newWSPair(t, WSConfig{PingInterval: 20 * time.Millisecond}, true)
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
	for _, code := range []int{CloseGoingAway, ClosePolicy, CloseTooBig, CloseTokenExpired, CloseSlowConsumer} {
		p := newWSPair(t, WSConfig{}, true)
		p.out.push([]byte("before"))
		p.server.close(code, "bye")
		got, err := readUntilClose(p.client, 5*time.Second)
		if got != code {
			t.Fatalf("closed with %d (%v), want %d", got, err, code)
		}
		select {
		case <-p.ended:
		case <-time.After(5 * time.Second):
			t.Fatal("server connection did not end")
		}
	}

	p := newWSPair(t, WSConfig{}, true)
	if err := p.client.WriteMessage(websocket.TextMessage, make([]byte, clientFrameLimit+1)); err != nil {
		t.Fatal(err)
	}
	if got, err := readUntilClose(p.client, 5*time.Second); got != CloseTooBig {
		t.Fatalf("oversized frame: closed with %d (%v)", got, err)
	}

	// A protocol error (reserved opcode 3): gorilla's 1002 goes through the
	// writer too.
	p = newWSPair(t, WSConfig{}, true)
	if _, err := p.client.NetConn().Write([]byte{0x83, 0x80, 1, 2, 3, 4}); err != nil {
		t.Fatal(err)
	}
	if got, err := readUntilClose(p.client, 5*time.Second); got != websocket.CloseProtocolError {
		t.Fatalf("protocol error: closed with %d (%v)", got, err)
	}

	p = newWSPair(t, WSConfig{}, true)
	if err := p.client.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4321, "client"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, err := readUntilClose(p.client, 5*time.Second); got != 4321 {
		t.Fatalf("echo: closed with %d (%v)", got, err)
	}
	<-p.ended
}

// drainConn is a loopback TCP connection whose far end reads and discards
// everything, allocating nothing.
func drainConn(tb testing.TB) net.Conn {
	tb.Helper()
	far, c := tcpPair(tb)
	go func() {
		buf := make([]byte, 256<<10)
		for {
			if _, err := far.Read(buf); err != nil {
				far.Close()
				return
			}
		}
	}()
	return c
}

func testCounter() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
}

// TestWritePathAllocations guards the delivery path of both protocols:
// queueing shared events and writing them (one writev per flush) allocates
// nothing per delivery once warm. Batches stay well within what the queues keep
// when they empty (rtKeepCap, batcherKeepCap): a larger burst's array is
// let go on purpose.
func TestWritePathAllocations(t *testing.T) {
	nc := drainConn(t)
	items := make([]stream.Item, 200)
	for i := range items {
		items[i] = testItem(int64(i+1), "posts")
		items[i].Bytes = []byte(fmt.Sprintf(`{"type":"event","event":{"id":"evt_%d","payload":{"title":"hello"}}}`, i+1))
	}

	conn := newWSConn(nil, nc, WSConfig{}, slog.New(slog.DiscardHandler), nil)
	o := newRTOutbox(100_000, time.Hour, conn, testCounter(), testCounter())
	conn.out = o
	o.subscribe("posts.*", []byte("ack"), false)
	fb := new(frameBuf)
	deliver := func() {
		for batch := range slices.Chunk(items, rtKeepCap/2) {
			for _, it := range batch {
				o.Enqueue(it)
			}
			for {
				wrote, _, err := conn.flush(fb)
				if err != nil {
					t.Fatal(err)
				}
				if !wrote {
					break
				}
			}
		}
	}
	deliver() // warm up: queue capacity, the socket's iovec cache, the deadline
	if allocs := testing.AllocsPerRun(100, deliver); allocs != 0 {
		t.Errorf("realtime: %v allocations per %d deliveries", allocs, len(items))
	}

	nc = drainConn(t)
	conn = newWSConn(nil, nc, WSConfig{}, slog.New(slog.DiscardHandler), nil)
	b := newBatcher(1000, 100_000, time.Hour, testCounter(), testCounter())
	b.attach(conn)
	conn.out = b
	fb = new(frameBuf)
	deliverCatalyst := func() {
		for _, it := range items[:batcherKeepCap/2] {
			b.Enqueue(it)
		}
		b.mu.Lock()
		b.due = true // the tick (its timer is an hour away)
		b.mu.Unlock()
		for {
			wrote, _, err := conn.flush(fb)
			if err != nil {
				t.Fatal(err)
			}
			if !wrote {
				break
			}
		}
	}
	deliverCatalyst()
	if allocs := testing.AllocsPerRun(100, deliverCatalyst); allocs != 0 {
		t.Errorf("catalyst: %v allocations per %d deliveries", allocs, batcherKeepCap/2)
	}
	b.discard()
}

// BenchmarkWriteFrames writes N queued realtime frames (about 100 bytes
// each) to a loopback TCP connection: one writev per 64 frames.
func BenchmarkWriteFrames(b *testing.B) {
	for _, n := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("frames=%d", n), func(b *testing.B) {
			nc := drainConn(b)
			conn := newWSConn(nil, nc, WSConfig{}, slog.New(slog.DiscardHandler), nil)
			o := &testOutbox{conn: conn}
			conn.out = o
			payload := bytes.Repeat([]byte("x"), 100)
			batch := make([][]byte, n)
			for i := range batch {
				batch[i] = payload
			}
			fb := new(frameBuf)
			b.ReportAllocs()
			b.SetBytes(int64(n * len(payload)))
			for b.Loop() {
				o.q = append(o.q[:0], batch...)
				for len(o.q) > 0 {
					if _, _, err := conn.flush(fb); err != nil {
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
					_ = ws.SetWriteDeadline(time.Now().Add(writeTimeout))
					if err := ws.WriteMessage(websocket.TextMessage, payload); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// TestFanoutGate: a held wake is released once the hub has been quiet for
// gateQuiet, never before; while the hub keeps enqueueing it is released
// within gateMaxDelay anyway.
func TestFanoutGate(t *testing.T) {
	t.Parallel()
	var g fanoutGate
	waitWoken := func(c *wsConn, within time.Duration) time.Duration {
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
	newConn := func() *wsConn { return newWSConn(nil, nil, WSConfig{}, slog.New(slog.DiscardHandler), nil) }

	quiet := []*wsConn{newConn(), newConn(), newConn()}
	start := time.Now()
	for _, c := range quiet {
		g.hold(c)
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
	busy := newConn()
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
	g.hold(busy)
	took := waitWoken(busy, 5*time.Second)
	close(stop)
	if took < gateQuiet {
		t.Fatalf("released after %s while the hub was busy", took)
	}
}
