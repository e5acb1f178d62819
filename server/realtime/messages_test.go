package realtime

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pgcast/pgcast/stream"
)

// FuzzRealtimeClientMessage is S7/S8 for the client-message decoder: no
// panic; every frame gets exactly one outcome; what is accepted is well
// formed and survives a round trip; errors use the documented codes.
func FuzzRealtimeClientMessage(f *testing.F) {
	for _, s := range []string{
		`{"action":"ping"}`, `{"action":"subscribe","channel":"posts.created"}`, `{"action":"subscribe","channel":"posts.*","since":"evt_123"}`,
		`{"action":"unsubscribe","channel":"auth.login"}`, `{`, `[]`, `null`, `{"action":"x"}`, `{"action":"subscribe","channel":"a..b"}`,
		`{"action":"subscribe","channel":"` + strings.Repeat("a", 201) + `"}`, `{"action":"subscribe","channel":"a.*","since":"evt_x"}`,
		`{"action":"subscribe","channel":"a.b","action":"ping"}`, `{"action":"subscribe","channel":"\u0061.b"}`, "\xff", `[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]`,
	} {
		f.Add([]byte(s))
	}
	codes := []string{"invalid_json", "invalid_action", "invalid_channel", "invalid_since"}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, cerr := parseClientMessage(data)
		if cerr != nil {
			if !slices.Contains(codes, cerr.code) || cerr.message == "" {
				t.Fatalf("%q: error %+v", data, cerr)
			}
			var reply struct {
				Type string `json:"type"`
				Code string `json:"code"`
			}
			if err := json.Unmarshal(cerr.frame(), &reply); err != nil || reply.Type != "error" || reply.Code != cerr.code {
				t.Fatalf("%q: error frame %s", data, cerr.frame())
			}
			if !json.Valid(data) && cerr.code != "invalid_json" {
				t.Fatalf("%q: invalid JSON answered with %s", data, cerr.code)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("%q: invalid JSON accepted", data)
		}
		switch m.action {
		case actionPing:
			if m.channel != "" || m.resume {
				t.Fatalf("%q: ping with %+v", data, m)
			}
			return
		case actionSubscribe, actionUnsubscribe:
		default:
			t.Fatalf("%q: action %q accepted", data, m.action)
		}
		if len(m.channel) == 0 || len(m.channel) > maxChannelLen || !stream.ValidChannel(m.channel) || strings.Count(m.channel, "*") > 1 ||
			(strings.Contains(m.channel, "*") && !strings.HasSuffix(m.channel, ".*") && m.channel != "*") {
			t.Fatalf("%q: channel %q accepted", data, m.channel)
		}
		if m.resume && (m.action != actionSubscribe || m.since < 0) {
			t.Fatalf("%q: resume %+v", data, m)
		}
		// Round trip.
		frame := fmt.Sprintf(`{"action":%q,"channel":%q}`, m.action, m.channel)
		if m.resume {
			frame = fmt.Sprintf(`{"action":%q,"channel":%q,"since":"evt_%d"}`, m.action, m.channel, m.since)
		}
		back, err := parseClientMessage([]byte(frame))
		if err != nil || back != m {
			t.Fatalf("%q: round trip %s gave %+v, %v", data, frame, back, err)
		}
	})
}
