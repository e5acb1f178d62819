package stream

// # Subscription filters
//
// A realtime subscription may carry a filter, in the syntax of PostgREST
// and Supabase Realtime: conditions "column=[not.]operator.value" joined by
// commas, all of which must hold:
//
//	status=in.(paid,shipped),total=gt.100,note=not.is.null
//
// It is evaluated in memory on the event's row (the record JSON object,
// decoded once per event into a Row), never by a query.
//
// Operators: eq, neq, lt, lte, gt, gte; in.(v1,v2,…); is.null, is.unknown,
// is.true, is.false (the word in any case); like and ilike ("%" or "*" any
// run of characters, "_" one character, "\" makes the next character
// literal, so like.100\% matches "100%"); match and imatch (a regular expression in Go's RE2 syntax,
// searched for anywhere in the value, in linear time); isdistinct (IS
// DISTINCT FROM). "not." before any operator negates it.
//
// Values: an unquoted value runs to the next comma and may not contain
// '(', ')' or '"'; a value with any of , ( ) " is written in double quotes,
// in which a backslash makes the next character literal ("a\"b", "a\\b").
// "eq." is the empty string, as is eq."". In lists, members are separated
// by commas and may be quoted the same way: in.(a,"b,c","say \"hi\"");
// white space after "(" is skipped, other white space is kept. Column names
// are letters, digits, "_", "$", "-" and inner spaces (as PostgREST's), or
// any text in double quotes ("Order Total"=gt.5); JSON paths (->) and casts
// are not supported.
//
// Comparisons follow the type of the row's value, as Postgres would after
// casting the operand to the column's type:
//   - number: the operand is read as a decimal number (surrounding white
//     space allowed: "100", "1e2", "100.0" and " 100" equal 100) and the two
//     compared exactly, at any size; an operand that is not a number makes
//     the condition unknown.
//   - string: when both the value and the operand read as timestamps
//     (YYYY-MM-DD, optionally "T" or " " HH:MM[:SS[.fraction]], optionally
//     "Z" or ±HH[[:]MM[:SS]]; no zone means UTC, a date alone its midnight;
//     years of 4 digits, AD) they are
//     compared as instants ("2026-01-02T03:04:05.000Z" eq
//     "2026-01-02T04:04:05+01:00"); otherwise bytewise, which is code point
//     order (Postgres's "C" collation, not the database's). "10" lt "9".
//   - boolean: the operand must be true or false (any case); false < true.
//   - null or a missing key: every comparison is unknown (SQL NULL).
//   - array or object: every comparison is unknown (cs/cd are not
//     supported).
//
// in is the OR of eq over its members (in.() is false, even for null). like,
// ilike, match and imatch apply to strings only, unknown otherwise; ilike
// and imatch fold case by Unicode simple folding. is and isdistinct are
// never unknown: is.null (and is.unknown) holds for null or a missing key,
// is.true and is.false only for the JSON booleans; isdistinct holds for
// null, for an array or object, for a value the operand cannot be read as
// (a number and "abc") and for a different value.
//
// Three-valued logic, as SQL's: a condition is true, false or unknown;
// "not." turns true into false and false into true and leaves unknown
// unknown; a row passes when every condition is true. So status=not.eq.paid
// does not pass a row whose status is null or missing (SQL: NOT (NULL =
// 'paid') is NULL); status=isdistinct.paid does. A filter passes no event
// that has no row.

import (
	"regexp"
	"strings"
)

// Bounds of a filter and a select, so that parsing and matching cost a
// bounded amount per subscriber and per event.
const (
	// MaxFilterLen bounds a filter's length in bytes.
	MaxFilterLen = 2048
	// MaxFilterConditions bounds the conditions of a filter.
	MaxFilterConditions = 16
	// MaxInList bounds the members of one in.(…) list.
	MaxInList = 100
	// MaxPatternLen bounds a like, ilike, match or imatch pattern in bytes:
	// matching costs up to the value's length times the pattern's.
	MaxPatternLen = 256
	// MaxRegexpInsts bounds the compiled size of a match or imatch pattern
	// (RE2 instructions), which a short pattern such as a{1000} can make
	// large.
	MaxRegexpInsts = 1000
	// MaxColumnLen bounds a column name in bytes (Postgres's identifier
	// limit).
	MaxColumnLen = 63
	// MaxSelectLen bounds a select's length in bytes.
	MaxSelectLen = 2048
	// MaxSelectColumns bounds the columns of a select.
	MaxSelectColumns = 64
)

// Filter is a parsed subscription filter (see ParseFilter). It is immutable
// and safe for concurrent use. A nil *Filter is no filter: it matches every
// row.
type Filter struct {
	conds []condition
}

type operator uint8

const (
	opEq operator = iota + 1
	opNeq
	opLt
	opLte
	opGt
	opGte
	opIn
	opIs
	opLike
	opIlike
	opMatch
	opImatch
	opIsDistinct
)

var operatorNames = [...]string{
	opEq: "eq", opNeq: "neq", opLt: "lt", opLte: "lte", opGt: "gt", opGte: "gte", opIn: "in", opIs: "is",
	opLike: "like", opIlike: "ilike", opMatch: "match", opImatch: "imatch", opIsDistinct: "isdistinct",
}

// isWord is the word after is.
type isWord uint8

const (
	isNull isWord = iota + 1
	isUnknown
	isTrue
	isFalse
)

var isWords = [...]string{isNull: "null", isUnknown: "unknown", isTrue: "true", isFalse: "false"}

type condition struct {
	column string
	hash   uint64 // nameHash(column)
	op     operator
	not    bool
	arg    operand   // eq … gte, isdistinct; like and match keep their pattern in arg.s
	list   []operand // in
	is     isWord
	like   *likePattern
	re     *regexp.Regexp
}

// operand is a value of a filter, read ahead, once, as each type that a
// row's value may have.
type operand struct {
	s      string
	num    decimal
	t      instant
	isNum  bool
	isTime bool
	isBool bool
	b      bool
}

func newOperand(s string) operand {
	o := operand{s: s}
	trimmed := strings.Trim(s, " \t\n\r\v\f")
	o.num, o.isNum = parseDecimal(trimmed)
	o.t, o.isTime = parseTimestamp(trimmed)
	switch {
	case strings.EqualFold(trimmed, "true"):
		o.isBool, o.b = true, true
	case strings.EqualFold(trimmed, "false"):
		o.isBool = true
	}
	return o
}

// truth is a three-valued logic value.
type truth int8

const (
	tFalse truth = iota
	tTrue
	tUnknown
)

func truthOf(b bool) truth {
	if b {
		return tTrue
	}
	return tFalse
}

// Match reports whether every condition of the filter holds on the row. It
// allocates nothing. A nil filter matches everything, even a nil row; a
// non-nil filter matches no nil row.
func (f *Filter) Match(r *Row) bool {
	if f == nil {
		return true
	}
	if r == nil {
		return false
	}
	for i := range f.conds {
		if f.conds[i].eval(r) != tTrue {
			return false
		}
	}
	return true
}

// Transition says how a delivered change relates to a subscriber's filter.
type Transition uint8

// Transitions.
const (
	// TransitionNone: an ordinary delivery (created, deleted, or updated
	// and matching before and after).
	TransitionNone Transition = iota
	// TransitionEnter: an update after which the row matches and before
	// which it did not.
	TransitionEnter
	// TransitionLeave: an update before which the row matched and after
	// which it does not; delivered so the client can drop the row.
	TransitionLeave
)

// String returns "", "enter" or "leave".
func (t Transition) String() string {
	switch t {
	case TransitionEnter:
		return "enter"
	case TransitionLeave:
		return "leave"
	}
	return ""
}

// Deliver decides whether a change goes to a subscriber with this filter,
// from the row before the change (nil for a create) and after it (nil for a
// delete): a create by its new row, a delete by its old row, an update that
// matches before and after plainly, one that starts matching as
// TransitionEnter, one that stops matching as TransitionLeave, one that
// matches neither before nor after not at all. A nil filter delivers every
// change plainly.
func (f *Filter) Deliver(before, after *Row) (deliver bool, t Transition) {
	if f == nil {
		return true, TransitionNone
	}
	switch {
	case before == nil:
		return f.Match(after), TransitionNone
	case after == nil:
		return f.Match(before), TransitionNone
	}
	was, is := f.Match(before), f.Match(after)
	switch {
	case was && is:
		return true, TransitionNone
	case is:
		return true, TransitionEnter
	case was:
		return true, TransitionLeave
	}
	return false, TransitionNone
}

// Columns returns the columns the filter reads, in order, each once: an
// update's old row needs at least these.
func (f *Filter) Columns() []string {
	if f == nil {
		return nil
	}
	var cols []string
	for _, c := range f.conds {
		if !containsString(cols, c.column) {
			cols = append(cols, c.column)
		}
	}
	return cols
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (c *condition) eval(r *Row) truth {
	var v *value
	if i := r.findHashed(c.column, c.hash); i >= 0 {
		v = &r.cols[i].v
	}
	t := c.test(v)
	if c.not && t != tUnknown {
		t = 1 - t
	}
	return t
}

func (c *condition) test(v *value) truth {
	null := v == nil || v.kind == kindNull
	switch c.op {
	case opIs:
		switch c.is {
		case isTrue:
			return truthOf(!null && v.kind == kindBool && v.b)
		case isFalse:
			return truthOf(!null && v.kind == kindBool && !v.b)
		}
		return truthOf(null)
	case opIsDistinct:
		if null {
			return tTrue
		}
		m, ok := compare(v, &c.arg)
		return truthOf(!ok || m != 0)
	case opIn:
		if len(c.list) == 0 {
			return tFalse
		}
	}
	if null {
		return tUnknown
	}
	switch c.op {
	case opIn:
		t := tFalse
		for i := range c.list {
			m, ok := compare(v, &c.list[i])
			if !ok {
				t = tUnknown
			} else if m == 0 {
				return tTrue
			}
		}
		return t
	case opLike, opIlike:
		if v.kind != kindString {
			return tUnknown
		}
		return truthOf(c.like.match(v.s))
	case opMatch, opImatch:
		if v.kind != kindString {
			return tUnknown
		}
		return truthOf(c.re.MatchString(v.s))
	}
	m, ok := compare(v, &c.arg)
	if !ok {
		return tUnknown
	}
	switch c.op {
	case opEq:
		return truthOf(m == 0)
	case opNeq:
		return truthOf(m != 0)
	case opLt:
		return truthOf(m < 0)
	case opLte:
		return truthOf(m <= 0)
	case opGt:
		return truthOf(m > 0)
	}
	return truthOf(m >= 0) // opGte
}

// compare orders a non-null value and an operand by the value's type; ok
// is false when they do not compare (the operand is not of that type, or
// the value is an array or object).
func compare(v *value, o *operand) (m int, ok bool) {
	switch v.kind {
	case kindNumber:
		if o.isNum {
			return v.num.cmp(&o.num), true
		}
	case kindString:
		if v.isTime && o.isTime {
			return v.t.cmp(o.t), true
		}
		return strings.Compare(v.s, o.s), true
	case kindBool:
		if o.isBool {
			return cmpInt(boolInt(v.b), boolInt(o.b)), true
		}
	}
	return 0, false
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
