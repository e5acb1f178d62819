package ws

import (
	"bufio"
	"encoding/base64"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/gorilla/websocket"
)

// originAllowed implements the allow-list: exact scheme://host[:port]
// matches only (no suffix or substring matching), "null" never, no Origin
// always.
func OriginAllowed(r *http.Request, allowed []string) bool {
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
// handshake (see Conn), so it needs no write buffer: with a pool it keeps
// none per connection. No compression is negotiated (EnableCompression
// false): the writer's frames have no RSV bits and shared, pre-encoded
// payloads. The Origin check happens before the upgrade, in the handlers,
// so that a refused origin gets a JSON 403; CheckOrigin only repeats it.
func newUpgrader(allowed []string) *websocket.Upgrader {
	return &websocket.Upgrader{
		ReadBufferSize:    readBufferSize,
		WriteBufferPool:   &sync.Pool{},
		EnableCompression: false,
		CheckOrigin:       func(r *http.Request) bool { return OriginAllowed(r, allowed) },
	}
}

// handshakeProblem checks what the upgrader would refuse in a request that
// IsWebSocketUpgrade accepts, so that a handler can refuse it before it
// spends anything on it (a ticket): "" when the handshake is good.
func HandshakeProblem(r *http.Request) string {
	if !slices.ContainsFunc(strings.Split(r.Header.Get("Sec-Websocket-Version"), ","), func(v string) bool { return strings.TrimSpace(v) == "13" }) {
		return "unsupported WebSocket version: want Sec-WebSocket-Version 13"
	}
	if key, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-Websocket-Key")); err != nil || len(key) != 16 {
		return "invalid Sec-WebSocket-Key"
	}
	return ""
}

// upgrade performs the handshake and returns the connection, not yet
// started. bufs pools the writers' scratch (FrameBuf).
func upgrade(u *websocket.Upgrader, w http.ResponseWriter, r *http.Request, cfg Config, logger *slog.Logger, bufs *sync.Pool) (*Conn, error) {
	hw := &hijacker{ResponseWriter: w}
	ws, err := u.Upgrade(hw, r, nil)
	if err != nil {
		return nil, err // the upgrader has answered
	}
	c := newConn(ws, hw.conn.Conn, cfg, logger, bufs)
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
