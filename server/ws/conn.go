package ws

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// Outbox is a connection's outgoing queue with its protocol's policy (the
// hub enqueues into it, see stream.Queue), kept in a Queue bounded in items
// and bytes; the connection's writer takes from it.
type Outbox interface {
	// Take adds to fb the frames ready to be written now, as many as fb
	// has room for; the writer comes back for the rest.
	Take(fb *FrameBuf)
	// Discard drops everything buffered; later Enqueues are refused.
	Discard()
}

// Writer states (Conn.state).
const (
	wsStarted uint32 = 1 << iota // start has run: writers may start
	wsWriting                    // a writer runs; kept for good once it has finished
	wsAgain                      // something to write arrived since the writer last looked
)

// Conn is one upgraded connection.
//
// One writer per connection: every byte after the handshake (data frames,
// pings, pongs, the close frame) is written by the connection's writer, on
// the raw socket, with frames built here (frame.go): everything pending
// goes out in one writev (up to maxFramesPerWrite frames). At most one
// writer runs at a time: wake starts one on demand (something queued, a
// ping due, a pong, a close) unless one is running, which then looks again
// before it exits; it drains everything queued and exits when there is
// nothing left. It runs on a new goroutine, or on the timer's own when a
// ping or a Catalyst tick woke it; realtime wakes from the hub may be held
// briefly (see FanoutGate), whose release makes each connection's first
// write itself, never waiting for the socket (wakeNow). So an idle connection has no writer goroutine and holds no
// write buffer (the writer's FrameBuf comes from a pool); its one goroutine
// is the read loop, whose gorilla reader (which unmasks client frames and
// enforces the read limit) never writes: see gorillaConn.
//
// Closing: the writer sends the close frame, then the peer has
// closeHandshakeWait to answer it before the read loop ends; the socket is
// closed once both are done (finish), or at once after a failed write.
//
// Lock order: outbox locks, then mu; mu is held for no call that takes
// another lock.
type Conn struct {
	ws     *websocket.Conn // reading only
	nc     net.Conn        // the socket, written only by the writer
	raw    syscall.RawConn // nc's, for writes that never wait; nil if it has none
	cfg    Config
	out    Outbox
	logger *slog.Logger
	bufs   *sync.Pool // *FrameBuf; nil: the connection keeps its own

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
	fb        *FrameBuf // when bufs is nil
	wdeadline time.Time

	written chan struct{} // closed when the writer has finished for good
	done    chan struct{} // closed when the connection is over (socket closed)

	// The read loop's own.
	bucket    msgBucket
	onRefused func() // called for each refused message; nil: nothing
}

func newConn(ws *websocket.Conn, nc net.Conn, cfg Config, logger *slog.Logger, bufs *sync.Pool) *Conn {
	cfg = cfg.WithDefaults()
	c := &Conn{
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
			c.Notify()
			return nil
		})
		ws.SetPongHandler(func(string) error {
			c.extendRead()
			return nil
		})
		ws.SetCloseHandler(func(code int, _ string) error {
			c.Close(code, "")
			return nil
		})
	}
	return c
}

// NewConn is a connection on a socket whose handshake is done elsewhere,
// which is written and never read (it has no ReadLoop): for driving a
// writer by hand (Flush), as tests and benchmarks of an Outbox do.
func NewConn(nc net.Conn, cfg Config, logger *slog.Logger) *Conn {
	return newConn(nil, nc, cfg, logger, nil)
}

// NetConn is the connection's socket. Writing to it or closing it breaks
// the connection: it is for socket options.
func (c *Conn) NetConn() net.Conn { return c.nc }

// SetOutbox gives the connection its queue, before Start.
func (c *Conn) SetOutbox(out Outbox) { c.out = out }

// Start lets writers run (frames queued so far are written now) and starts
// the pings.
func (c *Conn) Start() {
	c.mu.Lock()
	if !c.closeSent {
		c.pinger = time.AfterFunc(c.cfg.PingInterval, c.pingDueNow)
	}
	c.mu.Unlock()
	c.state.Or(wsStarted)
	c.Notify()
}

// pingDueNow is the ping timer's function: it runs on the timer's goroutine,
// which becomes the writer unless one is running.
func (c *Conn) pingDueNow() {
	c.mu.Lock()
	if c.closeSent {
		c.mu.Unlock()
		return
	}
	c.pingDue = true
	c.pinger.Reset(c.cfg.PingInterval)
	c.mu.Unlock()
	c.Wake(true)
}

// notify makes sure a writer looks at the connection soon. It never blocks.
func (c *Conn) Notify() { c.Wake(false) }

// wake starts a writer unless one is running, in which case it tells it to
// look again before it exits. The writer runs on a new goroutine, or with
// inline on the caller's (a timer's goroutine, which has nothing else to
// do).
func (c *Conn) Wake(inline bool) {
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
func (c *Conn) claimWriter() bool {
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
func (c *Conn) Close(code int, reason string) {
	c.mu.Lock()
	if c.closeReq {
		c.mu.Unlock()
		return
	}
	c.closeReq, c.code, c.reason = true, code, reason
	c.mu.Unlock()
	c.Notify()
}

// closeCode returns the code the connection was closed with, if it was.
func (c *Conn) CloseCode() (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code, c.closeReq
}

// wakeNow is wake for a caller that has other connections to wake and must
// never block on one: unless a writer runs, it becomes the writer for one
// write that does not wait for the socket (no goroutine is started when
// that is all there was); what remains (the socket was full, more came
// meanwhile, a close to send) goes to a writer goroutine.
func (c *Conn) WakeNow() {
	if c.raw == nil {
		c.Notify()
		return
	}
	if c.claimWriter() {
		c.writeNow()
	}
}

// finish ends the connection after its read loop has returned (which has
// asked for a close): it waits for the writer to be finished, closes the
// socket and marks the connection done.
func (c *Conn) Finish() {
	<-c.written
	_ = c.nc.Close()
	close(c.done)
}

// abort closes a connection that was never started.
func (c *Conn) Abort() {
	_ = c.nc.Close()
}
