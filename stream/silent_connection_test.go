package stream_test

import (
	"context"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgcast/pgcast/internal/pgtest"
	"github.com/pgcast/pgcast/stream"
)

// TestReaderDetectsSilentConnection is reliability case R2: the reader's
// connection goes silent, neither end sees an RST or a FIN (a dead network
// path, a frozen NAT entry, a hung host). The reader must notice within
// PingInterval + QueryTimeout (not after minutes of TCP retransmissions),
// reconnect, and deliver every change committed before, during and after
// the silence exactly once, in per-record order.
func TestReaderDetectsSilentConnection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, dbURL := pgtest.NewPool(t)
	w := setupCounters(t, pool, 20)
	proxy := newFreezeProxy(t, dbURL) // closed after the reader stops (cleanups run last first)
	reg := prometheus.NewRegistry()
	logs := &signalBuffer{wrote: make(chan struct{}, 1)}
	const ping, queryTimeout = 200 * time.Millisecond, time.Second
	r := startReader(t, stream.ReaderConfig{URL: proxy.url(t, dbURL), Handler: w.handle,
		PollInterval: ping, PingInterval: ping, QueryTimeout: queryTimeout,
		ReconnectMin: 10 * time.Millisecond, ReconnectMax: 100 * time.Millisecond, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	defer func() {
		if t.Failed() {
			// Unfreeze by closing: a reader stuck on the silent connection
			// would otherwise hold up its Stop, and the test, for good.
			proxy.close()
			t.Logf("reader log:\n%s", logs.String())
		}
	}()
	oldPID := readerPID(t, pool, []int32{})

	// Before: the stream flows.
	stop := make(chan struct{})
	wg := w.run(ctx, pool, 2, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	waitUpdates(t, w, 50)

	// During: silence, while commits go on.
	reconnects := metricValue(t, reg, "pgcast_reader_reconnects_total")
	frozenAt := time.Now()
	if n := proxy.freeze(); n == 0 {
		t.Fatal("no open connection to freeze")
	}
	for range 20 { // and some, for sure, before the reader can have noticed
		if err := w.write(ctx, pool); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.After(30 * time.Second)
	for metricValue(t, reg, "pgcast_reader_reconnects_total") <= reconnects {
		select {
		case <-logs.wrote: // the reader logs each lost connection, after counting it
		case <-deadline:
			t.Fatal("the reader did not notice the silent connection within 30 s")
		}
	}
	detected := time.Since(frozenAt)
	t.Logf("silence detected after %s (ping interval %s, query timeout %s)", detected.Round(time.Millisecond), ping, queryTimeout)
	if limit := ping + queryTimeout + 3800*time.Millisecond; detected > limit {
		t.Fatalf("silence detected after %s, want ≤ %s (ping interval + query timeout + margin)", detected, limit)
	}

	// After: a new connection; the stream flows again, and the frozen
	// backend, which Postgres still thinks alive, is ended with its
	// listeners row (else writers would ring for it on every commit).
	newPID := readerPID(t, pool, []int32{oldPID})
	for end := time.Now().Add(10 * time.Second); ; {
		var left int
		if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_stat_activity WHERE pid = $1)
     + (SELECT count(*) FROM pgcast.listeners WHERE pid = $1)`, oldPID).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the frozen backend %d or its listeners row is still there 10 s after the reconnect", oldPID)
		}
		time.Sleep(10 * time.Millisecond) // pg_stat_activity has no change signal
	}
	waitUpdates(t, w, w.updates.Load()+50)
	close(stop)
	wg.Wait()
	w.verify(t, pool, 60*time.Second)
	// Ready allows 3 idle reads plus a query timeout (1.6 s here) since the
	// last read: on a machine loaded by parallel race-enabled tests a read
	// can come later than that, so give it a few chances.
	for end := time.Now().Add(10 * time.Second); ; {
		err := r.Ready()
		if err == nil {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("reader not ready after recovery: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // readiness has no change signal
	}
	t.Logf("backend %d frozen, replaced by %d", oldPID, newPID)
}

// waitUpdates waits until w has seen n value_changed events.
func waitUpdates(t testing.TB, w *counterWorkload, n int64) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for w.updates.Load() < n {
		select {
		case <-w.changed:
		case <-deadline:
			t.Fatalf("%d of %d updates delivered after 30 s", w.updates.Load(), n)
		}
	}
}

// signalBuffer is a lockedBuffer that signals every write.
type signalBuffer struct {
	lockedBuffer
	wrote chan struct{} // capacity 1
}

func (s *signalBuffer) Write(p []byte) (int, error) {
	n, err := s.lockedBuffer.Write(p)
	select {
	case s.wrote <- struct{}{}:
	default:
	}
	return n, err
}

// freezeProxy forwards TCP connections to a Postgres server. freeze makes the
// connections open at that moment silent: no byte passes either way any
// more, yet both sockets stay open, so neither end sees an RST or a FIN.
// Connections accepted later are forwarded normally.
type freezeProxy struct {
	ln              net.Listener
	network, target string
	done            chan struct{} // closed by close
	wg              sync.WaitGroup

	mu     sync.Mutex
	links  []*proxyLink
	closed bool
}

type proxyLink struct {
	client, server net.Conn
	frozen, ended  atomic.Bool
}

// newFreezeProxy starts a proxy to the server of dbURL, closed (with every
// socket, frozen or not) when t ends.
func newFreezeProxy(t *testing.T, dbURL string) *freezeProxy {
	t.Helper()
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	network, target := "tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	if strings.HasPrefix(cfg.Host, "/") {
		network, target = "unix", cfg.Host+"/.s.PGSQL."+strconv.Itoa(int(cfg.Port))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{ln: ln, network: network, target: target, done: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// url is dbURL pointed at the proxy.
func (p *freezeProxy) url(t testing.TB, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil || u.Scheme == "" {
		t.Fatalf("the proxy needs a URL-form database URL (%v)", err)
	}
	u.Host = p.ln.Addr().String()
	q := u.Query()
	q.Del("host")
	q.Del("port")
	u.RawQuery = q.Encode()
	return u.String()
}

func (p *freezeProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		server, err := net.DialTimeout(p.network, p.target, 5*time.Second)
		if err != nil {
			client.Close()
			continue
		}
		l := &proxyLink{client: client, server: server}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			client.Close()
			server.Close()
			return
		}
		p.links = append(p.links, l)
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(l, client, server)
		go p.pipe(l, server, client)
	}
}

// pipe copies src to dst until either end fails, then closes both, passing
// the close on. Once the link is frozen it forwards nothing more, neither
// bytes nor a close: it holds what it read and waits for the proxy's close.
func (p *freezeProxy) pipe(l *proxyLink, src, dst net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if l.frozen.Load() {
			<-p.done
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil && err == nil {
				err = werr
			}
		}
		if err != nil {
			l.ended.Store(true)
			src.Close()
			dst.Close()
			return
		}
	}
}

// freeze silences every connection open now and returns how many.
func (p *freezeProxy) freeze() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.links {
		if !l.frozen.Swap(true) && !l.ended.Load() {
			n++
		}
	}
	return n
}

func (p *freezeProxy) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	links := p.links
	p.mu.Unlock()
	p.ln.Close()
	for _, l := range links {
		l.client.Close()
		l.server.Close()
	}
	p.wg.Wait()
}
