package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pgcast/pgcast/internal/startstop"
	"github.com/pgcast/pgcast/server/auth"
)

// The clients of the WebSocket scenarios share two cores with Postgres and
// the server, so they are kept cheap: one goroutine per connection, reading
// each message into a buffer it reuses, counting by scanning bytes rather
// than decoding, and nothing shared but atomic counters.

// wsClient is one benchmark connection and its counters.
type wsClient struct {
	conn *websocket.Conn
	// got counts what the scenario expects (Catalyst items, realtime
	// events of the benchmark's records); other counts messages it did
	// not expect.
	got, other atomic.Int64
	frames     atomic.Int64
	closing    atomic.Bool   // closed by the benchmark
	done       chan struct{} // closed when the read loop has returned
	err        error         // why the read loop ended, if not closing; read after done
}

func newWSClient(conn *websocket.Conn) *wsClient {
	// Catalyst frames hold up to message_limit items: far below this.
	conn.SetReadLimit(64 << 20)
	return &wsClient{conn: conn, done: make(chan struct{})}
}

// run reads messages until the connection ends, handing each to handle. The
// message's bytes are valid only during the call.
func (c *wsClient) run(handle func(c *wsClient, msg []byte)) {
	defer close(c.done)
	var buf bytes.Buffer
	for {
		_, r, err := c.conn.NextReader()
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(r)
		}
		if err != nil {
			if !c.closing.Load() {
				c.err = err
			}
			return
		}
		c.frames.Add(1)
		handle(c, buf.Bytes())
	}
}

// close cuts the connection without a closing handshake (the server sees
// the read fail, as it would for a vanished client, and cleans up the same
// way) and waits for the read loop.
func (c *wsClient) close() {
	c.closing.Store(true)
	_ = c.conn.Close()
	<-c.done
}

// clientSet is the open clients of one phase.
type clientSet struct {
	clients []*wsClient
}

func (s *clientSet) close() {
	if s == nil {
		return
	}
	// Close all first, then wait: closing is what ends each read loop.
	for _, c := range s.clients {
		c.closing.Store(true)
		_ = c.conn.Close()
	}
	for _, c := range s.clients {
		<-c.done
	}
}

// deliveryCounts compares every client's count with expected.
type deliveryCounts struct {
	total, min, max, lost, extra, other, frames int64
	short, disconnected                         int
	firstDisconnect                             error
}

func (s *clientSet) counts(expected int64) deliveryCounts {
	var d deliveryCounts
	for i, c := range s.clients {
		g := c.got.Load()
		d.total += g
		d.other += c.other.Load()
		d.frames += c.frames.Load()
		if i == 0 || g < d.min {
			d.min = g
		}
		d.max = max(d.max, g)
		if g < expected {
			d.lost += expected - g
			d.short++
		} else {
			d.extra += g - expected
		}
		select {
		case <-c.done:
			if c.err != nil {
				d.disconnected++
				if d.firstDisconnect == nil {
					d.firstDisconnect = c.err
				}
			}
		default:
		}
	}
	return d
}

// waitDelivered waits until every client has counted at least expected, or
// within has passed (then the shortfall is the loss), and returns how long
// it waited.
func (s *clientSet) waitDelivered(ctx context.Context, expected int64, within time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		all := true
		for _, c := range s.clients {
			if c.got.Load() < expected {
				all = false
				break
			}
		}
		if all || time.Since(start) >= within {
			return time.Since(start), nil
		}
		if err := startstop.Sleep(ctx, 5*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// openClients opens n clients, parallel at a time, with open(i). On error
// every client opened so far is closed.
func openClients(ctx context.Context, n, parallel int, open func(ctx context.Context, i int) (*wsClient, error)) (*clientSet, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	set := &clientSet{clients: make([]*wsClient, n)}
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range min(parallel, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := open(ctx, i)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("client %d: %w", i, err)
					}
					mu.Unlock()
					cancel()
					return
				}
				set.clients[i] = c
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	if first != nil {
		for _, c := range set.clients {
			if c != nil {
				c.close()
			}
		}
		return nil, first
	}
	return set, nil
}

// wsAuth mints tokens and fetches tickets like a Catalyst client.
type wsAuth struct {
	auth   *auth.Authenticator
	http   *http.Client
	dialer *websocket.Dialer
}

func newWSAuth(secret string, parallel int) (*wsAuth, error) {
	a, err := auth.NewAuthenticator(auth.Config{Secret: []byte(secret)})
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: parallel, MaxIdleConns: parallel, IdleConnTimeout: 30 * time.Second}
	return &wsAuth{
		auth: a,
		http: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		dialer: &websocket.Dialer{
			HandshakeTimeout: 30 * time.Second,
			ReadBufferSize:   4096,
			// Clients send at most a subscribe message: share write
			// buffers rather than hold one per connection.
			WriteBufferSize: 512,
			WriteBufferPool: &sync.Pool{},
		},
	}, nil
}

func (a *wsAuth) closeIdle() { a.http.CloseIdleConnections() }

// token mints a one-hour token for the benchmark user i.
func (a *wsAuth) token(i int) (string, error) {
	return a.auth.Mint(benchUser(i), auth.RoleAuthenticated, 1, time.Hour)
}

func benchUser(i int) string { return fmt.Sprintf("bench_user_%d", i) }

// ticket fetches a one-time ticket with GET /api/users/ws-auth/.
func (a *wsAuth) ticket(ctx context.Context, httpBase, token string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, httpBase+"/api/users/ws-auth/", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := a.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("ws-auth: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64*1024))
	if err != nil {
		return "", fmt.Errorf("ws-auth: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("ws-auth: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var t struct {
		UUID string `json:"uuid"`
	}
	if err := json.Unmarshal(body, &t); err != nil || t.UUID == "" {
		return "", fmt.Errorf("ws-auth: unexpected answer %q", body)
	}
	return t.UUID, nil
}

// dial opens a WebSocket; an HTTP refusal's status and body go into the
// error.
func (a *wsAuth) dial(ctx context.Context, url string, h http.Header) (*websocket.Conn, error) {
	conn, resp, err := a.dialer.DialContext(ctx, url, h)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			return nil, fmt.Errorf("dial: %w: %s: %s", err, resp.Status, bytes.TrimSpace(body))
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	return conn, nil
}

// newSecret is a random HS256 secret for one run.
func newSecret() string {
	b := make([]byte, 48)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// fdLimit is this process's soft limit on open files (which Go raises to
// the hard limit at start).
func fdLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("read the open-files limit: %w", err)
	}
	return l.Cur, nil
}

// spareFDs are the open files a scenario needs besides its WebSocket
// clients: database connections, listeners, files.
const spareFDs = 200

// MaxClients is how many WebSocket clients one scenario may open at once:
// the limit on open files (ulimit -n) less some spare. The server, in its
// own process, has the same limit.
func MaxClients() (int, error) {
	lim, err := fdLimit()
	if err != nil {
		return 0, err
	}
	return int(min(lim, 1<<30)) - spareFDs, nil
}

// checkClients fails early, with a clear message, when n connections cannot
// be open at once.
func checkClients(field string, n int) error {
	most, err := MaxClients()
	if err != nil {
		return err
	}
	if n > most {
		return fmt.Errorf("bench: %s is %d but at most %d connections fit the open-files limit (ulimit -n) less %d spare", field, n, most, spareFDs)
	}
	return nil
}

// settled is what the WebSocket scenarios read once their writers stop.
type settled struct {
	cpu    CPUUse        // the server's CPU while the writers wrote
	drain  time.Duration // how long the clients took to receive the rest
	cpuAll time.Duration // the server's CPU from the first change to the last delivery
	counts deliveryCounts
	rssMB  float64 // the server's RSS at the end (0: unreadable)
}

// settle reads the CPU of the writing phase, waits until every client has
// committed events (up to drainTimeout), reads the server's CPU so far,
// then waits quiet for a duplicate to show before counting what each
// client received. The server must still be running.
func settle(ctx context.Context, logger *slog.Logger, name string, p *serverProc, meter *cpuMeter, clients *clientSet, committed int64, drainTimeout, quiet time.Duration) (settled, error) {
	var s settled
	var err error
	if s.cpu, err = meter.read(); err != nil {
		return s, err
	}
	logger.Info(name+" writers done", "changes", committed, "server_cores", s.cpu.Server)
	if s.drain, err = clients.waitDelivered(ctx, committed, drainTimeout); err != nil {
		return s, err
	}
	if s.cpuAll, err = meter.serverCPU(); err != nil {
		return s, err
	}
	if err := startstop.Sleep(ctx, quiet); err != nil {
		return s, err
	}
	if err := p.alive(); err != nil {
		return s, err
	}
	s.counts = clients.counts(committed)
	if rss, err := p.rss(); err == nil {
		s.rssMB = round1(float64(rss) / (1 << 20))
	}
	return s, nil
}
