package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pgcast/pgcast/internal/pgcluster"
	"github.com/pgcast/pgcast/internal/pgtest"
	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/catalyst"
	"github.com/pgcast/pgcast/server/internal/wstest"
	pgws "github.com/pgcast/pgcast/server/ws"
)

// TestClientsStayConnectedAcrossPostgresRestart is R3 seen from the
// clients: Postgres restarts (fast, then immediate) under a server with
// clients on both protocols; no client is disconnected, /readyz comes back,
// and every change committed before and after each restart reaches them.
func TestClientsStayConnectedAcrossPostgresRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cluster, url, pool := pgtest.PrivateCluster(t, pgcluster.Config{Durable: true})
	s := newStackOn(t, pool, url, func(c *Config) { c.Catalyst = catalyst.Config{MessageLimit: 1000, MessageTime: 50 * time.Millisecond} })
	cls, f := s.class(1, "posts", "public", "title")
	rt := s.rtConnect("")
	rtSubscribe(t, rt, "posts.*")
	cat := s.connect(recordsPath + "?uuid=" + s.ticket("u1", auth.RoleAuthenticated, 1))

	// insert commits one record, retrying while the pool finds its
	// connections broken by the restart.
	insert := func(title string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err := pool.Exec(ctx, `INSERT INTO pgcast.object_records (object_class_id, cells) VALUES ($1, jsonb_build_object($2::text, $3::text))`, cls, fmt.Sprint(f["title"]), title)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("insert %s: %v", title, err)
			}
			time.Sleep(20 * time.Millisecond) // Postgres is coming back: no signal to wait on
		}
	}
	expect := func(title string) {
		t.Helper()
		m := rtRead(t, rt, 30*time.Second)
		var rec struct{ Title string }
		if m.Type != "event" || m.Event.Type != "posts.created" || json.Unmarshal(m.Event.Payload, &rec) != nil || rec.Title != title {
			t.Fatalf("realtime: got %s, want posts.created %q", m, title)
		}
		for created := false; !created; {
			fr, err := readFrame(t, cat, 30*time.Second)
			if err != nil {
				t.Fatalf("Catalyst client, waiting for %q: %v", title, err)
			}
			for _, it := range fr.items {
				created = created || it.Event == "object_record_created"
			}
		}
	}
	insert("before")
	expect("before")
	for _, mode := range []string{"fast", "immediate"} {
		if err := cluster.Restart(ctx, mode); err != nil {
			t.Fatal(err)
		}
		insert("after " + mode)
		expect("after " + mode)
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Get(s.base + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz not 200 within 30 s of the %s restart", mode)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if m := rtAsk(t, rt, `{"action":"ping"}`); m.Type != "pong" {
		t.Fatalf("realtime client after the restarts: %s", m)
	}
}

// TestShutdownOfAThousandClients is R8: on Stop, readiness fails before any
// socket closes; the sockets are closed with 1001 in batches (CloseBatch at
// a time, CloseBatchPause apart) so that clients do not all reconnect at the
// same instant; Stop returns within its deadline.
func TestShutdownOfAThousandClients(t *testing.T) {
	t.Parallel()
	const (
		clients = 1000
		batch   = 100
		pause   = 30 * time.Millisecond
	)
	s := newStack(t, func(c *Config) { c.CloseBatch, c.CloseBatchPause = batch, pause })
	wsURL := "ws" + strings.TrimPrefix(s.base, "http") + realtimePath
	conns := make([]*websocket.Conn, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				ws, _, err := websocket.DefaultDialer.Dial(wsURL, nil)
				if err != nil {
					errs[i] = err
					continue
				}
				conns[i] = ws
				if m, err := rtTryRead(ws, 10*time.Second); err != nil || m.Type != "connected" {
					errs[i] = fmt.Errorf("client %d: %s %v", i, m, err)
				}
			}
		})
	}
	for i := range clients {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, ws := range conns {
		if ws != nil {
			defer ws.Close()
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	type closed struct {
		code int
		at   time.Time
	}
	results := make(chan closed, clients)
	for _, ws := range conns {
		go func() {
			code, _ := wstest.ReadUntilClose(ws, 20*time.Second)
			results <- closed{code, time.Now()}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- s.srv.Stop(ctx) }()

	first := <-results
	// The public listener serves until every socket is closed: readiness
	// already says 503 when the first client learns of the shutdown.
	resp, err := http.Get(s.base + "/readyz")
	if err != nil {
		t.Fatalf("/readyz at the first close: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz at the first close: %d, want 503", resp.StatusCode)
	}
	last, codes := first.at, map[int]int{first.code: 1}
	for range clients - 1 {
		r := <-results
		codes[r.code]++
		if r.at.After(last) {
			last = r.at
		}
	}
	if codes[pgws.CloseGoingAway] != clients {
		t.Errorf("close codes %v, want %d × 1001", codes, clients)
	}
	// Ten batches, nine pauses between them.
	if spread, want := last.Sub(first.at), (clients/batch-1)*pause*8/10; spread < want {
		t.Errorf("closes spread over %v, want at least %v (batches of %d, %v apart)", spread, want, batch, pause)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d clients closed over %v; Stop took %v", clients, last.Sub(first.at).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
