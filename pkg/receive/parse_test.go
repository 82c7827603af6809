package receive

import (
	"strconv"
	"testing"
	"time"
)

var timeCases = []struct {
	in   string
	want int64
	ok   bool
}{
	{"0", 0, true},
	{"1700000000", 1700000000000, true},
	{"1700000000.123", 1700000000123, true},
	{"1700000000.1235", 1700000000124, true},
	{"-1.5", -1500, true},
	{"2023-11-14T22:13:20Z", 1700000000000, true},
	{"2023-11-14T22:13:20.5+01:00", 1699996400500, true},
	{"1e12", 1e15, true},
	{"1e13", 0, false},
	{"NaN", 0, false},
	{"+Inf", 0, false},
	{"", 0, false},
	{"yesterday", 0, false},
}

func TestParseTime(t *testing.T) {
	for _, c := range timeCases {
		got, err := parseTime(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseTime(%q) = %d, %v; want %d, ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

var durationCases = []struct {
	in   string
	want time.Duration
	ok   bool
}{
	{"15", 15 * time.Second, true},
	{"0.5", 500 * time.Millisecond, true},
	{"1m30s", 90 * time.Second, true},
	{"1d", 24 * time.Hour, true},
	{"-5", -5 * time.Second, true},
	{"1e300", 0, false},
	{"NaN", 0, false},
	{"", 0, false},
	{"5 minutes", 0, false},
}

func TestParseDuration(t *testing.T) {
	for _, c := range durationCases {
		got, err := parseDuration(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

// FuzzParseTime: no panic, and a parsed time written back as Unix seconds
// parses to the same milliseconds.
func FuzzParseTime(f *testing.F) {
	for _, c := range timeCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := parseTime(s)
		if err != nil {
			return
		}
		again, err := parseTime(secs(ms))
		if err != nil || again != ms {
			t.Fatalf("parseTime(%q) = %d, but parseTime(%q) = %d, %v", s, ms, secs(ms), again, err)
		}
	})
}

// FuzzParseDuration: no panic, and a parsed duration written back as
// nanosecond-exact seconds parses to itself.
func FuzzParseDuration(f *testing.F) {
	for _, c := range durationCases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDuration(s)
		if err != nil {
			return
		}
		ms := d.Truncate(time.Millisecond)
		out := strconv.FormatFloat(ms.Seconds(), 'f', -1, 64)
		again, err := parseDuration(out)
		if err != nil {
			t.Fatalf("parseDuration(%q) = %v, but parseDuration(%q): %v", s, d, out, err)
		}
		if diff := again - ms; diff > time.Microsecond || diff < -time.Microsecond {
			t.Fatalf("parseDuration(%q) = %v, but parseDuration(%q) = %v", s, ms, out, again)
		}
	})
}
