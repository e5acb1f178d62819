package stream

import (
	"strconv"
	"unicode/utf8"
)

// Encodings are built once per event and shared, read-only, by every
// connection that receives the event.

// AppendCatalystItem appends the Catalyst JSON item for ev (see the Catalyst
// contract: object-record and task items).
func AppendCatalystItem(b []byte, ev *Event) []byte {
	b = append(b, '{')
	if ev.Kind.IsTask() {
		b = append(b, `"task_id":`...)
		b = strconv.AppendInt(b, ev.TaskID, 10)
		b = append(b, ',')
	} else if ev.Kind != KindRecordsCountChanged {
		b = append(b, `"object_record_id":`...)
		b = strconv.AppendInt(b, ev.RecordID, 10)
		b = append(b, ',')
	}
	b = append(b, `"object_class_id":`...)
	b = strconv.AppendInt(b, ev.ClassID, 10)
	b = append(b, `,"event":"`...)
	b = append(b, ev.Kind.String()...)
	b = append(b, `","timestamp":"`...)
	b = ev.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000+00:00")
	b = append(b, '"')
	switch ev.Kind {
	case KindRecordValueChanged:
		b = append(b, `,"field_ids":[`...)
		for i, id := range ev.FieldIDs {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, id, 10)
		}
		b = append(b, ']')
	case KindRecordOwnerAdded, KindRecordOwnerRemoved, KindRecordAssigneeAdded, KindRecordAssigneeRemoved,
		KindTaskOwnerAdded, KindTaskOwnerRemoved, KindTaskAssigneeAdded, KindTaskAssigneeRemoved:
		b = append(b, `,"user_id":`...)
		b = appendJSONString(b, ev.UserID)
	case KindRecordDocumentGenerated:
		b = append(b, `,"document_id":`...)
		b = strconv.AppendInt(b, ev.DocumentID, 10)
	case KindRecordsCountChanged:
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, ev.Count, 10)
	}
	return append(b, '}')
}

// AppendRealtimeEvent appends the /api/realtime event message for ev, whose
// realtime type is typ.
func AppendRealtimeEvent(b []byte, ev *Event, typ string) []byte {
	return appendRealtimeEvent(b, ev, typ, nil, TransitionNone)
}

const hexDigits = "0123456789abcdef"

// appendCompact appends the JSON value src (valid JSON, as Postgres prints
// jsonb: `{"a": [1, 2]}`) compacted and with <, >, &, U+2028 and U+2029
// escaped in strings: the bytes encoding/json writes for src as a
// json.RawMessage, which is how the REST API writes records and payloads
// (writeJSON), so that both APIs show one value byte for byte alike.
func appendCompact(b, src []byte) []byte { return appendCompactJSON(b, src, true) }

// appendCompactJSON is appendCompact, escaping <, >, &, U+2028 and U+2029
// only with escapeHTML: without, it is what json.Compact writes.
func appendCompactJSON(b, src []byte, escapeHTML bool) []byte {
	inString := false
	start := 0 // src[start:i] is still to be copied
	for i := 0; i < len(src); i++ {
		c := src[i]
		if inString {
			switch {
			case c == '\\':
				i++ // the escaped byte is copied with the run
			case c == '"':
				inString = false
			case !escapeHTML:
			case c == '<' || c == '>' || c == '&':
				b = append(b, src[start:i]...)
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
				start = i + 1
			case c == 0xE2 && i+2 < len(src) && src[i+1] == 0x80 && src[i+2]&^1 == 0xA8:
				b = append(b, src[start:i]...)
				b = append(b, '\\', 'u', '2', '0', '2', hexDigits[src[i+2]&0xf])
				i += 2
				start = i + 1
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case ' ', '\t', '\n', '\r':
			b = append(b, src[start:i]...)
			start = i + 1
		}
	}
	return append(b, src[start:]...)
}

// compact is appendCompact into a new slice; nil stays nil.
func compact(src []byte) []byte {
	if src == nil {
		return nil
	}
	return appendCompact(make([]byte, 0, len(src)), src)
}

// appendPGString appends s as Postgres prints a JSON string (\b, \f, \n,
// \r, \t, \" and \\, other control characters as \u00XX), and with
// escapeHTML also <, >, &, U+2028 and U+2029 escaped as encoding/json
// escapes them when it writes a json.RawMessage.
func appendPGString(b []byte, s string, escapeHTML bool) []byte {
	b = append(b, '"')
	start := 0 // s[start:i] is still to be copied
	for i := 0; i < len(s); i++ {
		c := s[i]
		var esc string
		switch c {
		case '"':
			esc = `\"`
		case '\\':
			esc = `\\`
		case '\b':
			esc = `\b`
		case '\f':
			esc = `\f`
		case '\n':
			esc = `\n`
		case '\r':
			esc = `\r`
		case '\t':
			esc = `\t`
		default:
			switch {
			case c < 0x20 || (escapeHTML && (c == '<' || c == '>' || c == '&')):
				b = append(b, s[start:i]...)
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
				start = i + 1
			case escapeHTML && c == 0xE2 && i+2 < len(s) && s[i+1] == 0x80 && s[i+2]&^1 == 0xA8:
				b = append(b, s[start:i]...)
				b = append(b, '\\', 'u', '2', '0', '2', hexDigits[s[i+2]&0xf])
				i += 2
				start = i + 1
			}
			continue
		}
		b = append(b, s[start:i]...)
		b = append(b, esc...)
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendJSONString appends s as a JSON string, escaping what JSON requires
// plus <, >, & (safe inside HTML) and invalid UTF-8 (as U+FFFD).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
