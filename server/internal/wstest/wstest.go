package wstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// TCPPair returns the two ends of a loopback TCP connection.
func TCPPair(t testing.TB) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// DrainConn is a loopback TCP connection whose far end reads and discards
// everything, allocating nothing.
func DrainConn(tb testing.TB) net.Conn {
	tb.Helper()
	far, c := TCPPair(tb)
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

// Frame is one server frame as parsed by ParseFrames.
type Frame struct {
	Op      byte
	Payload []byte
}

// ParseFrames parses server frames (final, unmasked, no RSV bits, as the
// framer writes them).
func ParseFrames(b []byte) ([]Frame, error) {
	var frames []Frame
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, errors.New("short header")
		}
		if b[0]&0xf0 != 0x80 || b[1]&0x80 != 0 {
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
		frames = append(frames, Frame{Op: op, Payload: b[h : h+n]})
		b = b[h+n:]
	}
	return frames, nil
}

// Texts returns the payloads of the frames in b, which must all be text.
func Texts(b []byte) []string {
	frames, err := ParseFrames(b)
	if err != nil {
		panic(err)
	}
	var out []string
	for _, f := range frames {
		if f.Op != 0x1 {
			panic(fmt.Sprintf("opcode %d", f.Op))
		}
		out = append(out, string(f.Payload))
	}
	return out
}

// Counter is a counter registered nowhere.
func Counter() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
}

// CloseCode is the code of the close frame err reports (0: none).
func CloseCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// ReadUntilClose reads and discards until the connection ends and returns
// the close code (0 when it ended without a close frame).
func ReadUntilClose(ws *websocket.Conn, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		_ = ws.SetReadDeadline(deadline)
		if _, _, err := ws.ReadMessage(); err != nil {
			return CloseCode(err), err
		}
	}
}
