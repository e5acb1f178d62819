package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/pgcluster"
)

// TestClientsStayConnectedAcrossPostgresRestart is R3 seen from the
// clients: Postgres restarts (fast, then immediate) under a server with
// clients on both protocols; no client is disconnected, /readyz comes back,
// and every change committed before and after each restart reaches them.
func TestClientsStayConnectedAcrossPostgresRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cluster, err := pgcluster.Start(ctx, pgcluster.Config{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Stop(context.Background()) })
	url := cluster.DSN("postgres")
	m, err := db.NewMigrator(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	m.Close()
	pool, err := db.NewPool(ctx, db.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := newStackOn(t, pool, url, func(c *Config) { c.Catalyst = CatalystConfig{MessageLimit: 1000, MessageTime: 50 * time.Millisecond} })
	cls, f := s.class(1, "posts", "public", "title")
	rt := s.rtConnect("")
	rtSubscribe(t, rt, "posts.*")
	cat := s.connect(recordsPath + "?uuid=" + s.ticket("u1", RoleAuthenticated, 1))

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
