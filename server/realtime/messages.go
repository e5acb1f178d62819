package realtime

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/pgcast/pgcast/stream"
)

// Client messages.

const (
	actionSubscribe   = "subscribe"
	actionUnsubscribe = "unsubscribe"
	actionPing        = "ping"
)

// clientMessage is a decoded, validated client frame.
type clientMessage struct {
	action  string
	channel string // subscribe, unsubscribe
	since   int64  // subscribe with resume
	resume  bool
	opts    *stream.ChannelOptions // subscribe: filter and select; nil: none
}

// clientError is an error reply.
type clientError struct {
	code, message string
}

var (
	errSubscriptionLimit = &clientError{code: "subscription_limit", message: fmt.Sprintf("Maximum %d subscriptions per connection", maxRealtimeChannels)}
	// errRateLimited answers a message over the connection's message rate;
	// the message is not handled.
	errRateLimited = &clientError{code: "rate_limited", message: "Too many messages: this one was not handled; slow down or the connection is closed"}
)

func (e *clientError) frame() []byte {
	return mustJSON(struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}{"error", e.code, e.message})
}

func channelReply(typ, channel string) []byte {
	return mustJSON(struct {
		Type    string `json:"type"`
		Channel string `json:"channel"`
	}{typ, channel})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only fixed struct shapes of strings are marshalled
	}
	return b
}

// parseClientMessage decodes and validates one client frame: a JSON object
// whose keys are matched exactly ("Action" is not "action"); unknown keys
// are ignored.
func parseClientMessage(data []byte) (clientMessage, *clientError) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		if err == nil || json.Valid(data) {
			return clientMessage{}, &clientError{code: "invalid_json", message: "Message must be a JSON object"}
		}
		return clientMessage{}, &clientError{code: "invalid_json", message: "Message is not valid JSON"}
	}
	action, ok := stringField(fields, "action")
	if !ok {
		if raw, has := fields["action"]; !has || string(raw) == "null" {
			return clientMessage{}, &clientError{code: "invalid_action", message: "Action is required"}
		}
	}
	m := clientMessage{action: action}
	switch action {
	case actionPing:
		return m, nil
	case actionSubscribe, actionUnsubscribe:
	default:
		return clientMessage{}, &clientError{code: "invalid_action", message: "Unknown action: want subscribe, unsubscribe or ping"}
	}
	raw, has := fields["channel"]
	channel, isString := stringField(fields, "channel")
	switch {
	case !has || string(raw) == "null" || (isString && channel == ""):
		return clientMessage{}, &clientError{code: "invalid_channel", message: "Channel name is required"}
	case !isString:
		return clientMessage{}, &clientError{code: "invalid_channel", message: "Channel name is invalid"}
	case len(channel) > maxChannelLen:
		return clientMessage{}, &clientError{code: "invalid_channel", message: fmt.Sprintf("Channel name is too long (maximum %d characters)", maxChannelLen)}
	case !stream.ValidChannel(channel):
		return clientMessage{}, &clientError{code: "invalid_channel", message: "Channel name is invalid"}
	}
	m.channel = channel
	if action == actionUnsubscribe {
		return m, nil
	}
	if raw, has := fields["since"]; has && string(raw) != "null" {
		s, _ := stringField(fields, "since")
		pos, ok := parseEventID(s)
		if !ok {
			return clientMessage{}, &clientError{code: "invalid_since", message: `since must be an event id such as "evt_123"`}
		}
		m.since, m.resume = pos, true
	}
	opts, cerr := parseOptions(fields)
	if cerr != nil {
		return clientMessage{}, cerr
	}
	m.opts = opts
	return m, nil
}

// stringField returns fields[key] when it is a JSON string.
func stringField(fields map[string]json.RawMessage, key string) (string, bool) {
	raw, ok := fields[key]
	if !ok || len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// parseEventID parses "evt_<digits>" into a position.
func parseEventID(s string) (int64, bool) {
	digits, ok := strings.CutPrefix(s, "evt_")
	if !ok || digits == "" || len(digits) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
