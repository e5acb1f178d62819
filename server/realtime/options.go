package realtime

import (
	"encoding/json"
	"errors"

	"github.com/pgcast/pgcast/stream"
)

// parseOptions reads a subscribe message's optional "filter" (PostgREST
// syntax, evaluated in memory on each event's row: see stream.Filter) and
// "select" (the payload's columns, plus the key). Each must be a string;
// null or "" means none. A problem is an invalid_filter error naming it.
func parseOptions(fields map[string]json.RawMessage) (*stream.ChannelOptions, *clientError) {
	var o stream.ChannelOptions
	for _, key := range []string{"filter", "select"} {
		raw, has := fields[key]
		if !has || string(raw) == "null" {
			continue
		}
		s, ok := stringField(fields, key)
		if !ok {
			return nil, &clientError{code: "invalid_filter", message: key + " must be a string"}
		}
		var err error
		if key == "filter" {
			o.Filter, err = stream.ParseFilter(s)
		} else {
			o.Select, err = stream.ParseSelect(s)
		}
		if err != nil {
			var fe *stream.FilterError
			if errors.As(err, &fe) {
				return nil, &clientError{code: "invalid_filter", message: fe.Error()}
			}
			return nil, &clientError{code: "invalid_filter", message: key + " is invalid"}
		}
	}
	if o.Filter == nil && o.Select == nil {
		return nil, nil
	}
	return &o, nil
}
