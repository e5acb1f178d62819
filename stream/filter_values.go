package stream

import (
	"strings"
	"time"
)

// decimal is an exact decimal number: 0.digits × 10^exp, digits without
// leading or trailing zeros ("" for zero). Comparing two is exact at any
// size, as Postgres's numeric is, where float64 would merge large ids.
type decimal struct {
	neg    bool
	digits string
	exp    int64
}

// maxExp bounds exponents far beyond any number that fits a filter or a
// record, so that adding digit counts never overflows.
const maxExp = 1 << 40

// parseDecimal reads a number as Postgres's numeric input does:
// [+-] digits [. digits] [e [+-] digits], where either side of the point
// may be empty (".5", "5.") but not both. It accepts every JSON number.
func parseDecimal(s string) (decimal, bool) {
	i, neg := 0, false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	is := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	intPart, frac := s[is:i], ""
	if i < len(s) && s[i] == '.' {
		i++
		fs := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		frac = s[fs:i]
	}
	if intPart == "" && frac == "" {
		return decimal{}, false
	}
	var e int64
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		eneg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			eneg = s[i] == '-'
			i++
		}
		es := i
		for ; i < len(s) && isDigit(s[i]); i++ {
			if e < maxExp {
				e = e*10 + int64(s[i]-'0')
			}
		}
		if i == es {
			return decimal{}, false
		}
		if eneg {
			e = -e
		}
	}
	if i != len(s) {
		return decimal{}, false
	}
	intPart = strings.TrimLeft(intPart, "0")
	frac = strings.TrimRight(frac, "0")
	d := decimal{neg: neg}
	switch {
	case intPart != "" && frac == "":
		d.digits, d.exp = strings.TrimRight(intPart, "0"), int64(len(intPart))
	case intPart != "":
		d.digits, d.exp = intPart+frac, int64(len(intPart))
	default:
		t := strings.TrimLeft(frac, "0")
		d.digits, d.exp = t, -int64(len(frac)-len(t))
	}
	if d.digits == "" {
		return decimal{}, true // zero, of either sign
	}
	d.exp += e
	return d, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func (d *decimal) sign() int {
	switch {
	case d.digits == "":
		return 0
	case d.neg:
		return -1
	}
	return 1
}

func (d *decimal) cmp(o *decimal) int {
	sd, so := d.sign(), o.sign()
	if sd != so || sd == 0 {
		return cmpInt(sd, so)
	}
	m := cmpInt(d.exp, o.exp)
	if m == 0 {
		m = strings.Compare(d.digits, o.digits)
	}
	return m * sd
}

func cmpInt[T int | int32 | int64 | uint64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// instant is a point in time: Unix seconds and nanoseconds.
type instant struct {
	sec  int64
	nsec int32
}

func (t instant) cmp(o instant) int {
	if c := cmpInt(t.sec, o.sec); c != 0 {
		return c
	}
	return cmpInt(t.nsec, o.nsec)
}

// parseTimestamp reads what to_jsonb prints for date, timestamp and
// timestamptz values and what RFC 3339 allows: YYYY-MM-DD, optionally
// followed by "T" (or "t" or a space) HH:MM[:SS[.fraction]] and a zone "Z"
// or ±HH[[:]MM[:SS]]. Without a zone the time is UTC (pgcast's own
// timestamps are UTC), a date alone is its midnight UTC.
func parseTimestamp(s string) (instant, bool) {
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return instant{}, false
	}
	y, ok1 := digits(s, 0, 4)
	mo, ok2 := digits(s, 5, 2)
	d, ok3 := digits(s, 8, 2)
	if !ok1 || !ok2 || !ok3 || mo < 1 || mo > 12 || d < 1 || d > daysIn(y, mo) {
		return instant{}, false
	}
	var hh, mm, ss, ns, off int
	i := 10
	if i < len(s) {
		if s[i] != 'T' && s[i] != 't' && s[i] != ' ' {
			return instant{}, false
		}
		var ok bool
		if hh, ok = digits(s, i+1, 2); !ok || hh > 23 || len(s) < i+6 || s[i+3] != ':' {
			return instant{}, false
		}
		if mm, ok = digits(s, i+4, 2); !ok || mm > 59 {
			return instant{}, false
		}
		i += 6
		if i < len(s) && s[i] == ':' {
			if ss, ok = digits(s, i+1, 2); !ok || ss > 60 {
				return instant{}, false
			}
			i += 3
			if i < len(s) && s[i] == '.' {
				i++
				fs := i
				for ; i < len(s) && isDigit(s[i]); i++ {
					if i-fs < 9 {
						ns = ns*10 + int(s[i]-'0')
					}
				}
				if i == fs {
					return instant{}, false
				}
				for k := i - fs; k < 9; k++ {
					ns *= 10
				}
			}
		}
		if off, ok = parseZone(s[i:]); !ok {
			return instant{}, false
		}
	}
	t := time.Date(y, time.Month(mo), d, hh, mm, ss, ns, time.UTC)
	return instant{sec: t.Unix() - int64(off), nsec: int32(t.Nanosecond())}, true
}

// parseZone reads "", "Z", "z" or ±HH, ±HHMM, ±HH:MM, ±HH:MM:SS into
// seconds east of UTC.
func parseZone(z string) (int, bool) {
	switch {
	case z == "":
		return 0, true
	case z == "Z" || z == "z":
		return 0, true
	case z[0] != '+' && z[0] != '-':
		return 0, false
	}
	sign := 1
	if z[0] == '-' {
		sign = -1
	}
	var parts [3]int
	n, i := 0, 1
	for n < 3 {
		v, ok := digits(z, i, 2)
		if !ok {
			return 0, false
		}
		parts[n] = v
		n, i = n+1, i+2
		if i == len(z) {
			break
		}
		if z[i] == ':' {
			i++
		} else if n > 1 {
			return 0, false
		}
	}
	if i != len(z) || parts[0] > 15 || parts[1] > 59 || parts[2] > 59 {
		return 0, false
	}
	return sign * (parts[0]*3600 + parts[1]*60 + parts[2]), true
}

// digits reads n decimal digits at s[i:].
func digits(s string, i, n int) (int, bool) {
	if i < 0 || i+n > len(s) {
		return 0, false
	}
	v := 0
	for _, c := range []byte(s[i : i+n]) {
		if !isDigit(c) {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
