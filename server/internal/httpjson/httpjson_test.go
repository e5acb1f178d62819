package httpjson

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWriteError(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	Error(rec, http.StatusTeapot, "teapot", `short and "stout"`)
	if rec.Code != http.StatusTeapot || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("code %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if got, want := strings.TrimSpace(rec.Body.String()), `{"error":{"code":"teapot","message":"short and \"stout\""}}`; got != want {
		t.Errorf("body %s, want %s", got, want)
	}
}
