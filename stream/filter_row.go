package stream

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"unicode/utf8"
)

// Row is a record (a JSON object) decoded once for every filter and select
// that looks at it: the hub builds one per event, on the first subscriber
// that has a filter or a select, and shares it read-only. Matching and
// projecting never decode, copy or allocate again.
//
// A nil *Row is "no row" (the old row of a create, the new row of a
// delete); no filter matches it.
type Row struct {
	cols []rowCol // in the record's order
	idx  []int32  // indexes into cols sorted by (hash, name); the last of duplicate keys only
}

// rowCol is one member of the record: its name, its text (to project it
// byte for byte) and its value (to compare it).
type rowCol struct {
	name string
	hash uint64 // nameHash(name)
	sep  string // the text before the member: "," and white space ("" or white space for the first)
	head string // the key as written and the ":" with its white space
	raw  string // the value as written
	v    value
}

type valueKind uint8

const (
	kindNull valueKind = iota
	kindBool
	kindNumber
	kindString
	kindComposite // array or object: compares with nothing
)

// value is a decoded JSON value, with what comparisons need read ahead.
type value struct {
	kind   valueKind
	b      bool
	s      string  // strings: the unescaped value
	num    decimal // numbers
	t      instant // strings that read as a timestamp (isTime)
	isTime bool
}

// NewRow decodes a record, a JSON object such as an event's Record. It fails
// when record is not a JSON object. Values keep their JSON types: numbers
// are compared as exact decimals, strings that read as a timestamp (see the
// filter language in filter.go) as instants too.
func NewRow(record json.RawMessage) (*Row, error) {
	cols, err := decodeObject(record)
	if err != nil {
		return nil, err
	}
	r := &Row{cols: cols}
	r.index()
	return r, nil
}

// Overlay returns a copy of r with the members of changes (a JSON object)
// in place of r's members of the same name and appended when r has none:
// an update's old row is its new row with the changed columns' old values.
func (r *Row) Overlay(changes json.RawMessage) (*Row, error) {
	if r == nil {
		return NewRow(changes)
	}
	ch, err := decodeObject(changes)
	if err != nil {
		return nil, err
	}
	out := &Row{cols: slices.Clone(r.cols)}
	for _, c := range ch {
		if i := r.find(c.name); i >= 0 {
			out.cols[i].raw, out.cols[i].v = c.raw, c.v
			continue
		}
		c.sep = ", "
		out.cols = append(out.cols, c)
	}
	out.index()
	return out, nil
}

// index sorts the member indexes by name hash and name, keeping the last
// of duplicates (as encoding/json and jsonb do). Looking a column up then
// compares integers, not names, until the one name that matches: with a
// thousand filters per event, lookups are most of the cost of matching.
func (r *Row) index() {
	idx := make([]int32, len(r.cols))
	for i := range idx {
		idx[i] = int32(i)
	}
	slices.SortStableFunc(idx, func(a, b int32) int { return r.cols[a].cmpKey(r.cols[b].hash, r.cols[b].name) })
	out := idx[:0]
	for i, c := range idx {
		if i+1 < len(idx) && r.cols[idx[i+1]].name == r.cols[c].name {
			continue
		}
		out = append(out, c)
	}
	r.idx = out
}

func (c *rowCol) cmpKey(hash uint64, name string) int {
	if c.hash != hash {
		return cmpInt(c.hash, hash)
	}
	return strings.Compare(c.name, name)
}

// findHashed returns the index in r.cols of the member named name (whose
// nameHash is hash), or -1.
func (r *Row) findHashed(name string, hash uint64) int {
	lo, hi := 0, len(r.idx)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.cols[r.idx[m]].hash < hash {
			lo = m + 1
		} else {
			hi = m
		}
	}
	for ; lo < len(r.idx) && r.cols[r.idx[lo]].hash == hash; lo++ {
		if r.cols[r.idx[lo]].name == name {
			return int(r.idx[lo])
		}
	}
	return -1
}

func (r *Row) find(name string) int { return r.findHashed(name, nameHash(name)) }

// lookup returns the value of the member named name, nil when missing.
func (r *Row) lookup(name string) *value {
	if i := r.find(name); i >= 0 {
		return &r.cols[i].v
	}
	return nil
}

// nameHash is FNV-1a: cheap for short names and the same in every process
// (no seed to keep). A collision costs a name comparison, nothing more.
func nameHash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}

var errNotObject = errors.New("row: not a JSON object")

// decodeObject splits a JSON object into its members. json.Valid checks the
// whole text first, so the scan below can rely on it being well formed.
func decodeObject(raw json.RawMessage) ([]rowCol, error) {
	if !json.Valid(raw) {
		return nil, errors.New("row: not valid JSON")
	}
	src := string(raw) // one copy; every name and value below is a substring of it
	i := skipSpace(src, 0)
	if src[i] != '{' {
		return nil, errNotObject
	}
	i++
	prev := i
	var cols []rowCol
	for {
		i = skipSpace(src, i)
		switch src[i] {
		case '}':
			return cols, nil
		case ',':
			i = skipSpace(src, i+1)
		}
		ks := i
		ke := skipString(src, i)
		vs := skipSpace(src, skipSpace(src, ke)+1) // past the ':'
		ve := skipValue(src, vs)
		name, err := jsonString(src[ks:ke])
		if err != nil {
			return nil, err
		}
		c := rowCol{name: name, hash: nameHash(name), sep: src[prev:ks], head: src[ks:vs], raw: src[vs:ve]}
		if err := c.v.decode(c.raw); err != nil {
			return nil, err
		}
		cols = append(cols, c)
		prev, i = ve, ve
	}
}

func (v *value) decode(raw string) error {
	switch raw[0] {
	case 'n':
		v.kind = kindNull
	case 't', 'f':
		v.kind, v.b = kindBool, raw[0] == 't'
	case '{', '[':
		v.kind = kindComposite
	case '"':
		s, err := jsonString(raw)
		if err != nil {
			return err
		}
		v.kind, v.s = kindString, s
		v.t, v.isTime = parseTimestamp(s)
	default:
		d, ok := parseDecimal(raw)
		if !ok {
			return errors.New("row: bad number " + raw)
		}
		v.kind, v.num = kindNumber, d
	}
	return nil
}

// jsonString unquotes a JSON string; without escapes, without copying.
// Invalid UTF-8 becomes U+FFFD, as encoding/json makes it.
func jsonString(raw string) (string, error) {
	if strings.IndexByte(raw, '\\') < 0 && utf8.ValidString(raw) {
		return raw[1 : len(raw)-1], nil
	}
	var s string
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return "", err
	}
	return s, nil
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string that starts at s[i]
// (a '"'). s is valid JSON.
func skipString(s string, i int) int {
	i++
	for {
		j := strings.IndexByte(s[i:], '"')
		if j < 0 {
			return len(s) // unreachable on valid JSON
		}
		i += j
		bs := 0
		for k := i - 1; k >= 0 && s[k] == '\\'; k-- {
			bs++
		}
		i++
		if bs%2 == 0 {
			return i
		}
	}
}

// skipValue returns the index after the value that starts at s[i]. s is
// valid JSON.
func skipValue(s string, i int) int {
	switch s[i] {
	case '"':
		return skipString(s, i)
	case '{', '[':
		depth := 0
		for i < len(s) {
			switch s[i] {
			case '"':
				i = skipString(s, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i < len(s) && !strings.ContainsRune(",}] \t\r\n", rune(s[i])) {
		i++
	}
	return i
}
