package httpjson

import (
	"errors"
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

// One type, two shapes: details are left out when nil (the handshakes'
// and the ticket endpoint's errors) and written when set, [] included (the
// REST API's), after code and message.
func TestAPIErrorDetails(t *testing.T) {
	t.Parallel()
	cases := []struct {
		e     APIError
		allow string
		want  string
	}{
		{APIError{Status: http.StatusBadRequest, Code: "bad_request", Message: "m"}, "",
			`{"error":{"code":"bad_request","message":"m"}}`},
		{APIError{Status: http.StatusNotFound, Code: "not_found", Message: "m", Details: []Detail{}}, "",
			`{"error":{"code":"not_found","message":"m","details":[]}}`},
		{APIError{Status: http.StatusBadRequest, Code: "validation_error", Message: "m", Details: []Detail{{Field: "a", Rule: "required", Message: "a <is> required"}}}, "",
			`{"error":{"code":"validation_error","message":"m","details":[{"field":"a","rule":"required","message":"a \u003cis\u003e required"}]}}`},
		{APIError{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "use GET", Allow: "GET", Cause: errors.New("never sent")}, "GET",
			`{"error":{"code":"method_not_allowed","message":"use GET"}}`},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		c.e.Write(rec)
		if got := strings.TrimSpace(rec.Body.String()); got != c.want || rec.Code != c.e.Status {
			t.Errorf("%d %s, want %d %s", rec.Code, got, c.e.Status, c.want)
		}
		if got := rec.Header().Get("Allow"); got != c.allow {
			t.Errorf("%s: Allow %q, want %q", c.e.Code, got, c.allow)
		}
		if got, want := c.e.Error(), c.e.Code+": "+c.e.Message; got != want {
			t.Errorf("Error() %q, want %q", got, want)
		}
	}
}
