package server

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pgcast/pgcast/stream"
)

// WebSocket close codes pgcast uses (see README, "Close codes").
const (
	CloseGoingAway     = websocket.CloseGoingAway       // 1001: server shutting down; reconnect
	ClosePolicy        = websocket.ClosePolicyViolation // 1008
	CloseTooBig        = websocket.CloseMessageTooBig   // 1009: client frame over the read limit
	CloseTokenExpired  = 4001                           // /api/realtime: the token expired
	CloseSlowConsumer  = 4008                           // the connection's buffer overflowed
	clientFrameLimit   = 4096                           // bytes per client frame
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
	// PongWait is how long a connection may stay silent (no pong, no frame)
	// before it is closed. Default 60 s.
	PongWait time.Duration
	// MaxBuffer bounds a connection's queue, in items. Default 100,000.
	MaxBuffer int
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

// upgrader builds the gorilla upgrader: small buffers (idle connections
// must stay cheap) and a shared write-buffer pool. The Origin check happens
// before the upgrade, in the handlers, so that a refused origin gets a JSON
// 403; CheckOrigin only repeats it.
func newUpgrader(allowed []string) *websocket.Upgrader {
	return &websocket.Upgrader{
		ReadBufferSize:  1024,
		WriteBufferSize: 4096,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     func(r *http.Request) bool { return originAllowed(r, allowed) },
	}
}

// outbox is a connection's bounded queue, protocol-specific. The hub calls
// Enqueue; the connection's writer calls take.
type outbox interface {
	stream.Queue
	// take returns the messages ready to be written now; tick says whether
	// the batching timer fired.
	take(tick bool) [][]byte
	// discard drops everything buffered.
	discard()
}

// wsConn is one upgraded connection: exactly one writer goroutine (run) and
// one read loop (readLoop). Nothing else writes data to it.
type wsConn struct {
	ws     *websocket.Conn
	cfg    WSConfig
	out    outbox
	logger *slog.Logger
	tick   time.Duration // batching period; 0 = write as soon as woken

	wake    chan struct{} // cap 1: something to write
	closing chan struct{} // closed by close()
	once    sync.Once
	code    int
	reason  string
	done    chan struct{} // closed when the writer has finished
}

func newWSConn(ws *websocket.Conn, cfg WSConfig, logger *slog.Logger, tick time.Duration) *wsConn {
	return &wsConn{
		ws: ws, cfg: cfg, logger: logger, tick: tick,
		wake: make(chan struct{}, 1), closing: make(chan struct{}), done: make(chan struct{}),
	}
}

// notify wakes the writer without blocking.
func (c *wsConn) notify() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// close asks the writer to send a close frame with code and end the
// connection. The first call wins; it never blocks.
func (c *wsConn) close(code int, reason string) {
	c.once.Do(func() {
		c.code, c.reason = code, reason
		close(c.closing)
	})
}

// run is the writer: batches on the tick, writes when woken, pings, and
// performs the close.
func (c *wsConn) run() {
	defer close(c.done)
	defer c.ws.Close()
	defer c.out.discard()
	ping := time.NewTicker(c.cfg.PingInterval)
	defer ping.Stop()
	var tickC <-chan time.Time
	if c.tick > 0 {
		t := time.NewTicker(c.tick) // measured from the connection's start
		defer t.Stop()
		tickC = t.C
	}
	for {
		select {
		case <-c.wake:
			if !c.write(c.out.take(false)) {
				return
			}
		case <-tickC:
			if !c.write(c.out.take(true)) {
				return
			}
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeTimeout)); err != nil {
				return
			}
		case <-c.closing:
			msg := websocket.FormatCloseMessage(c.code, c.reason)
			_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(writeTimeout))
			// Give the client a moment to answer the close handshake; the
			// read loop ends when it does.
			_ = c.ws.SetReadDeadline(time.Now().Add(closeHandshakeWait))
			return
		}
	}
}

func (c *wsConn) write(msgs [][]byte) bool {
	for _, m := range msgs {
		_ = c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := c.ws.WriteMessage(websocket.TextMessage, m); err != nil {
			c.logger.Debug("websocket write failed", "err", err)
			return false
		}
	}
	return true
}

// readLoop reads (and, for Catalyst, discards) client frames until the
// connection ends, enforcing the frame limit and the pong deadline. onMessage
// may be nil.
func (c *wsConn) readLoop(onMessage func([]byte)) {
	c.ws.SetReadLimit(clientFrameLimit)
	_ = c.ws.SetReadDeadline(time.Now().Add(c.cfg.PongWait))
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(time.Now().Add(c.cfg.PongWait))
	})
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			switch {
			case errors.Is(err, websocket.ErrReadLimit):
				c.close(CloseTooBig, "frame too large") // gorilla has already sent 1009
			case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived):
				c.close(websocket.CloseNormalClosure, "")
			default:
				c.close(ClosePolicy, "read error")
			}
			return
		}
		_ = c.ws.SetReadDeadline(time.Now().Add(c.cfg.PongWait))
		if onMessage != nil {
			onMessage(data)
		}
	}
}
