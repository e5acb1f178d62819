package server

import (
	"bufio"
	"encoding/base64"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pgcast/pgcast/stream"
)

// WebSocket close codes pgcast uses (see README, "Close codes").
const (
	CloseGoingAway    = websocket.CloseGoingAway        // 1001: server shutting down; reconnect
	ClosePolicy       = websocket.ClosePolicyViolation  // 1008
	CloseTooBig       = websocket.CloseMessageTooBig    // 1009: client frame over the read limit
	CloseTokenExpired = 4001                            // /api/realtime: the token expired
	CloseSlowConsumer = 4008                            // the connection's buffer overflowed
	closeNoStatus     = websocket.CloseNoStatusReceived // 1005: received, never sent (an empty close frame)
	clientFrameLimit  = 4096                            // bytes per client frame
	// readBufferSize is gorilla's read buffer, the only buffer an idle
	// connection keeps: client frames are a few dozen bytes (4 KiB at
	// most, read through it in pieces).
	readBufferSize = 512
	// writeTimeout bounds each write: the deadline is moved forward to
	// writeTimeout from now whenever less than half of it is left, so a
	// write may take between writeTimeout/2 and writeTimeout.
	writeTimeout       = 10 * time.Second
	closeHandshakeWait = time.Second
)

// WSConfig are the WebSocket settings shared by both protocols. The zero
// value means the defaults.
type WSConfig struct {
	// AllowedOrigins lists the Origin values (scheme://host[:port]) allowed
	// to open a WebSocket. Empty: same origin only (Origin's host equals the
	// request's Host). Requests without Origin (non-browser clients) are
	// always allowed. "*" allows any origin (for development only).
	AllowedOrigins []string
	// PingInterval is how often the server pings. Default 30 s.
	PingInterval time.Duration
	// PongWait is how long a connection may go without answering a ping
	// (a pong) before it is closed; other frames do not count as an answer.
	// Default 60 s.
	PongWait time.Duration
	// MaxBuffer bounds a connection's queue, in items: a client further
	// behind is closed with 4008. Default 100,000. Below
	// MinBuffer(Catalyst MessageLimit) one statement can close clients that
	// read (pgcast serve refuses it).
	MaxBuffer int
	// MessageRate is how many frames (every frame: data, continuation,
	// ping, pong, close) a client may send per second, sustained, and
	// MessageBurst how many in a burst. A frame beyond them is refused: a
	// message is not handled (/api/realtime answers rate_limited, the
	// Catalyst endpoints drop it), a ping not answered. A client that keeps
	// sending through MessageBurst refusals is closed with 1008.
	// Defaults 20 and 100; a negative MessageRate means no limit.
	MessageRate  float64
	MessageBurst int
	// MaxConnsPerUser caps the WebSocket connections one user (of one
	// environment) holds on this node, both protocols together;
	// MaxConnsPerIP those from one client IP address (the peer address:
	// behind a proxy, the proxy's). A handshake over a cap is refused with
	// 429 too_many_connections. Defaults 100 and no cap; negative: no cap.
	MaxConnsPerUser int
	MaxConnsPerIP   int
	// TrustedProxies are the proxies (load balancers) in front of pgcast:
	// for a request from one of them, the client's address for
	// MaxConnsPerIP is taken from X-Forwarded-For (the rightmost address
	// that is not itself a trusted proxy). Default none: the peer address.
	TrustedProxies []netip.Prefix
}

func (c WSConfig) withDefaults() WSConfig {
	if c.PingInterval == 0 {
		c.PingInterval = 30 * time.Second
	}
	if c.PongWait == 0 {
		c.PongWait = 60 * time.Second
	}
	if c.MaxBuffer == 0 {
		c.MaxBuffer = 100_000
	}
	if c.MessageRate == 0 {
		c.MessageRate = 20
	}
	if c.MessageBurst == 0 {
		c.MessageBurst = 100
	}
	if c.MaxConnsPerUser == 0 {
		c.MaxConnsPerUser = 100
	}
	return c
}

// originAllowed implements the allow-list: exact scheme://host[:port]
// matches only (no suffix or substring matching), "null" never, no Origin
// always.
func originAllowed(r *http.Request, allowed []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" || u.User != nil {
		return false
	}
	if len(allowed) == 0 {
		return strings.EqualFold(u.Host, r.Host)
	}
	norm := strings.ToLower(u.Scheme + "://" + u.Host)
	for _, a := range allowed {
		if a == "*" || strings.ToLower(strings.TrimSuffix(a, "/")) == norm {
			return true
		}
	}
	return false
}

// newUpgrader builds the gorilla upgrader. gorilla does the handshake and
// the reading (unmasking, the read limit); it writes nothing after the
// handshake (see wsConn), so it needs no write buffer: with a pool it keeps
// none per connection. No compression is negotiated (EnableCompression
// false): the writer's frames have no RSV bits and shared, pre-encoded
// payloads. The Origin check happens before the upgrade, in the handlers,
// so that a refused origin gets a JSON 403; CheckOrigin only repeats it.
func newUpgrader(allowed []string) *websocket.Upgrader {
	return &websocket.Upgrader{
		ReadBufferSize:    readBufferSize,
		WriteBufferPool:   &sync.Pool{},
		EnableCompression: false,
		CheckOrigin:       func(r *http.Request) bool { return originAllowed(r, allowed) },
	}
}

// handshakeProblem checks what the upgrader would refuse in a request that
// IsWebSocketUpgrade accepts, so that a handler can refuse it before it
// spends anything on it (a ticket): "" when the handshake is good.
func handshakeProblem(r *http.Request) string {
	if !slices.ContainsFunc(strings.Split(r.Header.Get("Sec-Websocket-Version"), ","), func(v string) bool { return strings.TrimSpace(v) == "13" }) {
		return "unsupported WebSocket version: want Sec-WebSocket-Version 13"
	}
	if key, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-Websocket-Key")); err != nil || len(key) != 16 {
		return "invalid Sec-WebSocket-Key"
	}
	return ""
}

// upgrade performs the handshake and returns the connection, not yet
// started. bufs pools the writers' scratch (frameBuf).
func upgrade(u *websocket.Upgrader, w http.ResponseWriter, r *http.Request, cfg WSConfig, logger *slog.Logger, bufs *sync.Pool) (*wsConn, error) {
	hw := &hijacker{ResponseWriter: w}
	ws, err := u.Upgrade(hw, r, nil)
	if err != nil {
		return nil, err // the upgrader has answered
	}
	c := newWSConn(ws, hw.conn.Conn, cfg, logger, bufs)
	hw.conn.c = c // from now on gorilla's writes go to c's writer
	return c, nil
}

// hijacker hands gorilla the socket wrapped in a gorillaConn.
type hijacker struct {
	http.ResponseWriter
	conn *gorillaConn
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &gorillaConn{Conn: nc}
	return h.conn, brw, nil
}

// outbox is a connection's bounded queue, protocol-specific. The hub calls
// Enqueue; the connection's writer calls take.
type outbox interface {
	stream.Queue
	// take adds to fb the frames ready to be written now, as many as fb
	// has room for; the writer comes back for the rest.
	take(fb *frameBuf)
	// discard drops everything buffered; later Enqueues are refused.
	discard()
}

// Writer states (wsConn.state).
const (
	wsStarted uint32 = 1 << iota // start has run: writers may start
	wsWriting                    // a writer runs; kept for good once it has finished
	wsAgain                      // something to write arrived since the writer last looked
)

// wsConn is one upgraded connection.
//
// One writer per connection: every byte after the handshake (data frames,
// pings, pongs, the close frame) is written by the connection's writer, on
// the raw socket, with frames built here (wsframe.go): everything pending
// goes out in one writev (up to maxFramesPerWrite frames). At most one
// writer runs at a time: wake starts one on demand (something queued, a
// ping due, a pong, a close) unless one is running, which then looks again
// before it exits; it drains everything queued and exits when there is
// nothing left. It runs on a new goroutine, or on the timer's own when a
// ping or a Catalyst tick woke it; realtime wakes from the hub may be held
// briefly (see fanoutGate), whose release makes each connection's first
// write itself, never waiting for the socket (wakeNow). So an idle connection has no writer goroutine and holds no
// write buffer (the writer's frameBuf comes from a pool); its one goroutine
// is the read loop, whose gorilla reader (which unmasks client frames and
// enforces the read limit) never writes: see gorillaConn.
//
// Closing: the writer sends the close frame, then the peer has
// closeHandshakeWait to answer it before the read loop ends; the socket is
// closed once both are done (finish), or at once after a failed write.
//
// Lock order: outbox locks, then mu; mu is held for no call that takes
// another lock.
type wsConn struct {
	ws     *websocket.Conn // reading only
	nc     net.Conn        // the socket, written only by the writer
	raw    syscall.RawConn // nc's, for writes that never wait; nil if it has none
	cfg    WSConfig
	out    outbox
	logger *slog.Logger
	bufs   *sync.Pool // *frameBuf; nil: the connection keeps its own

	state atomic.Uint32 // wsStarted | wsWriting | wsAgain

	mu        sync.Mutex
	pingDue   bool
	pongDue   bool
	pong      string // payload of the latest client ping not yet answered
	closeReq  bool
	code      int
	reason    string
	closeSent bool        // the writer is finished: read deadlines are no longer extended
	pinger    *time.Timer // nil until start; stopped once the writer is finished

	// The writer's own; handed from one writer to the next through state.
	fb        *frameBuf // when bufs is nil
	wdeadline time.Time

	written chan struct{} // closed when the writer has finished for good
	done    chan struct{} // closed when the connection is over (socket closed)

	// The read loop's own.
	bucket    msgBucket
	onRefused func() // called for each refused message; nil: nothing
}

func newWSConn(ws *websocket.Conn, nc net.Conn, cfg WSConfig, logger *slog.Logger, bufs *sync.Pool) *wsConn {
	cfg = cfg.withDefaults()
	c := &wsConn{
		ws: ws, nc: nc, cfg: cfg, logger: logger, bufs: bufs,
		written: make(chan struct{}), done: make(chan struct{}),
		bucket: newMsgBucket(cfg.MessageRate, cfg.MessageBurst),
	}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			c.raw = rc
		}
	}
	if ws != nil {
		// Every write goes through the writer: a client's ping is answered
		// and its close echoed by the writer, not by gorilla.
		ws.SetPingHandler(func(data string) error {
			if !c.admit() {
				return nil // not answered
			}
			c.mu.Lock()
			c.pong, c.pongDue = data, true
			c.mu.Unlock()
			c.notify()
			return nil
		})
		ws.SetPongHandler(func(string) error {
			c.extendRead()
			return nil
		})
		ws.SetCloseHandler(func(code int, _ string) error {
			c.close(code, "")
			return nil
		})
	}
	return c
}

// start lets writers run (frames queued so far are written now) and starts
// the pings.
func (c *wsConn) start() {
	c.mu.Lock()
	if !c.closeSent {
		c.pinger = time.AfterFunc(c.cfg.PingInterval, c.pingDueNow)
	}
	c.mu.Unlock()
	c.state.Or(wsStarted)
	c.notify()
}

// pingDueNow is the ping timer's function: it runs on the timer's goroutine,
// which becomes the writer unless one is running.
func (c *wsConn) pingDueNow() {
	c.mu.Lock()
	if c.closeSent {
		c.mu.Unlock()
		return
	}
	c.pingDue = true
	c.pinger.Reset(c.cfg.PingInterval)
	c.mu.Unlock()
	c.wake(true)
}

// notify makes sure a writer looks at the connection soon. It never blocks.
func (c *wsConn) notify() { c.wake(false) }

// wake starts a writer unless one is running, in which case it tells it to
// look again before it exits. The writer runs on a new goroutine, or with
// inline on the caller's (a timer's goroutine, which has nothing else to
// do).
func (c *wsConn) wake(inline bool) {
	if !c.claimWriter() {
		return
	}
	if inline {
		c.write()
	} else {
		go c.write()
	}
}

// claimWriter makes the caller the writer unless one runs (which is then
// told to look again before it exits) or writers may not start yet.
func (c *wsConn) claimWriter() bool {
	for {
		s := c.state.Load()
		if s&wsStarted == 0 || s&wsWriting != 0 {
			if s&wsAgain != 0 || c.state.CompareAndSwap(s, s|wsAgain) {
				return false
			}
			continue
		}
		if c.state.CompareAndSwap(s, s|wsWriting) {
			return true
		}
	}
}

// close asks the writer to send a close frame with code and end the
// connection. The first call wins; it never blocks.
func (c *wsConn) close(code int, reason string) {
	c.mu.Lock()
	if c.closeReq {
		c.mu.Unlock()
		return
	}
	c.closeReq, c.code, c.reason = true, code, reason
	c.mu.Unlock()
	c.notify()
}

// closeCode returns the code the connection was closed with, if it was.
func (c *wsConn) closeCode() (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code, c.closeReq
}

// wakeNow is wake for a caller that has other connections to wake and must
// never block on one: unless a writer runs, it becomes the writer for one
// write that does not wait for the socket (no goroutine is started when
// that is all there was); what remains (the socket was full, more came
// meanwhile, a close to send) goes to a writer goroutine.
func (c *wsConn) wakeNow() {
	if c.raw == nil {
		c.notify()
		return
	}
	if c.claimWriter() {
		c.writeNow()
	}
}

// writeNow is the writer's first round without blocking (see wakeNow).
func (c *wsConn) writeNow() {
	fb := c.getBuf()
	c.state.And(^wsAgain)
	c.mu.Lock()
	blocking := c.closeReq || c.pongDue || c.pingDue
	c.mu.Unlock()
	if blocking { // rare: let the goroutine do it all
		go c.writeWith(fb)
		return
	}
	c.out.take(fb)
	if fb.empty() {
		if c.state.CompareAndSwap(wsStarted|wsWriting, wsStarted) {
			c.putBuf(fb)
			return
		}
		go c.writeWith(fb)
		return
	}
	more := fb.room() == 0 // the queue may hold more than one write takes
	err := c.extendWrite()
	done := false
	if err == nil {
		done, err = fb.tryWrite(c.raw)
	}
	if err != nil {
		c.writeFailed(fb, err, false)
		return
	}
	if done && !more && c.state.CompareAndSwap(wsStarted|wsWriting, wsStarted) {
		c.putBuf(fb)
		return
	}
	go c.writeWith(fb) // the rest of fb first, then whatever else is due
}

// write is the writer: it writes until nothing is left, then exits; or
// until it has written the close frame or failed, and then it is finished
// for good (wsWriting stays set: no writer starts again).
func (c *wsConn) write() { c.writeWith(c.getBuf()) }

// writeWith is write with fb, which may hold the rest of a tryWrite: that
// goes out first.
func (c *wsConn) writeWith(fb *frameBuf) {
	if fb.nb != nil {
		if err := c.writeFrames(fb); err != nil {
			c.writeFailed(fb, err, false)
			return
		}
	}
	for {
		c.state.And(^wsAgain)
		wrote, final, err := c.flush(fb)
		if err != nil {
			c.writeFailed(fb, err, final)
			return
		}
		if final {
			c.putBuf(fb)
			c.finishWriter(nil)
			return
		}
		if !wrote && c.state.CompareAndSwap(wsStarted|wsWriting, wsStarted) {
			// A wake from now on starts another writer: fb is no longer
			// touched but by the pool.
			c.putBuf(fb)
			return
		}
	}
}

// flush writes, in one writev, what is pending: a pong, a ping and queued
// frames; or the close frame, which is final (what else is pending is
// dropped).
func (c *wsConn) flush(fb *frameBuf) (wrote, final bool, err error) {
	c.mu.Lock()
	if c.closeReq {
		code, reason := c.code, c.reason
		c.mu.Unlock()
		fb.closeFrame(code, reason)
		return true, true, c.writeFrames(fb)
	}
	pong, pongDue, pingDue := c.pong, c.pongDue, c.pingDue
	c.pong, c.pongDue, c.pingDue = "", false, false
	c.mu.Unlock()
	if pongDue {
		fb.control(opPong, pong)
	}
	if pingDue {
		fb.control(opPing, "")
	}
	c.out.take(fb)
	if fb.empty() {
		return false, false, nil
	}
	return true, false, c.writeFrames(fb)
}

// writeFrames writes fb; after a failure fb keeps what was not written,
// for writeFailed.
func (c *wsConn) writeFrames(fb *frameBuf) error {
	if err := c.extendWrite(); err != nil {
		return err
	}
	return fb.writeTo(c.nc)
}

// extendWrite keeps the write deadline at least writeTimeout/2 ahead. A
// deadline that has passed also fails writes that would not wait (tryWrite).
func (c *wsConn) extendWrite() error {
	if now := time.Now(); c.wdeadline.Sub(now) < writeTimeout/2 {
		c.wdeadline = now.Add(writeTimeout)
		return c.nc.SetWriteDeadline(c.wdeadline)
	}
	return nil
}

// finishWriter ends the writing side: after the close frame the peer has
// closeHandshakeWait to answer before the read loop gives up; after a
// failed write the socket is closed at once, which ends the read loop (a
// write that timed out is handled first: see writeFailed).
func (c *wsConn) finishWriter(err error) {
	c.mu.Lock()
	c.closeSent = true
	if c.pinger != nil {
		c.pinger.Stop()
	}
	if err == nil {
		_ = c.nc.SetReadDeadline(time.Now().Add(closeHandshakeWait))
	}
	c.mu.Unlock()
	if err != nil {
		c.logger.Debug("websocket write failed", "err", err)
		_ = c.nc.Close()
	}
	c.out.discard()
	close(c.written)
}

func (c *wsConn) getBuf() *frameBuf {
	if c.bufs == nil {
		if c.fb == nil {
			c.fb = new(frameBuf)
		}
		return c.fb
	}
	if fb, _ := c.bufs.Get().(*frameBuf); fb != nil {
		return fb
	}
	return new(frameBuf)
}

func (c *wsConn) putBuf(fb *frameBuf) {
	if c.bufs == nil {
		return
	}
	fb.reset()
	fb.trim()
	c.bufs.Put(fb)
}

// finish ends the connection after its read loop has returned (which has
// asked for a close): it waits for the writer to be finished, closes the
// socket and marks the connection done.
func (c *wsConn) finish() {
	<-c.written
	_ = c.nc.Close()
	close(c.done)
}

// abort closes a connection that was never started.
func (c *wsConn) abort() {
	_ = c.nc.Close()
}
