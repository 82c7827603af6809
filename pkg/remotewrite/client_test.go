package remotewrite

import (
	"net/http"
	"testing"
	"time"
)

var retryAfterCases = []struct {
	in   string
	want time.Duration
}{
	{"", 0},
	{"1", time.Second},
	{" 120 ", 2 * time.Minute},
	{"0", 0},
	{"600", maxRetryAfter},
	{"601", maxRetryAfter},
	{"99999999999999999999999", maxRetryAfter},
	{"-5", 0},
	{"+5", 0},
	{"1.5", 0},
	{"soon", 0},
	{"Wed, 21 Oct 2015 07:28:30 GMT", 30 * time.Second},     // IMF-fixdate
	{"Wednesday, 21-Oct-15 07:28:10 GMT", 10 * time.Second}, // RFC 850
	{"Wed Oct 21 07:28:05 2015", 5 * time.Second},           // asctime
	{"Wed, 21 Oct 2015 07:27:00 GMT", 0},                    // in the past
	{"Thu, 22 Oct 2015 07:28:00 GMT", maxRetryAfter},        // a day ahead
}

var retryAfterNow = time.Date(2015, 10, 21, 7, 28, 0, 0, time.UTC)

func TestParseRetryAfter(t *testing.T) {
	for _, tc := range retryAfterCases {
		if got := parseRetryAfter(tc.in, retryAfterNow); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, tc := range retryAfterCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := parseRetryAfter(in, retryAfterNow)
		if got < 0 || got > maxRetryAfter {
			t.Fatalf("parseRetryAfter(%q) = %v, out of [0, %v]", in, got, maxRetryAfter)
		}
		// Round trip: a date we format parses back to its distance from now.
		if got > 0 && got < maxRetryAfter {
			d := got.Truncate(time.Second)
			if back := parseRetryAfter(retryAfterNow.Add(d).Format(http.TimeFormat), retryAfterNow); back != d {
				t.Fatalf("date %v ahead parsed as %v", d, back)
			}
		}
	})
}
