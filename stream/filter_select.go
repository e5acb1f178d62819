package stream

import (
	"fmt"
	"slices"
	"strings"
)

// Select is a parsed select: the columns a subscriber wants in each
// record, besides its key, which is always kept. It is immutable and safe
// for concurrent use. A nil *Select keeps every column.
//
// The syntax is PostgREST's select reduced to columns: names separated by
// commas, written as in a filter (plain or double-quoted), white space
// around them ignored, "*" for every column. Unknown columns are allowed
// (a record simply has none).
type Select struct {
	all    bool
	order  []string // as written, without repeats
	sorted []string
}

// ParseSelect parses a select. The empty string is no select: (nil, nil).
// Errors are *FilterError.
func ParseSelect(s string) (*Select, error) {
	if s == "" {
		return nil, nil
	}
	if len(s) > MaxSelectLen {
		return nil, &FilterError{Param: "select", Problem: fmt.Sprintf("longer than %d bytes", MaxSelectLen)}
	}
	sel := &Select{}
	for i, item := 0, 1; ; item++ {
		fail := func(at int, problem string) error {
			return &FilterError{Param: "select", Item: item, Offset: at, Problem: problem}
		}
		i = skipBlanks(s, i)
		var name string
		switch {
		case i == len(s) || s[i] == ',':
			return nil, fail(i, "missing column name")
		case s[i] == '*':
			sel.all = true
			i = skipBlanks(s, i+1)
		default:
			var problem string
			at := i
			if name, i, problem = scanColumn(s, i, ","); problem != "" {
				return nil, fail(at, problem)
			}
			if !slices.Contains(sel.order, name) {
				if len(sel.order) == MaxSelectColumns {
					return nil, &FilterError{Param: "select", Problem: fmt.Sprintf("more than %d columns", MaxSelectColumns)}
				}
				sel.order = append(sel.order, name)
			}
		}
		if i == len(s) {
			break
		}
		if s[i] != ',' {
			return nil, fail(i, fmt.Sprintf("unexpected %q after the column (columns are separated by \",\")", s[i]))
		}
		i++
	}
	sel.sorted = slices.Clone(sel.order)
	slices.Sort(sel.sorted)
	return sel, nil
}

// Columns returns the selected columns in the order written; nil for "*".
func (s *Select) Columns() []string {
	if s == nil || s.all {
		return nil
	}
	return slices.Clone(s.order)
}

// String returns the select in a canonical form that ParseSelect reads back
// as the same select.
func (s *Select) String() string {
	if s == nil {
		return ""
	}
	if s.all {
		return "*"
	}
	var b strings.Builder
	for i, c := range s.order {
		if i > 0 {
			b.WriteByte(',')
		}
		writeColumn(&b, c)
	}
	return b.String()
}

// keeps reports whether the projection keeps the column.
func (s *Select) keeps(name string, keys []string) bool {
	if s == nil || s.all || name == "id" || slices.Contains(keys, name) {
		return true
	}
	_, found := slices.BinarySearch(s.sorted, name)
	return found
}

// AppendProject appends to dst the row's record trimmed to the selected
// columns, "id" and keys (the channel's key columns): a JSON object with
// those members in the record's order, each member's text (key, value and
// the separator before it) exactly as in the record. It allocates only to
// grow dst. A nil row appends "null".
func (s *Select) AppendProject(dst []byte, r *Row, keys []string) []byte {
	if r == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '{')
	first := true
	for i := range r.cols {
		c := &r.cols[i]
		if !s.keeps(c.name, keys) {
			continue
		}
		if !first {
			dst = append(dst, c.sep...)
		}
		first = false
		dst = append(dst, c.head...)
		dst = append(dst, c.raw...)
	}
	return append(dst, '}')
}
