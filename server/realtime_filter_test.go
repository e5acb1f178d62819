package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// filtered is an event as a filtered subscriber sees it: type, payload and
// the transition mark.
func filtered(t *testing.T, m rtMsg) string {
	t.Helper()
	var f struct {
		Event struct {
			Type       string          `json:"type"`
			Payload    json.RawMessage `json:"payload"`
			Transition string          `json:"transition"`
		} `json:"event"`
	}
	if err := json.Unmarshal([]byte(m.raw), &f); err != nil || m.Type != "event" {
		t.Fatalf("not an event: %s", m)
	}
	var p map[string]any
	if err := json.Unmarshal(f.Event.Payload, &p); err != nil {
		t.Fatal(err)
	}
	delete(p, "createdAt")
	delete(p, "updatedAt")
	b, _ := json.Marshal(p)
	s := f.Event.Type + " " + string(b)
	if f.Event.Transition != "" {
		s += " " + f.Event.Transition
	}
	return s
}

// A subscription's filter is applied to a collection's records in memory:
// creates on the new record, updates entering or leaving it marked, deletes
// on the record as it was; select trims the payload; a resume applies the
// same filter; a bad filter is invalid_filter naming the problem.
func TestRealtimeSubscriptionFilter(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	cls, f := s.class(1, "orders", "public", "status", "total")
	status, total := fmt.Sprint(f["status"]), fmt.Sprint(f["total"])
	start := s.queryInt(`SELECT coalesce(max(id), 0) FROM pgcast.events`)

	ws := s.rtConnect("")
	rtSubscribe(t, ws, "system.*")
	if m := rtAsk(t, ws, `{"action":"subscribe","channel":"orders.*","filter":"status=eq.paid","select":"status"}`); m.Type != "subscribed" {
		t.Fatalf("subscribe with a filter: %s", m)
	}
	for _, bad := range []struct{ frame, problem string }{
		{`{"action":"subscribe","channel":"orders.created","filter":"status=eqq.paid"}`, `unknown operator "eqq"`},
		{`{"action":"subscribe","channel":"orders.created","filter":"status"}`, "filter"},
		{`{"action":"subscribe","channel":"orders.created","filter":7}`, "filter must be a string"},
		{`{"action":"subscribe","channel":"orders.created","select":"a,,b"}`, "select"},
	} {
		if m := rtAsk(t, ws, bad.frame); m.Type != "error" || m.Code != "invalid_filter" || !strings.Contains(m.Message, bad.problem) {
			t.Errorf("%s: %s, want invalid_filter naming %q", bad.frame, m, bad.problem)
		}
	}
	id := s.queryInt(`INSERT INTO pgcast.object_records (object_class_id, cells) VALUES ($1, jsonb_build_object($2::text, 'new', $3::text, 10)) RETURNING id`, cls, status, total)
	s.exec(`INSERT INTO pgcast.object_records (object_class_id, cells) VALUES ($1, jsonb_build_object($2::text, 'paid', $3::text, 1))`, cls, status, total)
	s.exec(`UPDATE pgcast.object_records SET cells = cells || jsonb_build_object($2::text, 'paid') WHERE id = $1`, id, status)
	s.exec(`UPDATE pgcast.object_records SET cells = cells || jsonb_build_object($2::text, 20) WHERE id = $1`, id, total)
	s.exec(`UPDATE pgcast.object_records SET cells = cells || jsonb_build_object($2::text, 'refunded') WHERE id = $1`, id, status)
	s.exec(`UPDATE pgcast.object_records SET cells = cells || jsonb_build_object($2::text, 30) WHERE id = $1`, id, total)
	s.exec(`UPDATE pgcast.object_records SET cells = cells || jsonb_build_object($2::text, 'paid') WHERE id = $1`, id, status)
	s.exec(`DELETE FROM pgcast.object_records WHERE id = $1`, id)
	s.publishDone(1, "filtered")
	want := []string{
		fmt.Sprintf(`orders.created {"id":%d,"status":"paid"}`, id+1),
		fmt.Sprintf(`orders.updated {"id":%d,"status":"paid"} enter`, id),
		fmt.Sprintf(`orders.updated {"id":%d,"status":"paid"}`, id),
		fmt.Sprintf(`orders.updated {"id":%d,"status":"refunded"} leave`, id),
		fmt.Sprintf(`orders.updated {"id":%d,"status":"paid"} enter`, id),
		fmt.Sprintf(`orders.deleted {"id":%d,"status":"paid"}`, id),
	}
	var got []string
	for {
		m := rtRead(t, ws, 20*time.Second)
		if m.Event != nil && m.Event.Type == "system.done" {
			break
		}
		if m.Event != nil && m.Event.Type == "system.collection.created" {
			continue // the class's, committed before the subscribe, may come after it
		}
		got = append(got, filtered(t, m))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("live:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A resume from before all of it sends the same.
	again := s.rtConnect("")
	rtSend(t, again, fmt.Sprintf(`{"action":"subscribe","channel":"orders.*","since":"evt_%d","filter":"status=eq.paid","select":"status"}`, start))
	if m := rtRead(t, again, 10*time.Second); m.Type != "subscribed" {
		t.Fatalf("resume: %s", m)
	}
	var replayed []string
	for len(replayed) < len(want) {
		replayed = append(replayed, filtered(t, rtRead(t, again, 20*time.Second)))
	}
	if strings.Join(replayed, "\n") != strings.Join(want, "\n") {
		t.Fatalf("resumed:\n%s\nwant\n%s", strings.Join(replayed, "\n"), strings.Join(want, "\n"))
	}
	expectSilence(t, again, 300*time.Millisecond)
}
