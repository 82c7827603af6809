package exposition

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

// The scanner byte by byte, as it was before it read words: the reference
// the word-at-a-time scanner must match.

// isNameStart and isNameByte say which bytes start and continue a metric
// name.
func isNameStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':'
}

func isNameByte(c byte) bool { return isNameStart(c) || c >= '0' && c <= '9' }

func metricNameLenBytes(b []byte) int {
	if len(b) == 0 || !isNameStart(b[0]) {
		return 0
	}
	i := 1
	for i < len(b) && isNameByte(b[i]) {
		i++
	}
	return i
}

func labelNameLenBytes(b []byte) int {
	if len(b) == 0 || !isNameStart(b[0]) || b[0] == ':' {
		return 0
	}
	i := 1
	for i < len(b) && isNameByte(b[i]) && b[i] != ':' {
		i++
	}
	return i
}

func labelsLenBytes(b []byte) int {
	i := 1
	if i < len(b) && b[i] == '}' {
		return 2
	}
	for {
		n := labelNameLenBytes(b[i:])
		if n == 0 {
			return 0
		}
		i += n
		if i+1 >= len(b) || b[i] != '=' || b[i+1] != '"' {
			return 0
		}
		i += 2
		vs, ascii := i, true
		for {
			if i >= len(b) {
				return 0
			}
			c := b[i]
			if c == '"' {
				break
			}
			if c == '\\' {
				i++
				if i < len(b) && b[i] >= utf8.RuneSelf {
					ascii = false
				}
			} else if c >= utf8.RuneSelf {
				ascii = false
			}
			i++
		}
		if !ascii && !utf8.Valid(b[vs:i]) {
			return 0
		}
		i++
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

// compareScan checks the scanner against the reference on b and on every
// suffix of it, so that each byte is seen in every lane and in the tail.
func compareScan(t *testing.T, b []byte) {
	t.Helper()
	for i := range b {
		s := b[i:]
		if got, want := metricNameLen(s), metricNameLenBytes(s); got != want {
			t.Fatalf("metricNameLen(%q) = %d, want %d", s, got, want)
		}
		// metricNameLenAfter, with each prefix of s's own name and
		// with names s may or may not start with.
		n := metricNameLenBytes(s)
		for _, known := range [][]byte{nil, []byte("node_cpu"), []byte("a:b_1"), []byte("x")} {
			if got := metricNameLenAfter(s, known); got != n {
				t.Fatalf("metricNameLenAfter(%q, %q) = %d, want %d", s, known, got, n)
			}
		}
		for k := 1; k <= n; k++ {
			if got := metricNameLenAfter(s, s[:k]); got != n {
				t.Fatalf("metricNameLenAfter(%q, %q) = %d, want %d", s, s[:k], got, n)
			}
		}
		if got, want := labelNameLen(s), labelNameLenBytes(s); got != want {
			t.Fatalf("labelNameLen(%q) = %d, want %d", s, got, want)
		}
		if got, want := labelsLen(s), labelsLenBytes(s); got != want {
			t.Fatalf("labelsLen(%q) = %d, want %d", s, got, want)
		}
	}
}

var scanCases = []string{
	`{}`,
	`{a="b"}`,
	`{le="+Inf"} 1`,
	`{__name__="x",job="node",instance="10.0.0.1:9100"} 1`,
	`{a="with \"quotes\" and \\ and \n"} 1`,
	`{a="\\"} 1`,
	`{a="\\\"} 1`,
	`{a="tail\`,
	`{a="ünïcödé values, 日本語"} 1`,
	`{a="\ü"} 1`,
	`{a="bad utf-8 ` + "\xff\xfe" + `"} 1`,
	`{a="bad after escape \` + "\xff" + `"} 1`,
	`{a="b",} 1`,
	`{a="b" ,c="d"} 1`,
	`{a:b="c"} 1`,
	`{Aa_09Zz="c"} 1`,
	`{0a="c"} 1`,
	`{a="` + strings.Repeat("0123456789abcdef", 5) + `",b="` + strings.Repeat("x", 7) + `"} 1`,
	"{a=\"new\nline\"} 1",
	"{a=\"nul\x00\"} 1",
	"{a=\"\x7f\x80\xa2\xdc\"} 1",
	`metric_name:with:colons_and_digits_0123456789{a="b"} 1`,
	`node_cpu_seconds_total{cpu="0",mode="idle"} 1`,
	`node_cpu{cpu="0"} 1`,
	`node_cpu 1`,
	`node_cp`,
	`UPPER_lower_0123456789_` + "\x60\x7b\x40\x5b\x2f\x3b\x5e\x7f" + `_more`,
}

func TestScanMatchesBytes(t *testing.T) {
	for _, s := range scanCases {
		compareScan(t, []byte(s))
	}
	// Every byte value in every lane, inside a name and inside a value.
	for c := range 256 {
		for lane := range 9 {
			name := []byte("abcdefghijklmnopq=\"v\"}")
			name[1+lane] = byte(c)
			compareScan(t, append([]byte("{"), name...))
			value := []byte(`{a="0123456789abcdefghij"} 1`)
			value[4+lane] = byte(c)
			compareScan(t, value)
		}
	}
}

func FuzzScan(f *testing.F) {
	for _, s := range scanCases {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<10 {
			return
		}
		compareScan(t, b)
	})
}

// BenchmarkScan scans the label sets of node_exporter's and
// kube-state-metrics' shapes, byte by byte ("bytes", the reference) and as
// the parsers do ("words").
func BenchmarkScan(b *testing.B) {
	for _, tc := range []struct{ name, in string }{
		{"node_cpu", `{cpu="0",mode="idle"} 1234.5`},
		{"node_filesystem", `{device="/dev/nvme1n1p5",fstype="ext4",mountpoint="/var/lib/kubelet/pods/0/volumes/13"} 809`},
		{"kube_pod", `{namespace="team-14",pod="svc-31-7d9f8b6c4-3bef1",uid="28b7bc6f-1c2d-4e5f-8a9b-00000000001f",container="app-1"} 579`},
	} {
		in := []byte(tc.in)
		for _, f := range []struct {
			name string
			f    func([]byte) int
		}{{"bytes", labelsLenBytes}, {"words", labelsLen}} {
			b.Run(tc.name+"/"+f.name, func(b *testing.B) {
				b.SetBytes(int64(len(in)))
				for b.Loop() {
					if f.f(in) == 0 {
						b.Fatal("not taken")
					}
				}
			})
		}
	}
}

// TestKnownKey: a Parsers.KnownKey that answers every fast-path key's
// length leaves the entries as they are without one, and so does one whose
// answers are not followed by a space (ignored), on every text seed.
func TestKnownKey(t *testing.T) {
	for name, b := range textSeeds(t) {
		ct := seedContentType(name)
		parse := func(known func([]byte) int) []entry {
			var ps Parsers
			ps.KnownKey = known
			p, err := ps.New(b, ct, labels.NewSymbolTable(), textparse.ParserOptions{})
			if err != nil {
				t.Fatal(err)
			}
			out, err := parseAll(p)
			if err != nil {
				out = append(out, entry{text: "error " + err.Error()})
			}
			return out
		}
		want := parse(nil)
		keys := map[string]bool{}
		for _, e := range want {
			if e.key != nil {
				keys[string(e.key)] = true
			}
		}
		answered := 0
		for _, known := range []func([]byte) int{
			func(line []byte) int { // the key, if it is one
				for n := len(line) - 1; n > 0; n-- {
					if line[n] == ' ' && keys[string(line[:n])] {
						answered++
						return n
					}
				}
				return 0
			},
			func(line []byte) int { return len(line) },
			func(line []byte) int { return len(line) + 3 },
			func([]byte) int { return -1 },
			func(line []byte) int { // a byte that is not a space
				for n, c := range line {
					if n > 0 && c != ' ' {
						return n
					}
				}
				return 0
			},
		} {
			got := parse(known)
			if len(got) != len(want) {
				t.Fatalf("%s: %d entries with KnownKey, %d without", name, len(got), len(want))
			}
			for i := range got {
				if got[i].text != want[i].text || !bytes.Equal(got[i].key, want[i].key) {
					t.Fatalf("%s: entry %d is %s (key %q) with KnownKey, %s (key %q) without", name, i, got[i].text, got[i].key, want[i].text, want[i].key)
				}
			}
		}
		if answered == 0 {
			t.Errorf("%s: no key answered", name)
		}
	}
}
