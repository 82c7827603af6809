package exposition

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// The line scanner of the text fast paths: where a metric name, a label
// name and a label set end. A scrape of known series costs little more
// than this scan and a hash of the key it delimits. Names are read a byte
// at a time through a table; label values, most of a line's bytes, eight
// bytes at a time (SWAR: a uint64 as eight lanes of one byte) wherever
// eight remain. A word is classified lane by lane with additions that
// cannot carry from one lane into the next. Names read as words were
// slower (they are short, and a word needs four range tests).

const (
	lanes1 = 0x0101010101010101 // 1 in every lane
	lanes7 = 0x7f7f7f7f7f7f7f7f // the low 7 bits of every lane
	lanes8 = 0x8080808080808080 // the high bit of every lane
)

// zeroLanes has the high bit set in exactly the lanes of x that are 0.
// (x&0x7f)+0x7f is at most 0xfe, so no lane carries; its high bit is set
// if the low 7 bits are not all 0, x's own if the high bit is set.
func zeroLanes(x uint64) uint64 {
	return ^((x&lanes7 + lanes7) | x) & lanes8
}

// valueStops has the high bit set in the lanes of x that hold '"' or
// '\\', and, if high, in those of bytes ≥ 0x80.
func valueStops(x uint64, high bool) uint64 {
	m := zeroLanes(x^lanes1*'"') | zeroLanes(x^lanes1*'\\')
	if high {
		m |= x & lanes8
	}
	return m
}

// nameChars marks the bytes of names: metricStart and labelStart those
// that may start a metric or label name, metricNext and labelNext those
// that may follow. A label name is a metric name without colons.
var nameChars = func() (t [256]uint8) {
	for c := range 256 {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
			t[c] = metricStart | metricNext | labelStart | labelNext
		case c == ':':
			t[c] = metricStart | metricNext
		case c >= '0' && c <= '9':
			t[c] = metricNext | labelNext
		}
	}
	return t
}()

const (
	metricStart = 1 << iota
	metricNext
	labelStart
	labelNext
)

// metricNameLen is the length of the metric name b starts with, 0 if none.
func metricNameLen(b []byte) int {
	if len(b) == 0 || nameChars[b[0]]&metricStart == 0 {
		return 0
	}
	i := 1
	for i < len(b) && nameChars[b[i]]&metricNext != 0 {
		i++
	}
	return i
}

// metricNameLenAfter is metricNameLen(b) for a b that may start with
// known, a metric name scanned before (the family's, from its HELP, TYPE
// or UNIT line; nil if none): comparing known costs less than scanning it
// again, and a sample's name is mostly its family's, perhaps with a suffix
// (_total, _bucket), as is a TYPE line's its HELP line's.
func metricNameLenAfter(b, known []byte) int {
	if len(known) == 0 || !bytes.HasPrefix(b, known) {
		return metricNameLen(b)
	}
	i := len(known)
	for i < len(b) && nameChars[b[i]]&metricNext != 0 {
		i++
	}
	return i
}

// knownKeyLen is known(line) (Parsers.KnownKey), if that is followed by a
// space, else 0; 0 too if known is nil.
func knownKeyLen(known func([]byte) int, line []byte) int {
	if known == nil {
		return 0
	}
	if n := known(line); n > 0 && n < len(line) && line[n] == ' ' {
		return n
	}
	return 0
}

// labelNameLen is the length of the label name b starts with, 0 if none.
func labelNameLen(b []byte) int {
	if len(b) == 0 || nameChars[b[0]]&labelStart == 0 {
		return 0
	}
	i := 1
	for i < len(b) && nameChars[b[i]]&labelNext != 0 {
		i++
	}
	return i
}

// labelsLen is the length of the label set b starts with ("{" to "}"), 0
// if it is not one the fast path takes: name="value" pairs separated by
// single commas, no space, no trailing comma, values valid UTF-8. The
// loops of nameEnd and valueEnd are written out here: called, they cost
// more than they save on the short names and values most labels have.
func labelsLen(b []byte) int {
	i := 1
	if i < len(b) && b[i] == '}' {
		return 2
	}
	for {
		// The name, byte by byte: most are shorter than a word.
		if i >= len(b) || nameChars[b[i]]&labelStart == 0 {
			return 0
		}
		for i++; i < len(b) && nameChars[b[i]]&labelNext != 0; i++ {
		}
		if i+1 >= len(b) || b[i] != '=' || b[i+1] != '"' {
			return 0
		}
		i += 2
		// The value, a word at a time up to a quote, a backslash or a
		// byte ≥ 0x80 (until one is found, after which only quotes and
		// backslashes stop it).
		vs, ascii := i, true
	value:
		for {
			for i+8 <= len(b) {
				if m := valueStops(binary.LittleEndian.Uint64(b[i:]), ascii); m != 0 {
					i += bits.TrailingZeros64(m) >> 3
					break
				}
				i += 8
			}
			if i >= len(b) {
				return 0
			}
			switch c := b[i]; {
			case c == '"':
				break value
			case c == '\\':
				i++ // the escaped byte, checked like any other
				if i < len(b) && b[i] >= utf8.RuneSelf {
					ascii = false
				}
			case c >= utf8.RuneSelf:
				ascii = false
			}
			i++
		}
		if !ascii && !utf8.Valid(b[vs:i]) {
			return 0
		}
		i++ // the closing quote
		if i >= len(b) {
			return 0
		}
		switch b[i] {
		case '}':
			return i + 1
		case ',':
			i++
		default:
			return 0
		}
	}
}
