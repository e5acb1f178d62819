package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgcast/pgcast/internal/collections"
	"github.com/pgcast/pgcast/server/auth"
	"github.com/pgcast/pgcast/server/rest"
	"github.com/pgcast/pgcast/stream"
)

// apiResp is one REST response.
type apiResp struct {
	status int
	header http.Header
	body   []byte
}

func (r apiResp) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// do sends a REST request. body is sent as is when it is a string,
// JSON-encoded otherwise (nil: no body). token "" means anonymous.
func (s *stack) do(method, path, token string, body any, header ...string) apiResp {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	r := apiResp{status: resp.StatusCode, header: resp.Header, body: data}
	if r.status != http.StatusNoContent {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			s.t.Errorf("%s %s: Content-Type %q, want application/json (%s)", method, path, ct, r)
		}
		if !json.Valid(data) {
			s.t.Errorf("%s %s: body is not JSON: %s", method, path, data)
		}
	}
	return r
}

// expect checks the status and returns the body decoded.
func (s *stack) expect(r apiResp, status int) map[string]any {
	s.t.Helper()
	if r.status != status {
		s.t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	var m map[string]any
	if len(r.body) > 0 {
		dec := json.NewDecoder(bytes.NewReader(r.body))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			s.t.Fatalf("decode %s: %v", r.body, err)
		}
	}
	return m
}

type apiErr struct {
	Code    string                `json:"code"`
	Message string                `json:"message"`
	Details []collections.Problem `json:"details"`
}

// expectError checks an error response: status, code and the error shape.
func (s *stack) expectError(r apiResp, status int, code string) apiErr {
	s.t.Helper()
	if r.status != status {
		s.t.Fatalf("status %d, want %d (%s): %s", r.status, status, code, r.body)
	}
	var body struct {
		Error *apiErr `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Error == nil {
		s.t.Fatalf("error body %s: %v", r.body, err)
	}
	if body.Error.Code != code || body.Error.Message == "" || body.Error.Details == nil {
		s.t.Fatalf("error %+v, want code %s with a message and a details array: %s", body.Error, code, r.body)
	}
	return *body.Error
}

// hasDetail reports whether e lists a problem of rule on field.
func hasDetail(e apiErr, field, rule string) bool {
	for _, d := range e.Details {
		if d.Field == field && d.Rule == rule && d.Message != "" {
			return true
		}
	}
	return false
}

func (s *stack) admin(env int64) string {
	return s.token("admin-"+strconv.FormatInt(env, 10), auth.RoleAdmin, env)
}

// define creates a collection through the REST API as an admin of env.
func (s *stack) define(env int64, def string) map[string]any {
	s.t.Helper()
	return s.expect(s.do("POST", "/api/collections", s.admin(env), def), http.StatusCreated)
}

func num(t *testing.T, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v (%T) is not a JSON number", v, v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatalf("%v is not an integer", v)
	}
	return i
}

var timestampRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

func TestRESTCRUD(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.define(1, `{"name":"posts","fields":[{"name":"title","type":"string","required":true},{"name":"body","type":"text"},{"name":"views","type":"integer"}],
		"permissions":{"create":"authenticated","read":"public","update":"owner","delete":"owner"}}`)
	u1 := s.token("u1", auth.RoleAuthenticated, 1)

	created := s.expect(s.do("POST", "/api/posts", u1, map[string]any{"title": "Hello", "views": 1}), http.StatusCreated)
	id := num(t, created["id"])
	if created["title"] != "Hello" || num(t, created["views"]) != 1 || len(created) != 5 {
		t.Fatalf("created %v", created)
	}
	if _, has := created["body"]; has {
		t.Errorf("a field without a value is left out, like in events: %v", created)
	}
	for _, k := range []string{"createdAt", "updatedAt"} {
		if v, _ := created[k].(string); !timestampRE.MatchString(v) {
			t.Errorf("%s = %v, want UTC with milliseconds and Z", k, created[k])
		}
	}
	if owners := s.queryInt(`SELECT count(*) FROM pgcast.object_records WHERE id = $1 AND owners = '{u1}'`, id); owners != 1 {
		t.Error("the creator is not the record's owner")
	}

	got := s.expect(s.do("GET", fmt.Sprintf("/api/posts/%d", id), "", nil), http.StatusOK)
	if !reflect.DeepEqual(got, created) {
		t.Errorf("GET %v, want %v", got, created)
	}

	time.Sleep(2 * time.Millisecond) // so that updatedAt can move at millisecond precision
	updated := s.expect(s.do("PUT", fmt.Sprintf("/api/posts/%d", id), u1, map[string]any{"views": 2, "body": "long text"}), http.StatusOK)
	if updated["title"] != "Hello" || num(t, updated["views"]) != 2 || updated["body"] != "long text" {
		t.Errorf("partial update: %v", updated)
	}
	if updated["createdAt"] != created["createdAt"] || updated["updatedAt"].(string) <= created["updatedAt"].(string) {
		t.Errorf("timestamps after update: %v, before %v", updated, created)
	}

	var ids []int64
	for i := range 3 {
		r := s.expect(s.do("POST", "/api/posts", u1, map[string]any{"title": fmt.Sprintf("p%d", i)}), http.StatusCreated)
		ids = append(ids, num(t, r["id"]))
	}
	list := s.expect(s.do("GET", "/api/posts", "", nil), http.StatusOK)
	items := list["items"].([]any)
	if len(items) != 4 || len(list) != 1 {
		t.Fatalf("list: %v", list)
	}
	want := []int64{ids[2], ids[1], ids[0], id}
	for i, it := range items {
		if got := num(t, it.(map[string]any)["id"]); got != want[i] {
			t.Errorf("items[%d].id = %d, want %d (newest first)", i, got, want[i])
		}
	}
	if !reflect.DeepEqual(items[3], updated) {
		t.Errorf("listed %v, want %v", items[3], updated)
	}

	r := s.do("DELETE", fmt.Sprintf("/api/posts/%d", id), u1, nil)
	if r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("DELETE: %s", r)
	}
	s.expectError(s.do("GET", fmt.Sprintf("/api/posts/%d", id), "", nil), http.StatusNotFound, "not_found")
	s.expectError(s.do("DELETE", fmt.Sprintf("/api/posts/%d", id), u1, nil), http.StatusNotFound, "not_found")
	s.expectError(s.do("PUT", fmt.Sprintf("/api/posts/%d", id), u1, `{}`), http.StatusNotFound, "not_found")
}

func TestRESTListLimitAndPaging(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	c := s.define(1, `{"name":"notes","fields":[{"name":"n","type":"integer"}],"permissions":{"read":"public"}}`)
	fieldID := num(t, c["fields"].([]any)[0].(map[string]any)["id"])
	s.exec(`INSERT INTO pgcast.object_records (object_class_id, cells)
	        SELECT $1, jsonb_build_object($2::text, i) FROM generate_series(1, 1005) i`, num(t, c["id"]), strconv.FormatInt(fieldID, 10))

	items := func(r apiResp) []any { s.t.Helper(); return s.expect(r, http.StatusOK)["items"].([]any) }
	if got := items(s.do("GET", "/api/notes", "", nil)); len(got) != rest.DefaultListLimit || num(t, got[0].(map[string]any)["n"]) != 1005 {
		t.Errorf("default page: %d items, first %v", len(got), got[0])
	}
	if got := items(s.do("GET", "/api/notes?limit=1000", "", nil)); len(got) != rest.MaxListLimit {
		t.Errorf("limit=1000: %d items", len(got))
	}
	page := items(s.do("GET", "/api/notes?limit=2", "", nil))
	last := num(t, page[1].(map[string]any)["id"])
	next := items(s.do("GET", fmt.Sprintf("/api/notes?limit=2&before=%d", last), "", nil))
	if len(next) != 2 || num(t, next[0].(map[string]any)["id"]) >= last || num(t, next[0].(map[string]any)["n"]) != 1003 {
		t.Errorf("next page after %d: %v", last, next)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "limit=-1", "before=x", "before=0"} {
		e := s.expectError(s.do("GET", "/api/notes?"+q, "", nil), http.StatusBadRequest, "validation_error")
		if field, _, _ := strings.Cut(q, "="); len(e.Details) != 1 || e.Details[0].Field != field {
			t.Errorf("%s: details %+v", q, e.Details)
		}
	}
}

func TestRESTErrorCodes(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.define(1, `{"name":"posts","fields":[{"name":"title","type":"string"}],"permissions":{"create":"authenticated","read":"authenticated","update":"admin","delete":"admin"}}`)
	u1 := s.token("u1", auth.RoleAuthenticated, 1)
	rec := num(t, s.expect(s.do("POST", "/api/posts", u1, `{"title":"x"}`), http.StatusCreated)["id"])
	recPath := fmt.Sprintf("/api/posts/%d", rec)

	// validation_error
	e := s.expectError(s.do("POST", "/api/posts", u1, `{"title":"x","color":"red"}`), http.StatusBadRequest, "validation_error")
	if !hasDetail(e, "color", "unknown") {
		t.Errorf("unknown key: %+v", e)
	}
	// bad_request
	for name, body := range map[string]string{
		"malformed": `{"title":`, "array": `[{"title":"x"}]`, "string": `"x"`, "null": `null`, "empty": ``,
		"two objects": `{"title":"a"} {"title":"b"}`,
	} {
		e := s.expectError(s.do("POST", "/api/posts", u1, body), http.StatusBadRequest, "bad_request")
		if len(e.Details) != 0 {
			t.Errorf("%s: details %+v", name, e.Details)
		}
	}
	s.expectError(s.do("POST", "/api/posts", u1, "{\"title\":\"\xff\"}"), http.StatusBadRequest, "bad_request")
	s.expectError(s.do("GET", "/api/posts/abc", u1, nil), http.StatusBadRequest, "bad_request")
	s.expectError(s.do("GET", "/api/posts/0", u1, nil), http.StatusBadRequest, "bad_request")
	s.expectError(s.do("POST", "/api/posts", u1, `title=x`, "Content-Type", "application/x-www-form-urlencoded"), http.StatusUnsupportedMediaType, "bad_request")
	big := `{"title":"` + strings.Repeat("x", rest.MaxBody) + `"}`
	s.expectError(s.do("POST", "/api/posts", u1, big), http.StatusRequestEntityTooLarge, "bad_request")
	// A body without Content-Type is accepted.
	s.expect(s.do("POST", "/api/posts", u1, `{"title":"y"}`, "Content-Type", ""), http.StatusCreated)
	// unauthorized: no token where one is needed, a bad token, an expired one.
	r := s.do("GET", "/api/posts", "", nil)
	s.expectError(r, http.StatusUnauthorized, "unauthorized")
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("401 without WWW-Authenticate: %v", r.header)
	}
	s.expectError(s.do("GET", "/api/posts", "not-a-jwt", nil), http.StatusUnauthorized, "unauthorized")
	expired, err := auth.NewAuthenticator(auth.Config{Secret: []byte(testSecret), Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	old, _ := expired.Mint("u1", auth.RoleAuthenticated, 1, time.Hour)
	if e := s.expectError(s.do("GET", "/api/posts", old, nil), http.StatusUnauthorized, "unauthorized"); e.Message != "token expired" {
		t.Errorf("expired token: %+v", e)
	}
	// A bad token is refused even where anonymous callers are allowed.
	s.define(1, `{"name":"open","permissions":{"read":"public"}}`)
	s.expectError(s.do("GET", "/api/open", "not-a-jwt", nil), http.StatusUnauthorized, "unauthorized")
	// forbidden
	s.expectError(s.do("PUT", recPath, u1, `{"title":"z"}`), http.StatusForbidden, "forbidden")
	s.expectError(s.do("GET", "/api/collections", u1, nil), http.StatusForbidden, "forbidden")
	// not_found
	s.expectError(s.do("GET", "/api/nope", u1, nil), http.StatusNotFound, "not_found")
	s.expectError(s.do("GET", "/api/nope/1", u1, nil), http.StatusNotFound, "not_found")
	s.expectError(s.do("GET", "/api/posts/999999", u1, nil), http.StatusNotFound, "not_found")
	s.expectError(s.do("GET", "/api/posts/1/extra", u1, nil), http.StatusNotFound, "not_found")
	s.expectError(s.do("GET", "/api/collections/nope", s.admin(1), nil), http.StatusNotFound, "not_found")
	// A class with a reserved name made in SQL is not served.
	s.exec(`INSERT INTO pgcast.object_classes (name, read_rule) VALUES ('storage', 'public')`)
	s.expectError(s.do("GET", "/api/storage", "", nil), http.StatusNotFound, "not_found")
	// method_not_allowed
	for _, c := range []struct{ method, path, allow string }{
		{"PATCH", recPath, "GET, PUT, DELETE"},
		{"POST", recPath, "GET, PUT, DELETE"},
		{"DELETE", "/api/posts", "GET, POST"},
		{"PUT", "/api/collections", "GET, POST"},
		{"GET", "/api/events", "POST"},
		{"DELETE", "/api/collections/posts", "GET"},
	} {
		r := s.do(c.method, c.path, u1, nil)
		s.expectError(r, http.StatusMethodNotAllowed, "method_not_allowed")
		if got := r.header.Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
		}
	}
}

func TestRESTFieldTypes(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.define(1, `{"name":"things","permissions":{"create":"public","read":"public","update":"public"},"fields":[
		{"name":"s","type":"string"},{"name":"t","type":"text"},{"name":"i","type":"integer"},{"name":"f","type":"float"},
		{"name":"b","type":"boolean"},{"name":"d","type":"datetime"},{"name":"j","type":"json"}]}`)
	long := strings.Repeat("é", collections.MaxStringLen)
	ok := []struct {
		field, in, stored string
	}{
		{"s", `"hello"`, `"hello"`},
		{"s", `""`, `""`},
		{"s", `"` + long + `"`, `"` + long + `"`},
		{"s", `null`, `null`},
		{"t", `"` + strings.Repeat("x", 10000) + `"`, `"` + strings.Repeat("x", 10000) + `"`},
		{"i", `42`, `42`},
		{"i", `-7`, `-7`},
		{"i", `1e3`, `1000`},
		{"i", `2.0`, `2`},
		{"i", `9007199254740991`, `9007199254740991`},
		{"f", `1.5`, `1.5`},
		{"f", `3`, `3`},
		{"f", `-2.5e-3`, `-0.0025`},
		{"b", `true`, `true`},
		{"b", `false`, `false`},
		{"d", `"2026-06-08T12:00:00Z"`, `"2026-06-08T12:00:00.000Z"`},
		{"d", `"2026-06-08T14:00:00.5+02:00"`, `"2026-06-08T12:00:00.500Z"`},
		{"d", `"2026-06-08T12:00:00.123456789Z"`, `"2026-06-08T12:00:00.123456789Z"`},
		{"j", `{"a":[1,"x",null,{"b":true}]}`, `{"a":[1,"x",null,{"b":true}]}`},
		{"j", `[1,2]`, `[1,2]`},
		{"j", `"just a string"`, `"just a string"`},
	}
	for _, c := range ok {
		r := s.expect(s.do("POST", "/api/things", "", `{"`+c.field+`":`+c.in+`}`), http.StatusCreated)
		id := num(t, r["id"])
		var got string
		if err := s.pool.QueryRow(context.Background(), `SELECT (cells -> (SELECT f.id::text FROM pgcast.object_class_fields f WHERE f.name = $2))::text
			FROM pgcast.object_records WHERE id = $1`, id, c.field).Scan(&got); err != nil {
			t.Fatal(err)
		}
		var want any
		_ = json.Unmarshal([]byte(c.stored), &want)
		var have any
		_ = json.Unmarshal([]byte(got), &have)
		if !reflect.DeepEqual(have, want) {
			t.Errorf("%s=%.40s stored as %.40s, want %.40s", c.field, c.in, got, c.stored)
		}
	}
	bad := []struct {
		field, in, rule string
	}{
		{"s", `1`, "type"},
		{"s", `true`, "type"},
		{"s", `["x"]`, "type"},
		{"s", `"` + long + `x"`, "max_length"},
		{"s", `"a\u0000b"`, "type"},
		{"t", `{"x":1}`, "type"},
		{"i", `1.5`, "type"},
		{"i", `"1"`, "type"},
		{"i", `9007199254740992`, "range"},
		{"i", `-9007199254740992`, "range"},
		{"i", `1e400`, "range"},
		{"f", `"1.5"`, "type"},
		{"f", `1e400`, "range"},
		{"f", `false`, "type"},
		{"b", `"true"`, "type"},
		{"b", `1`, "type"},
		{"d", `"2026-06-08"`, "type"},
		{"d", `"2026-06-08T12:00:00"`, "type"},
		{"d", `"yesterday"`, "type"},
		{"d", `1700000000`, "type"},
		{"j", `{"k":"\u0000"}`, "type"},
	}
	for _, c := range bad {
		e := s.expectError(s.do("POST", "/api/things", "", `{"`+c.field+`":`+c.in+`}`), http.StatusBadRequest, "validation_error")
		if !hasDetail(e, c.field, c.rule) || len(e.Details) != 1 {
			t.Errorf("%s=%.40s: details %+v, want rule %s", c.field, c.in, e.Details, c.rule)
		}
		// The same check applies to updates.
		r := s.expect(s.do("POST", "/api/things", "", `{}`), http.StatusCreated)
		e = s.expectError(s.do("PUT", fmt.Sprintf("/api/things/%d", num(t, r["id"])), "", `{"`+c.field+`":`+c.in+`}`), http.StatusBadRequest, "validation_error")
		if !hasDetail(e, c.field, c.rule) {
			t.Errorf("PUT %s=%.40s: details %+v, want rule %s", c.field, c.in, e.Details, c.rule)
		}
	}
	if n := s.queryInt(`SELECT count(*) FROM pgcast.object_records`); n != int64(len(ok)+len(bad)) {
		t.Errorf("%d records, want %d: an invalid request wrote", n, len(ok)+len(bad))
	}
}

func TestRESTRecordKeys(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.define(1, `{"name":"posts","fields":[{"name":"title","type":"string","required":true},{"name":"tag","type":"string"}],
		"permissions":{"create":"public","read":"public","update":"public"}}`)
	for _, k := range []string{"id", "createdAt", "updatedAt"} {
		e := s.expectError(s.do("POST", "/api/posts", "", `{"title":"x","`+k+`":1}`), http.StatusBadRequest, "validation_error")
		if !hasDetail(e, k, "read_only") {
			t.Errorf("%s: %+v", k, e)
		}
	}
	e := s.expectError(s.do("POST", "/api/posts", "", `{"tag":"a","nope":1,"Title":"x"}`), http.StatusBadRequest, "validation_error")
	if !hasDetail(e, "nope", "unknown") || !hasDetail(e, "Title", "unknown") || !hasDetail(e, "title", "required") || len(e.Details) != 3 {
		t.Errorf("every problem is reported: %+v", e.Details)
	}
	e = s.expectError(s.do("POST", "/api/posts", "", `{"title":"a","title":"b"}`), http.StatusBadRequest, "validation_error")
	if !hasDetail(e, "title", "duplicate") {
		t.Errorf("duplicate key: %+v", e.Details)
	}
	e = s.expectError(s.do("POST", "/api/posts", "", `{"title":null}`), http.StatusBadRequest, "validation_error")
	if !hasDetail(e, "title", "required") {
		t.Errorf("null required: %+v", e.Details)
	}
	rec := s.expect(s.do("POST", "/api/posts", "", `{"title":"a","tag":"t"}`), http.StatusCreated)
	path := fmt.Sprintf("/api/posts/%d", num(t, rec["id"]))
	// A partial update need not repeat required fields, may null optional ones,
	// may not null required ones or touch server-managed keys.
	got := s.expect(s.do("PUT", path, "", `{"tag":null}`), http.StatusOK)
	if got["title"] != "a" || got["tag"] != nil {
		t.Errorf("after PUT tag=null: %v", got)
	}
	if _, has := got["tag"]; !has {
		t.Errorf("a null cell is shown as null: %v", got)
	}
	s.expectError(s.do("PUT", path, "", `{"title":null}`), http.StatusBadRequest, "validation_error")
	s.expectError(s.do("PUT", path, "", `{"id":5}`), http.StatusBadRequest, "validation_error")
	if again := s.expect(s.do("PUT", path, "", `{}`), http.StatusOK); !reflect.DeepEqual(again, got) {
		t.Errorf("empty update changed the record: %v, was %v", again, got)
	}
}

// permCase is one cell of the permission matrix.
type permCase struct {
	rule, caller, op string
	want             int
}

func TestRESTPermissionMatrix(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	callers := map[string]string{
		"anonymous": "",
		"other":     s.token("other", auth.RoleAuthenticated, 1),
		"owner":     s.token("owner1", auth.RoleAuthenticated, 1),
		"assignee":  s.token("asg1", auth.RoleAuthenticated, 1),
		"admin":     s.token("boss", auth.RoleAdmin, 1),
	}
	classes := map[string]int64{}
	for _, rule := range []string{"public", "authenticated", "owner", "admin"} {
		c := s.define(1, fmt.Sprintf(`{"name":"c_%s","fields":[{"name":"title","type":"string"}],
			"permissions":{"create":%[1]q,"read":%[1]q,"update":%[1]q,"delete":%[1]q}}`, rule))
		classes[rule] = num(t, c["id"])
	}
	// record makes a record owned by owner1 and assigned to asg1.
	record := func(rule string) int64 {
		return s.queryInt(`INSERT INTO pgcast.object_records (object_class_id, owners, assignees) VALUES ($1, '{owner1}', '{asg1}') RETURNING id`, classes[rule])
	}
	const ok, created, gone, unauth, forbid = 200, 201, 204, 401, 403
	expect := map[string]map[string]int{
		// rule → caller → status for get/update/delete (list and create below)
		"public":        {"anonymous": ok, "other": ok, "owner": ok, "assignee": ok, "admin": ok},
		"authenticated": {"anonymous": unauth, "other": ok, "owner": ok, "assignee": ok, "admin": ok},
		"owner":         {"anonymous": unauth, "other": forbid, "owner": ok, "assignee": ok, "admin": ok},
		"admin":         {"anonymous": unauth, "other": forbid, "owner": forbid, "assignee": forbid, "admin": ok},
	}
	var cases []permCase
	for rule, byCaller := range expect {
		for caller, want := range byCaller {
			list, create, del := want, want, want
			if want == ok {
				create, del = created, gone
			}
			if rule == "owner" && caller == "other" {
				list, create = ok, created // lists only its own records; create: any signed-in caller
			}
			cases = append(cases,
				permCase{rule, caller, "list", list}, permCase{rule, caller, "get", want},
				permCase{rule, caller, "create", create}, permCase{rule, caller, "update", want},
				permCase{rule, caller, "delete", del})
		}
	}
	for _, c := range cases {
		name := c.rule + "/" + c.caller + "/" + c.op
		id := record(c.rule)
		path := fmt.Sprintf("/api/c_%s", c.rule)
		var r apiResp
		switch c.op {
		case "list":
			r = s.do("GET", path, callers[c.caller], nil)
		case "get":
			r = s.do("GET", fmt.Sprintf("%s/%d", path, id), callers[c.caller], nil)
		case "create":
			r = s.do("POST", path, callers[c.caller], `{"title":"new"}`)
		case "update":
			r = s.do("PUT", fmt.Sprintf("%s/%d", path, id), callers[c.caller], `{"title":"changed"}`)
		case "delete":
			r = s.do("DELETE", fmt.Sprintf("%s/%d", path, id), callers[c.caller], nil)
		}
		if r.status != c.want {
			t.Errorf("%s: status %d, want %d: %s", name, r.status, c.want, r.body)
			continue
		}
		if code := map[int]string{unauth: "unauthorized", forbid: "forbidden"}[c.want]; code != "" {
			s.expectError(r, c.want, code)
		}
		// Denied writes change nothing.
		if c.want >= 400 && (c.op == "update" || c.op == "delete") {
			if n := s.queryInt(`SELECT count(*) FROM pgcast.object_records WHERE id = $1 AND cells = '{}'`, id); n != 1 {
				t.Errorf("%s: denied %s changed the record", name, c.op)
			}
		}
		if c.op == "list" && c.want == ok {
			ids := map[int64]bool{}
			for _, it := range s.expect(r, ok)["items"].([]any) {
				ids[num(t, it.(map[string]any)["id"])] = true
			}
			// owner rule: owner1 and asg1 see the record, other sees none.
			if ownOnly := c.rule == "owner" && c.caller == "other"; ownOnly && len(ids) != 0 {
				t.Errorf("%s: other lists records it does not own: %v", name, ids)
			} else if !ownOnly && !ids[id] {
				t.Errorf("%s: list lacks record %d: %v", name, id, ids)
			}
		}
	}
	// On create, an authenticated caller becomes the owner; an anonymous one
	// leaves no owner.
	r := s.expect(s.do("POST", "/api/c_public", callers["other"], `{"title":"mine"}`), created)
	if n := s.queryInt(`SELECT count(*) FROM pgcast.object_records WHERE id = $1 AND owners = '{other}'`, num(t, r["id"])); n != 1 {
		t.Error("creator is not owner")
	}
	r = s.expect(s.do("POST", "/api/c_public", "", `{"title":"anon"}`), created)
	if n := s.queryInt(`SELECT count(*) FROM pgcast.object_records WHERE id = $1 AND owners = '{}'`, num(t, r["id"])); n != 1 {
		t.Error("anonymous create has owners")
	}
	// other now owns a record of c_owner: it can read it and lists only it.
	r = s.expect(s.do("POST", "/api/c_owner", callers["other"], `{"title":"mine"}`), created)
	list := s.expect(s.do("GET", "/api/c_owner", callers["other"], nil), ok)["items"].([]any)
	if len(list) != 2 || num(t, list[0].(map[string]any)["id"]) != num(t, r["id"]) { // this one and the matrix's create
		t.Errorf("owner list of other: %v", list)
	}
	for _, it := range list {
		if n := s.queryInt(`SELECT count(*) FROM pgcast.object_records WHERE id = $1 AND 'other' = ANY (owners)`, num(t, it.(map[string]any)["id"])); n != 1 {
			t.Errorf("other lists %v, which it does not own", it)
		}
	}
	s.expect(s.do("GET", fmt.Sprintf("/api/c_owner/%d", num(t, r["id"])), callers["other"], nil), ok)
	// A rule changed in the database takes effect at once.
	s.exec(`UPDATE pgcast.object_classes SET read_rule = 'admin' WHERE name = 'c_public'`)
	s.expectError(s.do("GET", "/api/c_public", "", nil), unauth, "unauthorized")
}

func TestRESTEnvironmentIsolation(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.exec(`INSERT INTO pgcast.environments (id, name) VALUES (2, 'two')`)
	def := `{"name":"posts","fields":[{"name":"title","type":"string"}],"permissions":{"create":"authenticated","read":"authenticated","update":"authenticated","delete":"authenticated"}}`
	c1, c2 := s.define(1, def), s.define(2, def)
	if c1["id"] == c2["id"] {
		t.Fatal("one class for two environments")
	}
	u1, u2 := s.token("u", auth.RoleAuthenticated, 1), s.token("u", auth.RoleAuthenticated, 2)
	r1 := s.expect(s.do("POST", "/api/posts", u1, `{"title":"env1"}`), http.StatusCreated)
	r2 := s.expect(s.do("POST", "/api/posts", u2, `{"title":"env2"}`), http.StatusCreated)
	for _, c := range []struct {
		token string
		want  string
	}{{u1, "env1"}, {u2, "env2"}} {
		items := s.expect(s.do("GET", "/api/posts", c.token, nil), http.StatusOK)["items"].([]any)
		if len(items) != 1 || items[0].(map[string]any)["title"] != c.want {
			t.Errorf("list sees %v, want only %s", items, c.want)
		}
	}
	p1 := fmt.Sprintf("/api/posts/%d", num(t, r1["id"]))
	s.expectError(s.do("GET", p1, u2, nil), http.StatusNotFound, "not_found")
	s.expectError(s.do("PUT", p1, u2, `{"title":"hijack"}`), http.StatusNotFound, "not_found")
	s.expectError(s.do("DELETE", p1, u2, nil), http.StatusNotFound, "not_found")
	s.expect(s.do("GET", p1, u1, nil), http.StatusOK)
	s.expect(s.do("GET", fmt.Sprintf("/api/posts/%d", num(t, r2["id"])), u2, nil), http.StatusOK)

	// A collection only in environment 2 does not exist for environment 1,
	// nor for anonymous callers, who are in environment 1.
	s.define(2, `{"name":"secret","permissions":{"read":"public"}}`)
	s.expectError(s.do("GET", "/api/secret", u1, nil), http.StatusNotFound, "not_found")
	s.expectError(s.do("GET", "/api/secret", "", nil), http.StatusNotFound, "not_found")
	s.expect(s.do("GET", "/api/secret", u2, nil), http.StatusOK)
	// Listings are per environment.
	for env, want := range map[int64]int{1: 1, 2: 2} {
		items := s.expect(s.do("GET", "/api/collections", s.admin(env), nil), http.StatusOK)["items"].([]any)
		if len(items) != want {
			t.Errorf("env %d lists %d collections, want %d", env, len(items), want)
		}
	}
	s.expectError(s.do("GET", "/api/collections/secret", s.admin(1), nil), http.StatusNotFound, "not_found")
	// An environment that does not exist.
	s.expectError(s.do("POST", "/api/collections", s.admin(9), def), http.StatusNotFound, "not_found")
}

func TestRESTCollections(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	admin := s.admin(1)
	if r := s.expectRaw(s.do("GET", "/api/collections", admin, nil), http.StatusOK); string(r) != `{"items":[]}`+"\n" {
		t.Errorf("empty listing: %s", r)
	}
	c := s.define(1, `{"name":"posts","fields":[{"name":"title","type":"string","required":true},{"name":"n","type":"integer"}],"permissions":{"read":"public"}}`)
	if r := s.expectRaw(s.do("GET", "/api/posts", "", nil), http.StatusOK); string(r) != `{"items":[]}`+"\n" {
		t.Errorf("empty list: %s", r)
	}
	classID := num(t, c["id"])
	if c["name"] != "posts" || len(c) != 4 {
		t.Errorf("created %v", c)
	}
	if p := c["permissions"].(map[string]any); !reflect.DeepEqual(p, map[string]any{"create": "authenticated", "read": "public", "update": "owner", "delete": "owner"}) {
		t.Errorf("permissions (defaults filled in): %v", p)
	}
	fields := c["fields"].([]any)
	for i, want := range []struct {
		name, typ string
		req       bool
	}{{"title", "string", true}, {"n", "integer", false}} {
		f := fields[i].(map[string]any)
		id := num(t, f["id"])
		if f["name"] != want.name || f["type"] != want.typ || f["required"] != want.req {
			t.Errorf("fields[%d] = %v", i, f)
		}
		if n := s.queryInt(`SELECT count(*) FROM pgcast.object_class_fields WHERE id = $1 AND object_class_id = $2 AND name = $3`, id, classID, want.name); n != 1 {
			t.Errorf("field id %d is not %s's id in the database", id, want.name)
		}
	}
	list := s.expect(s.do("GET", "/api/collections", admin, nil), http.StatusOK)["items"].([]any)
	if len(list) != 1 || !reflect.DeepEqual(list[0], c) {
		t.Errorf("listed %v, want [%v]", list, c)
	}
	if got := s.expect(s.do("GET", "/api/collections/posts", admin, nil), http.StatusOK); !reflect.DeepEqual(got, c) {
		t.Errorf("GET one: %v", got)
	}
	// Creating it appended exactly one collection_created entry (the
	// trigger's: the REST handler emits nothing itself).
	if n := s.queryInt(`SELECT count(*) FROM pgcast.events WHERE kind = 'collection_created' AND object_class_id = $1 AND data = '{"name":"posts"}'`, classID); n != 1 {
		t.Errorf("%d collection_created entries, want 1", n)
	}

	e := s.expectError(s.do("POST", "/api/collections", admin, `{"name":"posts"}`), http.StatusConflict, "validation_error")
	if !hasDetail(e, "name", "unique") {
		t.Errorf("duplicate: %+v", e)
	}
	for _, name := range collections.ReservedNames() {
		e := s.expectError(s.do("POST", "/api/collections", admin, `{"name":"`+name+`"}`), http.StatusBadRequest, "validation_error")
		if !hasDetail(e, "name", "reserved") {
			t.Errorf("%s: %+v", name, e)
		}
	}
	for body, want := range map[string][2]string{
		`{"name":"Posts"}`:    {"name", "pattern"},
		`{"name":"1posts"}`:   {"name", "pattern"},
		`{"name":"my-posts"}`: {"name", "pattern"},
		`{"name":"_x"}`:       {"name", "pattern"},
		`{"name":""}`:         {"name", "required"},
		`{"name":"` + strings.Repeat("a", 64) + `"}`: {"name", "max_length"},
		`{"name":5}`:                  {"name", "type"},
		`{}`:                          {"name", "required"},
		`{"name":"a","color":"red"}`:  {"color", "unknown"},
		`{"name":"a","fields":{}}`:    {"fields", "type"},
		`{"name":"a","fields":["x"]}`: {"fields[0]", "type"},
		`{"name":"a","fields":[{"name":"x","type":"uuid"}]}`:                            {"fields[0].type", "enum"},
		`{"name":"a","fields":[{"name":"x"}]}`:                                          {"fields[0].type", "required"},
		`{"name":"a","fields":[{"type":"json"}]}`:                                       {"fields[0].name", "required"},
		`{"name":"a","fields":[{"name":"X","type":"json"}]}`:                            {"fields[0].name", "pattern"},
		`{"name":"a","fields":[{"name":"id","type":"json"}]}`:                           {"fields[0].name", "reserved"},
		`{"name":"a","fields":[{"name":"x","type":"json","required":"yes"}]}`:           {"fields[0].required", "type"},
		`{"name":"a","fields":[{"name":"x","type":"json","size":3}]}`:                   {"fields[0].size", "unknown"},
		`{"name":"a","fields":[{"name":"x","type":"json"},{"name":"x","type":"text"}]}`: {"fields[1].name", "unique"},
		`{"name":"a","permissions":{"read":"everyone"}}`:                                {"permissions.read", "enum"},
		`{"name":"a","permissions":{"list":"public"}}`:                                  {"permissions.list", "unknown"},
		`{"name":"a","permissions":[]}`:                                                 {"permissions", "type"},
		`{"name":"a","name":"b"}`:                                                       {"name", "duplicate"},
	} {
		e := s.expectError(s.do("POST", "/api/collections", admin, body), http.StatusBadRequest, "validation_error")
		if !hasDetail(e, want[0], want[1]) {
			t.Errorf("%s: details %+v, want %s/%s", body, e.Details, want[0], want[1])
		}
	}
	var many []string
	for i := range collections.MaxFields + 1 {
		many = append(many, fmt.Sprintf(`{"name":"f%d","type":"text"}`, i))
	}
	e = s.expectError(s.do("POST", "/api/collections", admin, `{"name":"wide","fields":[`+strings.Join(many, ",")+`]}`), http.StatusBadRequest, "validation_error")
	if !hasDetail(e, "fields", "max_items") {
		t.Errorf("too many fields: %+v", e.Details)
	}
	s.expectError(s.do("POST", "/api/collections", admin, `{"name":`), http.StatusBadRequest, "bad_request")
	s.expectError(s.do("POST", "/api/collections", "", `{"name":"x"}`), http.StatusUnauthorized, "unauthorized")
	s.expectError(s.do("POST", "/api/collections", s.token("u", auth.RoleAuthenticated, 1), `{"name":"x"}`), http.StatusForbidden, "forbidden")
	s.expectError(s.do("GET", "/api/collections", "", nil), http.StatusUnauthorized, "unauthorized")
	if n := s.queryInt(`SELECT count(*) FROM pgcast.object_classes`); n != 1 {
		t.Errorf("%d classes after refused definitions, want 1", n)
	}
}

func TestRESTEvents(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.exec(`INSERT INTO pgcast.environments (id, name) VALUES (2, 'two')`)
	r := s.expect(s.do("POST", "/api/events", s.admin(2), `{"type":"job.completed","payload":{"name":"nightly"}}`), http.StatusCreated)
	pos, err := strconv.ParseInt(strings.TrimPrefix(r["id"].(string), "evt_"), 10, 64)
	if err != nil {
		t.Fatalf("id %v", r["id"])
	}
	if r["type"] != "job.completed" || r["source"] != "jobs" || !reflect.DeepEqual(r["payload"], map[string]any{"name": "nightly"}) ||
		!timestampRE.MatchString(r["timestamp"].(string)) {
		t.Errorf("published %v", r)
	}
	if n := s.queryInt(`SELECT count(*) FROM pgcast.events WHERE id = $1 AND kind = 'published' AND environment_id = 2
		AND data = '{"type":"job.completed","source":"jobs","payload":{"name":"nightly"}}'`, pos); n != 1 {
		t.Error("the log entry is not the one pgcast.publish writes")
	}
	// No payload means {}.
	r = s.expect(s.do("POST", "/api/events", s.admin(1), `{"type":"auth.login"}`), http.StatusCreated)
	if !reflect.DeepEqual(r["payload"], map[string]any{}) || r["source"] != "auth" {
		t.Errorf("published %v", r)
	}
	before := s.queryInt(`SELECT count(*) FROM pgcast.events`)
	for body, want := range map[string][2]string{
		`{"type":"posts.created","payload":{}}`: {"type", "invalid"},
		`{"type":"billing.paid"}`:               {"type", "invalid"},
		`{"type":"job"}`:                        {"type", "invalid"},
		`{"type":"job..x"}`:                     {"type", "invalid"},
		`{"type":"job.done!"}`:                  {"type", "invalid"},
		`{"type":7}`:                            {"type", "type"},
		`{"payload":{}}`:                        {"type", "required"},
		`{"type":"job.done","payload":[1]}`:     {"payload", "type"},
		`{"type":"job.done","payload":"x"}`:     {"payload", "type"},
		`{"type":"job.done","source":"me"}`:     {"source", "unknown"},
	} {
		e := s.expectError(s.do("POST", "/api/events", s.admin(1), body), http.StatusBadRequest, "validation_error")
		if !hasDetail(e, want[0], want[1]) {
			t.Errorf("%s: %+v, want %s/%s", body, e, want[0], want[1])
		}
	}
	e := s.expectError(s.do("POST", "/api/events", s.admin(1), `{"type":"billing.paid"}`), http.StatusBadRequest, "validation_error")
	if !strings.Contains(e.Message, `unknown event namespace "billing"`) {
		t.Errorf("the database's reason is not passed on: %q", e.Message)
	}
	// An application namespace, once added, is accepted.
	s.exec(`INSERT INTO pgcast.publish_namespaces (name, source) VALUES ('billing', 'payments')`)
	if r := s.expect(s.do("POST", "/api/events", s.admin(1), `{"type":"billing.paid"}`), http.StatusCreated); r["source"] != "payments" {
		t.Errorf("published %v", r)
	}
	s.expectError(s.do("POST", "/api/events", "", `{"type":"job.done"}`), http.StatusUnauthorized, "unauthorized")
	s.expectError(s.do("POST", "/api/events", s.token("u", auth.RoleAuthenticated, 1), `{"type":"job.done"}`), http.StatusForbidden, "forbidden")
	if n := s.queryInt(`SELECT count(*) FROM pgcast.events`); n != before+1 {
		t.Errorf("%d entries appended, want only the billing one", n-before)
	}
}

// logEntry is a pgcast.events row without its position.
type logEntry struct {
	Kind string
	Data map[string]any
}

func (s *stack) lastEntries(kind string, n int) []logEntry {
	s.t.Helper()
	rows, err := s.pool.Query(context.Background(), `SELECT kind, coalesce(object_record_id, 0), data::text FROM pgcast.events WHERE kind = $1 ORDER BY id DESC LIMIT $2`, kind, n)
	if err != nil {
		s.t.Fatal(err)
	}
	defer rows.Close()
	var out []logEntry
	for rows.Next() {
		var e logEntry
		var recordID int64
		var data string
		if err := rows.Scan(&e.Kind, &recordID, &data); err != nil {
			s.t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(data), &e.Data); err != nil {
			s.t.Fatal(err)
		}
		// The record as the reader builds it from the entry, in place of
		// what it is built from (which holds the exact timestamps).
		rec, err := stream.EntryRecord(recordID, []byte(data))
		if err != nil {
			s.t.Fatal(err)
		}
		for _, k := range []string{"cells", "fields", "created_at", "updated_at"} {
			delete(e.Data, k)
		}
		var v any
		if err := json.Unmarshal(rec, &v); err != nil {
			s.t.Fatal(err)
		}
		e.Data["record"] = v
		out = append(out, e)
	}
	if len(out) != n {
		s.t.Fatalf("%d %s entries, want %d", len(out), kind, n)
	}
	return out
}

// without returns data with the record's server-managed values blanked.
func without(data map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range data {
		out[k] = v
	}
	if rec, ok := data["record"].(map[string]any); ok {
		r := map[string]any{}
		for k, v := range rec {
			r[k] = v
		}
		r["id"], r["createdAt"], r["updatedAt"] = 0, "", ""
		out["record"] = r
	}
	return out
}

// TestRESTWriteMatchesSQLWriteEvents: a REST write appends the same log
// entries as the equivalent SQL write, and the REST response is the record
// in the event.
func TestRESTWriteMatchesSQLWriteEvents(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	c := s.define(1, `{"name":"posts","fields":[{"name":"title","type":"string"},{"name":"n","type":"integer"},{"name":"meta","type":"json"}],
		"permissions":{"create":"authenticated","read":"owner","update":"owner","delete":"owner"}}`)
	classID := num(t, c["id"])
	fid := map[string]string{}
	for _, f := range c["fields"].([]any) {
		fm := f.(map[string]any)
		fid[fm["name"].(string)] = strconv.FormatInt(num(t, fm["id"]), 10)
	}
	u1 := s.token("u1", auth.RoleAuthenticated, 1)

	// create
	restRec := s.do("POST", "/api/posts", u1, `{"title":"Hello","n":3,"meta":{"tags":["a"]}}`)
	s.expect(restRec, http.StatusCreated)
	sqlID := s.queryInt(`INSERT INTO pgcast.object_records (object_class_id, cells, owners)
		VALUES ($1, jsonb_build_object($2::text, 'Hello', $3::text, 3, $4::text, '{"tags":["a"]}'::jsonb), '{u1}') RETURNING id`,
		classID, fid["title"], fid["n"], fid["meta"])
	got := s.lastEntries("record_created", 2)
	sqlEv, restEv := got[0], got[1]
	if !reflect.DeepEqual(without(restEv.Data), without(sqlEv.Data)) {
		t.Errorf("record_created differs:\nREST %v\nSQL  %v", restEv.Data, sqlEv.Data)
	}
	var restBody map[string]any
	_ = json.Unmarshal(restRec.body, &restBody)
	if !reflect.DeepEqual(restBody, restEv.Data["record"]) {
		t.Errorf("REST response %v, event record %v", restBody, restEv.Data["record"])
	}
	var sqlGet map[string]any
	_ = json.Unmarshal(s.expectRaw(s.do("GET", fmt.Sprintf("/api/posts/%d", sqlID), u1, nil), http.StatusOK), &sqlGet)
	if !reflect.DeepEqual(sqlGet, sqlEv.Data["record"]) {
		t.Errorf("REST GET of a SQL-written record %v, event record %v", sqlGet, sqlEv.Data["record"])
	}
	restID := int64(restBody["id"].(float64))

	// update
	restUpd := s.do("PUT", fmt.Sprintf("/api/posts/%d", restID), u1, `{"n":4,"title":"Bye"}`)
	s.expect(restUpd, http.StatusOK)
	s.exec(`UPDATE pgcast.object_records SET cells = cells || jsonb_build_object($2::text, 4, $3::text, 'Bye') WHERE id = $1`, sqlID, fid["n"], fid["title"])
	got = s.lastEntries("record_updated", 2)
	sqlEv, restEv = got[0], got[1]
	if !reflect.DeepEqual(without(restEv.Data), without(sqlEv.Data)) {
		t.Errorf("record_updated differs:\nREST %v\nSQL  %v", restEv.Data, sqlEv.Data)
	}
	_ = json.Unmarshal(restUpd.body, &restBody)
	if !reflect.DeepEqual(restBody, restEv.Data["record"]) {
		t.Errorf("REST response %v, event record %v", restBody, restEv.Data["record"])
	}

	// delete
	s.expectRaw(s.do("DELETE", fmt.Sprintf("/api/posts/%d", restID), u1, nil), http.StatusNoContent)
	s.exec(`DELETE FROM pgcast.object_records WHERE id = $1`, sqlID)
	got = s.lastEntries("record_deleted", 2)
	if sqlEv, restEv = got[0], got[1]; !reflect.DeepEqual(without(restEv.Data), without(sqlEv.Data)) {
		t.Errorf("record_deleted differs:\nREST %v\nSQL  %v", restEv.Data, sqlEv.Data)
	}
	// Neither writes a count entry: counts are derived from the log.
	if n := s.queryInt(`SELECT count(*) FROM pgcast.events WHERE kind = 'records_count_changed'`); n != 0 {
		t.Errorf("%d count entries, want none", n)
	}
}

func (s *stack) expectRaw(r apiResp, status int) []byte {
	s.t.Helper()
	if r.status != status {
		s.t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r.body
}
