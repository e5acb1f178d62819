package ws

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/pgcast/pgcast/server/internal/wstest"
)

// readTextFrames reads n unmasked text frames and returns their payloads.
func readTextFrames(t *testing.T, r *bufio.Reader, n int) []string {
	t.Helper()
	var out []string
	for range n {
		var h [2]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			t.Fatalf("frame %d: %v", len(out)+1, err)
		}
		if h[0] != 0x81 {
			t.Fatalf("frame %d: first byte %#x, want a final text frame", len(out)+1, h[0])
		}
		size := uint64(h[1] & 0x7f)
		switch size {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				t.Fatal(err)
			}
			size = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				t.Fatal(err)
			}
			size = binary.BigEndian.Uint64(b[:])
		}
		p := make([]byte, size)
		if _, err := io.ReadFull(r, p); err != nil {
			t.Fatal(err)
		}
		out = append(out, string(p))
	}
	return out
}

// newStartedConn is a connection on nc, its writers allowed to run, and
// a first frame ("ack") already written.
func newStartedConn(t *testing.T, nc net.Conn, r *bufio.Reader) (*Conn, *testOutbox) {
	t.Helper()
	c := newConn(nil, nc, Config{}, slog.New(slog.DiscardHandler), nil)
	o := &testOutbox{conn: c}
	c.out = o
	o.push([]byte("ack"))
	c.state.Or(wsStarted)
	c.WakeNow()
	if got := readTextFrames(t, r, 1); got[0] != "ack" {
		t.Fatalf("first frame %q", got[0])
	}
	// From now on events wake the writer the way the hub's do: through
	// the gate, which calls wakeNow.
	o.mu.Lock()
	o.gate = &FanoutGate{}
	o.mu.Unlock()
	return c, o
}

// A wake from the fan-out writes on the waking goroutine, without waiting:
// also after the connection was idle past its write deadline (which a write
// that never waits must refresh as the blocking writer does).
func TestWakeNowWritesAfterIdleDeadline(t *testing.T) {
	t.Parallel()
	nc, peer := wstest.TCPPair(t)
	r := bufio.NewReader(peer)
	c, o := newStartedConn(t, nc, r)
	// As if WriteTimeout had passed since the last write.
	c.wdeadline = time.Now().Add(-time.Second)
	if err := nc.SetWriteDeadline(c.wdeadline); err != nil {
		t.Fatal(err)
	}
	o.push([]byte("live 1"))
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got := readTextFrames(t, r, 1); got[0] != "live 1" {
		t.Fatalf("frame %q, want live 1", got[0])
	}
	select {
	case <-c.written:
		t.Fatal("the writer finished: the write failed")
	default:
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.state.Load() != wsStarted { // the gate's goroutine returns from wakeNow
		if time.Now().After(deadline) {
			t.Fatalf("state %b after a complete write, want started and no writer", c.state.Load())
		}
		time.Sleep(time.Millisecond) // the state is an atomic: nothing to await
	}
}

// A client that does not read fills its socket: wakeNow returns at once and
// a writer goroutine sends the rest, in order, once the client reads again.
func TestWakeNowNeverWaitsForAFullSocket(t *testing.T) {
	t.Parallel()
	nc, peer := wstest.TCPPair(t)
	r := bufio.NewReader(peer)
	c, o := newStartedConn(t, nc, r)
	payload := make([]byte, 60<<10)
	for i := range payload {
		payload[i] = 'x'
	}
	const n = 200 // 12 MB: far beyond loopback socket buffers
	for i := 1; i <= n; i++ {
		o.push(append([]byte(fmt.Sprintf("%03d", i)), payload...))
	}
	returned := make(chan struct{})
	go func() {
		c.WakeNow()
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("wakeNow waited for a client that does not read")
	}
	_ = peer.SetReadDeadline(time.Now().Add(30 * time.Second))
	got := readTextFrames(t, r, n)
	for i, p := range got {
		if want := fmt.Sprintf("%03d", i+1); p[:3] != want || len(p) != 3+len(payload) {
			t.Fatalf("frame %d: starts %q, %d bytes; want %s and %d", i+1, p[:3], len(p), want, 3+len(payload))
		}
	}
}

// A queue longer than one write takes (maxFramesPerWrite frames) is written
// out whole from one wake, though nothing wakes the writer again.
func TestWakeNowWritesAQueueLongerThanOneWrite(t *testing.T) {
	t.Parallel()
	nc, peer := wstest.TCPPair(t)
	r := bufio.NewReader(peer)
	c, o := newStartedConn(t, nc, r)
	n := 3*maxFramesPerWrite + 5
	for i := 1; i <= n; i++ {
		o.push([]byte(fmt.Sprintf("live %d", i)))
	}
	c.WakeNow()
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i, p := range readTextFrames(t, r, n) {
		if want := fmt.Sprintf("live %d", i+1); p != want {
			t.Fatalf("frame %d: %q, want %q", i+1, p, want)
		}
	}
}
