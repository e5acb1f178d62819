package server

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestLoneSurrogateIsAValidationError (issue 10 item 6): a lone UTF-16 surrogate
// escape, which jsonb refuses, is a 400 validation_error on records
// (string, text and json fields, POST and PUT) and on /api/events, never a
// 500; a proper pair is stored.
func TestLoneSurrogateIsAValidationError(t *testing.T) {
	t.Parallel()
	s := newStack(t, nil)
	s.define(1, `{"name":"notes","fields":[{"name":"title","type":"string"},{"name":"body","type":"text"},{"name":"meta","type":"json"}],
		"permissions":{"create":"public","read":"public","update":"public"}}`)
	for _, c := range []struct{ field, body string }{
		{"title", `{"title":"\ud800"}`},
		{"title", `{"title":"a\udc00b"}`},
		{"body", `{"body":"\ud800\u0041"}`},
		{"body", `{"body":"\uDBFF"}`},
		{"meta", `{"meta":{"k":"\ud800"}}`},
		{"meta", `{"meta":{"\ud800":1}}`},
		{"meta", `["x","\udfff"]`},
	} {
		body := c.body
		if body[0] == '[' {
			body = `{"meta":` + body + `}`
		}
		e := s.expectError(s.do("POST", "/api/notes", "", body), http.StatusBadRequest, "validation_error")
		if !hasDetail(e, c.field, "type") {
			t.Errorf("POST %s: %+v", body, e)
		}
	}
	rec := s.expect(s.do("POST", "/api/notes", "", `{"title":"\ud83d\ude00","meta":{"\uD83D\uDE00":"\\ud800"}}`), http.StatusCreated)
	if rec["title"] != "😀" || rec["meta"].(map[string]any)["😀"] != `\ud800` {
		t.Errorf("a pair and an escaped backslash: %v", rec)
	}
	path := fmt.Sprintf("/api/notes/%d", num(t, rec["id"]))
	e := s.expectError(s.do("PUT", path, "", `{"body":"\ud800","meta":"\ud800"}`), http.StatusBadRequest, "validation_error")
	if !hasDetail(e, "body", "type") || !hasDetail(e, "meta", "type") {
		t.Errorf("PUT: %+v", e)
	}
	e = s.expectError(s.do("POST", "/api/events", s.admin(1), `{"type":"job.done","payload":{"name":"\ud800"}}`), http.StatusBadRequest, "validation_error")
	if !hasDetail(e, "payload", "type") {
		t.Errorf("/api/events: %+v", e)
	}
	if logs := s.logBuf.String(); strings.Contains(logs, "rest request failed") {
		t.Errorf("logged as a failure: %s", logs)
	}
}
