package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/catalyst"
)

// A watched table of the application, end to end: written with plain SQL,
// delivered by the real reader, hub and server to WebSocket clients.

func (s *stack) watch(def db.WatchDefinition) db.Watch {
	s.t.Helper()
	var res db.WatchApplyResult
	err := pgx.BeginFunc(context.Background(), s.pool, func(tx pgx.Tx) error {
		var err error
		res, err = db.ApplyWatch(context.Background(), tx, 1, def)
		return err
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return res.Watch
}

func TestWatchRealtime(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.exec(`CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, status text, card text)`)
	s.watch(db.WatchDefinition{Table: "public.orders", Read: "owner", OwnerColumns: []string{"customer"},
		Columns: db.WatchColumns{Exclude: []string{"card"}}})

	alice := s.rtConnect(s.token("alice", auth.RoleAuthenticated, 1))
	bob := s.rtConnect(s.token("bob", auth.RoleAuthenticated, 1))
	admin := s.rtConnect(s.token("root", auth.RoleAdmin, 1))
	anon := s.rtConnect("")
	for _, ws := range []*websocket.Conn{alice, bob, admin, anon} {
		rtSubscribe(t, ws, "orders.*", "system.done")
	}
	s.exec(`INSERT INTO orders VALUES (1, 'alice', 'new', '4242-secret'), (2, 'bob', 'new', '1111-secret')`)
	s.exec(`UPDATE orders SET status = 'paid', card = '4343-secret' WHERE id = 1`)
	s.exec(`UPDATE orders SET card = 'no event' WHERE id = 2`)
	s.exec(`DELETE FROM orders WHERE id = 1`)
	s.publishDone(1, "end")

	want := map[*websocket.Conn][]string{
		alice: {"orders.created 1", "orders.updated 1", "orders.deleted 1"},
		bob:   {"orders.created 2"},
		admin: {"orders.created 1", "orders.created 2", "orders.updated 1", "orders.deleted 1"},
		anon:  nil,
	}
	var first int64
	for ws, w := range want {
		evs := rtEventsUntilDone(t, ws, "end")
		var got []string
		for _, e := range evs {
			got = append(got, fmt.Sprintf("%s %d", e.Type, e.recordID(t)))
			if e.Source != "collections" || strings.Contains(string(e.Payload), "secret") || strings.Contains(string(e.Payload), `"card"`) {
				t.Errorf("event %s %s", e.Type, e.Payload)
			}
		}
		if !slices.Equal(got, w) {
			t.Errorf("got %v, want %v", got, w)
		}
		if ws == alice {
			first = evs[0].position(t)
			var p map[string]any
			if err := json.Unmarshal(evs[1].Payload, &p); err != nil {
				t.Fatal(err)
			}
			if p["id"] != float64(1) || p["status"] != "paid" || p["customer"] != "alice" || len(p) != 3 {
				t.Errorf("updated payload %s", evs[1].Payload)
			}
		}
	}

	// Resume replays the watched table's events from the log.
	again := s.rtConnect(s.token("alice", auth.RoleAuthenticated, 1))
	rtSend(t, again, fmt.Sprintf(`{"action":"subscribe","channel":"orders.*","since":"evt_%d"}`, first))
	if m := rtRead(t, again, 10*time.Second); m.Type != "subscribed" {
		t.Fatalf("resume: %s", m)
	}
	for _, w := range []string{"orders.updated", "orders.deleted"} {
		if m := rtRead(t, again, 10*time.Second); m.Event == nil || m.Event.Type != w {
			t.Fatalf("replayed %s, want %s", m, w)
		}
	}
}

func TestWatchCatalyst(t *testing.T) {
	t.Parallel()
	s := newStack(t, func(c *Config) { c.Catalyst = catalyst.Config{MessageLimit: 1000, MessageTime: 50 * time.Millisecond} })
	s.exec(`CREATE TABLE orders (id int PRIMARY KEY, status text, total numeric)`)
	s.exec(`CREATE TABLE skus (code text PRIMARY KEY, status text)`)
	orders := s.watch(db.WatchDefinition{Table: "orders", Read: "public", Counts: true})
	skus := s.watch(db.WatchDefinition{Table: "skus", Read: "public"})
	status := 0
	for _, c := range orders.Columns {
		if c.Name == "status" {
			status = int(c.ID)
		}
	}
	ws := s.connect(fmt.Sprintf("%s?uuid=%s&object_class_ids=%d,%d", recordsPath, s.ticket("root", auth.RoleAdmin, 1), orders.ClassID, skus.ClassID))
	rt := s.rtConnect("")
	rtSubscribe(t, rt, "skus.*")

	s.exec(`INSERT INTO orders VALUES (7, 'new', 1)`)
	s.exec(`UPDATE orders SET status = 'paid' WHERE id = 7`)
	s.exec(`INSERT INTO skus VALUES ('A-1', 'new')`) // realtime only: no integer id
	s.exec(`DELETE FROM orders WHERE id = 7`)
	// Count items of one class in one batch coalesce (the newest count
	// replaces the one buffered): read until the deletion and a count of 0.
	var changes []string
	var lastCount int64 = -1
	var fieldIDs []int64
	for len(changes) < 3 || lastCount != 0 {
		f, err := readFrame(t, ws, 10*time.Second)
		if err != nil {
			t.Fatalf("after %v (count %d): %v", changes, lastCount, err)
		}
		for _, it := range f.items {
			if it.ObjectClassID != orders.ClassID {
				t.Fatalf("item of class %d: %s", it.ObjectClassID, it)
			}
			switch it.Event {
			case "object_records_count_changed":
				lastCount = *it.Count
			case "object_record_value_changed":
				fieldIDs = it.FieldIDs
				fallthrough
			default:
				changes = append(changes, it.String())
			}
		}
	}
	want := []string{
		fmt.Sprintf("object_record_created(rec=7 task=0 class=%d)", orders.ClassID),
		fmt.Sprintf("object_record_value_changed(rec=7 task=0 class=%d)", orders.ClassID),
		fmt.Sprintf("object_record_deleted(rec=7 task=0 class=%d)", orders.ClassID),
	}
	if !slices.Equal(changes, want) || !slices.Equal(fieldIDs, []int64{int64(status)}) {
		t.Fatalf("items %v, want %v; field ids %v, want [%d]", changes, want, fieldIDs, status)
	}
	if m := rtRead(t, rt, 10*time.Second); m.Event == nil || m.Event.Type != "skus.created" || !strings.Contains(string(m.Event.Payload), `"id":"A-1"`) {
		t.Fatalf("skus on realtime: %s", m)
	}
	expectSilence(t, ws, 300*time.Millisecond)
}

func TestWatchListedAndRefusedByRecordEndpoints(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.exec(`CREATE TABLE orders (id int PRIMARY KEY, status text)`)
	w := s.watch(db.WatchDefinition{Table: "orders"})
	admin := s.token("root", auth.RoleAdmin, 1)
	r := s.do(http.MethodGet, "/api/collections", admin, nil)
	var list struct {
		Items []struct {
			ID     int64  `json:"id"`
			Name   string `json:"name"`
			Table  string `json:"table"`
			Fields []struct {
				ID   int64  `json:"id"`
				Name string `json:"name"`
			} `json:"fields"`
		} `json:"items"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil || r.status != 200 {
		t.Fatalf("%s: %v", r, err)
	}
	if len(list.Items) != 1 || list.Items[0].ID != w.ClassID || list.Items[0].Table != "public.orders" || len(list.Items[0].Fields) != 2 {
		t.Fatalf("collections: %s", r)
	}
	for _, req := range []struct{ method, path string }{
		{http.MethodGet, "/api/orders"}, {http.MethodPost, "/api/orders"}, {http.MethodGet, "/api/orders/1"},
		{http.MethodPut, "/api/orders/1"}, {http.MethodDelete, "/api/orders/1"},
	} {
		var body any
		if req.method == http.MethodPost || req.method == http.MethodPut {
			body = map[string]any{"status": "x"}
		}
		r := s.do(req.method, req.path, admin, body)
		if r.status != http.StatusConflict || !strings.Contains(string(r.body), `"watched_table"`) || !strings.Contains(string(r.body), "streams table public.orders") {
			t.Errorf("%s %s: %s", req.method, req.path, r)
		}
	}
	if n := s.queryInt(`SELECT count(*) FROM pgcast.object_records`); n != 0 {
		t.Fatalf("%d records created", n)
	}
}

// Rows of a watch with env_column reach the subscribers of their own
// environment only, whichever environment the watch was applied in.
func TestWatchEnvironmentColumnRealtime(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.exec(`INSERT INTO pgcast.environments (id, name) VALUES (2, 'two'), (3, 'three')`)
	s.exec(`CREATE TABLE notes (id int PRIMARY KEY, tenant_id int NOT NULL, body text)`)
	s.watch(db.WatchDefinition{Table: "notes", Read: "authenticated", EnvColumn: "tenant_id"})
	two := s.rtConnect(s.token("u2", auth.RoleAuthenticated, 2))
	three := s.rtConnect(s.token("u3", auth.RoleAuthenticated, 3))
	for _, ws := range []*websocket.Conn{two, three} {
		rtSubscribe(t, ws, "notes.*", "system.done")
	}
	s.exec(`INSERT INTO notes VALUES (1, 2, 'for two'), (2, 3, 'for three'), (3, 1, 'for one')`)
	s.exec(`UPDATE notes SET tenant_id = 3 WHERE id = 1`)
	s.publishDone(2, "end")
	s.publishDone(3, "end")
	for ws, want := range map[*websocket.Conn][]string{
		two:   {"notes.created 1", "notes.deleted 1"},
		three: {"notes.created 2", "notes.created 1"},
	} {
		var got []string
		for _, e := range rtEventsUntilDone(t, ws, "end") {
			got = append(got, fmt.Sprintf("%s %d", e.Type, e.recordID(t)))
		}
		if !slices.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	}
}

func TestWatchesAPI(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.exec(`INSERT INTO pgcast.environments (id, name) VALUES (2, 'two')`)
	s.exec(`CREATE TABLE orders (id int PRIMARY KEY, customer text, card text)`)
	s.exec(`CREATE TABLE nokey (a int)`)
	admin := s.token("root", auth.RoleAdmin, 1)
	def := map[string]any{"table": "public.orders", "columns": map[string]any{"exclude": []string{"card"}}, "read": "owner", "owner_columns": []string{"customer"}}

	for _, c := range []struct {
		method, path, token string
		body                any
		status              int
		want                string
	}{
		{http.MethodPut, "/api/watches/orders", s.token("u1", auth.RoleAuthenticated, 1), def, 403, `"forbidden"`},
		{http.MethodPut, "/api/watches/orders", s.token("root2", auth.RoleAdmin, 2), def, 403, "only admins of environment 1"},
		{http.MethodPut, "/api/watches/orders", admin, map[string]any{"table": "public.orders", "colums": map[string]any{}}, 400, `unknown key \"colums\"`},
		{http.MethodPut, "/api/watches/nokey", admin, map[string]any{"table": "public.nokey"}, 400, "has no primary key"},
		{http.MethodPut, "/api/watches/orders", admin, map[string]any{"table": "public.orders", "name": "other"}, 400, `differs from the path's`},
		{http.MethodGet, "/api/watches/orders", admin, nil, 404, `no watch \"orders\"`},
		{http.MethodPut, "/api/watches/orders", admin, def, 201, `"changes":["created watch orders`},
		{http.MethodPut, "/api/watches/orders", admin, def, 200, `"changes":[]`},
		{http.MethodPut, "/api/watches/orders2", admin, def, 409, `table public.orders is already watched as \"orders\"`},
		{http.MethodGet, "/api/watches", admin, nil, 200, `"status":"ok"`},
		{http.MethodGet, "/api/watches/orders", admin, nil, 200, `"excluded":["card"]`},
		{http.MethodPost, "/api/watches/orders", admin, nil, 405, `"method_not_allowed"`},
		{http.MethodDelete, "/api/watches/orders", admin, nil, 204, ``},
		{http.MethodDelete, "/api/watches/orders", admin, nil, 404, `no watch \"orders\"`},
		{http.MethodGet, "/api/watches", admin, nil, 200, `{"items":[]}`},
	} {
		r := s.do(c.method, c.path, c.token, c.body)
		if r.status != c.status || !strings.Contains(string(r.body), c.want) {
			t.Errorf("%s %s: %s; want %d …%s…", c.method, c.path, r, c.status, c.want)
		}
	}
	if n := s.queryInt(`SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass`); n != 0 {
		t.Fatalf("%d triggers left after DELETE", n)
	}
}
