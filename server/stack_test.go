package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgcast/pgcast/internal/pgtest"
	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/stream"
)

const testSecret = "test-secret-test-secret-test-secret-42"

// stack is a real pgcast: a fresh database, the log reader, the hub and the
// HTTP server on a loopback port.
type stack struct {
	t      *testing.T
	pool   *pgxpool.Pool
	url    string
	srv    *Server
	base   string // http://127.0.0.1:port
	auth   *auth.Authenticator
	hub    *stream.Hub
	logBuf *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newStack(t *testing.T, mutate func(*Config)) *stack {
	t.Helper()
	pool, url := pgtest.NewPool(t)
	return newStackOn(t, pool, url, mutate)
}

// newStackOn is newStack on a migrated database of the caller's.
func newStackOn(t *testing.T, pool *pgxpool.Pool, url string, mutate func(*Config)) *stack {
	t.Helper()
	logBuf := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := NewRegistry()
	hub, err := stream.NewHub(stream.HubConfig{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	reader, err := stream.NewReader(stream.ReaderConfig{URL: url, Handler: hub.Publish, PollInterval: 200 * time.Millisecond, Logger: logger, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := reader.Start(ctx); err != nil {
		t.Fatal(err)
	}
	auth, err := auth.NewAuthenticator(auth.Config{Secret: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Addr: "127.0.0.1:0", InternalAddr: "off", Pool: pool, Logger: logger, Registry: reg, Hub: hub, Auth: auth,
		ShutdownGrace: 10 * time.Millisecond} // tests that need a longer grace set it
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("stop server: %v", err)
		}
		if err := reader.Stop(ctx); err != nil {
			t.Errorf("stop reader: %v", err)
		}
	})
	return &stack{t: t, pool: pool, url: url, srv: srv, base: "http://" + srv.Addr().String(), auth: auth, hub: hub, logBuf: logBuf}
}

func (s *stack) exec(sql string, args ...any) {
	s.t.Helper()
	if _, err := s.pool.Exec(context.Background(), sql, args...); err != nil {
		s.t.Fatalf("%s: %v", sql, err)
	}
}

func (s *stack) queryInt(sql string, args ...any) int64 {
	s.t.Helper()
	var v int64
	if err := s.pool.QueryRow(context.Background(), sql, args...).Scan(&v); err != nil {
		s.t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// token mints a JWT.
func (s *stack) token(sub string, role auth.Role, env int64) string {
	s.t.Helper()
	tok, err := s.auth.Mint(sub, role, env, time.Hour)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// ticket fetches a ws-auth ticket with a JWT.
func (s *stack) ticket(sub string, role auth.Role, env int64) string {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.base+"/api/users/ws-auth/", nil)
	req.Header.Set("Authorization", "Bearer "+s.token(sub, role, env))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		UUID string `json:"uuid"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&body) != nil || body.UUID == "" {
		s.t.Fatalf("ws-auth: %d", resp.StatusCode)
	}
	return body.UUID
}

// dial opens a WebSocket; on a refused handshake it returns the status and
// body.
func (s *stack) dial(path string, header http.Header) (*websocket.Conn, int, string) {
	s.t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.base, "http")+path, header)
	if err != nil {
		if resp == nil {
			s.t.Fatalf("dial %s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, resp.StatusCode, string(b)
	}
	s.t.Cleanup(func() { ws.Close() })
	return ws, 101, ""
}

func (s *stack) connect(path string) *websocket.Conn {
	s.t.Helper()
	ws, code, body := s.dial(path, nil)
	if ws == nil {
		s.t.Fatalf("connect %s: %d %s", path, code, body)
	}
	return ws
}

// class creates an object class with fields and returns its id and the
// field ids by name.
func (s *stack) class(env int64, name, read string, fields ...string) (int64, map[string]int64) {
	s.t.Helper()
	id := s.queryInt(`INSERT INTO pgcast.object_classes (environment_id, name, read_rule) VALUES ($1, $2, $3) RETURNING id`, env, name, read)
	ids := map[string]int64{}
	for i, f := range fields {
		ids[f] = s.queryInt(`INSERT INTO pgcast.object_class_fields (object_class_id, name, type, position) VALUES ($1, $2, 'string', $3) RETURNING id`, id, f, i)
	}
	return id, ids
}

type item struct {
	ObjectRecordID int64   `json:"object_record_id"`
	TaskID         int64   `json:"task_id"`
	ObjectClassID  int64   `json:"object_class_id"`
	Event          string  `json:"event"`
	Timestamp      string  `json:"timestamp"`
	FieldIDs       []int64 `json:"field_ids"`
	UserID         string  `json:"user_id"`
	DocumentID     int64   `json:"document_id"`
	Count          *int64  `json:"count"`
	raw            map[string]json.RawMessage
}

type frame struct {
	at    time.Time
	items []item
}

// readFrame reads one Catalyst frame within timeout.
func readFrame(t *testing.T, ws *websocket.Conn, timeout time.Duration) (frame, error) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(timeout))
	typ, data, err := ws.ReadMessage()
	if err != nil {
		return frame{}, err
	}
	if typ != websocket.TextMessage {
		t.Fatalf("frame type %d", typ)
	}
	f := frame{at: time.Now()}
	var raws []map[string]json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		t.Fatalf("frame is not a JSON array: %s", data)
	}
	if err := json.Unmarshal(data, &f.items); err != nil {
		t.Fatal(err)
	}
	for i := range f.items {
		f.items[i].raw = raws[i]
	}
	return f, nil
}

// readItems reads frames until n items have arrived.
func readItems(t *testing.T, ws *websocket.Conn, n int, timeout time.Duration) []item {
	t.Helper()
	var out []item
	deadline := time.Now().Add(timeout)
	for len(out) < n {
		f, err := readFrame(t, ws, time.Until(deadline))
		if err != nil {
			t.Fatalf("after %d of %d items: %v", len(out), n, err)
		}
		if len(f.items) == 0 {
			t.Fatal("empty frame")
		}
		out = append(out, f.items...)
	}
	if len(out) != n {
		t.Fatalf("got %d items, want %d", len(out), n)
	}
	return out
}

// expectSilence asserts no frame arrives within d.
func expectSilence(t *testing.T, ws *websocket.Conn, d time.Duration) {
	t.Helper()
	f, err := readFrame(t, ws, d)
	if err == nil {
		t.Fatalf("unexpected frame: %+v", f.items)
	}
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("unexpected error: %v", err)
	}
}

func (it item) String() string {
	return fmt.Sprintf("%s(rec=%d task=%d class=%d)", it.Event, it.ObjectRecordID, it.TaskID, it.ObjectClassID)
}
