package ws

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
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
	trusted        []netip.Prefix

	mu    sync.Mutex
	users map[userKey]int
	ips   map[string]int
}

// userKey is a user: ids are unique within an environment.
type userKey struct {
	env int64
	id  string
}

func newConnCaps(perUser, perIP int, trusted []netip.Prefix) *connCaps {
	return &connCaps{perUser: perUser, perIP: perIP, trusted: trusted, users: map[userKey]int{}, ips: map[string]int{}}
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
	ip := ClientIP(r, c.trusted)
	u := userKey{env, userID}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case userID != "" && c.perUser > 0 && c.users[u] >= c.perUser:
		return nil, refusedUser, fmt.Sprintf("at most %d connections per user", c.perUser)
	case c.perIP > 0 && c.ips[ip] >= c.perIP:
		return nil, refusedIP, fmt.Sprintf("at most %d connections per client address", c.perIP)
	}
	// Count only what a cap applies to: with no cap, nothing is kept.
	countUser, countIP := userID != "" && c.perUser > 0, c.perIP > 0
	if countUser {
		c.users[u]++
	}
	if countIP {
		c.ips[ip]++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if countUser {
				if c.users[u]--; c.users[u] <= 0 {
					delete(c.users, u)
				}
			}
			if countIP {
				if c.ips[ip]--; c.ips[ip] <= 0 {
					delete(c.ips, ip)
				}
			}
		})
	}, "", ""
}

// ClientIP is the address of the request's client: the peer's, or, when
// the peer is a trusted proxy, the rightmost address of X-Forwarded-For
// that is not a trusted proxy (the one the first trusted proxy saw; those
// to its left are the client's to write). Without trusted proxies it is the
// peer's address, so behind a proxy every client has the proxy's.
func ClientIP(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || !isTrusted(addr, trusted) {
		return host
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // malformed: trust nothing further left
		}
		addr = hop.Unmap()
		if !isTrusted(addr, trusted) {
			break
		}
	}
	return addr.String()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParseTrustedProxies parses CIDRs (or single addresses) of proxies whose
// X-Forwarded-For names the client (see Config.TrustedProxies).
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q is neither an address nor a CIDR", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
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
