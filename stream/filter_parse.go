package stream

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode"
	"unicode/utf8"
)

// FilterError is a filter or select that does not parse; the realtime API
// answers it with invalid_filter and Error() as the message.
type FilterError struct {
	Param string // "filter" or "select"
	// Item is the condition (filter) or column (select) at fault, from 1; 0
	// when the problem is the whole parameter (too long, too many items).
	Item int
	// Offset is the byte offset in the parameter where the problem is.
	Offset  int
	Problem string
}

func (e *FilterError) Error() string {
	if e.Item == 0 {
		return e.Param + ": " + e.Problem
	}
	what := "condition"
	if e.Param == "select" {
		what = "column"
	}
	return fmt.Sprintf("%s %s %d (at byte %d): %s", e.Param, what, e.Item, e.Offset, e.Problem)
}

const supportedOperators = "eq, neq, lt, lte, gt, gte, in, is, like, ilike, match, imatch, isdistinct, each optionally after not."

// ParseFilter parses a subscription filter (see the language at the top of
// filter.go). The empty string is no filter: (nil, nil). Errors are
// *FilterError.
func ParseFilter(s string) (*Filter, error) { return parseFilter(s, MaxFilterLen) }

// parseFilter is ParseFilter with a length bound (String's canonical form
// may quote what the input did not, so tests re-parse it without one).
func parseFilter(s string, maxLen int) (*Filter, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) > maxLen {
		return nil, &FilterError{Param: "filter", Problem: fmt.Sprintf("longer than %d bytes", maxLen)}
	}
	if !utf8.ValidString(s) {
		return nil, &FilterError{Param: "filter", Problem: "not valid UTF-8"}
	}
	p := &filterParser{s: s}
	f := &Filter{}
	for {
		p.item++
		if p.item > MaxFilterConditions {
			return nil, &FilterError{Param: "filter", Problem: fmt.Sprintf("more than %d conditions", MaxFilterConditions)}
		}
		c, err := p.condition()
		if err != nil {
			return nil, err
		}
		f.conds = append(f.conds, c)
		if p.i == len(s) {
			return f, nil
		}
		p.i++ // the ',' that condition stopped at
	}
}

type filterParser struct {
	s    string
	i    int
	item int
}

func (p *filterParser) fail(at int, format string, args ...any) error {
	return &FilterError{Param: "filter", Item: p.item, Offset: at, Problem: fmt.Sprintf(format, args...)}
}

func (p *filterParser) condition() (condition, error) {
	var c condition
	p.i = skipBlanks(p.s, p.i)
	if p.i == len(p.s) || p.s[p.i] == ',' {
		return c, p.fail(p.i, "empty condition")
	}
	col, next, problem := scanColumn(p.s, p.i, "=,")
	if problem != "" {
		return c, p.fail(p.i, "%s", problem)
	}
	p.i = next
	if p.i == len(p.s) || p.s[p.i] != '=' {
		return c, p.fail(p.i, "missing \"=\" and operator after column %q", col)
	}
	c.column, c.hash = col, nameHash(col)
	p.i++
	opAt := p.i
	name := p.word()
	if name == "not" && p.i < len(p.s) && p.s[p.i] == '.' {
		c.not = true
		p.i++
		opAt = p.i
		name = p.word()
	}
	for op, n := range operatorNames {
		if n != "" && n == name {
			c.op = operator(op)
		}
	}
	switch {
	case name == "":
		return c, p.fail(opAt, "missing operator (%s)", supportedOperators)
	case c.op == 0:
		return c, p.fail(opAt, "unknown operator %q (supported: %s)", name, supportedOperators)
	case p.i == len(p.s) || p.s[p.i] != '.':
		return c, p.fail(p.i, "missing \".\" and value after operator %q", name)
	}
	p.i++
	valAt := p.i
	switch c.op {
	case opIn:
		return c, p.list(&c)
	case opIs:
		w := p.word()
		for is, n := range isWords {
			if n != "" && strings.EqualFold(n, w) {
				c.is = isWord(is)
			}
		}
		if c.is == 0 || (p.i < len(p.s) && p.s[p.i] != ',') {
			return c, p.fail(valAt, "is needs null, unknown, true or false")
		}
		return c, nil
	}
	v, err := p.value()
	if err != nil {
		return c, err
	}
	c.arg = newOperand(v)
	switch c.op {
	case opLike, opIlike:
		if len(v) > MaxPatternLen {
			return c, p.fail(valAt, "pattern longer than %d bytes", MaxPatternLen)
		}
		var problem string
		if c.like, problem = compileLike(v, c.op == opIlike); problem != "" {
			return c, p.fail(valAt, "%s", problem)
		}
	case opMatch, opImatch:
		if c.re, err = compileRegexp(v, c.op == opImatch); err != nil {
			return c, p.fail(valAt, "%v", err)
		}
	}
	return c, nil
}

// word reads up to the next '.' or ','.
func (p *filterParser) word() string {
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != '.' && p.s[p.i] != ',' {
		p.i++
	}
	return p.s[start:p.i]
}

// value reads a single value: quoted, or up to the next ','.
func (p *filterParser) value() (string, error) {
	if p.i < len(p.s) && p.s[p.i] == '"' {
		at := p.i
		v, next, ok := unquote(p.s, p.i)
		if !ok {
			return "", p.fail(at, "unterminated quoted value (missing closing \")")
		}
		p.i = next
		if p.i < len(p.s) && p.s[p.i] != ',' {
			return "", p.fail(p.i, "unexpected %q after the quoted value (a value ends at \",\")", p.s[p.i])
		}
		return v, nil
	}
	start := p.i
	for ; p.i < len(p.s) && p.s[p.i] != ','; p.i++ {
		if err := p.unquotedChar(); err != nil {
			return "", err
		}
	}
	return p.s[start:p.i], nil
}

func (p *filterParser) unquotedChar() error {
	if c := p.s[p.i]; c == '(' || c == ')' || c == '"' {
		return p.fail(p.i, `%q in an unquoted value: write values with , ( ) " in double quotes, with \" for " and \\ for \`, c)
	}
	return nil
}

// list reads "(" members ")" for in.
func (p *filterParser) list(c *condition) error {
	open := p.i
	if p.i == len(p.s) || p.s[p.i] != '(' {
		return p.fail(p.i, "in needs a list in parentheses, like in.(a,b)")
	}
	p.i = skipBlanks(p.s, p.i+1)
	c.list = []operand{}
	if p.i < len(p.s) && p.s[p.i] == ')' {
		p.i++
	} else {
		for {
			if len(c.list) == MaxInList {
				return p.fail(p.i, "more than %d values in the list", MaxInList)
			}
			var v string
			if p.i < len(p.s) && p.s[p.i] == '"' {
				at := p.i
				var ok bool
				if v, p.i, ok = unquote(p.s, p.i); !ok {
					return p.fail(at, "unterminated quoted value (missing closing \")")
				}
				if p.i < len(p.s) && p.s[p.i] != ',' && p.s[p.i] != ')' {
					return p.fail(p.i, "unexpected %q after the quoted value (a member ends at \",\" or \")\")", p.s[p.i])
				}
			} else {
				start := p.i
				for ; p.i < len(p.s) && p.s[p.i] != ',' && p.s[p.i] != ')'; p.i++ {
					if err := p.unquotedChar(); err != nil {
						return err
					}
				}
				v = p.s[start:p.i]
			}
			if p.i == len(p.s) {
				return p.fail(open, "unterminated list (missing \")\")")
			}
			c.list = append(c.list, newOperand(v))
			p.i++
			if p.s[p.i-1] == ')' {
				break
			}
		}
	}
	p.i = skipBlanks(p.s, p.i)
	if p.i < len(p.s) && p.s[p.i] != ',' {
		return p.fail(p.i, "unexpected %q after the list (conditions are separated by \",\")", p.s[p.i])
	}
	return nil
}

// compileRegexp compiles a match or imatch pattern within the bounds.
func compileRegexp(pattern string, fold bool) (*regexp.Regexp, error) {
	if len(pattern) > MaxPatternLen {
		return nil, fmt.Errorf("pattern longer than %d bytes", MaxPatternLen)
	}
	flags := syntax.Perl
	if fold {
		flags |= syntax.FoldCase
	}
	re, err := syntax.Parse(pattern, flags)
	if err != nil {
		return nil, fmt.Errorf("invalid regular expression: %w", err)
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, fmt.Errorf("invalid regular expression: %w", err)
	}
	if len(prog.Inst) > MaxRegexpInsts {
		return nil, fmt.Errorf("regular expression too complex (%d instructions, at most %d)", len(prog.Inst), MaxRegexpInsts)
	}
	if fold {
		pattern = "(?i)" + pattern
	}
	return regexp.Compile(pattern)
}

// unquote reads the double-quoted text at s[i] ('"'): a backslash makes the
// next character literal. It returns the text, the index after the closing
// quote, and false when there is none.
func unquote(s string, i int) (string, int, bool) {
	i++
	start := i
	for i < len(s) && s[i] != '"' && s[i] != '\\' {
		i++
	}
	if i < len(s) && s[i] == '"' {
		return s[start:i], i + 1, true // no escapes: no copy
	}
	b := []byte(s[start:i])
	for i < len(s) {
		switch s[i] {
		case '"':
			return string(b), i + 1, true
		case '\\':
			i++
			if i == len(s) {
				return "", 0, false
			}
		}
		b = append(b, s[i])
		i++
	}
	return "", 0, false
}

// quote writes s in double quotes, escaping '"' and '\'.
func quote(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
}

func skipBlanks(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// scanColumn reads a column name at s[i]: double-quoted, or a run of
// letters, digits, '_', '$', '-' and spaces (trimmed) up to one of stops.
// It returns the name, the index after it and a problem ("" when none).
func scanColumn(s string, i int, stops string) (string, int, string) {
	var name string
	if i < len(s) && s[i] == '"' {
		var ok bool
		if name, i, ok = unquote(s, i); !ok {
			return "", i, "unterminated quoted column name (missing closing \")"
		}
		i = skipBlanks(s, i)
	} else {
		start := i
		for i < len(s) && strings.IndexByte(stops, s[i]) < 0 {
			r, size := utf8.DecodeRuneInString(s[i:])
			switch {
			case r == '-' && strings.HasPrefix(s[i:], "->"):
				return "", i, "JSON paths (->) are not supported"
			case r == ':':
				return "", i, "aliases and casts (:) are not supported"
			case r != '_' && r != '$' && r != '-' && r != ' ' && !unicode.IsLetter(r) && !unicode.IsDigit(r):
				return "", i, fmt.Sprintf("%q is not allowed in a column name (write the name in double quotes)", r)
			}
			i += size
		}
		name = strings.Trim(s[start:i], " ")
	}
	switch {
	case name == "":
		return "", i, "missing column name"
	case len(name) > MaxColumnLen:
		return "", i, fmt.Sprintf("column name longer than %d bytes", MaxColumnLen)
	}
	return name, i, ""
}

// writeColumn writes a column name as scanColumn reads it back.
func writeColumn(b *strings.Builder, name string) {
	plain := name != "" && name[0] != ' ' && name[len(name)-1] != ' ' && !strings.Contains(name, "->")
	for _, r := range name {
		if r != '_' && r != '$' && r != '-' && r != ' ' && !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			plain = false
		}
	}
	if plain {
		b.WriteString(name)
	} else {
		quote(b, name)
	}
}

// String returns the filter in a canonical form that ParseFilter reads
// back as the same filter.
func (f *Filter) String() string {
	if f == nil {
		return ""
	}
	var b strings.Builder
	for i, c := range f.conds {
		if i > 0 {
			b.WriteByte(',')
		}
		writeColumn(&b, c.column)
		b.WriteByte('=')
		if c.not {
			b.WriteString("not.")
		}
		b.WriteString(operatorNames[c.op])
		b.WriteByte('.')
		switch c.op {
		case opIs:
			b.WriteString(isWords[c.is])
		case opIn:
			b.WriteByte('(')
			for j, o := range c.list {
				if j > 0 {
					b.WriteByte(',')
				}
				if o.s == "" || strings.ContainsAny(o.s, `,()"`) || o.s[0] == ' ' || o.s[0] == '\t' {
					quote(&b, o.s)
				} else {
					b.WriteString(o.s)
				}
			}
			b.WriteByte(')')
		default:
			if strings.ContainsAny(c.arg.s, `,()"`) {
				quote(&b, c.arg.s)
			} else {
				b.WriteString(c.arg.s)
			}
		}
	}
	return b.String()
}
