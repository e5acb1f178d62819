package ws

import (
	"errors"
	"net"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// The read side of a connection: gorilla reads and unmasks client frames;
// pgcast follows the same bytes, frame by frame, to count every frame the
// client sends (the message rate) and to check what gorilla lets through
// (RFC 6455: UTF-8 text, close payloads, the data type).

// Close codes of the read side (see README, "Close codes").
const (
	CloseProtocolError = websocket.CloseProtocolError           // 1002: a frame that breaks RFC 6455
	CloseUnsupported   = websocket.CloseUnsupportedData         // 1003: a binary message on /api/realtime
	CloseInvalidUTF8   = websocket.CloseInvalidFramePayloadData // 1007: a text message that is not UTF-8
)

// gorillaConn is the socket as gorilla sees it. After the handshake gorilla
// must not write, but it still tries to on its own when a client frame
// breaks the read limit (close 1009) or the protocol (close 1002): such a
// close frame becomes a close request to the connection's writer, which
// sends it; nothing reaches the socket. gorilla's write deadlines are
// ignored too: the writer owns the write deadline. Reads go through a
// frameScanner, which sees every client frame.
type gorillaConn struct {
	net.Conn
	c    *Conn // set once the handshake is written, before the read loop starts
	scan frameScanner
}

// Read is called by gorilla's buffered reader, on the read loop.
func (g *gorillaConn) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	if g.c == nil || n == 0 {
		return n, err
	}
	if serr := g.scan.scan(p[:n], g.c.onFrame); serr != nil {
		return 0, serr // the connection is closing: what follows is not read
	}
	return n, err
}

func (g *gorillaConn) Write(p []byte) (int, error) {
	if g.c == nil {
		return g.Conn.Write(p) // the handshake response
	}
	// gorilla's server control frames: FIN|opcode, unmasked length ≤ 125.
	if len(p) >= 2 && p[0]&0x0f == opClose && int(p[1]&0x7f) <= len(p)-2 {
		payload := p[2 : 2+int(p[1]&0x7f)]
		code, reason := closeNoStatus, ""
		if len(payload) >= 2 {
			code, reason = int(payload[0])<<8|int(payload[1]), string(payload[2:])
		}
		g.c.Close(code, reason)
	}
	return len(p), nil
}

func (g *gorillaConn) SetWriteDeadline(t time.Time) error {
	if g.c == nil {
		return g.Conn.SetWriteDeadline(t)
	}
	return nil
}

func (g *gorillaConn) SetDeadline(t time.Time) error {
	if g.c == nil {
		return g.Conn.SetDeadline(t)
	}
	return g.Conn.SetReadDeadline(t)
}

// frameScanner follows client frames through the bytes read, header by
// header, skipping payloads: it sees every frame, including those gorilla
// handles by itself (pongs, close) or folds into a message without
// returning (continuation frames). Client frames are masked; a header is 2
// bytes, 2 or 8 more of extended length, and 4 of mask key.
type frameScanner struct {
	hdr  [14]byte
	n    int    // header bytes read
	skip uint64 // payload bytes left of the current frame
}

// scan reads p and calls frame for each frame header it completes; an
// error from frame stops it and is returned.
func (s *frameScanner) scan(p []byte, frame func(op byte, length uint64) error) error {
	for len(p) > 0 {
		if s.skip > 0 {
			k := min(uint64(len(p)), s.skip)
			s.skip -= k
			p = p[k:]
			continue
		}
		s.hdr[s.n] = p[0]
		s.n++
		p = p[1:]
		if s.n < 2 || s.n < clientHeaderLen(s.hdr[1]) {
			continue
		}
		var length uint64
		switch l := s.hdr[1] & 0x7f; l {
		case 126:
			length = uint64(s.hdr[2])<<8 | uint64(s.hdr[3])
		case 127:
			for _, b := range s.hdr[2:10] {
				length = length<<8 | uint64(b)
			}
		default:
			length = uint64(l)
		}
		op := s.hdr[0] & 0x0f
		s.n, s.skip = 0, length
		if err := frame(op, length); err != nil {
			return err
		}
	}
	return nil
}

// clientHeaderLen is the length of a frame header whose second byte is b1.
func clientHeaderLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4 // mask key
	}
	return n
}

var (
	errFrameFlood = errors.New("client frame rate exceeded")
	errBadClose   = errors.New("close frame with a 1-byte payload")
)

// onFrame accounts one client frame as it arrives (on the read loop).
// Data messages and pings are counted when they are handled (admit), so
// that a refused one is not handled; every other frame (continuation,
// pong, close) is counted here. A close frame must carry no payload or a
// code of 2 bytes (RFC 6455, 5.5.1): gorilla would read one byte as no
// status, so it is refused here, with 1002.
func (c *Conn) onFrame(op byte, length uint64) error {
	switch {
	case op == opClose && length == 1:
		c.Close(CloseProtocolError, "close frame payload of 1 byte")
		return errBadClose
	case op == opText, op == opBinary, op == opPing:
		return nil
	}
	if _, flood := c.account(); flood {
		return errFrameFlood
	}
	return nil
}

// extendRead moves the read deadline PongWait ahead, unless the close
// frame is out (then the close handshake's deadline stands). Only pongs
// extend it: a client that sends but never answers pings is closed after
// PongWait all the same.
func (c *Conn) extendRead() {
	c.mu.Lock()
	if !c.closeSent {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.cfg.PongWait))
	}
	c.mu.Unlock()
}

// ReadLoop reads client frames until the connection ends, enforcing the
// frame limit, the message rate and the pong deadline, and hands each
// message to onMessage. onMessage may be nil (Catalyst: the client sends
// nothing, its messages are dropped); when set, messages are JSON text and
// a binary one closes the connection with 1003. A text message that is not
// UTF-8 closes it with 1007. onRefused (unless nil) is called for each
// frame refused over the message rate. It runs on the connection's one
// long-lived goroutine.
func (c *Conn) ReadLoop(onMessage func([]byte), onRefused func()) {
	c.onRefused = onRefused
	c.ws.SetReadLimit(clientFrameLimit)
	c.extendRead()
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, websocket.ErrReadLimit):
				c.Close(CloseTooBig, "frame too large") // gorilla's 1009 has been handed over first
			case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived):
				c.Close(websocket.CloseNormalClosure, "")
			case errors.As(err, &ne) && ne.Timeout():
				c.Close(ClosePolicy, "no pong within the pong wait")
			default:
				c.Close(ClosePolicy, "read error")
			}
			return
		}
		switch {
		case typ == websocket.TextMessage && !utf8.Valid(data):
			c.Close(CloseInvalidUTF8, "text message is not UTF-8")
			return
		case typ == websocket.BinaryMessage && onMessage != nil:
			c.Close(CloseUnsupported, "binary messages are not accepted: send JSON text")
			return
		}
		if c.admit() && onMessage != nil {
			onMessage(data)
		}
	}
}

// admit accounts one client frame (on the read loop) and says whether to
// handle it.
func (c *Conn) admit() bool {
	ok, _ := c.account()
	return ok
}

// account takes a token for one client frame: a refused frame is reported
// to onRefused, and a client that keeps flooding is closed with 1008
// (flood).
func (c *Conn) account() (ok, flood bool) {
	ok, closeIt := c.bucket.take(time.Now())
	switch {
	case ok:
		return true, false
	case closeIt:
		c.Close(ClosePolicy, "message rate exceeded")
		return false, true
	}
	if c.onRefused != nil {
		c.onRefused()
	}
	return false, false
}
