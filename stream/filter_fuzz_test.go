package stream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"reflect"
	"strings"
	"testing"
)

// fuzzRows are the rows a fuzzed filter is evaluated on.
var fuzzRows = []string{
	filterRow,
	`{"id": 1, "status": null, "total": "120", "title": 5, "createdAt": false}`,
	`{"id": -1e-3, "status": ["paid"], "count": "2026-01-02", "note": {"a": null}}`,
	`{}`,
}

// FuzzParseFilter: whatever a client sends as a filter, parsing never
// panics and fails only with a *FilterError; a filter it accepts reads back
// from its String() as the same filter, which matches the same rows.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{"status=in.(paid,shipped),total=gt.100", `a=not.like."x,\"y\\"`, "b=is.NULL", "c=match.^a+$"} {
		f.Add(s)
	}
	var rows []*Row
	for _, r := range fuzzRows {
		rows = append(rows, mustRow(f, r))
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := ParseFilter(s)
		if err != nil {
			var fe *FilterError
			if !errors.As(err, &fe) || fe.Problem == "" || fe.Offset < 0 || fe.Offset > len(s) {
				t.Fatalf("%q: error %#v", s, err)
			}
			return
		}
		canon := flt.String()
		back, err := parseFilter(canon, len(canon))
		if err != nil {
			t.Fatalf("%q: String() %q does not parse: %v", s, canon, err)
		}
		if again := back.String(); again != canon {
			t.Fatalf("%q: String() %q reads back as %q", s, canon, again)
		}
		if !reflect.DeepEqual(flt.Columns(), back.Columns()) {
			t.Fatalf("%q: columns %v, read back %v", s, flt.Columns(), back.Columns())
		}
		for i, r := range rows {
			if flt.Match(r) != back.Match(r) {
				t.Fatalf("%q and its String() %q disagree on row %d", s, canon, i)
			}
			flt.Deliver(r, rows[(i+1)%len(rows)])
		}
	})
}

// FuzzRow: whatever a record holds, decoding it never panics, accepts
// exactly the JSON objects, and agrees with encoding/json; projecting gives
// the record's members byte for byte; a fuzzed filter evaluates on it
// without panicking, and the same on the row overlaid with itself.
func FuzzRow(f *testing.F) {
	for _, r := range fuzzRows {
		f.Add([]byte(r), "title=like.*e*,total=gt.100")
	}
	f.Add([]byte(`{"a":1,"a":"2026-01-02T03:04:05Z"}`), "a=lt.2027-01-01")
	f.Fuzz(func(t *testing.T, record []byte, filter string) {
		row, err := NewRow(record)
		var m map[string]json.RawMessage
		if jerr := json.Unmarshal(record, &m); jerr != nil || m == nil {
			if err == nil {
				t.Fatalf("%q: NewRow accepted what encoding/json does not take as an object (%v)", record, jerr)
			}
			return
		}
		if err != nil {
			t.Fatalf("%q: %v", record, err)
		}
		for k, raw := range m {
			v := row.lookup(k)
			if v == nil {
				t.Fatalf("%q: key %q missing", record, k)
			}
			checkValue(t, k, raw, v)
		}
		if len(row.idx) != len(m) {
			t.Fatalf("%q: %d distinct keys, encoding/json has %d", record, len(row.idx), len(m))
		}

		var all *Select
		out := all.AppendProject(nil, row, nil)
		var want, got any
		_ = decodeNumbers(record, &want)
		if err := decodeNumbers(out, &got); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: projected to %q (%v)", record, out, err)
		}
		for k := range m {
			sel := &Select{order: []string{k}, sorted: []string{k}}
			out := sel.AppendProject(nil, row, []string{"key"})
			var part map[string]json.RawMessage
			if err := json.Unmarshal(out, &part); err != nil {
				t.Fatalf("%q select %q: %q is not an object: %v", record, k, out, err)
			}
			for pk := range part {
				if pk != k && pk != "id" && pk != "key" {
					t.Fatalf("%q select %q: %q has %q", record, k, out, pk)
				}
			}
			break
		}

		flt, err := ParseFilter(filter)
		if err != nil {
			return
		}
		same, err := row.Overlay(record)
		if err != nil {
			t.Fatal(err)
		}
		if flt.Match(row) != flt.Match(same) {
			t.Fatalf("%q on %q: the row and the row overlaid with itself disagree", filter, record)
		}
		flt.Deliver(row, same)
	})
}

// checkValue compares a decoded value with what encoding/json makes of it.
func checkValue(t *testing.T, k string, raw json.RawMessage, v *value) {
	var x any
	if err := decodeNumbers(raw, &x); err != nil {
		t.Fatal(err)
	}
	switch x := x.(type) {
	case nil:
		if v.kind != kindNull {
			t.Fatalf("%q: null decoded as %d", k, v.kind)
		}
	case bool:
		if v.kind != kindBool || v.b != x {
			t.Fatalf("%q: %v decoded as %d %v", k, x, v.kind, v.b)
		}
	case string:
		if v.kind != kindString || v.s != x {
			t.Fatalf("%q: %q decoded as %d %q", k, x, v.kind, v.s)
		}
	case json.Number:
		if v.kind != kindNumber {
			t.Fatalf("%q: number decoded as %d", k, v.kind)
		}
		s := strings.TrimSpace(string(raw))
		if e := strings.IndexAny(s, "eE"); e >= 0 && len(s)-e > 4 {
			return // exponents past 999: big.Rat would build the number
		}
		want, ok := new(big.Rat).SetString(s)
		if !ok {
			t.Fatalf("%q: big.Rat cannot read %s", k, s)
		}
		for _, o := range []string{"0", "1", "-1.5", "100", "1e3", "0.001", "-7e-2"} {
			od, _ := parseDecimal(o)
			or, _ := new(big.Rat).SetString(o)
			if got := v.num.cmp(&od); got != want.Cmp(or) {
				t.Fatalf("%q: %s cmp %s = %d, big.Rat says %d", k, s, o, got, want.Cmp(or))
			}
		}
	default:
		if v.kind != kindComposite {
			t.Fatalf("%q: composite decoded as %d", k, v.kind)
		}
	}
}

// decodeNumbers is json.Unmarshal keeping numbers as text (1e700 is valid
// JSON that no float64 holds).
func decodeNumbers(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return fmt.Errorf("data after the value: %v", err)
	}
	return nil
}
