package rest

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
)

// What a JSON value in a request may hold. Values go to Postgres as the
// client wrote them, and jsonb refuses some text that encoding/json takes:
// those are found here, before Postgres, and answered as validation errors.

func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	return s, json.Unmarshal(raw, &s) == nil
}

func isNumber(raw json.RawMessage) bool {
	return len(raw) > 0 && (raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'))
}

// hasNUL reports whether a JSON value has a string or key containing
// U+0000, which Postgres's jsonb cannot store.
func hasNUL(raw json.RawMessage) bool {
	if !bytes.Contains(raw, []byte(`\u0000`)) {
		return false // the only way JSON text can hold a NUL
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return false
		}
		if err != nil {
			return true // cannot happen: raw was decoded once already
		}
		if s, ok := tok.(string); ok && strings.IndexByte(s, 0) >= 0 {
			return true
		}
	}
}

// loneSurrogateMessage completes "<field> " in a validation problem.
const loneSurrogateMessage = `must not contain an unpaired UTF-16 surrogate escape such as \ud800 (it is no character)`

// loneSurrogate reports whether the JSON text raw (valid JSON) escapes a
// UTF-16 surrogate that is not one half of a pair, such as "\ud800": it
// stands for no character, so jsonb refuses it (SQLSTATE 22P02) where
// encoding/json quietly reads U+FFFD.
func loneSurrogate(raw []byte) bool {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		i++ // the escaped byte: in valid JSON a backslash only starts an escape
		if raw[i] != 'u' {
			continue
		}
		r := hex4(raw[i+1:])
		i += 4
		switch {
		case r >= 0xdc00 && r <= 0xdfff:
			return true // a low half first
		case r >= 0xd800 && r <= 0xdbff:
			if len(raw) < i+7 || raw[i+1] != '\\' || raw[i+2] != 'u' {
				return true
			}
			if lo := hex4(raw[i+3:]); lo < 0xdc00 || lo > 0xdfff {
				return true
			}
			i += 6
		}
	}
	return false
}

// hex4 reads the 4 hex digits of a \u escape (valid JSON has them).
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}
