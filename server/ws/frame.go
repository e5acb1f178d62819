package ws

import (
	"slices"
	"syscall"

	"golang.org/x/sys/unix"

	"net"
	"unicode/utf8"
)

// Server frames (RFC 6455, section 5.2), built by hand so that everything
// queued for a connection goes out in one writev: FIN set, never masked
// (server frames are not), no extension bits (no compression is
// negotiated: newUpgrader leaves EnableCompression off).
const (
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
	finBit   = 0x80

	maxFrameHeader    = 10  // 2 + 64-bit length; server frames have no mask key
	maxControlPayload = 125 // RFC 6455 5.5
)

// MaxFrameHeader is the longest header of a server frame: 2 bytes and a
// 64-bit length (server frames have no mask key).
const MaxFrameHeader = maxFrameHeader

// AppendTextHeader appends the header of a final, unmasked text frame with
// an n-byte payload: the payload follows it.
func AppendTextHeader(b []byte, n int) []byte { return appendFrameHeader(b, opText, n) }

// appendFrameHeader appends the header of a final, unmasked frame with
// opcode op and an n-byte payload.
func appendFrameHeader(b []byte, op byte, n int) []byte {
	switch {
	case n <= 125:
		return append(b, finBit|op, byte(n))
	case n <= 0xFFFF:
		return append(b, finBit|op, 126, byte(n>>8), byte(n))
	default:
		u := uint64(n)
		return append(b, finBit|op, 127,
			byte(u>>56), byte(u>>48), byte(u>>40), byte(u>>32), byte(u>>24), byte(u>>16), byte(u>>8), byte(u))
	}
}

const (
	// maxFramesPerWrite bounds the text frames of one writev (two iovecs
	// each: header and shared payload). The kernel takes up to 1024 iovecs;
	// the net package keeps a socket's iovec array for as long as the socket
	// lives, sized by the largest writev it made, so this bound is also what
	// a connection keeps (16 bytes an iovec: 2 KiB) after a burst.
	maxFramesPerWrite = 64
	// frameBufKeepBody and frameBufKeepEnds bound what a pooled FrameBuf
	// keeps: a larger buffer (an unusually large Catalyst frame) is let go.
	frameBufKeepBody = 1 << 20
	frameBufKeepEnds = 4096
	// headerScratch holds the text frames' headers and up to two control
	// frames (a pong and a ping, or a close), payload included.
	headerScratch = maxFramesPerWrite*maxFrameHeader + 2*(2+maxControlPayload)
	maxIovecs     = 2*maxFramesPerWrite + 3 // + pong, ping, an owned body (Catalyst)
)

// FrameBuf is one write's worth of frames: headers and control frames in a
// fixed scratch array, shared event bytes referenced (not copied), frames a
// protocol builds itself (Catalyst's) in body. A connection's writer takes one from a pool when it
// starts and gives it back when it goes idle, so an idle connection holds
// none. Its arrays never move while frames are added, so the slices in iov
// stay valid.
type FrameBuf struct {
	hdr    [headerScratch]byte
	nhdr   int
	iov    [maxIovecs][]byte
	niov   int
	frames int // text frames added
	// size is the bytes added, and ends where each frame ends in them: a
	// write cut short must finish its frame before a close frame follows.
	size int
	ends []int
	// nb is what WriteTo consumes; a field, so that passing its address
	// allocates nothing.
	nb net.Buffers

	// body holds the frames added with Owned.
	body []byte
	// Scratch is the Outbox's own scratch for building frames (Catalyst's
	// items taken and their grouping), kept with fb so that, like fb, it is
	// pooled while the connection is idle. nil until the Outbox sets it.
	Scratch Scratch
}

// Scratch is an Outbox's scratch kept in a FrameBuf (FrameBuf.Scratch).
type Scratch interface {
	// Reset drops its references to shared event bytes: the write is done.
	Reset()
	// Trim lets go of arrays that grew unusually large, before the
	// FrameBuf is pooled.
	Trim()
}

// Bytes is a copy of what a write of fb would send now: for tests of an
// Outbox.
func (fb *FrameBuf) Bytes() []byte {
	var b []byte
	for _, v := range fb.iov[:fb.niov] {
		b = append(b, v...)
	}
	return b
}

// Empty reports whether nothing was added.
func (fb *FrameBuf) Empty() bool { return fb.niov == 0 }

// Room is how many more text frames this write takes.
func (fb *FrameBuf) Room() int { return maxFramesPerWrite - fb.frames }

// Text adds a text frame whose payload p is shared and read-only: only its
// header is written here. The caller checks room first.
func (fb *FrameBuf) Text(p []byte) {
	h := appendFrameHeader(fb.hdr[fb.nhdr:fb.nhdr], opText, len(p))
	fb.nhdr += len(h)
	fb.iov[fb.niov] = h
	fb.niov++
	if len(p) > 0 {
		fb.iov[fb.niov] = p
		fb.niov++
	}
	fb.frames++
	fb.size += len(h) + len(p)
	fb.ends = append(fb.ends, fb.size)
}

// control adds a control frame (ping or pong), payload copied; a payload
// over 125 bytes is cut.
func (fb *FrameBuf) control(op byte, p string) {
	p = p[:min(len(p), maxControlPayload)]
	b := appendFrameHeader(fb.hdr[fb.nhdr:fb.nhdr], op, len(p))
	b = append(b, p...)
	fb.add(b)
}

// closeFrame adds a close frame with code and reason (cut to fit 125 bytes,
// on a rune boundary). CloseNoStatusReceived (1005), which must not be sent,
// gives an empty close frame.
func (fb *FrameBuf) closeFrame(code int, reason string) {
	fb.add(appendCloseFrame(fb.hdr[fb.nhdr:fb.nhdr], code, reason))
}

// appendCloseFrame appends a close frame (see closeFrame).
func appendCloseFrame(b []byte, code int, reason string) []byte {
	if code == closeNoStatus {
		return appendFrameHeader(b, opClose, 0)
	}
	r := reason[:min(len(reason), maxControlPayload-2)]
	for !utf8.ValidString(r) {
		r = r[:len(r)-1]
	}
	b = appendFrameHeader(b, opClose, 2+len(r))
	b = append(b, byte(code>>8), byte(code))
	return append(b, r...)
}

// add adds b, one frame built in fb.hdr, as one iovec.
func (fb *FrameBuf) add(b []byte) {
	fb.nhdr += len(b)
	fb.iov[fb.niov] = b
	fb.niov++
	fb.size += len(b)
	fb.ends = append(fb.ends, fb.size)
}

// Body is fb's buffer for frames built by the Outbox, empty: append whole
// frames to it (AppendTextHeader) and hand it back with Owned.
func (fb *FrameBuf) Body() []byte { return fb.body[:0] }

// Owned adds b, whole frames built in Body's buffer, as they are; fb keeps
// b's array for its next write.
func (fb *FrameBuf) Owned(b []byte) {
	fb.body = b
	if len(b) == 0 {
		return
	}
	fb.iov[fb.niov] = b
	fb.niov++
	for off := 0; off < len(b); {
		off += serverFrameLen(b[off:])
		fb.ends = append(fb.ends, fb.size+off)
	}
	fb.size += len(b)
}

// serverFrameLen is the length, header included, of the server frame b
// starts with.
func serverFrameLen(b []byte) int {
	switch n := int(b[1] & 0x7f); n {
	case 126:
		return 4 + (int(b[2])<<8 | int(b[3]))
	case 127:
		var u uint64
		for _, c := range b[2:10] {
			u = u<<8 | uint64(c)
		}
		return 10 + int(u)
	default:
		return 2 + n
	}
}

// rest is what is left, after a write cut short (writeTo failed), of the
// frame it stopped in: nothing when it stopped between frames.
func (fb *FrameBuf) rest() net.Buffers {
	left := 0
	for _, b := range fb.nb {
		left += len(b)
	}
	written := fb.size - left
	i, boundary := slices.BinarySearch(fb.ends, written)
	if written == 0 || boundary || i == len(fb.ends) {
		return nil
	}
	n := fb.ends[i] - written
	var out net.Buffers
	for _, b := range fb.nb {
		if n == 0 {
			break
		}
		k := min(n, len(b))
		out = append(out, b[:k])
		n -= k
	}
	return out
}

// Reset empties fb as a write does, without writing: for benchmarks of an
// Outbox's Take.
func (fb *FrameBuf) Reset() { fb.reset() }

// reset empties fb for the next write, dropping its references to shared
// event bytes.
func (fb *FrameBuf) reset() {
	clear(fb.iov[:fb.niov])
	fb.niov, fb.nhdr, fb.frames, fb.size = 0, 0, 0, 0
	fb.ends = fb.ends[:0]
	fb.nb = nil
	fb.body = fb.body[:0]
	if fb.Scratch != nil {
		fb.Scratch.Reset()
	}
}

// trim lets go of scratch that grew unusually large, before fb is pooled.
func (fb *FrameBuf) trim() {
	if cap(fb.body) > frameBufKeepBody {
		fb.body = nil
	}
	if cap(fb.ends) > frameBufKeepEnds {
		fb.ends = nil
	}
	if fb.Scratch != nil {
		fb.Scratch.Trim()
	}
}

// writeTo writes fb's frames (or what a tryWrite left of them) with one
// writev (net.Buffers on a TCP socket) and resets fb. After a failure fb
// keeps what was not written (see rest); the caller resets it.
func (fb *FrameBuf) writeTo(c net.Conn) error {
	if fb.nb == nil {
		fb.nb = fb.iov[:fb.niov]
	}
	if _, err := fb.nb.WriteTo(c); err != nil {
		return err
	}
	fb.reset()
	return nil
}

// tryWrite writes fb's frames with one writev that never waits for the
// socket. It reports whether everything went out (fb is then reset); if not,
// fb keeps the rest for writeTo, and nothing may be added to fb before.
// EAGAIN is no error: the socket is full.
func (fb *FrameBuf) tryWrite(rc syscall.RawConn) (bool, error) {
	if fb.nb == nil {
		fb.nb = fb.iov[:fb.niov]
	}
	var n int
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		n, werr = unix.Writev(int(fd), fb.nb)
		return true // one attempt: never wait for the poller
	}); err != nil {
		return false, err
	}
	if werr == unix.EINTR {
		werr = unix.EAGAIN
	}
	if werr != nil && werr != unix.EAGAIN {
		return false, werr
	}
	for n > 0 && len(fb.nb) > 0 { // drop what was written
		if n < len(fb.nb[0]) {
			fb.nb[0] = fb.nb[0][n:]
			n = 0
			break
		}
		n -= len(fb.nb[0])
		fb.nb = fb.nb[1:]
	}
	if len(fb.nb) == 0 {
		fb.reset()
		return true, nil
	}
	return false, nil
}
