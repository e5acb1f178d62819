package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"testing"

	"github.com/pgcast/pgcast/db"
	"github.com/pgcast/pgcast/internal/collections"
)

// The realtime contract's reference example, verbatim: a client subscribes
// to posts.*, someone runs
//
//	curl -X POST http://localhost:8080/api/posts -H 'Content-Type: application/json' -d '{"title":"Hello"}'
//
// and the client receives posts.created with the full record, the same
// record the REST call returned. The collection is the one `pgcast dev`
// seeds (title string; create and read public).
func TestRealtimeReferenceExample(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	if _, err := db.CreateCollection(t.Context(), s.pool, 1, collections.Definition{
		Name:   "posts",
		Fields: []collections.FieldDef{{Name: "title", Type: collections.TypeString, Required: true}},
		Permissions: collections.Permissions{
			Create: collections.RulePublic, Read: collections.RulePublic,
			Update: collections.RuleOwner, Delete: collections.RuleOwner,
		},
	}); err != nil {
		t.Fatal(err)
	}
	browser := s.rtConnect("")
	rtSubscribe(t, browser, "posts.*", "system.done")

	resp, err := http.Post(s.base+"/api/posts", "application/json", bytes.NewBufferString(`{"title":"Hello"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/posts: %d %s", resp.StatusCode, body)
	}
	s.publishDone(1, "sent")

	got := rtEventsUntilDone(t, browser, "sent")
	if len(got) != 1 || got[0].Type != "posts.created" || got[0].Source != "collections" {
		t.Fatalf("events %v", eventTypes(got))
	}
	var record, payload map[string]any
	if err := json.Unmarshal(body, &record); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got[0].Payload, &payload); err != nil {
		t.Fatal(err)
	}
	if payload["title"] != "Hello" || !reflect.DeepEqual(payload, record) {
		t.Fatalf("event payload %v, REST record %v", payload, record)
	}
}
