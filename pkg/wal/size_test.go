package wal

import (
	"os"
	"testing"

	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/wlog"
)

// TestBytesAfter logs into two segments and counts from positions a Reader
// reports, before the first segment and past the end (after Close, which
// readToEnd needs).
func TestBytesAfter(t *testing.T) {
	w := openWAL(t, Options{Dir: t.TempDir()}, nil, nil)
	refs := []chunks.HeadSeriesRef{1, 2, 3}
	mustLog(t, w, batch(refs, true, 10, 1000))
	seg0 := w.openSegment
	next := rotate(t, w)
	mustLog(t, w, batch(refs, false, 10, 2000))
	size := func(seg int) int64 {
		fi, err := os.Stat(wlog.SegmentName(w.dir, seg))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	s0, s1 := size(seg0), size(next)
	if s0 == 0 || s1 == 0 {
		t.Fatalf("segment sizes %d, %d: want both written", s0, s1)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if s0, s1 = size(seg0), size(next); s0 == 0 || s1 == 0 {
		t.Fatalf("segment sizes %d, %d after Close", s0, s1)
	}
	c := readToEnd(t, w, Position{})
	mid := c.positions[0] // after the first record of segment seg0
	end := c.positions[len(c.positions)-1]
	for _, tc := range []struct {
		name string
		p    Position
		want int64
	}{
		{"start", Position{}, s0 + s1},
		{"before the first segment", Position{Segment: seg0 - 1, Offset: 7}, s0 + s1},
		{"after a record", mid, s0 - mid.Offset + s1},
		{"start of the last segment", Position{Segment: next}, s1},
		// Close pads the last page: those bytes are still counted.
		{"end", end, s1 - end.Offset},
		{"past the end", Position{Segment: next + 5}, 0},
		{"offset past the segment", Position{Segment: next, Offset: s1 + 100}, 0},
	} {
		got, err := w.BytesAfter(tc.p)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got != tc.want {
			t.Errorf("%s: BytesAfter(%v) = %d, want %d", tc.name, tc.p, got, tc.want)
		}
	}
}
