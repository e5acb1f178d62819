package ws

import (
	"net/netip"
	"time"

	"github.com/gorilla/websocket"
)

// WebSocket close codes pgcast uses (see README, "Close codes").
const (
	CloseGoingAway    = websocket.CloseGoingAway        // 1001: server shutting down; reconnect
	ClosePolicy       = websocket.ClosePolicyViolation  // 1008
	CloseTooBig       = websocket.CloseMessageTooBig    // 1009: client frame over the read limit
	CloseSlowConsumer = 4008                            // the connection's buffer overflowed
	closeNoStatus     = websocket.CloseNoStatusReceived // 1005: received, never sent (an empty close frame)
	clientFrameLimit  = 4096                            // bytes per client frame
	// readBufferSize is gorilla's read buffer, the only buffer an idle
	// connection keeps: client frames are a few dozen bytes (4 KiB at
	// most, read through it in pieces).
	readBufferSize = 512
	// WriteTimeout is Config.WriteTimeout's default.
	WriteTimeout       = 10 * time.Second
	closeHandshakeWait = time.Second
)

// Config are the WebSocket settings shared by both protocols. The zero
// value means the defaults.
type Config struct {
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
	// MaxBuffer bounds a connection's queue (a Queue) in items, and
	// MaxBufferBytes in bytes: a client further behind is closed with 4008.
	// Defaults 100,000 items (DefaultQueueItems) and MaxBuffer ×
	// DefaultItemBytes (4 KiB an item: about 400 MB at the default MaxBuffer; the
	// frames are shared by every connection they go to, so this bounds what
	// one slow client pins, not what it costs alone). Below
	// catalyst.MinBuffer(MessageLimit) items one statement can close clients
	// that read (pgcast serve refuses it).
	MaxBuffer      int
	MaxBufferBytes int
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
	// WriteTimeout bounds each write: the deadline is moved forward to
	// WriteTimeout from now whenever less than half of it is left, so a
	// write may take between WriteTimeout/2 and WriteTimeout; a client
	// that does not take a write within it is a slow consumer (4008).
	// Default 10 s (the WriteTimeout constant).
	WriteTimeout time.Duration
}

// WithDefaults fills in the defaults of the fields left zero.
func (c Config) WithDefaults() Config {
	if c.PingInterval == 0 {
		c.PingInterval = 30 * time.Second
	}
	if c.PongWait == 0 {
		c.PongWait = 60 * time.Second
	}
	if c.MaxBuffer == 0 {
		c.MaxBuffer = DefaultQueueItems
	}
	if c.MaxBufferBytes == 0 {
		c.MaxBufferBytes = c.MaxBuffer * DefaultItemBytes
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
	if c.WriteTimeout == 0 {
		c.WriteTimeout = WriteTimeout
	}
	return c
}

// QueueLimits are the bounds of a connection's queue (MaxBuffer and
// MaxBufferBytes).
func (c Config) QueueLimits() QueueLimits {
	return QueueLimits{Items: c.MaxBuffer, Bytes: c.MaxBufferBytes}
}
