package stream

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

type sliceQueue struct {
	items []Item
	limit int
}

func (q *sliceQueue) Enqueue(it Item) bool {
	if q.limit > 0 && len(q.items) >= q.limit {
		return false
	}
	q.items = append(q.items, it)
	return true
}

func newTestHub(t testing.TB) *Hub {
	h, err := NewHub(HubConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func sub(t testing.TB, h *Hub, o SubscribeOptions) (*Subscription, *sliceQueue) {
	q := &sliceQueue{}
	o.Queue = q
	s, err := h.Subscribe(o)
	if err != nil {
		t.Fatal(err)
	}
	return s, q
}

var ts = time.Date(2025, 1, 16, 11, 7, 57, 954470000, time.UTC)

func recEvent(pos int64, kind Kind, class int64, read Rule, owners ...string) *Event {
	return &Event{Position: pos, Kind: kind, Time: ts, Environment: 1, ClassID: class, ClassName: "posts", Read: read,
		RecordID: 100 + pos, Owners: owners, Record: json.RawMessage(`{"id":1,"title":"Hello"}`)}
}

func TestHubRoutesByEnvironmentClassAndFields(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	admin := Viewer{UserID: "a", Admin: true, Environment: 1}
	_, all := sub(t, h, SubscribeOptions{Viewer: admin, Protocol: ProtocolRecords})
	_, class2 := sub(t, h, SubscribeOptions{Viewer: admin, Protocol: ProtocolRecords, ClassIDs: []int64{2}})
	_, field10 := sub(t, h, SubscribeOptions{Viewer: admin, Protocol: ProtocolRecords, FieldIDs: []int64{10}})
	_, otherEnv := sub(t, h, SubscribeOptions{Viewer: Viewer{UserID: "a", Admin: true, Environment: 2}, Protocol: ProtocolRecords})
	_, tasks := sub(t, h, SubscribeOptions{Viewer: admin, Protocol: ProtocolTasks})

	changed11 := recEvent(1, KindRecordValueChanged, 1, RulePublic)
	changed11.FieldIDs = []int64{11}
	changed10 := recEvent(2, KindRecordValueChanged, 2, RulePublic)
	changed10.FieldIDs = []int64{10, 12}
	created := recEvent(3, KindRecordCreated, 2, RulePublic)
	task := &Event{Position: 4, Kind: KindTaskCreated, Time: ts, Environment: 1, ClassID: 2, TaskID: 7, Read: RulePublic}
	h.Publish([]*Event{changed11, changed10, created, task})

	positions := func(q *sliceQueue) []int64 {
		var out []int64
		for _, it := range q.items {
			out = append(out, it.Event.Position)
		}
		return out
	}
	for name, c := range map[string]struct {
		q    *sliceQueue
		want []int64
	}{
		"all":       {all, []int64{1, 2, 3}},
		"class 2":   {class2, []int64{2, 3}},
		"field 10":  {field10, []int64{2, 3}},
		"other env": {otherEnv, nil},
		"tasks":     {tasks, []int64{4}},
	} {
		if got := positions(c.q); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: got %v, want %v", name, got, c.want)
		}
	}
	// Encoded once: every subscriber shares the same bytes.
	if &all.items[1].Bytes[0] != &class2.items[0].Bytes[0] {
		t.Error("item bytes were encoded per subscriber")
	}
}

func TestHubReadRules(t *testing.T) {
	t.Parallel()
	viewers := map[string]Viewer{
		"admin":  {UserID: "root", Admin: true, Environment: 1},
		"owner":  {UserID: "u1", Environment: 1},
		"other":  {UserID: "u2", Environment: 1},
		"anonym": {Environment: 1},
	}
	want := map[Rule]map[string]bool{
		RulePublic:        {"admin": true, "owner": true, "other": true, "anonym": true},
		RuleAuthenticated: {"admin": true, "owner": true, "other": true},
		RuleOwner:         {"admin": true, "owner": true},
		RuleAdmin:         {"admin": true},
	}
	for rule, allowed := range want {
		for name, v := range viewers {
			for _, proto := range []Protocol{ProtocolRecords, ProtocolRealtime} {
				h := newTestHub(t)
				s, q := sub(t, h, SubscribeOptions{Viewer: v, Protocol: proto})
				if proto == ProtocolRealtime {
					h.AddChannel(s, "posts.*")
				}
				h.Publish([]*Event{recEvent(1, KindRecordCreated, 1, rule, "u1")})
				if got := len(q.items) == 1; got != allowed[name] {
					t.Errorf("rule %s, viewer %s, protocol %d: delivered=%v, want %v", rule, name, proto, got, allowed[name])
				}
			}
		}
	}
}

func TestHubRealtimeChannels(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	v := Viewer{UserID: "u1", Environment: 1}
	both, qBoth := sub(t, h, SubscribeOptions{Viewer: v, Protocol: ProtocolRealtime})
	h.AddChannel(both, "posts.*")
	h.AddChannel(both, "posts.created")
	if n := h.AddChannel(both, "posts.created"); n != 2 {
		t.Fatalf("duplicate channel counted: %d", n)
	}
	exact, qExact := sub(t, h, SubscribeOptions{Viewer: v, Protocol: ProtocolRealtime})
	h.AddChannel(exact, "posts.deleted")
	sys, qSys := sub(t, h, SubscribeOptions{Viewer: Viewer{Environment: 1}, Protocol: ProtocolRealtime})
	h.AddChannel(sys, "system.*")
	auth, qAuth := sub(t, h, SubscribeOptions{Viewer: Viewer{Environment: 1}, Protocol: ProtocolRealtime})
	h.AddChannel(auth, "auth.*")
	mine, qMine := sub(t, h, SubscribeOptions{Viewer: v, Protocol: ProtocolRealtime})
	h.AddChannel(mine, "auth.login")

	h.Publish([]*Event{
		recEvent(1, KindRecordCreated, 1, RulePublic),
		recEvent(2, KindRecordDeleted, 1, RulePublic),
		{Position: 3, Kind: KindCollectionCreated, Time: ts, Environment: 1, ClassName: "posts", Type: "system.collection.created", Source: "system", Payload: json.RawMessage(`{"name":"posts"}`)},
		{Position: 4, Kind: KindPublished, Time: ts, Environment: 1, Type: "auth.login", Source: "auth", Payload: json.RawMessage(`{"userId":"u1"}`)},
	})
	if len(qBoth.items) != 2 {
		t.Errorf("posts.* + posts.created: %d deliveries, want 2 (created once, deleted once)", len(qBoth.items))
	}
	if len(qExact.items) != 1 || qExact.items[0].Event.Position != 2 {
		t.Errorf("posts.deleted got %d", len(qExact.items))
	}
	if len(qSys.items) != 1 {
		t.Errorf("system.* got %d", len(qSys.items))
	}
	if len(qAuth.items) != 0 {
		t.Error("anonymous client received auth.*")
	}
	if len(qMine.items) != 1 {
		t.Error("the user named did not receive its auth.login")
	}
	h.RemoveChannel(both, "posts.*")
	h.RemoveChannel(both, "posts.created")
	h.RemoveChannel(both, "never.subscribed")
	h.Publish([]*Event{recEvent(5, KindRecordCreated, 1, RulePublic)})
	if len(qBoth.items) != 2 {
		t.Error("delivered after unsubscribe")
	}
	for _, s := range []*Subscription{both, exact, sys, auth, mine} {
		h.Unsubscribe(s)
		h.Unsubscribe(s)
	}
	if len(h.envs) != 0 {
		t.Errorf("index not emptied: %d environments", len(h.envs))
	}
}

func TestHubSlowConsumerIsolated(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	v := Viewer{UserID: "a", Admin: true, Environment: 1}
	slow := &sliceQueue{limit: 2}
	if _, err := h.Subscribe(SubscribeOptions{Viewer: v, Protocol: ProtocolRecords, Queue: slow}); err != nil {
		t.Fatal(err)
	}
	_, fast := sub(t, h, SubscribeOptions{Viewer: v, Protocol: ProtocolRecords})
	var evs []*Event
	for i := range 10 {
		evs = append(evs, recEvent(int64(i+1), KindRecordCreated, 1, RulePublic))
	}
	h.Publish(evs)
	if len(slow.items) != 2 || len(fast.items) != 10 {
		t.Fatalf("slow %d (want 2), fast %d (want 10)", len(slow.items), len(fast.items))
	}
}

func TestCatalystItemFormat(t *testing.T) {
	t.Parallel()
	cases := []struct {
		ev   *Event
		want string
	}{
		{&Event{Kind: KindRecordValueChanged, Time: ts, ClassID: 3, RecordID: 9, FieldIDs: []int64{10, 11}},
			`{"object_record_id":9,"object_class_id":3,"event":"object_record_value_changed","timestamp":"2025-01-16T11:07:57.954470+00:00","field_ids":[10,11]}`},
		{&Event{Kind: KindRecordsCountChanged, Time: ts, ClassID: 3, Count: 0},
			`{"object_class_id":3,"event":"object_records_count_changed","timestamp":"2025-01-16T11:07:57.954470+00:00","count":0}`},
		{&Event{Kind: KindRecordOwnerAdded, Time: ts, ClassID: 3, RecordID: 9, UserID: "u\"<1>"},
			`{"object_record_id":9,"object_class_id":3,"event":"object_record_owner_added","timestamp":"2025-01-16T11:07:57.954470+00:00","user_id":"u\"\u003c1\u003e"}`},
		{&Event{Kind: KindRecordDocumentGenerated, Time: ts, ClassID: 3, RecordID: 9, DocumentID: 5},
			`{"object_record_id":9,"object_class_id":3,"event":"object_record_document_generated","timestamp":"2025-01-16T11:07:57.954470+00:00","document_id":5}`},
		{&Event{Kind: KindTaskAssigneeRemoved, Time: ts, ClassID: 3, TaskID: 4, UserID: "u2"},
			`{"task_id":4,"object_class_id":3,"event":"task_assignee_removed","timestamp":"2025-01-16T11:07:57.954470+00:00","user_id":"u2"}`},
	}
	for _, c := range cases {
		got := string(AppendCatalystItem(nil, c.ev))
		if got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("invalid JSON %s", got)
		}
	}
}

func TestRealtimeEventFormat(t *testing.T) {
	t.Parallel()
	ev := recEvent(123, KindRecordCreated, 1, RulePublic)
	got := string(AppendRealtimeEvent(nil, ev, RealtimeType(ev)))
	want := `{"type":"event","event":{"id":"evt_123","type":"posts.created","timestamp":"2025-01-16T11:07:57.954Z","source":"collections","payload":{"id":1,"title":"Hello"}}}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "quote\"back\\slash", "ctl\x01\n\t", "<html>&", "\xff\xfe", "\u2028\u2029", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%q encoded to invalid JSON %s: %v", s, b, err)
		}
		want, _ := json.Marshal(s) // encoding/json also replaces invalid UTF-8
		var w string
		_ = json.Unmarshal(want, &w)
		if back != w {
			t.Fatalf("round trip %q -> %q, want %q", s, back, w)
		}
	})
}

// BenchmarkHubPublish measures routing one event to 1,000 matching
// subscriptions among 10,000 (10 classes).
func BenchmarkHubPublish(b *testing.B) {
	h := newTestHub(b)
	for i := range 10000 {
		q := &discardQueue{}
		if _, err := h.Subscribe(SubscribeOptions{Viewer: Viewer{UserID: fmt.Sprint("u", i), Environment: 1}, Protocol: ProtocolRecords, ClassIDs: []int64{int64(i % 10)}, Queue: q}); err != nil {
			b.Fatal(err)
		}
	}
	evs := []*Event{recEvent(1, KindRecordCreated, 3, RulePublic)}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		h.Publish(evs)
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkHubPublishRealtime: one event to 1,000 wildcard subscribers.
func BenchmarkHubPublishRealtime(b *testing.B) {
	h := newTestHub(b)
	for i := range 1000 {
		s, err := h.Subscribe(SubscribeOptions{Viewer: Viewer{UserID: fmt.Sprint("u", i), Environment: 1}, Protocol: ProtocolRealtime, Queue: &discardQueue{}})
		if err != nil {
			b.Fatal(err)
		}
		h.AddChannel(s, "posts.*")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		h.Publish([]*Event{recEvent(int64(i+1), KindRecordCreated, 3, RulePublic)})
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "deliveries/s")
}

type discardQueue struct{ n int }

func (q *discardQueue) Enqueue(Item) bool { q.n++; return true }

// TestHubPublishAllocations guards the routing path: publishing one event
// allocates the same whether 10 or 500 subscribers receive it (the one
// encoding), never per subscriber.
func TestHubPublishAllocations(t *testing.T) {
	allocsFor := func(n int) float64 {
		h := newTestHub(t)
		for i := range n {
			if _, err := h.Subscribe(SubscribeOptions{Viewer: Viewer{UserID: fmt.Sprint("u", i), Environment: 1}, Protocol: ProtocolRecords, Queue: &discardQueue{}}); err != nil {
				t.Fatal(err)
			}
		}
		evs := []*Event{recEvent(1, KindRecordCreated, 3, RulePublic)}
		return testing.AllocsPerRun(100, func() { h.Publish(evs) })
	}
	few, many := allocsFor(10), allocsFor(500)
	if many != few || many > 8 {
		t.Fatalf("Publish allocates %.0f times for 10 subscribers and %.0f for 500; want equal and small", few, many)
	}
}

// With many owners and assignees the owner rule goes through a set built
// once per event; the answers are the same as with a short list.
func TestHubOwnerRuleWithManyUsers(t *testing.T) {
	t.Parallel()
	for _, n := range []int{3, userIndexMin, 1000} {
		owners := make([]string, n)
		for i := range owners {
			owners[i] = fmt.Sprintf("o%d", i)
		}
		for _, proto := range []Protocol{ProtocolRecords, ProtocolRealtime} {
			h := newTestHub(t)
			var queues []*sliceQueue
			users := []string{"o0", owners[n-1], "a1", "stranger", ""}
			for _, u := range users {
				s, q := sub(t, h, SubscribeOptions{Viewer: Viewer{UserID: u, Environment: 1}, Protocol: proto})
				if proto == ProtocolRealtime {
					h.AddChannel(s, "posts.*")
				}
				queues = append(queues, q)
			}
			ev := recEvent(1, KindRecordCreated, 1, RuleOwner, owners...)
			ev.Assignees = []string{"a1"}
			h.Publish([]*Event{ev})
			for i, want := range []bool{true, true, true, false, false} {
				if got := len(queues[i].items) == 1; got != want {
					t.Errorf("%d owners, protocol %d, user %q: delivered=%v, want %v", n, proto, users[i], got, want)
				}
			}
		}
	}
}
