package collections

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ErrMalformed marks input that is not exactly one JSON object: a syntax
// error, an empty body, another JSON type, or data after the object.
var ErrMalformed = errors.New("malformed JSON")

// Member is one key and its raw value in a JSON object.
type Member struct {
	Key   string
	Value json.RawMessage
}

// ParseObject decodes data, which must be exactly one JSON object, into its
// members in input order. A key that appears twice gives Problems (rule
// "duplicate"): encoding/json would silently keep the last one, so a client
// could not tell which value was validated. Other errors wrap ErrMalformed.
func ParseObject(data []byte) ([]Member, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, fmt.Errorf("%w: empty body, want a JSON object", ErrMalformed)
	}
	if err != nil {
		return nil, malformed(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%w: want a JSON object, got %s", ErrMalformed, describeToken(tok))
	}
	var (
		members []Member
		seen    = map[string]bool{}
		dups    Problems
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, malformed(err)
		}
		key, _ := tok.(string) // inside an object the decoder only yields string keys
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, malformed(err)
		}
		if seen[key] {
			dups = append(dups, Problem{key, "duplicate", fmt.Sprintf("key %q appears more than once", key)})
			continue
		}
		seen[key] = true
		members = append(members, Member{Key: key, Value: v})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, malformed(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: unexpected data after the JSON object", ErrMalformed)
	}
	if dups != nil {
		return nil, dups
	}
	return members, nil
}

func malformed(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: unexpected end of JSON input", ErrMalformed)
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}

func describeToken(tok json.Token) string {
	switch tok.(type) {
	case json.Delim:
		return "an array"
	case string:
		return "a string"
	case json.Number, float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "something else"
}
