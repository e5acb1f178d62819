package stream

import (
	"encoding/json"
	"testing"

	"github.com/pgcast/pgcast/db"
)

// restBytes is what the REST API writes for src, a JSON value as Postgres
// prints it: encoding/json's compaction of a json.RawMessage (writeJSON in
// the server package), without the encoder's final newline.
func restBytes(t testing.TB, src []byte) []byte {
	t.Helper()
	b, err := json.Marshal(json.RawMessage(src))
	if err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	return b
}

// Payloads and records reach realtime clients in the bytes the REST API
// writes for the same JSON: compact, with <, >, &, U+2028 and U+2029
// escaped in strings, everything else (numbers, other escapes) as it was.
func FuzzAppendCompact(f *testing.F) {
	for _, s := range []string{
		`{"id": 3, "title": "x"}`,
		`{"a": [1, 2, {"b": null}], "e": {}, "f": []}`,
		`{"s": "é \" \\ \u2028 😀 <&> \n\t \u0001", "n": 1.50, "m": -3e2, "t": true}`,
		"\"line\u2028sep\u2029\"",
		` [ 1 ,	2 ]` + "\n",
		`"a\\"`, `"\\\""`, `"<\u003c>"`, `"ends with e2 \u00e2"`,
		"\"\xe2\x80\"", "\"\xe2\x80\xa8\"", "\"\xff<\"",
		`{"key <&>": "value"}`, `null`, `0`, `""`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid([]byte(s)) {
			return
		}
		want := restBytes(t, []byte(s))
		if got := appendCompact([]byte("prefix"), []byte(s)); string(got) != "prefix"+string(want) {
			t.Fatalf("%q:\n got %q\nwant %q", s, got[len("prefix"):], want)
		}
	})
}

// A published payload as Postgres prints it goes out compact, like REST's
// answer to POST /api/events.
func TestRealtimeEventPayloadIsCompact(t *testing.T) {
	t.Parallel()
	one := int64(1)
	ev, err := decode(&db.Entry{ID: 9, Kind: "published", Environment: 1, ClassID: &one,
		Data: []byte(`{"type": "job.completed", "source": "jobs", "payload": {"a": [1, 2], "b": "<x> & y"}}`)})
	if err != nil {
		t.Fatal(err)
	}
	got := string(AppendRealtimeEvent(nil, ev, RealtimeType(ev)))
	want := `{"type":"event","event":{"id":"evt_9","type":"job.completed","timestamp":"0001-01-01T00:00:00.000Z","source":"jobs",` +
		`"payload":{"a":[1,2],"b":"\u003cx\u003e \u0026 y"}}}`
	if got != want {
		t.Errorf("event\n%s\nwant\n%s", got, want)
	}
}
