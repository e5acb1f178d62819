package stream

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// raceEnabled is set by filter_race_test.go: under the race detector
// sync.Pool drops items on purpose, so regexp's matchers allocate.
var raceEnabled bool

// filterRow has a value of every kind the filters compare.
const filterRow = `{"id": 3, "big": 9007199254740993, "day": "2026-01-02", "neg": -5, "odd": "x,(y)\"z\\", ` +
	`"pct": "100%_off", "code": "10", "half": 0.5, "meta": {"k": 1}, "name": "ΣΊΣΥΦΟΣ straße", "note": null, ` +
	`"paid": true, "path": "a\\b", "tags": ["a"], "zero": 0, "count": 10, "draft": false, "empty": "", ` +
	`"local": "2026-01-02T04:04:05+01:00", "naive": "2026-01-02T03:04:05.5", "title": "Crème Brûlée, \"special\"", ` +
	`"total": 120.5, "größe": 3, "createdAt": "2026-01-02T03:04:05.000Z", "Order Total": 5, "t\u0069tle2": "esc"}`

func mustRow(t testing.TB, record string) *Row {
	t.Helper()
	r, err := NewRow(json.RawMessage(record))
	if err != nil {
		t.Fatalf("NewRow(%s): %v", record, err)
	}
	return r
}

func mustFilter(t testing.TB, s string) *Filter {
	t.Helper()
	f, err := ParseFilter(s)
	if err != nil {
		t.Fatalf("ParseFilter(%q): %v", s, err)
	}
	return f
}

// Every operator and not. against values of every type; want is whether
// the row passes.
var filterCases = []struct {
	filter string
	want   bool
}{
	// Numbers compare as exact decimals with a numeric operand.
	{"total=eq.120.5", true}, {"total=eq.120.50", true}, {"total=eq.1.205e2", true}, {`total=eq." 120.5"`, true},
	{"total=neq.120.5", false}, {"total=neq.1", true}, {"total=gt.100", true}, {"total=gt.120.5", false},
	{"total=gte.120.5", true}, {"total=lt.121", true}, {"total=lte.120", false}, {"total=not.gt.100", false},
	{"count=gt.9", true}, {"count=eq.10", true}, {"count=eq.1e1", true}, {"count=eq.+10", true}, {"count=eq.10.", true},
	{"half=eq..5", true}, {"half=gt.1e-999999999", true}, {"count=lt.1e999999999999999999999", true},
	{"count=gt.-1e99999999999999", true}, {"zero=eq.-0", true}, {"zero=eq.0.000", true}, {"zero=lt.0.0001", true},
	{"neg=lt.-4.5", true}, {"neg=gt.-5.1", true}, {"neg=lt.0", true}, {"neg=eq.-5e0", true},
	{"big=eq.9007199254740993", true}, {"big=eq.9007199254740992", false}, {"big=gt.9007199254740992", true},
	// A number against a non-numeric operand is unknown: neither eq nor not.eq.
	{"count=eq.abc", false}, {"count=not.eq.abc", false}, {"count=neq.abc", false}, {"count=lt.", false},
	{"count=isdistinct.abc", true}, {"count=not.isdistinct.abc", false}, {"count=isdistinct.10.0", false},
	// Strings compare bytewise: "10" is after "9".
	{"code=gt.9", false}, {"code=lt.9", true}, {"code=eq.10", true}, {"code=eq.10.0", false}, {"code=gt.1", true},
	{"title=gt.Cr", true}, {"title=lt.D", true}, {"title=lt.Cr", false},
	// Booleans.
	{"paid=eq.true", true}, {"paid=eq.TRUE", true}, {"paid=neq.false", true}, {"paid=gt.false", true},
	{"paid=eq.1", false}, {"paid=not.eq.1", false}, {"draft=eq.false", true}, {"draft=lt.true", true},
	{"paid=is.true", true}, {"paid=is.TRUE", true}, {"paid=is.false", false}, {"draft=is.false", true},
	{"paid=not.is.true", false}, {"title=is.true", false}, {"note=is.true", false}, {"note=not.is.true", true},
	// Null and missing keys: SQL NULL.
	{"note=is.null", true}, {"missing=is.null", true}, {"missing=is.unknown", true}, {"note=is.Null", true},
	{"note=not.is.null", false}, {"title=is.null", false}, {"title=not.is.null", true}, {"zero=is.null", false},
	{"note=eq.x", false}, {"note=not.eq.x", false}, {"note=neq.x", false}, {"missing=lt.5", false},
	{"missing=not.lt.5", false}, {"note=isdistinct.x", true}, {"missing=isdistinct.x", true},
	{"note=not.isdistinct.x", false}, {"note=in.(x)", false}, {"note=not.in.(x)", false},
	{"note=in.()", false}, {"note=not.in.()", true}, {"note=like.*", false}, {"note=not.like.*", false},
	{"note=match..", false}, {"note=not.match..", false},
	// Quoting and escapes.
	{`title=eq."Crème Brûlée, \"special\""`, true}, {`title=neq."Crème Brûlée, \"special\""`, false},
	{`odd=eq."x,(y)\"z\\"`, true}, {`odd=in.(a,"x,(y)\"z\\")`, true}, {`odd=not.in.(a,"x,(y)\"z\\")`, false},
	{`path=eq.a\b`, true}, {`path=eq."a\\b"`, true}, {`path=eq."a\b"`, false},
	{"empty=eq.", true}, {`empty=eq.""`, true}, {"empty=neq.", false}, {"empty=is.null", false},
	{`empty=in.("",x)`, true}, {"empty=in.(x,)", true}, {"empty=in.(x)", false}, {"title=eq.", false},
	// Unicode, case folding.
	{"name=eq.ΣΊΣΥΦΟΣ straße", true}, {"name=ilike.σίσυφος*", true}, {"name=ilike.ΣΊΣΥΦΟς STRAßE", true},
	{"name=ilike.*STRASSE", false}, {"name=like.σίσυφος*", false}, {"name=like.Σ_ΣΥΦΟΣ%", true},
	{"name=imatch.^σίσυφος", true}, {"name=match.^σίσυφος", false}, {"name=imatch.STRASSE", false},
	{"größe=eq.3", true}, {`"Order Total"=eq.5`, true}, {"Order Total=eq.5", true}, {`"createdAt"=is.null`, false},
	{"title2=eq.esc", true},
	// like and ilike.
	{"title=like.Crème*", true}, {"title=like.Crème%", true}, {"title=like.crème%", false}, {"title=ilike.CRÈME%", true},
	{"title=like.*special*", true}, {`title=like."*\"special\""`, true}, {"title=like.C_ème%", true},
	{"title=like.Crème", false}, {"title=like.%", true}, {"title=like.%%", true}, {"title=like.*Brûlée*special*", true},
	{"title=like.*special*Brûlée*", false}, {"title=not.like.*special*", false}, {"title=ilike.c%X%", false}, {"title=ilike.c%E%", true},
	{`title=ilike."c%\""`, true}, {"title=ilike.%_", true}, {"empty=like.", true}, {"empty=like.%", true}, {"empty=like._", false},
	{"code=like.1_", true}, {"code=like.1", false}, {"code=like.__", true}, {"code=like.___", false},
	{"code=like.1%0", true}, {"code=like.10%0", false}, {"code=like.%10%", true},
	{`pct=like.100\%\_off`, true}, {`pct=like.100\%_off`, true}, {`pct=like.100\%\_of`, false},
	{`pct=like."100\\%\\_off"`, true}, {`pct=like.*\*`, false}, {`pct=like.1_0\%*`, true}, {`pct=like.100\__off`, false},
	{"count=like.1*", false}, {"count=not.like.1*", false}, {"meta=like.*", false}, {"paid=ilike.t*", false},
	// match and imatch: Go RE2, unanchored.
	{"title=match.^Cr", true}, {`title=match."Brûlée, \""`, true}, {`path=match.^a\\b$`, true},
	{"title=match.^cr", false}, {"title=imatch.^cr", true}, {"title=not.imatch.^cr", false}, {"count=match.1", false},
	// Timestamps compare as instants when both read as one.
	{"createdAt=eq.2026-01-02T03:04:05Z", true}, {"createdAt=eq.2026-01-02T04:04:05+01:00", true},
	{"createdAt=eq.2026-01-02T03:04:05.000Z", true}, {"createdAt=eq.2026-01-02 03:04:05+00", true},
	{"createdAt=eq.2026-01-02T03:04:05", true}, {"createdAt=eq.2026-01-01T22:04:05-0500", true},
	{"createdAt=gt.2026-01-02", true}, {"createdAt=lt.2026-01-02T03:04:05.001Z", true},
	{"createdAt=gt.2026-01-02T05:00:00+02:00", true}, {"createdAt=lt.2026-01-02T05:05:00+02:00", true},
	{"local=eq.2026-01-02T03:04:05Z", true}, {"naive=gt.2026-01-02T03:04:05Z", true},
	{"naive=eq.2026-01-02T03:04:05.500+00:00", true}, {"day=eq.2026-01-02T00:00:00Z", true},
	{"day=lt.2026-01-02T00:00:01Z", true}, {"createdAt=in.(x,2026-01-02T03:04:05Z)", true},
	{"createdAt=isdistinct.2026-01-02T04:04:05+01:00", false}, {"createdAt=not.eq.2026-01-02T03:04:05Z", false},
	{"createdAt=eq.2026-01-02T03:04:05.000Zjunk", false}, {"createdAt=like.2026-01-02*", true},
	{"createdAt=gt.2026-13-01", false}, {"createdAt=lt.2026-02-30", true},
	// Arrays and objects compare with nothing.
	{"tags=eq.a", false}, {"tags=not.eq.a", false}, {"tags=is.null", false}, {"tags=isdistinct.a", true},
	{`meta=eq."{\"k\": 1}"`, false}, {`meta=eq."{\"k\":1}"`, false}, {"tags=in.(a)", false},
	// in is the OR of eq.
	{"count=in.(1,10,100)", true}, {"count=in.(1,2)", false}, {"count=not.in.(1,2)", true},
	{"count=in.(x,10)", true}, {"count=in.(x,11)", false}, {"count=not.in.(x,11)", false},
	{`code=in.(" 10")`, false}, {"count=in.( 10)", true}, {"code=in.( 10)", true}, {"code=in.(1, 10)", false},
	{"code=in.(1,10) ", true},
	// AND chains.
	{"paid=is.true,total=gt.100,title=like.Cr*", true}, {"paid=is.true,total=gt.200", false},
	{"count=gt.5,count=lt.20", true}, {"count=gt.5, count=lt.20", true}, {"count=gt.5,count=lt.10", false},
	{strings.Repeat("count=eq.10,", MaxFilterConditions-1) + "count=eq.10", true},
	{"", true},
}

func TestFilterOperators(t *testing.T) {
	t.Parallel()
	row := mustRow(t, filterRow)
	for _, c := range filterCases {
		f := mustFilter(t, c.filter)
		if got := f.Match(row); got != c.want {
			t.Errorf("%s: Match = %v, want %v", c.filter, got, c.want)
		}
		// The canonical form is the same filter.
		back := mustFilter(t, f.String())
		if back.String() != f.String() || back.Match(row) != c.want {
			t.Errorf("%s: String() %q does not read back as the same filter", c.filter, f.String())
		}
	}
}

func TestFilterString(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"status=in.(paid,shipped),total=gt.100":         "status=in.(paid,shipped),total=gt.100",
		`a=eq."plain", b=not.is.NULL`:                   "a=eq.plain,b=not.is.null",
		`a=eq."x,y", b=in.( "p", q r,"s\"t",,"")`:       `a=eq."x,y",b=in.(p," q r","s\"t","","")`,
		`"Order Total"=gte.5,"a\"b"=like.x\y,c=eq."\\"`: `Order Total=gte.5,"a\"b"=like.x\y,c=eq.\`,
		`a=eq.")"`:  `a=eq.")"`,
		`a=in.()`:   `a=in.()`,
		`a=in.("")`: `a=in.("")`,
		"":          "",
	} {
		if got := mustFilter(t, in).String(); got != want {
			t.Errorf("%s: String() = %s, want %s", in, got, want)
		}
	}
	if cols := mustFilter(t, "a=eq.1,b=gt.2,a=lt.5").Columns(); strings.Join(cols, ",") != "a,b" {
		t.Errorf("Columns() = %v", cols)
	}
}

func TestFilterErrors(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", MaxPatternLen+1)
	list := strings.TrimSuffix(strings.Repeat("1,", MaxInList+1), ",")
	for _, c := range []struct{ filter, want string }{
		{"status", `filter condition 1 (at byte 6): missing "=" and operator after column "status"`},
		{"status=", "filter condition 1 (at byte 7): missing operator (eq, neq,"},
		{"a=eq.1,status=eqq.1", `filter condition 2 (at byte 14): unknown operator "eqq" (supported: eq, neq, lt, lte, gt, gte, in, is, like, ilike, match, imatch, isdistinct, each optionally after not.)`},
		{"status=cs.{a}", `unknown operator "cs"`},
		{"status=not.not.eq.1", `unknown operator "not"`},
		{"status=eq", `(at byte 9): missing "." and value after operator "eq"`},
		{"status=not.eq", `missing "." and value after operator "eq"`},
		{"status=not", `(at byte 7): unknown operator "not"`},
		{`title=eq."abc`, `(at byte 9): unterminated quoted value (missing closing ")`},
		{`title=eq."abc\"`, "unterminated quoted value"},
		{`title=eq."a"b`, `(at byte 12): unexpected 'b' after the quoted value`},
		{"title=eq.a(b", `(at byte 10): '(' in an unquoted value: write values with , ( ) " in double quotes`},
		{"title=eq.a)", `')' in an unquoted value`},
		{`title=eq.a"b"`, `'"' in an unquoted value`},
		{"title=in.a,b", "in needs a list in parentheses, like in.(a,b)"},
		{"title=in.(a,b", `(at byte 9): unterminated list (missing ")")`},
		{`title=in.("a`, "unterminated quoted value"},
		{`title=in.("a"x)`, `unexpected 'x' after the quoted value`},
		{"title=in.(a)x", `unexpected 'x' after the list`},
		{"title=in.(a(b)", `'(' in an unquoted value`},
		{"title=is.maybe", "is needs null, unknown, true or false"},
		{"title=is.null.x", "is needs null, unknown, true or false"},
		{`title=match."("`, "invalid regular expression: error parsing regexp: missing closing ): `(`"},
		{`title=imatch.a**`, "invalid regular expression"},
		{"title=match.a{1000}", "regular expression too complex"},
		{"title=match." + long, fmt.Sprintf("pattern longer than %d bytes", MaxPatternLen)},
		{"title=ilike." + long, fmt.Sprintf("pattern longer than %d bytes", MaxPatternLen)},
		{`title=like.a\`, `the pattern ends with an escape character "\"`},
		{strings.Repeat("a=eq.1,", MaxFilterConditions) + "a=eq.1", fmt.Sprintf("filter: more than %d conditions", MaxFilterConditions)},
		{"a=eq." + strings.Repeat("x", MaxFilterLen), fmt.Sprintf("filter: longer than %d bytes", MaxFilterLen)},
		{"a=in.(" + list + ")", fmt.Sprintf("more than %d values in the list", MaxInList)},
		{"a=eq.1,", "filter condition 2 (at byte 7): empty condition"},
		{",a=eq.1", "filter condition 1 (at byte 0): empty condition"},
		{"a=eq.1,,b=eq.2", "filter condition 2 (at byte 7): empty condition"},
		{"a->b=eq.1", "JSON paths (->) are not supported"},
		{"a::text=eq.1", "aliases and casts (:) are not supported"},
		{"a.b=eq.1", `'.' is not allowed in a column name (write the name in double quotes)`},
		{`"abc=eq.1`, "unterminated quoted column name"},
		{`""=eq.1`, "missing column name"},
		{"=eq.1", "missing column name"},
		{strings.Repeat("c", MaxColumnLen+1) + "=eq.1", fmt.Sprintf("column name longer than %d bytes", MaxColumnLen)},
		{"a=eq.\xff", "filter: not valid UTF-8"},
	} {
		f, err := ParseFilter(c.filter)
		var fe *FilterError
		if !errors.As(err, &fe) {
			t.Errorf("%q: got %v, %v; want a *FilterError", c.filter, f, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %q, want it to contain %q", c.filter, err, c.want)
		}
	}
}

func TestFilterDeliverEnterLeave(t *testing.T) {
	t.Parallel()
	paid := mustRow(t, `{"id": 1, "status": "paid", "total": 150}`)
	shipped := mustRow(t, `{"id": 1, "status": "shipped", "total": 150}`)
	cheap := mustRow(t, `{"id": 1, "status": "paid", "total": 50}`)
	nullStatus := mustRow(t, `{"id": 1, "status": null}`)
	f := mustFilter(t, "status=eq.paid,total=gt.100")
	for _, c := range []struct {
		name     string
		old, new *Row
		deliver  bool
		tr       Transition
	}{
		{"update matching before and after", paid, paid, true, TransitionNone},
		{"update leaving by status", paid, shipped, true, TransitionLeave},
		{"update leaving by total", paid, cheap, true, TransitionLeave},
		{"update entering", shipped, paid, true, TransitionEnter},
		{"update matching neither", shipped, cheap, false, TransitionNone},
		{"create matching", nil, paid, true, TransitionNone},
		{"create not matching", nil, shipped, false, TransitionNone},
		{"delete matching (old row)", paid, nil, true, TransitionNone},
		{"delete not matching", shipped, nil, false, TransitionNone},
		{"no rows", nil, nil, false, TransitionNone},
	} {
		if d, tr := f.Deliver(c.old, c.new); d != c.deliver || tr != c.tr {
			t.Errorf("%s: Deliver = %v, %q; want %v, %q", c.name, d, tr, c.deliver, c.tr)
		}
	}
	// not. and null: NOT (NULL = 'paid') is NULL, so a null status does not
	// match; setting it to "shipped" enters the filter.
	neg := mustFilter(t, "status=not.eq.paid")
	if d, tr := neg.Deliver(nullStatus, shipped); !d || tr != TransitionEnter {
		t.Errorf("not.eq from null to shipped: %v, %q; want true, enter", d, tr)
	}
	if d, tr := neg.Deliver(shipped, nullStatus); !d || tr != TransitionLeave {
		t.Errorf("not.eq from shipped to null: %v, %q; want true, leave", d, tr)
	}
	var none *Filter
	if d, tr := none.Deliver(shipped, cheap); !d || tr != TransitionNone || !none.Match(nil) {
		t.Errorf("no filter: %v, %q; want every change delivered plainly", d, tr)
	}
	if mustFilter(t, "status=is.null").Match(nil) {
		t.Error("a filter matched a nil row")
	}
	if TransitionEnter.String() != "enter" || TransitionLeave.String() != "leave" || TransitionNone.String() != "" {
		t.Error("Transition strings")
	}
}

func TestRowDecoding(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "[1]", "1", "null", `"x"`, "{", `{"a":}`, `{"a":1}x`} {
		if _, err := NewRow(json.RawMessage(bad)); err == nil {
			t.Errorf("NewRow(%q): no error", bad)
		}
	}
	for record, filter := range map[string]string{
		`{"a":1,"a":2}`:                                            "a=eq.2,a=not.eq.1", // the last of duplicate keys, as jsonb
		`{"t\u0069tle":"x","s":"a\"b\u00e9"}`:                      `title=eq.x,s=eq."a\"bé"`,
		" \n{ \"a\" :\t[1, {\"b\": \"}\"}] , \"c\" : \"]\\\\\" } ": `a=not.is.null,c=eq."]\\"`,
		`{}`:                       "a=is.null",
		`{"n": -0.0e5, "m": 1E+2}`: "n=eq.0,m=eq.100",
	} {
		if !mustFilter(t, filter).Match(mustRow(t, record)) {
			t.Errorf("%s does not match %s", filter, record)
		}
	}

	// An update's old row: the new row with the changed columns' old values.
	newRow := mustRow(t, `{"id": 1, "status": "shipped", "total": 150}`)
	old, err := newRow.Overlay(json.RawMessage(`{"status": "paid", "note": "x"}`))
	if err != nil {
		t.Fatal(err)
	}
	f := mustFilter(t, "status=eq.paid,total=eq.150,note=eq.x")
	if !f.Match(old) || f.Match(newRow) {
		t.Error("Overlay: the old row must have the old status, the unchanged total and the added note")
	}
	var sel *Select
	if got := string(sel.AppendProject(nil, old, nil)); got != `{"id": 1, "status": "paid", "total": 150, "note": "x"}` {
		t.Errorf("overlaid row projects as %s", got)
	}
	if _, err := newRow.Overlay(json.RawMessage(`[]`)); err == nil {
		t.Error("Overlay with an array: no error")
	}
}

func TestSelectProjection(t *testing.T) {
	t.Parallel()
	rec := `{"a": 1, "id": 2, "title": "x, \"y\"", "total": 1.50, "o": {"k": [1, 2]}, "Order Total": 3, "ref": "k"}`
	row := mustRow(t, rec)
	for _, c := range []struct {
		sel  string
		keys []string
		want string
	}{
		{"title,total", nil, `{"id": 2, "title": "x, \"y\"", "total": 1.50}`},
		{"total , title", nil, `{"id": 2, "title": "x, \"y\"", "total": 1.50}`}, // the record's order
		{"a", nil, `{"a": 1, "id": 2}`},
		{"o", []string{"ref"}, `{"id": 2, "o": {"k": [1, 2]}, "ref": "k"}`},
		{`"Order Total",missing`, nil, `{"id": 2, "Order Total": 3}`},
		{"missing", nil, `{"id": 2}`},
		{"*", nil, rec},
		{"title,*", nil, rec},
		{"", nil, rec},
	} {
		sel, err := ParseSelect(c.sel)
		if err != nil {
			t.Fatalf("ParseSelect(%q): %v", c.sel, err)
		}
		got := string(sel.AppendProject(nil, row, c.keys))
		if got != c.want {
			t.Errorf("select %q: %s, want %s", c.sel, got, c.want)
		}
		back, err := ParseSelect(sel.String())
		if err != nil || string(back.AppendProject(nil, row, c.keys)) != c.want {
			t.Errorf("select %q: String() %q does not read back as the same select (%v)", c.sel, sel.String(), err)
		}
	}
	compact := mustRow(t, `{"a":1,"id":2,"b":"x,y"}`)
	if got := string(mustSelect(t, "b").AppendProject([]byte("pre:"), compact, nil)); got != `pre:{"id":2,"b":"x,y"}` {
		t.Errorf("compact record: %s", got)
	}
	if got := string(mustSelect(t, "a").AppendProject(nil, nil, nil)); got != "null" {
		t.Errorf("nil row: %s", got)
	}
	if cols := mustSelect(t, "b, a,b").Columns(); strings.Join(cols, ",") != "b,a" {
		t.Errorf("Columns() = %v", cols)
	}
	if mustSelect(t, "*").Columns() != nil {
		t.Error(`Columns() of "*" is not nil`)
	}

	many := make([]string, MaxSelectColumns+1)
	for i := range many {
		many[i] = fmt.Sprint("c", i)
	}
	for _, c := range []struct{ sel, want string }{
		{"title,,x", "select column 2 (at byte 6): missing column name"},
		{"title,", "select column 2 (at byte 6): missing column name"},
		{"a:b", "aliases and casts (:) are not supported"},
		{"a->b", "JSON paths (->) are not supported"},
		{"a(b)", `'(' is not allowed in a column name`},
		{`"a" b`, `unexpected 'b' after the column`},
		{"*x", `unexpected 'x' after the column`},
		{strings.Join(many, ","), fmt.Sprintf("select: more than %d columns", MaxSelectColumns)},
		{strings.Repeat("x", MaxSelectLen+1), fmt.Sprintf("select: longer than %d bytes", MaxSelectLen)},
	} {
		_, err := ParseSelect(c.sel)
		var fe *FilterError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseSelect(%q): %v, want a *FilterError containing %q", c.sel, err, c.want)
		}
	}
}

func mustSelect(t testing.TB, s string) *Select {
	t.Helper()
	sel, err := ParseSelect(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

// TestFilterMatchAllocations guards the per-subscriber path: matching a
// shared row allocates nothing, whatever the operator; projecting into a
// buffer with room allocates nothing either.
func TestFilterMatchAllocations(t *testing.T) {
	row := mustRow(t, filterRow)
	var filters []*Filter
	for _, c := range filterCases {
		f := mustFilter(t, c.filter)
		if raceEnabled && strings.Contains(c.filter, "match.") {
			continue // regexp's pooled matchers: see raceEnabled
		}
		filters = append(filters, f)
	}
	matched := 0
	if allocs := testing.AllocsPerRun(100, func() {
		for _, f := range filters {
			if f.Match(row) {
				matched++
			}
			f.Deliver(row, row)
		}
	}); allocs != 0 {
		t.Errorf("matching %d filters allocates %v times", len(filters), allocs)
	}
	sel := mustSelect(t, "title,total,createdAt")
	buf := make([]byte, 0, 4096)
	if allocs := testing.AllocsPerRun(100, func() { buf = sel.AppendProject(buf[:0], row, []string{"code"}) }); allocs != 0 {
		t.Errorf("projecting allocates %v times", allocs)
	}
}

func TestParseTimestamp(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"2026-01-02": true, "2026-01-02T03:04": true, "2026-01-02t03:04:05z": true, "2026-01-02 03:04:05.123456789123+05:30": true,
		"2024-02-29": true, "2026-02-29": false, "2026-04-31": false, "2026-00-01": false, "2026-01-02T24:00": false,
		"2026-01-02T03": false, "2026-01-02T03:04:05.": false, "2026-01-02T03:04:05+5": false, "2026-01-02T03:04:05+0530": true,
		"2026-01-02T03:04:05+05:30:15": true, "2026-01-02T03:04:05+053015": false, "2026-01-02T03:04:05+16": false,
		"2026-01-02T03:04:05 +00": false, "10000-01-01T00:00:00": false, "2026-1-02": false, "2026-01-02X": false,
	} {
		if _, ok := parseTimestamp(s); ok != want {
			t.Errorf("parseTimestamp(%q) ok = %v, want %v", s, ok, want)
		}
	}
	a, _ := parseTimestamp("2026-01-02T03:04:05.5+05:30")
	b, _ := parseTimestamp("2026-01-01T21:34:05.500Z")
	if a != b {
		t.Errorf("%v != %v", a, b)
	}
}

// TestLikeAgainstRegexp compares like and ilike with the regular
// expression each pattern means, on random patterns and values over an
// alphabet with wildcards, escapes and characters whose case folding
// leaves ASCII (K and KELVIN SIGN, s and LONG S, ß).
func TestLikeAgainstRegexp(t *testing.T) {
	t.Parallel()
	rnd := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "b", "A", "k", "K", "\u212a", "s", "\u017f", "ß", "é", "É", "%", "*", "_", `\`, "."}
	gen := func(n int) string {
		var b strings.Builder
		for range rnd.IntN(n) {
			b.WriteString(alphabet[rnd.IntN(len(alphabet))])
		}
		return b.String()
	}
	for range 20000 {
		pattern, value := gen(7), gen(9)
		for _, fold := range []bool{false, true} {
			lp, problem := compileLike(pattern, fold)
			var re strings.Builder
			re.WriteString("(?s)^")
			if fold {
				re.WriteString("(?i)")
			}
			bad := false
			for i := 0; i < len(pattern); {
				r, size := utf8.DecodeRuneInString(pattern[i:])
				i += size
				switch r {
				case '%', '*':
					re.WriteString(".*")
					continue
				case '_':
					re.WriteString(".")
					continue
				case '\\':
					if i == len(pattern) {
						bad = true
						continue
					}
					r, size = utf8.DecodeRuneInString(pattern[i:])
					i += size
				}
				re.WriteString(regexp.QuoteMeta(string(r)))
			}
			if bad != (problem != "") {
				t.Fatalf("%q: compile problem %q", pattern, problem)
			}
			if bad {
				continue
			}
			want := regexp.MustCompile(re.String() + "$").MatchString(value)
			if got := lp.match(value); got != want {
				t.Fatalf("%q like %q (fold %v) = %v, regexp %s says %v", value, pattern, fold, got, re.String(), want)
			}
		}
	}
}
