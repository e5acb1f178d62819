package rest

import (
	"encoding/json"
	"testing"
)

func TestLoneSurrogate(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]bool{
		`"\ud800"`:             true,
		`"\ud800x"`:            true,
		`"\ud800\u0041"`:       true,
		`"\ud800\ud800"`:       true,
		`"\udc00"`:             true,
		`"\ud800\udc00"`:       false,
		`"\uD83D\uDE00"`:       false,
		`"\\ud800"`:            false, // a backslash, then text
		`"\\\ud800"`:           true,
		`"\u00e9\n\"\u0041"`:   false,
		`{"\ud800":1}`:         true,
		`["a","\ud83d\ude00"]`: false,
		`"\ud83d\ude00\udc00"`: true,
	} {
		if !json.Valid([]byte(raw)) {
			t.Fatalf("%s is not JSON", raw)
		}
		if got := loneSurrogate([]byte(raw)); got != want {
			t.Errorf("loneSurrogate(%s) = %v, want %v", raw, got, want)
		}
	}
}
