package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pgcast/pgcast/server/auth"
)

// rtNextEvent reads the next frame, which must be an event of type typ, and
// returns the frame's "event" object and its payload as sent.
func rtNextEvent(t *testing.T, ws interface {
	SetReadDeadline(time.Time) error
	ReadMessage() (int, []byte, error)
}, typ string) (event, payload string) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("waiting for %s: %v", typ, err)
	}
	var m struct {
		Type  string          `json:"type"`
		Event json.RawMessage `json:"event"`
	}
	var ev struct {
		Type    string          `json:"type"`
		Payload json.RawMessage `json:"payload"`
	}
	if json.Unmarshal(data, &m) != nil || m.Type != "event" || json.Unmarshal(m.Event, &ev) != nil || ev.Type != typ {
		t.Fatalf("got %s, want a %s event", data, typ)
	}
	return string(m.Event), string(ev.Payload)
}

// restBody is a REST response body without the encoder's final newline.
func restBody(t *testing.T, r apiResp, status int) string {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return strings.TrimSuffix(string(r.body), "\n")
}

// The README promises that a realtime record payload is the record REST
// returns: the same bytes, compact, whoever wrote it (REST or SQL) and
// whatever its values (escapes, nested JSON as jsonb prints it, numbers).
// A published event reaches subscribers as POST /api/events answered it.
func TestRealtimePayloadIsRESTRecordByteForByte(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	c := s.define(1, `{"name":"posts","fields":[{"name":"title","type":"string","required":true},{"name":"body","type":"text"},
		{"name":"n","type":"integer"},{"name":"x","type":"float"},{"name":"ok","type":"boolean"},{"name":"at","type":"datetime"},
		{"name":"meta","type":"json"},{"name":"empty","type":"json"}],
		"permissions":{"create":"public","read":"public","update":"public","delete":"public"}}`)
	fid := map[string]string{}
	for _, f := range c["fields"].([]any) {
		fm := f.(map[string]any)
		fid[fm["name"].(string)] = fmt.Sprint(num(t, fm["id"]))
	}
	ws := s.rtConnect(s.token("u1", auth.RoleAuthenticated, 1)) // job.* goes to signed-in users
	rtSubscribe(t, ws, "posts.*", "job.*")

	// Written through REST.
	created := restBody(t, s.do("POST", "/api/posts", "", `{"title":"<b>Tom & \"Jerry\"</b> \u2028 é 😀 \\ \n","body":"tab\there",
		"n":1e3,"x":1.50,"ok":true,"at":"2026-06-08T14:00:00.123456+02:00",
		"meta":{"z": [1, 2.50, {"y": null}], "a": "<&>", "nested": {"k": "v"}},"empty":{}}`), http.StatusCreated)
	_, payload := rtNextEvent(t, ws, "posts.created")
	var rec struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal([]byte(created), &rec); err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/api/posts/%d", rec.ID)
	got := restBody(t, s.do("GET", path, "", nil), http.StatusOK)
	if payload != got || payload != created {
		t.Errorf("posts.created payload\n%s\nREST GET\n%s\nREST POST\n%s", payload, got, created)
	}
	if strings.Contains(payload, ": ") || strings.Contains(payload, ", ") {
		t.Errorf("payload is not compact: %s", payload)
	}

	updated := restBody(t, s.do("PUT", path, "", `{"meta":{"b": [true, false], "a": 1},"body":null}`), http.StatusOK)
	if _, payload = rtNextEvent(t, ws, "posts.updated"); payload != updated {
		t.Errorf("posts.updated payload\n%s\nREST PUT\n%s", payload, updated)
	}

	// Written through SQL, with jsonb's own spacing in the cells.
	id := s.queryInt(`INSERT INTO pgcast.object_records (object_class_id, cells) VALUES ($1,
		jsonb_build_object($2::text, 'sql <write>', $3::text, '{"k" : [ 1 , {"j": "\u2029"} ]}'::jsonb, $4::text, 7)) RETURNING id`,
		num(t, c["id"]), fid["title"], fid["meta"], fid["n"])
	_, payload = rtNextEvent(t, ws, "posts.created")
	if got := restBody(t, s.do("GET", fmt.Sprintf("/api/posts/%d", id), "", nil), http.StatusOK); payload != got {
		t.Errorf("posts.created payload of a SQL write\n%s\nREST GET\n%s", payload, got)
	}

	s.expectRaw(s.do("DELETE", path, "", nil), http.StatusNoContent)
	if _, payload = rtNextEvent(t, ws, "posts.deleted"); payload != fmt.Sprintf(`{"id":%d}`, rec.ID) {
		t.Errorf("posts.deleted payload %s", payload)
	}

	// Published through REST: the event as subscribers receive it.
	published := restBody(t, s.do("POST", "/api/events", s.admin(1), `{"type":"job.completed","payload":{"name": "nightly <run>", "steps": [1, 2]}}`), http.StatusCreated)
	if event, _ := rtNextEvent(t, ws, "job.completed"); event != published {
		t.Errorf("job.completed event\n%s\nPOST /api/events answered\n%s", event, published)
	}
}
