package stream

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func mustOptions(t testing.TB, filter, sel string) *ChannelOptions {
	t.Helper()
	f, err := ParseFilter(filter)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSelect(sel)
	if err != nil {
		t.Fatal(err)
	}
	return &ChannelOptions{Filter: f, Select: s}
}

func orderEvent(pos int64, kind Kind, record, old string) *Event {
	ev := &Event{Position: pos, Kind: kind, Time: ts, Environment: 1, ClassID: 1, ClassName: "orders", Read: RulePublic,
		RecordID: 7, Record: json.RawMessage(record)}
	if old != "" {
		ev.Old = json.RawMessage(old)
	}
	return ev
}

// frames returns the event members of the frames in q, "transition" and
// the payload as text.
func frames(t *testing.T, q *sliceQueue) []string {
	t.Helper()
	var out []string
	for _, it := range q.items {
		var m struct {
			Event struct {
				Type       string          `json:"type"`
				Payload    json.RawMessage `json:"payload"`
				Transition string          `json:"transition"`
			} `json:"event"`
		}
		if err := json.Unmarshal(it.Bytes, &m); err != nil {
			t.Fatalf("frame %s: %v", it.Bytes, err)
		}
		s := m.Event.Type + " " + string(m.Event.Payload)
		if m.Event.Transition != "" {
			s += " " + m.Event.Transition
		}
		out = append(out, s)
	}
	return out
}

// A channel's filter admits events by their row: creates on the new row,
// deletes on the old, updates as entering or leaving it when only one side
// matches; select trims the payload; unfiltered channels share the plain
// frame.
func TestHubChannelFilter(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	v := Viewer{UserID: "u1", Environment: 1}
	paid, qPaid := sub(t, h, SubscribeOptions{Viewer: v, Protocol: ProtocolRealtime})
	h.AddChannelWith(paid, "orders.*", mustOptions(t, "status=eq.paid", ""))
	big, qBig := sub(t, h, SubscribeOptions{Viewer: v, Protocol: ProtocolRealtime})
	h.AddChannelWith(big, "orders.*", mustOptions(t, "total=gt.100", "total"))
	all, qAll := sub(t, h, SubscribeOptions{Viewer: v, Protocol: ProtocolRealtime})
	h.AddChannel(all, "orders.*")
	all2, qAll2 := sub(t, h, SubscribeOptions{Viewer: v, Protocol: ProtocolRealtime})
	h.AddChannelWith(all2, "orders.*", &ChannelOptions{}) // empty options: plain

	h.Publish([]*Event{
		orderEvent(1, KindRecordCreated, `{"id":7,"status":"new","total":50}`, ""),
		orderEvent(2, KindRecordValueChanged, `{"id":7,"status":"paid","total":150}`, `{"status":"new","total":50}`),
		orderEvent(3, KindRecordValueChanged, `{"id":7,"status":"paid","total":160}`, `{"total":150}`),
		orderEvent(4, KindRecordValueChanged, `{"id":7,"status":"refunded","total":160}`, `{"status":"paid"}`),
		orderEvent(5, KindRecordValueChanged, `{"id":7,"status":"new","total":10}`, `{"status":"refunded","total":160}`),
		orderEvent(6, KindRecordDeleted, `{"id":7,"status":"paid","total":500}`, ""),
	})
	want := map[string][]string{
		"paid": {
			`orders.updated {"id":7,"status":"paid","total":150} enter`,
			`orders.updated {"id":7,"status":"paid","total":160}`,
			`orders.updated {"id":7,"status":"refunded","total":160} leave`,
			`orders.deleted {"id":7,"status":"paid","total":500}`,
		},
		"big": {
			`orders.updated {"id":7,"total":150} enter`,
			`orders.updated {"id":7,"total":160}`,
			`orders.updated {"id":7,"total":160}`,
			`orders.updated {"id":7,"total":10} leave`,
			`orders.deleted {"id":7,"total":500}`,
		},
	}
	for name, q := range map[string]*sliceQueue{"paid": qPaid, "big": qBig} {
		if got := frames(t, q); strings.Join(got, "\n") != strings.Join(want[name], "\n") {
			t.Errorf("%s:\n%s\nwant\n%s", name, strings.Join(got, "\n"), strings.Join(want[name], "\n"))
		}
	}
	if len(qAll.items) != 6 || len(qAll2.items) != 6 {
		t.Fatalf("unfiltered: %d and %d events, want 6", len(qAll.items), len(qAll2.items))
	}
	for i := range qAll.items {
		if &qAll.items[i].Bytes[0] != &qAll2.items[i].Bytes[0] {
			t.Fatalf("event %d: unfiltered subscriptions got different encodings", i)
		}
	}
	// Re-adding a channel replaces its options.
	h.AddChannelWith(paid, "orders.*", mustOptions(t, "status=eq.new", ""))
	h.Publish([]*Event{orderEvent(7, KindRecordCreated, `{"id":8,"status":"new","total":1}`, "")})
	if got := frames(t, qPaid); len(got) != 5 || got[4] != `orders.created {"id":8,"status":"new","total":1}` {
		t.Fatalf("after replacing the filter: %v", got)
	}
}

// Subscriptions with equal options share one shaped encoding per event;
// when several channels of one subscription match, the first that admits
// the event shapes it, and it is delivered once.
func TestHubChannelFilterSharingAndOverlap(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	v := Viewer{UserID: "u1", Environment: 1}
	var qs []*sliceQueue
	for range 3 {
		s, q := sub(t, h, SubscribeOptions{Viewer: v, Protocol: ProtocolRealtime})
		h.AddChannelWith(s, "orders.*", mustOptions(t, "status=eq.paid", "status"))
		qs = append(qs, q)
	}
	both, qBoth := sub(t, h, SubscribeOptions{Viewer: v, Protocol: ProtocolRealtime})
	h.AddChannelWith(both, "orders.created", mustOptions(t, "status=eq.none", ""))
	h.AddChannelWith(both, "orders.*", mustOptions(t, "status=eq.paid", ""))
	h.Publish([]*Event{orderEvent(1, KindRecordCreated, `{"id":7,"status":"paid","total":5}`, "")})
	for i, q := range qs {
		if len(q.items) != 1 || &q.items[0].Bytes[0] != &qs[0].items[0].Bytes[0] {
			t.Fatalf("subscriber %d: %d items or its own encoding", i, len(q.items))
		}
	}
	if got := frames(t, qBoth); len(got) != 1 || got[0] != `orders.created {"id":7,"status":"paid","total":5}` {
		t.Fatalf("overlapping channels: %v", got)
	}
}

// A resume applies the channel's options as the hub does.
func TestRealtimeFrameAppliesOptions(t *testing.T) {
	t.Parallel()
	o := mustOptions(t, "status=eq.paid", "status")
	leave := orderEvent(9, KindRecordValueChanged, `{"id":7,"status":"new","total":1}`, `{"status":"paid"}`)
	b, ok := RealtimeFrame(nil, leave, "orders.updated", o)
	if !ok || !strings.Contains(string(b), `"payload":{"id":7,"status":"new"},"transition":"leave"}}`) {
		t.Fatalf("leave: %v %s", ok, b)
	}
	if _, ok := RealtimeFrame(nil, orderEvent(10, KindRecordCreated, `{"id":8,"status":"new"}`, ""), "orders.created", o); ok {
		t.Fatal("a row that does not match was sent")
	}
	plain, _ := RealtimeFrame(nil, leave, "orders.updated", nil)
	if string(plain) != string(AppendRealtimeEvent(nil, leave, "orders.updated")) {
		t.Fatalf("no options: %s", plain)
	}
}

// Filters cost no query and no allocation per subscriber: the event's row
// is decoded once, each subscriber's filter matched in memory, and the
// shaped frame encoded once per distinct options.
func TestHubFilterAllocations(t *testing.T) {
	allocsFor := func(n int) float64 {
		h := newTestHub(t)
		for i := range n {
			s, err := h.Subscribe(SubscribeOptions{Viewer: Viewer{UserID: fmt.Sprint("u", i), Environment: 1}, Protocol: ProtocolRealtime, Queue: &discardQueue{}})
			if err != nil {
				t.Fatal(err)
			}
			h.AddChannelWith(s, "orders.*", mustOptions(t, "status=in.(paid,shipped),total=gt.100", ""))
		}
		// A new position per run: a subscription is offered an event once.
		evs := make([][]*Event, 102)
		for i := range evs {
			evs[i] = []*Event{orderEvent(int64(i+1), KindRecordValueChanged, `{"id":7,"status":"paid","total":150}`, `{"total":50}`)}
		}
		next := 0
		return testing.AllocsPerRun(100, func() { h.Publish(evs[next]); next++ })
	}
	few, many := allocsFor(10), allocsFor(500)
	t.Logf("allocations per event: %.0f with 10 filtered subscribers, %.0f with 500", few, many)
	// Equal but for the odd allocation of a run (the race detector's, a
	// map's growth): a per-subscriber one would add 490.
	if many > few+2 {
		t.Fatalf("Publish with filters allocates %.0f times for 10 subscribers and %.0f for 500; want (nearly) equal", few, many)
	}
}

// BenchmarkHubPublishFiltered: one update to 1,000 subscribers of
// orders.*, each with a filter (ten different ones), a tenth with a select.
func BenchmarkHubPublishFiltered(b *testing.B) {
	h := newTestHub(b)
	for i := range 1000 {
		s, err := h.Subscribe(SubscribeOptions{Viewer: Viewer{UserID: fmt.Sprint("u", i), Environment: 1}, Protocol: ProtocolRealtime, Queue: &discardQueue{}})
		if err != nil {
			b.Fatal(err)
		}
		sel := ""
		if i%10 == 0 {
			sel = "status,total"
		}
		h.AddChannelWith(s, "orders.*", mustOptions(b, fmt.Sprintf("total=gt.%d,status=not.eq.cancelled", 10*(i%10)), sel))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		h.Publish([]*Event{orderEvent(int64(i+1), KindRecordValueChanged,
			`{"id":7,"status":"paid","total":55,"note":"ring twice","customer":"c-42","createdAt":"2026-01-02T03:04:05.000Z"}`, `{"total":45}`)})
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "subscribers/s")
}

// The hub counts realtime deliveries and overflows, filtered or not.
func TestHubCountsRealtimeDeliveries(t *testing.T) {
	t.Parallel()
	h := newTestHub(t)
	v := Viewer{UserID: "u1", Environment: 1}
	plain, _ := sub(t, h, SubscribeOptions{Viewer: v, Protocol: ProtocolRealtime})
	h.AddChannel(plain, "orders.*")
	paid, _ := sub(t, h, SubscribeOptions{Viewer: v, Protocol: ProtocolRealtime})
	h.AddChannelWith(paid, "orders.*", mustOptions(t, "status=eq.paid", ""))
	full := &sliceQueue{limit: 1}
	s, err := h.Subscribe(SubscribeOptions{Viewer: v, Protocol: ProtocolRealtime, Queue: full})
	if err != nil {
		t.Fatal(err)
	}
	h.AddChannel(s, "orders.*")
	h.Publish([]*Event{
		orderEvent(1, KindRecordCreated, `{"id":7,"status":"paid"}`, ""),
		orderEvent(2, KindRecordCreated, `{"id":8,"status":"new"}`, ""),
	})
	if d, o := testutil.ToFloat64(h.metrics.deliveries), testutil.ToFloat64(h.metrics.overflows); d != 4 || o != 1 {
		t.Fatalf("deliveries %v, overflows %v; want 4 (2 plain, 1 paid, 1 before the full queue) and 1", d, o)
	}
}
