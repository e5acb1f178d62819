package server

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Limits a client cannot get around by opening more connections or sending
// faster: connections per user and per client IP address on this node,
// refused at the handshake (reliability case S10), and client messages per
// connection (S9).

// connCaps counts this node's WebSocket connections, both protocols
// together, per user and per client IP address.
type connCaps struct {
	perUser, perIP int // ≤ 0: no cap

	mu    sync.Mutex
	users map[userKey]int
	ips   map[string]int
}

// userKey is a user: ids are unique within an environment.
type userKey struct {
	env int64
	id  string
}

func newConnCaps(perUser, perIP int) *connCaps {
	return &connCaps{perUser: perUser, perIP: perIP, users: map[userKey]int{}, ips: map[string]int{}}
}

// Reasons a connection is refused, as the label of the refusals metric.
const (
	refusedUser = "user"
	refusedIP   = "ip"
)

// acquire counts a connection of user userID (anonymous when "") in
// environment env from the request's client address. It returns the
// function that uncounts it, or, when a cap is reached, the cap's reason
// and a message for the client.
func (c *connCaps) acquire(r *http.Request, env int64, userID string) (release func(), reason, msg string) {
	ip := clientIP(r)
	u := userKey{env, userID}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case userID != "" && c.perUser > 0 && c.users[u] >= c.perUser:
		return nil, refusedUser, fmt.Sprintf("at most %d connections per user", c.perUser)
	case c.perIP > 0 && c.ips[ip] >= c.perIP:
		return nil, refusedIP, fmt.Sprintf("at most %d connections per client address", c.perIP)
	}
	if userID != "" {
		c.users[u]++
	}
	c.ips[ip]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if userID != "" {
				if c.users[u]--; c.users[u] <= 0 {
					delete(c.users, u)
				}
			}
			if c.ips[ip]--; c.ips[ip] <= 0 {
				delete(c.ips, ip)
			}
		})
	}, "", ""
}

// admit is acquire for a handshake: a refusal is answered with 429
// too_many_connections and counted, and ok is false.
func (c *connCaps) admit(w http.ResponseWriter, r *http.Request, env int64, userID string, m *wsMetrics, endpoint string) (release func(), ok bool) {
	release, reason, msg := c.acquire(r, env, userID)
	if release == nil {
		m.refusedConns.WithLabelValues(endpoint, reason).Inc()
		writeError(w, http.StatusTooManyRequests, "too_many_connections", msg)
		return nil, false
	}
	return release, true
}

// clientIP is the request's peer address without its port. Behind a proxy
// it is the proxy's address: set no per-IP cap there.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// msgBucket is a connection's token bucket of client messages, owned by its
// read loop. It holds up to burst tokens and gains rate per second. A
// message takes a token; one that finds none is refused and still takes one,
// so that a client which keeps sending after refusals sinks to -burst and is
// closed, while one that was only briefly too fast recovers.
type msgBucket struct {
	rate, burst float64 // rate ≤ 0: no limit
	tokens      float64
	last        time.Time
}

func newMsgBucket(rate float64, burst int) msgBucket {
	return msgBucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// take accounts one message at now: allowed, or refused, or (after burst
// refusals not earned back) the connection is to be closed.
func (b *msgBucket) take(now time.Time) (allowed, closeIt bool) {
	if b.rate <= 0 {
		return true, false
	}
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	b.tokens--
	switch {
	case b.tokens >= 0:
		return true, false
	case b.tokens > -b.burst:
		return false, false
	default:
		return false, true
	}
}
