package clonetab

import (
	"errors"
	"math"
	"strings"
)

var (
	errSizeSyntax = errors.New("not a size (digits, optionally with a fraction, then K, M, G, T, P, E or B)")
	errSizeRange  = errors.New("out of range")
)

// parseSize is systemd's parse_size(t, 1024, &size) (src/basic/parse-util.c),
// which systemd-clonesetup applies to the value of region-size=
// (systemd-clonesetup(8): "standard suffixes like K, M, G are supported"):
// a decimal number, optionally with a "+" and a fraction, followed by one of
// the binary suffixes E, P, T, G, M, K, B or none; several such terms add up
// if their suffixes come in decreasing order ("1G512M"). Suffixes are upper
// case only. The white space parse_size skips cannot occur inside a clonetab
// field and is not accepted here.
func parseSize(t string) (uint64, error) {
	table := [...]struct {
		suffix string
		factor uint64
	}{
		{"E", 1 << 60}, {"P", 1 << 50}, {"T", 1 << 40}, {"G", 1 << 30},
		{"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}, {"", 1},
	}
	var r uint64
	start := 0
	p := t
	for {
		l, e, err := strtoull(p)
		if err != nil {
			return 0, err
		}
		if p[0] == '-' {
			return 0, errSizeRange
		}
		var frac float64
		if strings.HasPrefix(e, ".") {
			e = e[1:]
			if e != "" && isDigit(e[0]) {
				l2, e2, err := strtoull(e)
				if err != nil {
					return 0, err
				}
				frac = float64(l2)
				for ; len(e) > len(e2); e = e[1:] {
					frac /= 10
				}
			}
		}
		i := start
		for ; i < len(table); i++ {
			if strings.HasPrefix(e, table[i].suffix) {
				break
			}
		}
		if i >= len(table) {
			return 0, errSizeSyntax
		}
		f := table[i].factor
		var round uint64
		if frac > 0 {
			round = 1
		}
		if l+round > math.MaxUint64/f { // wraps like the C code
			return 0, errSizeRange
		}
		tmp := l*f + uint64(float64(frac*float64(f)))
		if tmp > math.MaxUint64-r {
			return 0, errSizeRange
		}
		r += tmp
		p = e[len(table[i].suffix):]
		start = i + 1
		if p == "" {
			return r, nil
		}
	}
}

// strtoull is strtoull(p, &end, 10) for a string without leading white
// space: an optional sign, then decimal digits. A "-" is returned as read
// (the caller refuses it); overflow is errSizeRange, no digits errSizeSyntax.
func strtoull(p string) (uint64, string, error) {
	s := p
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	n := 0
	for n < len(s) && isDigit(s[n]) {
		n++
	}
	if n == 0 {
		return 0, p, errSizeSyntax
	}
	var v uint64
	for _, c := range s[:n] {
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, s[n:], errSizeRange
		}
		v = v*10 + d
	}
	return v, s[n:], nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
