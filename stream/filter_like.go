package stream

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// likePattern is a compiled like or ilike pattern: segments of single
// characters and literals between "%" wildcards. Matching finds each segment
// at its leftmost place after the previous one, which is correct for such
// patterns and costs at most the value's length times the pattern's, never
// more (no backtracking).
type likePattern struct {
	fold       bool
	star       bool // the pattern has a "%"
	startFixed bool // no "%" at the start: the first segment is a prefix
	endFixed   bool // no "%" at the end: the last segment is a suffix
	segs       []likeSeg
}

// anyRune is "_" in a segment.
const anyRune = -1

type likeSeg struct {
	runes []rune // anyRune for "_"; for ilike, each rune's foldCanon
	lit   string // like: the segment as text when it has no "_"
}

func compileLike(p string, fold bool) (*likePattern, string) {
	lp := &likePattern{fold: fold, startFixed: true, endFixed: true}
	var cur []rune
	plain := true
	end := func() {
		if len(cur) > 0 {
			s := likeSeg{runes: cur}
			if plain && !fold {
				s.lit = string(cur)
			}
			lp.segs = append(lp.segs, s)
		}
		cur, plain = nil, true
	}
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRuneInString(p[i:])
		i += size
		switch r {
		case '%', '*':
			if i == size {
				lp.startFixed = false
			}
			lp.star, lp.endFixed = true, false
			end()
			continue
		case '_':
			cur, plain, lp.endFixed = append(cur, anyRune), false, true
			continue
		case '\\':
			if i == len(p) {
				return nil, `the pattern ends with an escape character "\"`
			}
			r, size = utf8.DecodeRuneInString(p[i:])
			i += size
		}
		if fold {
			r = foldCanon(r)
		}
		cur = append(cur, r)
		lp.endFixed = true
	}
	end()
	return lp, ""
}

func (p *likePattern) match(s string) bool {
	segs := p.segs
	if !p.star {
		if len(segs) == 0 {
			return s == ""
		}
		end, ok := p.matchAt(&segs[0], s, 0)
		return ok && end == len(s)
	}
	pos, limit := 0, len(s)
	if p.startFixed && len(segs) > 0 {
		end, ok := p.matchAt(&segs[0], s, 0)
		if !ok {
			return false
		}
		pos, segs = end, segs[1:]
	}
	if p.endFixed && len(segs) > 0 {
		last := &segs[len(segs)-1]
		start := len(s)
		if last.lit != "" {
			start -= len(last.lit)
		} else {
			for range last.runes {
				if start <= pos {
					return false
				}
				_, size := utf8.DecodeLastRuneInString(s[:start])
				start -= size
			}
		}
		if start < pos {
			return false
		}
		if end, ok := p.matchAt(last, s, start); !ok || end != len(s) {
			return false
		}
		limit, segs = start, segs[:len(segs)-1]
	}
	for i := range segs {
		end, ok := p.find(&segs[i], s, pos, limit)
		if !ok {
			return false
		}
		pos = end
	}
	return true
}

// find returns the end of the leftmost match of seg in s[from:limit].
func (p *likePattern) find(seg *likeSeg, s string, from, limit int) (int, bool) {
	if from > limit {
		return 0, false
	}
	if seg.lit != "" {
		i := strings.Index(s[from:limit], seg.lit)
		return from + i + len(seg.lit), i >= 0
	}
	first := seg.runes[0]
	for i := from; i < limit; {
		if c := rune(s[i]); c < utf8.RuneSelf && first != anyRune {
			// A quick look at an ASCII first character skips most places.
			if p.fold && 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			if c != first {
				i++
				continue
			}
		}
		if end, ok := p.matchAt(seg, s, i); ok {
			// Ends only grow with starts: a later match cannot fit either.
			return end, end <= limit
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return 0, false
}

// matchAt matches seg at s[i:] and returns where the match ends.
func (p *likePattern) matchAt(seg *likeSeg, s string, i int) (int, bool) {
	if seg.lit != "" {
		return i + len(seg.lit), strings.HasPrefix(s[i:], seg.lit)
	}
	for _, want := range seg.runes {
		if i >= len(s) {
			return 0, false
		}
		r, size := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		if p.fold {
			r = foldCanon(r)
		}
		if want != anyRune && r != want {
			return 0, false
		}
		i += size
	}
	return i, true
}

// foldCanon returns the smallest rune of r's Unicode simple case folding
// orbit: two runes are equal ignoring case (as strings.EqualFold has it)
// exactly when their foldCanon are. For ASCII that is the upper case
// letter (the orbits of k and s also hold U+212A KELVIN SIGN and U+017F
// LONG S, both larger).
func foldCanon(r rune) rune {
	if r < utf8.RuneSelf {
		if 'a' <= r && r <= 'z' {
			r -= 'a' - 'A'
		}
		return r
	}
	m := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		m = min(m, f)
	}
	return m
}
