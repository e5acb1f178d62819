package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/internal/wstest"
	"github.com/pgcast/pgcast/server/realtime"
	pgws "github.com/pgcast/pgcast/server/ws"
)

const realtimePath = "/api/realtime"

// rtMsg is any server → client realtime frame.
type rtMsg struct {
	Type     string   `json:"type"`
	ClientID string   `json:"clientId"`
	Channel  string   `json:"channel"`
	Code     string   `json:"code"`
	Message  string   `json:"message"`
	Event    *rtEvent `json:"event"`
	raw      string
}

type rtEvent struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Timestamp string          `json:"timestamp"`
	Source    string          `json:"source"`
	Payload   json.RawMessage `json:"payload"`
}

func (m rtMsg) String() string { return m.raw }

// position is the event's log position (evt_<n>).
func (e *rtEvent) position(t *testing.T) int64 {
	t.Helper()
	n, err := strconv.ParseInt(strings.TrimPrefix(e.ID, "evt_"), 10, 64)
	if err != nil || !strings.HasPrefix(e.ID, "evt_") {
		t.Fatalf("event id %q", e.ID)
	}
	return n
}

// recordID is the "id" of a collection event's payload.
func (e *rtEvent) recordID(t *testing.T) int64 {
	t.Helper()
	var p struct {
		ID json.Number `json:"id"`
	}
	if err := json.Unmarshal(e.Payload, &p); err != nil {
		t.Fatalf("payload %s: %v", e.Payload, err)
	}
	n, err := p.ID.Int64()
	if err != nil {
		t.Fatalf("payload id %q is not an integer", p.ID)
	}
	return n
}

func rtRead(t *testing.T, ws *websocket.Conn, timeout time.Duration) rtMsg {
	t.Helper()
	m, err := rtTryRead(ws, timeout)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return m
}

func rtTryRead(ws *websocket.Conn, timeout time.Duration) (rtMsg, error) {
	_ = ws.SetReadDeadline(time.Now().Add(timeout))
	typ, data, err := ws.ReadMessage()
	if err != nil {
		return rtMsg{}, err
	}
	if typ != websocket.TextMessage {
		return rtMsg{}, fmt.Errorf("frame type %d", typ)
	}
	var m rtMsg
	if err := json.Unmarshal(data, &m); err != nil {
		return rtMsg{}, fmt.Errorf("frame is not a JSON object: %s", data)
	}
	m.raw = string(data)
	return m, nil
}

func rtSend(t *testing.T, ws *websocket.Conn, frame string) {
	t.Helper()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		t.Fatal(err)
	}
}

// rtAsk sends a frame and returns the next message; only for connections
// without events in flight.
func rtAsk(t *testing.T, ws *websocket.Conn, frame string) rtMsg {
	t.Helper()
	rtSend(t, ws, frame)
	return rtRead(t, ws, 10*time.Second)
}

// rtConnect opens /api/realtime (with token unless empty, as a Bearer
// header) and reads the connected message.
func (s *stack) rtConnect(token string) *websocket.Conn {
	s.t.Helper()
	var h http.Header
	if token != "" {
		h = http.Header{"Authorization": {"Bearer " + token}}
	}
	ws, code, body := s.dial(realtimePath, h)
	if ws == nil {
		s.t.Fatalf("connect: %d %s", code, body)
	}
	if m := rtRead(s.t, ws, 10*time.Second); m.Type != "connected" {
		s.t.Fatalf("first message %s", m)
	}
	return ws
}

// rtSubscribe subscribes and checks the acknowledgement.
func rtSubscribe(t *testing.T, ws *websocket.Conn, channels ...string) {
	t.Helper()
	for _, ch := range channels {
		if m := rtAsk(t, ws, fmt.Sprintf(`{"action":"subscribe","channel":%q}`, ch)); m.Type != "subscribed" || m.Channel != ch {
			t.Fatalf("subscribe %s: %s", ch, m)
		}
	}
}

// publishDone publishes system.done with tag in env: everyone subscribed to
// it receives it after everything committed before.
func (s *stack) publishDone(env int64, tag string) {
	s.t.Helper()
	s.exec(fmt.Sprintf(`BEGIN; SET LOCAL pgcast.environment = '%d'; SELECT pgcast.publish('system.done', jsonb_build_object('tag', %s::text)); COMMIT`,
		env, "'"+tag+"'"))
}

// rtEventsUntilDone reads events until system.done with tag and returns the
// others. Replies in between fail the test.
func rtEventsUntilDone(t *testing.T, ws *websocket.Conn, tag string) []*rtEvent {
	t.Helper()
	var out []*rtEvent
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err := rtTryRead(ws, time.Until(deadline))
		if err != nil {
			t.Fatalf("after %d events: %v", len(out), err)
		}
		if m.Type != "event" || m.Event == nil {
			t.Fatalf("unexpected message %s", m)
		}
		if m.Event.Type == "system.done" {
			if strings.Contains(string(m.Event.Payload), `"`+tag+`"`) {
				return out
			}
			continue
		}
		out = append(out, m.Event)
	}
}

func eventTypes(evs []*rtEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

func TestRealtimeConnectedAndReplies(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.class(1, "posts", "public", "title")
	ws, code, body := s.dial(realtimePath, nil)
	if ws == nil {
		t.Fatalf("anonymous connect: %d %s", code, body)
	}
	m := rtRead(t, ws, 10*time.Second)
	id, err := uuid.Parse(strings.TrimPrefix(m.ClientID, "rt_"))
	if m.Type != "connected" || !strings.HasPrefix(m.ClientID, "rt_") || err != nil || id.Version() != 4 {
		t.Fatalf("connected message %s", m)
	}
	if other := s.rtConnect(""); other == nil {
		t.Fatal("second connection")
	}

	long := "posts." + strings.Repeat("x", 195) // 201 bytes
	for _, c := range []struct{ frame, typ, code, msg string }{
		{`{"action":"ping"}`, "pong", "", ""},
		{`{"action":"ping","channel":"ignored"}`, "pong", "", ""},
		{`{`, "error", "invalid_json", "Message is not valid JSON"},
		{`not json`, "error", "invalid_json", "Message is not valid JSON"},
		{`[{"action":"ping"}]`, "error", "invalid_json", "Message must be a JSON object"},
		{`"ping"`, "error", "invalid_json", "Message must be a JSON object"},
		{`null`, "error", "invalid_json", "Message must be a JSON object"},
		{`{}`, "error", "invalid_action", "Action is required"},
		{`{"action":null}`, "error", "invalid_action", "Action is required"},
		{`{"action":"dance"}`, "error", "invalid_action", ""},
		{`{"action":7}`, "error", "invalid_action", ""},
		{`{"Action":"ping"}`, "error", "invalid_action", "Action is required"},
		{`{"action":"subscribe"}`, "error", "invalid_channel", "Channel name is required"},
		{`{"action":"subscribe","channel":""}`, "error", "invalid_channel", "Channel name is required"},
		{`{"action":"subscribe","channel":null}`, "error", "invalid_channel", "Channel name is required"},
		{`{"action":"unsubscribe"}`, "error", "invalid_channel", "Channel name is required"},
		{`{"action":"subscribe","channel":42}`, "error", "invalid_channel", "Channel name is invalid"},
		{`{"action":"subscribe","channel":"` + long + `"}`, "error", "invalid_channel", "Channel name is too long (maximum 200 characters)"},
		{`{"action":"subscribe","channel":"posts..created"}`, "error", "invalid_channel", "Channel name is invalid"},
		{`{"action":"subscribe","channel":"posts.*.created"}`, "error", "invalid_channel", "Channel name is invalid"},
		{`{"action":"subscribe","channel":"posts.cre*"}`, "error", "invalid_channel", "Channel name is invalid"},
		{`{"action":"subscribe","channel":"posts created"}`, "error", "invalid_channel", "Channel name is invalid"},
		{`{"action":"subscribe","channel":".posts"}`, "error", "invalid_channel", "Channel name is invalid"},
		{`{"action":"subscribe","channel":"posts."}`, "error", "invalid_channel", "Channel name is invalid"},
		{`{"action":"subscribe","channel":"pöst.created"}`, "error", "invalid_channel", "Channel name is invalid"},
		{`{"action":"subscribe","channel":"nope.created"}`, "error", "unknown_namespace", ""},
		{`{"action":"subscribe","channel":"*"}`, "error", "invalid_channel", ""},
		{`{"action":"subscribe","channel":"Posts.created"}`, "error", "unknown_namespace", ""},
		{`{"action":"subscribe","channel":"posts.*","since":"123"}`, "error", "invalid_since", ""},
		{`{"action":"subscribe","channel":"posts.*","since":123}`, "error", "invalid_since", ""},
		{`{"action":"subscribe","channel":"posts.*","since":"evt_-1"}`, "error", "invalid_since", ""},
		{`{"action":"subscribe","channel":"posts.*","since":"evt_"}`, "error", "invalid_since", ""},
		{`{"action":"subscribe","channel":"posts.created"}`, "subscribed", "", ""},
		{`{"action":"subscribe","channel":"posts.created"}`, "subscribed", "", ""}, // repeated: acknowledged again
		{`{"action":"subscribe","channel":"posts.anything-at_all"}`, "error", "invalid_channel", ""},
		{`{"action":"subscribe","channel":"posts"}`, "error", "invalid_channel", ""},
		{`{"action":"subscribe","channel":"auth.*"}`, "subscribed", "", ""},
		{`{"action":"subscribe","channel":"storage.uploaded"}`, "subscribed", "", ""},
		{`{"action":"subscribe","channel":"function.*"}`, "subscribed", "", ""},
		{`{"action":"subscribe","channel":"job.completed"}`, "subscribed", "", ""},
		{`{"action":"subscribe","channel":"system.collection.*"}`, "subscribed", "", ""},
		{`{"action":"unsubscribe","channel":"never.subscribed"}`, "unsubscribed", "", ""},
		{`{"action":"unsubscribe","channel":"posts.created"}`, "unsubscribed", "", ""},
		{`{"action":"ping"}`, "pong", "", ""}, // errors never closed the connection
	} {
		m := rtAsk(t, ws, c.frame)
		if m.Type != c.typ || m.Code != c.code || (c.msg != "" && m.Message != c.msg) {
			t.Errorf("%s: got %s, want type %s code %s %q", c.frame, m, c.typ, c.code, c.msg)
		}
		if m.Type == "error" && m.Message == "" {
			t.Errorf("%s: error without message", c.frame)
		}
	}
}

// TestRealtimeSubscriptionLimit is S8's limit: 50 channels, counted once
// each; the 51st is refused until one is unsubscribed.
func TestRealtimeSubscriptionLimit(t *testing.T) {
	t.Parallel()
	// No message rate: the burst of 10,000 below is about the subscription
	// limit (TestRealtimeMessageFlood covers the rate).
	s := newStack(t, func(c *Config) { c.WS.MessageRate = -1 })
	ws := s.rtConnect("")
	for i := range 50 {
		rtSubscribe(t, ws, fmt.Sprintf("job.c%d", i))
	}
	rtSubscribe(t, ws, "job.c7") // repeated: still acknowledged, not counted
	over := `{"action":"subscribe","channel":"job.c50"}`
	if m := rtAsk(t, ws, over); m.Type != "error" || m.Code != "subscription_limit" || m.Message != "Maximum 50 subscriptions per connection" {
		t.Fatalf("51st: %s", m)
	}
	if m := rtAsk(t, ws, `{"action":"subscribe","channel":"job.c50","since":"evt_0"}`); m.Code != "subscription_limit" {
		t.Fatalf("51st with since: %s", m)
	}
	if m := rtAsk(t, ws, `{"action":"unsubscribe","channel":"job.c3"}`); m.Type != "unsubscribed" {
		t.Fatal(m)
	}
	if m := rtAsk(t, ws, over); m.Type != "subscribed" {
		t.Fatalf("after unsubscribe: %s", m)
	}
	// 10,000 subscribes in a burst: each answered, none closes the socket.
	var b strings.Builder
	for i := range 10000 {
		b.Reset()
		fmt.Fprintf(&b, `{"action":"subscribe","channel":"job.x%d"}`, i)
		rtSend(t, ws, b.String())
	}
	for i := range 10000 {
		if m := rtRead(t, ws, 20*time.Second); m.Code != "subscription_limit" {
			t.Fatalf("burst reply %d: %s", i, m)
		}
	}
	if m := rtAsk(t, ws, `{"action":"ping"}`); m.Type != "pong" {
		t.Fatal(m)
	}
}

func TestRealtimeHandshake(t *testing.T) {
	t.Parallel()
	s := newStack(t, func(c *Config) { c.WS.AllowedOrigins = []string{"https://app.example.com"} })
	// Methods other than GET: 405 with a JSON body.
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		req, _ := http.NewRequest(method, s.base+realtimePath, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(string(b), `"method_not_allowed"`) || resp.Header.Get("Allow") != "GET" {
			t.Errorf("%s: %d %s", method, resp.StatusCode, b)
		}
	}
	// A plain GET is not an upgrade.
	if resp, err := http.Get(s.base + realtimePath); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain GET: %v %v", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}
	// S1: a disallowed origin gets 403, even with a valid token.
	tok := s.token("u1", auth.RoleAuthenticated, 1)
	for _, origin := range []string{"https://evil.example", "null", "https://app.example.com.evil.io"} {
		if _, code, body := s.dial(realtimePath+"?token="+tok, http.Header{"Origin": {origin}}); code != http.StatusForbidden {
			t.Errorf("origin %q: %d %s", origin, code, body)
		}
	}
	if ws, code, _ := s.dial(realtimePath, http.Header{"Origin": {"https://app.example.com"}}); ws == nil {
		t.Errorf("allowed origin: %d", code)
	}

	// S4: bad tokens get 401, no upgrade.
	expiredAuth, err := auth.NewAuthenticator(auth.Config{Secret: []byte(testSecret), Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := expiredAuth.Mint("u1", auth.RoleAuthenticated, 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := auth.NewAuthenticator(auth.Config{Secret: []byte(strings.Repeat("k", 40))})
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, _ := otherKey.Mint("u1", auth.RoleAdmin, 1, time.Hour)
	b64 := base64.RawURLEncoding.EncodeToString
	algNone := b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64([]byte(fmt.Sprintf(`{"sub":"u1","role":"admin","exp":%d}`, time.Now().Add(time.Hour).Unix()))) + "."
	parts := strings.Split(tok, ".")
	hs512 := b64([]byte(`{"alg":"HS512","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2]
	for name, c := range map[string]struct {
		query  string
		header string
		msg    string
	}{
		"expired query":       {query: "?token=" + expired, msg: "token expired"},
		"expired header":      {header: "Bearer " + expired, msg: "token expired"},
		"wrong key":           {query: "?token=" + wrongKey, msg: "bad signature"},
		"alg none":            {query: "?token=" + algNone, msg: "signing method"},
		"alg HS512":           {query: "?token=" + hs512, msg: "signing method"},
		"garbage":             {query: "?token=garbage", msg: "malformed"},
		"empty query token":   {query: "?token=", msg: "invalid token"},
		"two query tokens":    {query: "?token=" + tok + "&token=" + tok, msg: "invalid token"},
		"basic auth header":   {header: "Basic dTE6cA==", msg: "invalid token"},
		"bad header wins":     {query: "?token=" + tok, header: "Bearer x" + tok, msg: "invalid token"},
		"empty bearer header": {header: "Bearer ", msg: "invalid token"},
	} {
		h := http.Header{}
		if c.header != "" {
			h.Set("Authorization", c.header)
		}
		ws, code, body := s.dial(realtimePath+c.query, h)
		if ws != nil || code != http.StatusUnauthorized || !strings.Contains(body, `"unauthorized"`) || !strings.Contains(body, c.msg) {
			t.Errorf("%s: %d %s", name, code, body)
		}
	}
	// Good tokens, either way.
	for _, c := range []struct{ query, header string }{{query: "?token=" + tok}, {header: "Bearer " + tok}} {
		h := http.Header{}
		if c.header != "" {
			h.Set("Authorization", c.header)
		}
		if ws, code, body := s.dial(realtimePath+c.query, h); ws == nil {
			t.Errorf("valid token: %d %s", code, body)
		}
	}
	if strings.Contains(s.logBuf.String(), tok) || strings.Contains(s.logBuf.String(), expired) {
		t.Error("a token reached the log")
	}
}

// TestRealtimeWildcardExactAndOnce: a wildcard receives every verb, an exact
// channel only its own, and an event matching two subscriptions of a
// connection arrives once. Unsubscribing stops delivery.
func TestRealtimeWildcardExactAndOnce(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	cls, f := s.class(1, "posts", "public", "title")
	s.class(1, "postscript", "public")
	both := s.rtConnect("")
	rtSubscribe(t, both, "posts.*", "posts.created", "system.done")
	exact := s.rtConnect("")
	rtSubscribe(t, exact, "posts.created", "system.done")
	updates := s.rtConnect("")
	rtSubscribe(t, updates, "posts.updated", "postscript.*", "system.done")

	rec := s.queryInt(`INSERT INTO pgcast.object_records (object_class_id, cells) VALUES ($1, jsonb_build_object($2::text, 'Hello')) RETURNING id`, cls, fmt.Sprint(f["title"]))
	s.exec(`UPDATE pgcast.object_records SET cells = jsonb_build_object($2::text, 'Bye') WHERE id = $1`, rec, fmt.Sprint(f["title"]))
	s.exec(`DELETE FROM pgcast.object_records WHERE id = $1`, rec)
	s.publishDone(1, "one")

	got := rtEventsUntilDone(t, both, "one")
	if !slices.Equal(eventTypes(got), []string{"posts.created", "posts.updated", "posts.deleted"}) {
		t.Fatalf("posts.* + posts.created: %v", eventTypes(got))
	}
	created := got[0]
	var payload map[string]any
	if err := json.Unmarshal(created.Payload, &payload); err != nil {
		t.Fatal(err)
	}
	if created.recordID(t) != rec || payload["title"] != "Hello" || payload["createdAt"] == nil || payload["updatedAt"] == nil || created.Source != "collections" {
		t.Errorf("created event %+v payload %s", created, created.Payload)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000Z", created.Timestamp); err != nil {
		t.Errorf("timestamp %q", created.Timestamp)
	}
	if string(got[2].Payload) != fmt.Sprintf(`{"id": %d}`, rec) && string(got[2].Payload) != fmt.Sprintf(`{"id":%d}`, rec) {
		t.Errorf("deleted payload %s", got[2].Payload)
	}
	if p0, p1 := got[0].position(t), got[1].position(t); p1 <= p0 {
		t.Errorf("positions %d then %d", p0, p1)
	}
	if got := eventTypes(rtEventsUntilDone(t, exact, "one")); !slices.Equal(got, []string{"posts.created"}) {
		t.Fatalf("posts.created: %v", got)
	}
	if got := eventTypes(rtEventsUntilDone(t, updates, "one")); !slices.Equal(got, []string{"posts.updated"}) {
		t.Fatalf("posts.updated + postscript.*: %v", got)
	}

	// After unsubscribing posts.*, only posts.created remains.
	if m := rtAsk(t, both, `{"action":"unsubscribe","channel":"posts.*"}`); m.Type != "unsubscribed" {
		t.Fatal(m)
	}
	rec2 := s.queryInt(`INSERT INTO pgcast.object_records (object_class_id) VALUES ($1) RETURNING id`, cls)
	s.exec(`DELETE FROM pgcast.object_records WHERE id = $1`, rec2)
	s.publishDone(1, "two")
	if got := eventTypes(rtEventsUntilDone(t, both, "two")); !slices.Equal(got, []string{"posts.created"}) {
		t.Fatalf("after unsubscribe: %v", got)
	}
}

// TestRealtimePermissionMatrix is S11 for the realtime API: each read rule ×
// each kind of viewer × created/updated/deleted.
func TestRealtimePermissionMatrix(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.exec(`INSERT INTO pgcast.environments (id, name) VALUES (2, 'second')`)
	rules := []string{"public", "authenticated", "owner", "admin"}
	type class struct {
		id    int64
		title string
	}
	classes := map[string]class{}
	for _, r := range rules {
		id, f := s.class(1, "c_"+r, r, "title")
		classes[r] = class{id, fmt.Sprint(f["title"])}
		s.class(2, "c_"+r, r, "title") // so that env 2 may subscribe
	}
	viewers := []struct {
		name  string
		token string
		env   int64
		reads []string // rules whose events it receives
	}{
		{"anonymous", "", 1, []string{"public"}},
		{"authenticated", s.token("u1", auth.RoleAuthenticated, 1), 1, []string{"public", "authenticated"}},
		{"owner", s.token("o1", auth.RoleAuthenticated, 1), 1, []string{"public", "authenticated", "owner"}},
		{"admin", s.token("root", auth.RoleAdmin, 1), 1, []string{"public", "authenticated", "owner", "admin"}},
		{"other environment's admin", s.token("root2", auth.RoleAdmin, 2), 2, nil},
	}
	conns := make([]*websocket.Conn, len(viewers))
	for i, v := range viewers {
		conns[i] = s.rtConnect(v.token)
		for _, r := range rules {
			rtSubscribe(t, conns[i], "c_"+r+".*")
		}
		rtSubscribe(t, conns[i], "system.done")
	}
	for _, r := range rules {
		c := classes[r]
		rec := s.queryInt(`INSERT INTO pgcast.object_records (object_class_id, owners, cells) VALUES ($1, '{o1}', jsonb_build_object($2::text, 'a')) RETURNING id`, c.id, c.title)
		s.exec(`UPDATE pgcast.object_records SET cells = jsonb_build_object($2::text, 'b') WHERE id = $1`, rec, c.title)
		s.exec(`DELETE FROM pgcast.object_records WHERE id = $1`, rec)
	}
	s.publishDone(1, "end")
	s.publishDone(2, "end")
	for i, v := range viewers {
		var want []string
		for _, r := range v.reads {
			want = append(want, "c_"+r+".created", "c_"+r+".updated", "c_"+r+".deleted")
		}
		if got := eventTypes(rtEventsUntilDone(t, conns[i], "end")); !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", v.name, got, want)
		}
	}
}

// TestRealtimeNamespaceVisibility: auth events reach admins and the user
// named (never anonymous), storage events the owner and admins unless
// public, job and function events authenticated subscribers, system events
// everyone.
func TestRealtimeNamespaceVisibility(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	viewers := []struct {
		name, token string
		want        []string
	}{
		{"anonymous", "", []string{"storage.uploaded/public", "system.collection.created"}},
		{"u1", s.token("u1", auth.RoleAuthenticated, 1), []string{"auth.login/u1", "storage.uploaded/u1", "storage.uploaded/public", "job.completed", "function.failed", "system.collection.created"}},
		{"u2", s.token("u2", auth.RoleAuthenticated, 1), []string{"storage.uploaded/public", "job.completed", "function.failed", "system.collection.created"}},
		{"admin", s.token("root", auth.RoleAdmin, 1), []string{"auth.login/u1", "auth.logout/nobody", "storage.uploaded/u1", "storage.uploaded/public", "job.completed", "function.failed", "system.collection.created"}},
	}
	conns := make([]*websocket.Conn, len(viewers))
	for i, v := range viewers {
		conns[i] = s.rtConnect(v.token)
		rtSubscribe(t, conns[i], "auth.*", "storage.*", "job.completed", "function.*", "system.*")
	}
	s.exec(`SELECT pgcast.publish('auth.login', '{"userId":"u1"}')`)
	s.exec(`SELECT pgcast.publish('auth.logout', '{"userId":"nobody"}')`)
	s.exec(`SELECT pgcast.publish('storage.uploaded', '{"userId":"u1","path":"a.png"}')`)
	s.exec(`SELECT pgcast.publish('storage.uploaded', '{"userId":"u3","visibility":"public"}')`)
	s.exec(`SELECT pgcast.publish('job.completed', '{"name":"nightly"}')`)
	s.exec(`SELECT pgcast.publish('job.failed', '{"name":"nightly"}')`) // not subscribed
	s.exec(`SELECT pgcast.publish('function.failed', '{}')`)
	s.class(1, "fresh", "public")
	s.publishDone(1, "end")
	for i, v := range viewers {
		var got []string
		for _, e := range rtEventsUntilDone(t, conns[i], "end") {
			name := e.Type
			var p struct{ UserID, Visibility string }
			_ = json.Unmarshal(e.Payload, &p)
			switch {
			case p.Visibility == "public":
				name += "/public"
			case p.UserID != "":
				name += "/" + p.UserID
			}
			if e.Type == "system.collection.created" && (string(e.Payload) != `{"name":"fresh"}` || e.Source != "system") {
				t.Errorf("collection created: %+v", e)
			}
			got = append(got, name)
		}
		if !slices.Equal(got, v.want) {
			t.Errorf("%s: got %v, want %v", v.name, got, v.want)
		}
	}
}

// TestRealtimeTokenExpiry is S5: a live socket whose token expires is closed
// with 4001, not before.
func TestRealtimeTokenExpiry(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	tok, err := s.auth.Mint("u1", auth.RoleAuthenticated, 1, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, exp, err := s.auth.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	ws := s.rtConnect(tok)
	rtSubscribe(t, ws, "job.*")
	code, err := wstest.ReadUntilClose(ws, 15*time.Second)
	closedAt := time.Now()
	if code != realtime.CloseTokenExpired {
		t.Fatalf("closed with %d (%v), want 4001", code, err)
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) && ce.Text != "token expired" {
		t.Errorf("close reason %q", ce.Text)
	}
	if closedAt.Before(exp) {
		t.Fatalf("closed at %s, before the token's expiry %s", closedAt, exp)
	}
	// An anonymous connection has nothing to expire.
	anon := s.rtConnect("")
	if _, err := rtTryRead(anon, 500*time.Millisecond); !isTimeout(err) {
		t.Fatalf("anonymous: %v", err)
	}
}

// TestRealtimeOversizedFrame is S6: a frame over 4 KiB closes with 1009; one
// of exactly 4 KiB is answered.
func TestRealtimeOversizedFrame(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	ws := s.rtConnect("")
	frame := `{"action":"ping","pad":"` + strings.Repeat("x", 4096-len(`{"action":"ping","pad":""}`)) + `"}`
	if m := rtAsk(t, ws, frame); m.Type != "pong" || len(frame) != 4096 {
		t.Fatalf("4 KiB frame: %s", m)
	}
	rtSend(t, ws, strings.Repeat(" ", 4097))
	if code, err := wstest.ReadUntilClose(ws, 10*time.Second); code != pgws.CloseTooBig {
		t.Fatalf("closed with %d (%v), want 1009", code, err)
	}
}

// TestRealtimeResume: a client that comes back with since gets the
// acknowledgement, every event it missed in order, then live events: none
// lost and none twice, while a writer keeps committing across the switch.
func TestRealtimeResume(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	cls, f := s.class(1, "posts", "public", "title")
	title := fmt.Sprint(f["title"])
	first := s.rtConnect("")
	rtSubscribe(t, first, "posts.*")
	s.exec(`INSERT INTO pgcast.object_records (object_class_id) VALUES ($1)`, cls)
	m := rtRead(t, first, 10*time.Second)
	if m.Event == nil {
		t.Fatalf("expected an event: %s", m)
	}
	lastSeen, lastRecord := m.Event.position(t), m.Event.recordID(t)
	first.Close()

	// 1,000 changes while away, in separate transactions, plus noise the
	// channel must not carry.
	s.exec(`SELECT pgcast.publish('job.completed', '{}')`)
	for i := range 1000 {
		s.exec(`INSERT INTO pgcast.object_records (object_class_id, cells) VALUES ($1, jsonb_build_object($2::text, $3::int))`, cls, title, i)
	}
	other, _ := s.class(1, "others", "public")
	s.exec(`INSERT INTO pgcast.object_records (object_class_id) VALUES ($1)`, other)

	// A writer keeps committing while the client resumes.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.pool.Exec(context.Background(), `INSERT INTO pgcast.object_records (object_class_id) VALUES ($1)`, cls); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	ws := s.rtConnect("")
	rtSend(t, ws, fmt.Sprintf(`{"action":"subscribe","channel":"posts.*","since":"evt_%d"}`, lastSeen))
	if m := rtRead(t, ws, 10*time.Second); m.Type != "subscribed" || m.Channel != "posts.*" {
		t.Fatalf("first reply %s", m)
	}
	var got []*rtEvent
	for len(got) < 1000 {
		m := rtRead(t, ws, 20*time.Second)
		if m.Type != "event" {
			t.Fatalf("after %d events: %s", len(got), m)
		}
		got = append(got, m.Event)
	}
	close(stop)
	wg.Wait()
	final := s.queryInt(`INSERT INTO pgcast.object_records (object_class_id) VALUES ($1) RETURNING id`, cls)
	for got[len(got)-1].recordID(t) != final {
		m := rtRead(t, ws, 20*time.Second)
		if m.Type != "event" {
			t.Fatalf("after %d events: %s", len(got), m)
		}
		got = append(got, m.Event)
	}

	// The first 1,000 are the changes made while away, replayed in order.
	for i, e := range got[:1000] {
		var p struct{ ID, Title json.Number }
		_ = json.Unmarshal(e.Payload, &p)
		if e.Type != "posts.created" || p.Title.String() != strconv.Itoa(i) {
			t.Fatalf("replayed event %d: %s %s", i, e.Type, e.Payload)
		}
		if i > 0 && e.position(t) <= got[i-1].position(t) {
			t.Fatalf("replay out of order at %d", i)
		}
	}
	// Every record created after the last one seen, exactly once.
	seen := map[int64]bool{}
	var ids []int64
	for _, e := range got {
		id := e.recordID(t)
		if seen[id] {
			t.Fatalf("record %d delivered twice (event %s)", id, e.ID)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	rows, err := s.pool.Query(context.Background(), `SELECT id FROM pgcast.object_records WHERE object_class_id = $1 AND id > $2 ORDER BY id`, cls, lastRecord)
	if err != nil {
		t.Fatal(err)
	}
	var want []int64
	for rows.Next() {
		var id int64
		_ = rows.Scan(&id)
		want = append(want, id)
	}
	rows.Close()
	slices.Sort(ids)
	if !slices.Equal(ids, want) {
		t.Fatalf("delivered %d records, committed %d", len(ids), len(want))
	}
	t.Logf("replayed 1000, then %d more across the switch", len(got)-1000)

	// Resuming a channel the connection already has acknowledges without a
	// replay.
	rtSend(t, ws, fmt.Sprintf(`{"action":"subscribe","channel":"posts.*","since":"evt_%d"}`, lastSeen))
	if m := rtRead(t, ws, 10*time.Second); m.Type != "subscribed" {
		t.Fatal(m)
	}
	if m := rtAsk(t, ws, `{"action":"ping"}`); m.Type != "pong" {
		t.Fatalf("a replay followed a repeated subscribe: %s", m)
	}
}

// TestRealtimeResumeFiltersAndDedups: a resume replays only the events the
// viewer may read on that channel, and a second resume on the connection
// does not repeat what the first sent.
func TestRealtimeResumeFiltersAndDedups(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	own, _ := s.class(1, "notes", "owner")
	start := s.queryInt(`SELECT coalesce(max(id), 0) FROM pgcast.events`)
	mine := s.queryInt(`INSERT INTO pgcast.object_records (object_class_id, owners) VALUES ($1, '{u1}') RETURNING id`, own)
	s.exec(`INSERT INTO pgcast.object_records (object_class_id, owners) VALUES ($1, '{u2}')`, own)
	s.exec(`SELECT pgcast.publish('auth.login', '{"userId":"u2"}')`)
	s.exec(`SELECT pgcast.publish('auth.login', '{"userId":"u1"}')`)
	ws := s.rtConnect(s.token("u1", auth.RoleAuthenticated, 1))
	for _, ch := range []string{"notes.*", "notes.created", "auth.*"} {
		rtSend(t, ws, fmt.Sprintf(`{"action":"subscribe","channel":%q,"since":"evt_%d"}`, ch, start))
	}
	var types []string
	for len(types) < 5 { // 3 acks, notes.created (once), auth.login of u1
		m := rtRead(t, ws, 10*time.Second)
		switch m.Type {
		case "subscribed":
			types = append(types, "subscribed "+m.Channel)
		case "event":
			types = append(types, m.Event.Type)
			if m.Event.Type == "notes.created" && m.Event.recordID(t) != mine {
				t.Errorf("another user's note replayed: %s", m.Event.Payload)
			}
		default:
			t.Fatalf("unexpected %s", m)
		}
	}
	// Replies do not wait for replays; each replayed event follows its
	// channel's acknowledgement, and notes.created is not sent twice.
	idx := func(s string) int { return slices.Index(types, s) }
	if !slices.Equal(sortedCopy(types), sortedCopy([]string{"subscribed notes.*", "notes.created", "subscribed notes.created", "subscribed auth.*", "auth.login"})) ||
		idx("notes.created") < idx("subscribed notes.*") || idx("auth.login") < idx("subscribed auth.*") {
		t.Fatalf("got %v", types)
	}
	if m := rtAsk(t, ws, `{"action":"ping"}`); m.Type != "pong" {
		t.Fatalf("extra message %s", m)
	}
}

// TestRealtimeResumeBeyondRetention is R11: a resume position older than
// retention gets an explicit reset, then live events; the horizon itself
// resumes normally.
func TestRealtimeResumeBeyondRetention(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	cls, _ := s.class(1, "posts", "public")
	// watch sees the inserts live: once it has the last one, the hub has
	// published them all, so none reaches the resumes below as a late live
	// event (which would be right, and not what this test reads for).
	watch := s.rtConnect("")
	rtSubscribe(t, watch, "posts.*")
	var positions []int64
	for range 5 {
		s.exec(`INSERT INTO pgcast.object_records (object_class_id) VALUES ($1)`, cls)
		positions = append(positions, s.queryInt(`SELECT max(id) FROM pgcast.events WHERE kind = 'record_created'`))
	}
	for _, p := range positions {
		if m := rtRead(t, watch, 10*time.Second); m.Event == nil || m.Event.position(t) != p {
			t.Fatalf("watch: want evt_%d, got %s", p, m)
		}
	}
	s.exec(`DELETE FROM pgcast.events WHERE id <= $1`, positions[2])
	s.exec(`UPDATE pgcast.event_log SET pruned_through = $1`, positions[2])

	old := s.rtConnect("")
	rtSend(t, old, fmt.Sprintf(`{"action":"subscribe","channel":"posts.*","since":"evt_%d"}`, positions[0]))
	if m := rtRead(t, old, 10*time.Second); m.Type != "subscribed" {
		t.Fatal(m)
	}
	if m := rtRead(t, old, 10*time.Second); m.Type != "reset" || m.Channel != "posts.*" {
		t.Fatalf("want reset, got %s", m)
	}
	horizon := s.rtConnect("")
	rtSend(t, horizon, fmt.Sprintf(`{"action":"subscribe","channel":"posts.*","since":"evt_%d"}`, positions[2]))
	if m := rtRead(t, horizon, 10*time.Second); m.Type != "subscribed" {
		t.Fatal(m)
	}
	for _, p := range positions[3:] {
		if m := rtRead(t, horizon, 10*time.Second); m.Event == nil || m.Event.position(t) != p {
			t.Fatalf("want evt_%d, got %s", p, m)
		}
	}
	rec := s.queryInt(`INSERT INTO pgcast.object_records (object_class_id) VALUES ($1) RETURNING id`, cls)
	for _, ws := range []*websocket.Conn{old, horizon} {
		if m := rtRead(t, ws, 10*time.Second); m.Event == nil || m.Event.recordID(t) != rec {
			t.Fatalf("live after resume: %s", m)
		}
	}
}

// TestRealtimeSlowConsumer is R9 for /api/realtime: a client that stops
// reading is closed with 4008 once its bounded queue overflows.
func TestRealtimeSlowConsumer(t *testing.T) {
	t.Parallel()
	// The queue must hold a reader page (1,000 events) so that a reading
	// client never overflows.
	// The write timeout (another way to 4008) is far off: on a busy machine
	// the reader's second page could come after it, and this test is about
	// the queue's bound.
	s := newStack(t, func(c *Config) { c.WS.MaxBuffer, c.WS.WriteTimeout = 1100, 10*time.Minute })
	cls, _ := s.class(1, "posts", "public")
	// A tiny receive buffer, and the client never reads. The server's end
	// of the socket buffers a few KB only, so its writes stall after a few
	// dozen events and its queue fills from the first page on. (With the
	// kernel's buffers, megabytes of events had to go through the reader
	// before the queue could overflow: two pages of 4 KiB events took 4 s
	// on a busy machine, and more than the 20 s allowed during make test.)
	slow := s.dialSlow(realtimePath)
	rtRead(t, slow, 10*time.Second) // connected
	rtSubscribe(t, slow, "posts.*")
	s.shrinkServerBuffers(1)
	// Three pages: the queue overflows on the second.
	s.exec(`INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, 3000)`, cls)
	s.waitMetric("pgcast_hub_overflows_total", 1)
	code, err := wstest.ReadUntilClose(slow, 30*time.Second)
	if code != pgws.CloseSlowConsumer {
		t.Fatalf("slow client ended with %v (code %d), want 4008", err, code)
	}
	s.waitMetric("pgcast_ws_slow_consumer_closes_total", 1)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestRealtimeShutdown: server shutdown closes realtime sockets with 1001
// and ends their replays.
func TestRealtimeShutdown(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	ws := s.rtConnect(s.token("u1", auth.RoleAuthenticated, 1))
	rtSubscribe(t, ws, "job.*")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.srv.Stop(ctx) }()
	if code, err := wstest.ReadUntilClose(ws, 10*time.Second); code != pgws.CloseGoingAway {
		t.Fatalf("closed with %d (%v)", code, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestRealtimeReadRuleChangeTakesEffect is S11 for a live subscription: a
// collection's read rule changed in the database applies to the next
// change, on connections already subscribed (the rule travels with each
// event), and the record as the rule saw it decides.
func TestRealtimeReadRuleChangeTakesEffect(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	cls, f := s.class(1, "posts", "public", "title")
	anon := s.rtConnect("")
	alice := s.rtConnect(s.token("alice", auth.RoleAuthenticated, 1))
	for _, ws := range []*websocket.Conn{anon, alice} {
		rtSubscribe(t, ws, "posts.*", "system.done")
	}
	insert := func(title string) {
		s.exec(`INSERT INTO pgcast.object_records (object_class_id, cells, owners) VALUES ($1, jsonb_build_object($2::text, $3::text), '{alice}')`, cls, fmt.Sprint(f["title"]), title)
	}
	rule := func(r string) { s.exec(`UPDATE pgcast.object_classes SET read_rule = $1 WHERE id = $2`, r, cls) }
	insert("public")
	rule("admin")
	insert("admin only")
	rule("owner")
	insert("owners")
	rule("public")
	insert("public again")
	s.publishDone(1, "end")
	titles := func(ws *websocket.Conn) []string {
		var out []string
		for _, e := range rtEventsUntilDone(t, ws, "end") {
			var rec struct{ Title string }
			if err := json.Unmarshal(e.Payload, &rec); err != nil {
				t.Fatal(err)
			}
			out = append(out, rec.Title)
		}
		return out
	}
	if got, want := titles(anon), []string{"public", "public again"}; !slices.Equal(got, want) {
		t.Errorf("anonymous: %v, want %v", got, want)
	}
	if got, want := titles(alice), []string{"public", "owners", "public again"}; !slices.Equal(got, want) {
		t.Errorf("alice (owner): %v, want %v", got, want)
	}
}

// TestRealtimeReconnectStormIsBounded is R10: when many clients resume at
// once, this node runs at most realtime.MaxConcurrentReplays replay statements at a
// time, not one per client. The log is locked so that every replay statement
// started waits in Postgres, where it can be counted; then every client gets
// all it missed.
func TestRealtimeReconnectStormIsBounded(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	cls, _ := s.class(1, "posts", "public")
	start := s.queryInt(`SELECT coalesce(max(id), 0) FROM pgcast.events`)
	s.exec(`INSERT INTO pgcast.object_records (object_class_id) SELECT $1 FROM generate_series(1, 20)`, cls)

	ctx := context.Background()
	observer, err := pgx.Connect(ctx, s.url)
	if err != nil {
		t.Fatal(err)
	}
	defer observer.Close(ctx)
	waiting := func() int64 {
		var n int64
		if err := observer.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'
  AND (query LIKE '%FROM pgcast.event_log l%' OR query LIKE 'SELECT coalesce(max(id), 0) FROM pgcast.events%')`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	locker, err := pgx.Connect(ctx, s.url)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(ctx)
	if _, err := locker.Exec(ctx, `BEGIN; LOCK TABLE pgcast.events IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	const clients = 3 * realtime.MaxConcurrentReplays
	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		conns[i] = s.rtConnect("")
		if m := rtAsk(t, conns[i], fmt.Sprintf(`{"action":"subscribe","channel":"posts.*","since":"evt_%d"}`, start)); m.Type != "subscribed" {
			t.Fatalf("client %d: %s", i, m)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for waiting() < realtime.MaxConcurrentReplays {
		if time.Now().After(deadline) {
			t.Fatalf("%d replay statements waiting, want %d", waiting(), realtime.MaxConcurrentReplays)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The others' workers are started too: without the bound their
	// statements would join within moments.
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
		if n := waiting(); n > realtime.MaxConcurrentReplays {
			t.Fatalf("%d replay statements at once, want at most %d", n, realtime.MaxConcurrentReplays)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := locker.Exec(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	for i, ws := range conns {
		var last int64
		for n := 0; n < 20; n++ {
			m := rtRead(t, ws, 20*time.Second)
			if m.Type != "event" || m.Event.Type != "posts.created" || m.Event.position(t) <= last {
				t.Fatalf("client %d, event %d: %s", i, n, m)
			}
			last = m.Event.position(t)
		}
	}
}
