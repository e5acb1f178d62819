package stream_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgcast/pgcast/internal/pgtest"
	"github.com/pgcast/pgcast/stream"
)

func replayAll(t *testing.T, pool *pgxpool.Pool, o stream.ReplayOptions) []*stream.Event {
	t.Helper()
	var out []*stream.Event
	if err := stream.Replay(context.Background(), pool, o, func(ev *stream.Event) error {
		out = append(out, ev)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func positions(evs []*stream.Event) []int64 {
	out := make([]int64, len(evs))
	for i, ev := range evs {
		out[i] = ev.Position
	}
	return out
}

func queryInt(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int64 {
	t.Helper()
	var v int64
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// TestReplayPagesInPositionOrder: every committed entry after the position,
// once, in order, across pages; environments and namespaces filtered;
// undecodable entries skipped without stopping the replay.
func TestReplayPagesInPositionOrder(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	mustExec(t, pool, `INSERT INTO pgcast.environments (id, name) VALUES (2, 'second')`)
	first := queryInt(t, pool, `SELECT pgcast.publish('job.started', '{"seq":0}')`)
	for i := 1; i <= 25; i++ {
		mustExec(t, pool, `SELECT pgcast.publish('job.completed', jsonb_build_object('seq', $1::int))`, i)
	}
	mustExec(t, pool, `BEGIN; SET LOCAL pgcast.environment = '2'; SELECT pgcast.publish('job.completed', '{"seq":99}'); COMMIT`)
	mustExec(t, pool, `INSERT INTO pgcast.events (kind, environment_id, data) VALUES ('no_such_kind', 1, '{}')`)
	mustExec(t, pool, `SELECT pgcast.publish('auth.login', '{"userId":"u1"}')`)
	cls := queryInt(t, pool, `INSERT INTO pgcast.object_classes (name, read_rule) VALUES ('posts', 'public') RETURNING id`)
	rec := queryInt(t, pool, `INSERT INTO pgcast.object_records (object_class_id) VALUES ($1) RETURNING id`, cls)
	mustExec(t, pool, `DELETE FROM pgcast.object_records WHERE id = $1`, rec)
	// A rolled-back entry is never replayed.
	mustExec(t, pool, `BEGIN; SELECT pgcast.publish('job.failed', '{}'); ROLLBACK`)

	all := replayAll(t, pool, stream.ReplayOptions{Environment: 1, PageSize: 4})
	var kinds []string
	for _, ev := range all {
		kinds = append(kinds, ev.Kind.String())
		if ev.Environment != 1 {
			t.Fatalf("environment %d replayed", ev.Environment)
		}
	}
	// 26 jobs, auth.login, collection_created, created, deleted (counts are
	// not in the log: the reader derives them).
	if len(all) != 30 || !slices.IsSorted(positions(all)) || all[0].Position != first {
		t.Fatalf("replayed %d: %v", len(all), kinds)
	}
	if ev := all[0]; ev.Type != "job.started" || ev.Source != "jobs" || string(ev.Payload) != `{"seq": 0}` {
		t.Fatalf("first event %+v", ev)
	}

	after := replayAll(t, pool, stream.ReplayOptions{Environment: 1, After: all[10].Position, PageSize: 3})
	if !slices.Equal(positions(after), positions(all[11:])) {
		t.Fatalf("after %d: %v, want %v", all[10].Position, positions(after), positions(all[11:]))
	}

	for ns, want := range map[string][]string{
		"job":    slices.Repeat([]string{"published"}, 26),
		"auth":   {"published"},
		"system": {"collection_created"},
		"posts":  {"object_record_created", "object_record_deleted"},
		"post":   nil,
		"po_ts":  nil, // "_" is not a wildcard
	} {
		var got []string
		for _, ev := range replayAll(t, pool, stream.ReplayOptions{Environment: 1, Namespace: ns, PageSize: 5}) {
			got = append(got, ev.Kind.String())
		}
		if !slices.Equal(got, want) {
			t.Errorf("namespace %s: %v, want %v", ns, got, want)
		}
	}
	if got := replayAll(t, pool, stream.ReplayOptions{Environment: 2}); len(got) != 1 {
		t.Errorf("environment 2: %d events", len(got))
	}
}

// TestReplayEndsAtTheLogEndWhenItStarted: entries written while the replay
// runs, after its range, do not keep it going.
func TestReplayEndsAtTheLogEndWhenItStarted(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	for i := range 10 {
		mustExec(t, pool, `SELECT pgcast.publish('job.completed', jsonb_build_object('seq', $1::int))`, i)
	}
	n := 0
	err := stream.Replay(context.Background(), pool, stream.ReplayOptions{Environment: 1, PageSize: 2}, func(*stream.Event) error {
		n++
		mustExec(t, pool, `SELECT pgcast.publish('job.completed', '{}')`)
		return nil
	})
	if err != nil || n != 10 {
		t.Fatalf("replayed %d (%v), want 10", n, err)
	}
	stop := errors.New("stop")
	if err := stream.Replay(context.Background(), pool, stream.ReplayOptions{Environment: 1}, func(*stream.Event) error { return stop }); err != stop {
		t.Fatalf("fn's error: %v", err)
	}
}

// TestReplayPruned is R11 at the stream level: a position after which
// entries were pruned gives ErrPruned; the pruning horizon itself does not.
func TestReplayPruned(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	var ids []int64
	for i := range 10 {
		ids = append(ids, queryInt(t, pool, `SELECT pgcast.publish('job.completed', jsonb_build_object('seq', $1::int))`, i))
	}
	mustExec(t, pool, `DELETE FROM pgcast.events WHERE id <= $1`, ids[4])
	mustExec(t, pool, `UPDATE pgcast.event_log SET pruned_through = $1`, ids[4])
	for _, after := range []int64{0, ids[0], ids[3]} {
		err := stream.Replay(context.Background(), pool, stream.ReplayOptions{Environment: 1, After: after}, func(*stream.Event) error { return nil })
		if !errors.Is(err, stream.ErrPruned) {
			t.Errorf("after %d: %v, want ErrPruned", after, err)
		}
	}
	if got := replayAll(t, pool, stream.ReplayOptions{Environment: 1, After: ids[4]}); !slices.Equal(positions(got), ids[5:]) {
		t.Errorf("after the horizon: %v", positions(got))
	}
	// Pruned while replaying: the next page notices.
	err := stream.Replay(context.Background(), pool, stream.ReplayOptions{Environment: 1, After: ids[4], PageSize: 2}, func(ev *stream.Event) error {
		if ev.Position == ids[5] {
			mustExec(t, pool, `DELETE FROM pgcast.events WHERE id <= $1`, ids[8])
			mustExec(t, pool, `UPDATE pgcast.event_log SET pruned_through = $1`, ids[8])
		}
		return nil
	})
	if !errors.Is(err, stream.ErrPruned) {
		t.Fatalf("pruned during replay: %v", err)
	}
	if err := stream.Replay(context.Background(), pool, stream.ReplayOptions{}, func(*stream.Event) error { return nil }); err == nil {
		t.Fatal("no environment accepted")
	}
}

type itemQueue struct{ items []stream.Item }

func (q *itemQueue) Enqueue(it stream.Item) bool { q.items = append(q.items, it); return true }

// TestChannelMatchesAndVisibleAgreeWithHub: the helpers a replay filters with
// decide exactly as the hub routes.
func TestChannelMatchesAndVisibleAgreeWithHub(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 6, 8, 12, 0, 0, 0, time.UTC)
	var events []*stream.Event
	pos := int64(0)
	for _, kind := range []stream.Kind{stream.KindRecordCreated, stream.KindRecordValueChanged, stream.KindRecordDeleted} {
		for _, rule := range []stream.Rule{stream.RulePublic, stream.RuleAuthenticated, stream.RuleOwner, stream.RuleAdmin} {
			for _, class := range []string{"posts", "post", "posts_x"} {
				pos++
				events = append(events, &stream.Event{Position: pos, Kind: kind, Time: at, Environment: 1, ClassID: 1, ClassName: class, Read: rule,
					Owners: []string{"o1"}, Record: json.RawMessage(`{"id":1}`)})
			}
		}
	}
	for _, p := range []struct{ typ, payload string }{
		{"auth.login", `{"userId":"u1"}`}, {"auth.logout", `{"userId":"o1"}`}, {"auth.register", `{}`},
		{"storage.uploaded", `{"userId":"u1"}`}, {"storage.deleted", `{"userId":"u1","visibility":"public"}`},
		{"job.completed", `{}`}, {"function.failed", `{}`}, {"billing.paid", `{}`},
	} {
		pos++
		events = append(events, &stream.Event{Position: pos, Kind: stream.KindPublished, Time: at, Environment: 1, Type: p.typ, Source: "x", Payload: json.RawMessage(p.payload)})
	}
	pos++
	events = append(events, &stream.Event{Position: pos, Kind: stream.KindCollectionCreated, Time: at, Environment: 1, ClassName: "posts",
		Type: "system.collection.created", Source: "system", Payload: json.RawMessage(`{"name":"posts"}`)})
	channels := []string{"posts.created", "posts.updated", "posts.deleted", "posts.*", "post.*", "posts", "posts.created.x",
		"auth.*", "auth.login", "storage.*", "job.*", "function.failed", "billing.*", "system.*", "system.collection.*",
		"system.collection.created", "system.collection", "*"}
	viewers := []stream.Viewer{
		{Environment: 1}, {UserID: "u1", Environment: 1}, {UserID: "o1", Environment: 1}, {UserID: "root", Admin: true, Environment: 1},
	}
	for _, v := range viewers {
		for _, ch := range channels {
			h, err := stream.NewHub(stream.HubConfig{})
			if err != nil {
				t.Fatal(err)
			}
			q := &itemQueue{}
			s, err := h.Subscribe(stream.SubscribeOptions{Viewer: v, Protocol: stream.ProtocolRealtime, Queue: q})
			if err != nil {
				t.Fatal(err)
			}
			h.AddChannel(s, ch)
			h.Publish(events)
			var want []int64
			for _, ev := range events {
				if stream.ChannelMatches(ch, stream.RealtimeType(ev)) && stream.Visible(v, ev) {
					want = append(want, ev.Position)
				}
			}
			var got []int64
			for _, it := range q.items {
				got = append(got, it.Event.Position)
			}
			if !slices.Equal(got, want) {
				t.Errorf("viewer %+v, channel %s: hub %v, helpers %v", v, ch, got, want)
			}
		}
	}
	for _, c := range []struct {
		ch, typ string
		want    bool
	}{
		{"posts.*", "posts.created", true}, {"posts.*", "postsx.created", false}, {"posts.*", "posts", false},
		{"system.*", "system.collection.created", true}, {"*", "posts.created", false}, {"posts.created", "posts.created", true},
		{"posts.created", "", false}, {"posts.*", "", false},
	} {
		if got := stream.ChannelMatches(c.ch, c.typ); got != c.want {
			t.Errorf("ChannelMatches(%q, %q) = %v", c.ch, c.typ, got)
		}
	}
}
