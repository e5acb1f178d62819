package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pgws "github.com/pgcast/pgcast/server/ws"

	"github.com/gorilla/websocket"
)

// rawConn opens a TCP connection to the stack's public address, closed at
// the end of the test.
func (s *stack) rawConn() net.Conn {
	s.t.Helper()
	nc, err := net.Dial("tcp", s.srv.Addr().String())
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { nc.Close() })
	return nc
}

// readToEOF reads nc until the server closes it (EOF or a reset), within
// timeout; it fails the test if the connection is still open then.
func readToEOF(t *testing.T, nc net.Conn, r io.Reader, timeout time.Duration) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(timeout))
	_, err := io.Copy(io.Discard, r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection was still open after %v", timeout)
	}
}

// TestHTTPIdleConnectionsAreClosed (issue 10 item 1): keep-alive connections that
// made a request and then sent nothing are closed at the idle timeout, so
// that idle clients cannot hold server memory for ever.
func TestHTTPIdleConnectionsAreClosed(t *testing.T) {
	t.Parallel()
	const (
		conns   = 50
		timeout = 300 * time.Millisecond
	)
	s := newStack(t, func(c *Config) { c.HTTP.IdleTimeout = timeout })
	var wg sync.WaitGroup
	for range conns {
		nc := s.rawConn()
		wg.Go(func() {
			if _, err := io.WriteString(nc, "GET /livez HTTP/1.1\r\nHost: pgcast\r\n\r\n"); err != nil {
				t.Error(err)
				return
			}
			br := bufio.NewReader(nc)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Close {
				t.Errorf("GET /livez: %d, close %v: want 200, kept alive", resp.StatusCode, resp.Close)
			}
			readToEOF(t, nc, br, timeout+10*time.Second)
		})
	}
	wg.Wait()
	s.waitMetricBelow("pgcast_http_connections", 1)
}

// waitMetricBelow waits until a metric is below v (see waitMetric).
func (s *stack) waitMetricBelow(name string, v float64) {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.metric(name) >= v {
		if time.Now().After(deadline) {
			s.t.Fatalf("%s stayed at %v, want < %v", name, s.metric(name), v)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHTTPTrickledBodiesAreCut (issue 10 item 1): request bodies trickled a byte at a
// time are cut at the read timeout (408 when the client still listens), so
// that slow uploads cannot pile up in memory.
func TestHTTPTrickledBodiesAreCut(t *testing.T) {
	t.Parallel()
	const (
		clients = 10
		timeout = 500 * time.Millisecond
	)
	s := newStack(t, func(c *Config) { c.HTTP.ReadTimeout = timeout })
	s.define(1, `{"name":"posts","fields":[{"name":"title","type":"text"}],"permissions":{"create":"public"}}`)
	start := time.Now() // before the dials: the server's clock starts later
	var wg sync.WaitGroup
	for range clients {
		nc := s.rawConn()
		wg.Go(func() {
			head := "POST /api/posts HTTP/1.1\r\nHost: pgcast\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
			if _, err := io.WriteString(nc, head+`{"title":"`); err != nil {
				t.Error(err)
				return
			}
			stop := make(chan struct{})
			defer close(stop)
			go func() { // a byte every 50 ms: progress, but too slow
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						if _, err := io.WriteString(nc, "x"); err != nil {
							return
						}
					}
				}
			}()
			br := bufio.NewReader(nc)
			_ = nc.SetReadDeadline(time.Now().Add(timeout + 10*time.Second))
			resp, err := http.ReadResponse(br, nil)
			took := time.Since(start)
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				t.Errorf("no answer after %v: the body is still being read", took)
				return
			case err == nil: // the server may also just close: the client was still writing
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusRequestTimeout || !bytes.Contains(body, []byte(`"bad_request"`)) {
					t.Errorf("answer %d %s, want 408 bad_request", resp.StatusCode, body)
				}
			}
			if took < timeout {
				t.Errorf("cut after %v, before the %v read timeout", took, timeout)
			}
		})
	}
	wg.Wait()
	s.waitMetric("pgcast_http_timeouts_total", clients)
	if n := s.queryInt(`SELECT count(*) FROM pgcast.object_records`); n != 0 {
		t.Errorf("%d records created from cut bodies", n)
	}
}

// TestHTTPRequestsPerAddressAreCapped (issue 10 item 1): one client address (behind
// a trusted proxy, the one X-Forwarded-For names) has at most
// MaxRequestsPerIP requests in flight; more get 429 too_many_requests,
// other addresses and WebSockets are not affected, and a finished request
// frees its place.
func TestHTTPRequestsPerAddressAreCapped(t *testing.T) {
	t.Parallel()
	const perIP = 3
	lb, err := pgws.ParseTrustedProxies([]string{"127.0.0.1", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, func(c *Config) { c.HTTP.MaxRequestsPerIP, c.WS.TrustedProxies = perIP, lb })
	s.define(1, `{"name":"posts","fields":[{"name":"title","type":"text"}],"permissions":{"create":"public"}}`)
	const client = "198.51.100.1"
	var held []net.Conn
	for range perIP { // requests whose bodies never come
		nc := s.rawConn()
		held = append(held, nc)
		if _, err := io.WriteString(nc, "POST /api/posts HTTP/1.1\r\nHost: pgcast\r\nX-Forwarded-For: "+client+"\r\nContent-Length: 100\r\n\r\n{"); err != nil {
			t.Fatal(err)
		}
	}
	livez := func(from string) apiResp { return s.do("GET", "/livez", "", nil, "X-Forwarded-For", from) }
	// The held requests are in flight once their handlers run: wait for it.
	deadline := time.Now().Add(20 * time.Second)
	r := livez(client)
	for r.status == http.StatusOK && time.Now().Before(deadline) {
		r = livez(client)
	}
	e := s.expectError(r, http.StatusTooManyRequests, "too_many_requests")
	if !strings.Contains(e.Message, strconv.Itoa(perIP)) || r.header.Get("Retry-After") == "" {
		t.Errorf("429: %+v, Retry-After %q", e, r.header.Get("Retry-After"))
	}
	if r := livez("198.51.100.2"); r.status != http.StatusOK {
		t.Errorf("another client: %s", r)
	}
	if ws, code, body := s.dial(realtimePath, http.Header{"X-Forwarded-For": {client}}); ws == nil {
		t.Errorf("a WebSocket of the capped client: %d %s", code, body)
	}
	if s.metric("pgcast_http_requests_refused_total") < 1 {
		t.Error("refusal not counted")
	}
	held[0].Close() // its handler ends: the place is free again
	for r = livez(client); r.status != http.StatusOK; r = livez(client) {
		if time.Now().After(deadline) {
			t.Fatalf("after a request ended: %s", r)
		}
	}
}

// TestRESTListByteBudget (issue 10 item 1): a page of GET /api/{collection} stops
// before the record that would take it over MaxListBytes and says
// "truncated": true; paging with ?before= serves every record once; a
// record larger than the budget is still served, alone.
func TestRESTListByteBudget(t *testing.T) {
	t.Parallel()
	const budget = 10_000
	s := newStack(t, func(c *Config) { c.HTTP.MaxListBytes = budget })
	c := s.define(1, `{"name":"docs","fields":[{"name":"body","type":"text"}],"permissions":{"read":"public"}}`)
	classID, fieldID := num(t, c["id"]), num(t, c["fields"].([]any)[0].(map[string]any)["id"])
	insert := func(size int) {
		s.exec(`INSERT INTO pgcast.object_records (object_class_id, cells) VALUES ($1, jsonb_build_object($2::text, repeat('x', $3)))`,
			classID, strconv.FormatInt(fieldID, 10), size)
	}
	for range 10 {
		insert(3000)
	}
	insert(3 * budget) // the newest: alone on the first page
	for range 10 {
		insert(3000)
	}
	type page struct {
		Items     []map[string]any `json:"items"`
		Truncated bool             `json:"truncated"`
	}
	get := func(query string) (page, []byte) {
		t.Helper()
		body := s.expectRaw(s.do("GET", "/api/docs?"+query, "", nil), http.StatusOK)
		var p page
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		return p, body
	}
	var (
		seen  []int64
		pages []int
		query = "limit=1000"
	)
	for {
		p, body := get(query)
		if len(p.Items) == 0 {
			t.Fatalf("empty page at %s", query)
		}
		if len(p.Items) > 1 && len(body) > budget {
			t.Errorf("a page of %d records is %d bytes, over the %d budget", len(p.Items), len(body), budget)
		}
		pages = append(pages, len(p.Items))
		for _, it := range p.Items {
			seen = append(seen, int64(it["id"].(float64)))
		}
		if !p.Truncated {
			break
		}
		query = fmt.Sprintf("limit=1000&before=%d", seen[len(seen)-1])
	}
	// 3 records of ~3 kB fit in 10 kB; the large one goes alone.
	if want := []int{3, 3, 3, 1, 1, 3, 3, 3, 1}; fmt.Sprint(pages) != fmt.Sprint(want) {
		t.Errorf("pages of %v records, want %v", pages, want)
	}
	if len(seen) != 21 {
		t.Fatalf("%d records listed, want 21: %v", len(seen), seen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] >= seen[i-1] {
			t.Fatalf("not newest first, or twice: %v", seen)
		}
	}
	if s.metric("pgcast_rest_list_truncated_total") != float64(len(pages)-1) {
		t.Errorf("truncated pages counted: %v, want %d", s.metric("pgcast_rest_list_truncated_total"), len(pages)-1)
	}
	// The limit still applies, and a page it ends is not truncated.
	if p, body := get("limit=2"); len(p.Items) != 2 || p.Truncated || bytes.Contains(body, []byte("truncated")) {
		t.Errorf("limit=2: %s", body)
	}
}

// TestHTTPUnreadResponseIsCut (issue 10 item 1): a response its client never reads
// is cut at the write timeout, so that it does not hold memory for ever.
func TestHTTPUnreadResponseIsCut(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	s := newStack(t, func(c *Config) { c.HTTP.WriteTimeout, c.HTTP.MaxListBytes = timeout, -1 })
	c := s.define(1, `{"name":"docs","fields":[{"name":"body","type":"text"}],"permissions":{"read":"public"}}`)
	// 16 MB: more than the socket buffers between client and server hold.
	s.exec(`INSERT INTO pgcast.object_records (object_class_id, cells) SELECT $1, jsonb_build_object($2::text, repeat('x', 1000000)) FROM generate_series(1, 16)`,
		num(t, c["id"]), strconv.FormatInt(num(t, c["fields"].([]any)[0].(map[string]any)["id"]), 10))
	nc := s.rawConn()
	if err := nc.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(nc, "GET /api/docs?limit=100 HTTP/1.1\r\nHost: pgcast\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	s.waitMetric("pgcast_http_timeouts_total", 1)
	// The server has given up: the client gets less than the response.
	_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	n, _ := io.Copy(io.Discard, nc)
	if n >= 16_000_000 {
		t.Errorf("read %d bytes: the whole response", n)
	}
}

// TestWebSocketOutlivesHTTPTimeouts: the HTTP timeouts do not apply to a
// WebSocket (net/http clears a connection's deadlines when it is hijacked):
// one lives well past all three, writing and reading.
func TestWebSocketOutlivesHTTPTimeouts(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	s := newStack(t, func(c *Config) {
		c.HTTP.ReadTimeout, c.HTTP.WriteTimeout, c.HTTP.IdleTimeout = timeout, timeout, timeout
		c.WS.PingInterval = 50 * time.Millisecond
	})
	start := time.Now()
	ws := s.rtConnect("")
	pings := make(chan time.Time, 100)
	ws.SetPingHandler(func(data string) error {
		select {
		case pings <- time.Now():
		default:
		}
		return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(5*time.Second))
	})
	msgs := make(chan rtMsg, 10)
	go func() {
		defer close(msgs)
		for {
			m, err := rtTryRead(ws, 30*time.Second)
			if err != nil {
				return
			}
			msgs <- m
		}
	}()
	// A ping written well after the write timeout, its pong read after the
	// read timeout: the socket lives.
	for late := false; !late; {
		select {
		case at := <-pings:
			late = at.Sub(start) > 3*timeout
		case <-time.After(20 * time.Second):
			t.Fatal("no more pings")
		}
	}
	rtSend(t, ws, `{"action":"ping"}`)
	select {
	case m, ok := <-msgs:
		if !ok || m.Type != "pong" {
			t.Fatalf("after the timeouts: %v %s", ok, m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no pong after the timeouts")
	}
	ws.Close()
}
