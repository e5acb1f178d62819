package server

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// rtChannelError is an error reply about a channel.
type rtChannelError struct {
	Type     string   `json:"type"`
	Code     string   `json:"code"`
	Message  string   `json:"message"`
	Channels []string `json:"channels"`
}

// A subscribe says what is wrong with a channel: one that no event type can
// ever match is invalid_channel with the channels that exist, one in a
// namespace that does not exist (in the caller's environment) is
// unknown_namespace; nothing about channels is forbidden. A namespace
// created later can be subscribed to then.
func TestRealtimeChannelThatCanNeverMatch(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.class(1, "posts", "public", "title")
	s.exec(`INSERT INTO pgcast.environments (id, name) VALUES (2, 'two')`)
	s.class(2, "elsewhere", "public", "title")
	s.exec(`INSERT INTO pgcast.publish_namespaces (name, source) VALUES ('billing', 'billing')`)
	ws := s.rtConnect("")

	postsChannels := []string{"posts.created", "posts.updated", "posts.deleted", "posts.*"}
	for _, c := range []struct {
		channel, code string
		channels      []string
	}{
		{"posts", "invalid_channel", postsChannels},
		{"posts.create", "invalid_channel", postsChannels},
		{"posts.created.x", "invalid_channel", postsChannels},
		{"posts.created.*", "invalid_channel", postsChannels},
		{"job", "invalid_channel", []string{"job.*"}},
		{"billing", "invalid_channel", []string{"billing.*"}},
		{"*", "invalid_channel", nil},
		{"nope.created", "unknown_namespace", nil},
		{"nope.*", "unknown_namespace", nil},
		{"elsewhere.created", "unknown_namespace", nil}, // a collection of another environment
		{"posts.created", "", nil},
		{"posts.updated", "", nil},
		{"posts.deleted", "", nil},
		{"posts.*", "", nil},
		{"job.anything", "", nil},
		{"job.a.b", "", nil},
		{"job.a.*", "", nil},
		{"system.collection.created", "", nil},
		{"billing.paid", "", nil},
	} {
		m := rtAsk(t, ws, fmt.Sprintf(`{"action":"subscribe","channel":%q}`, c.channel))
		if c.code == "" {
			if m.Type != "subscribed" || m.Channel != c.channel {
				t.Errorf("%s: %s, want subscribed", c.channel, m)
			}
			continue
		}
		var e rtChannelError
		if err := json.Unmarshal([]byte(m.raw), &e); err != nil {
			t.Fatal(err)
		}
		if e.Type != "error" || e.Code != c.code || e.Message == "" || !reflect.DeepEqual(e.Channels, c.channels) {
			t.Errorf("%s: %s, want error %s with channels %v", c.channel, m, c.code, c.channels)
		}
	}

	// A collection created after a refused subscribe can be subscribed to,
	// and its events arrive (on a connection without the channels above).
	ws = s.rtConnect("")
	if m := rtAsk(t, ws, `{"action":"subscribe","channel":"later.created"}`); m.Code != "unknown_namespace" {
		t.Fatalf("later.created before the collection exists: %s", m)
	}
	later, _ := s.class(1, "later", "public")
	rtSubscribe(t, ws, "later.created")
	rec := s.queryInt(`INSERT INTO pgcast.object_records (object_class_id) VALUES ($1) RETURNING id`, later)
	if m := rtRead(t, ws, 30*time.Second); m.Event == nil || m.Event.Type != "later.created" || m.Event.recordID(t) != rec {
		t.Fatalf("got %s, want later.created of record %d", m, rec)
	}
}
