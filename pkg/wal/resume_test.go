package wal

import (
	"os"
	"testing"

	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/wlog"
)

func TestResume(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, Options{Dir: dir}, nil, nil)
	ref := w.NewRef()
	mustLog(t, w, batch([]chunks.HeadSeriesRef{ref}, true, 3, 0)) // segment 0
	rotate(t, w)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{ref}, false, 3, 100)) // segment 1
	rotate(t, w)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{ref}, false, 3, 200)) // segment 2
	must(w.Truncate(Position{Segment: 2}))                           // checkpoint 1, segment 2 left
	must(w.Close())

	w = openWAL(t, Options{Dir: dir}, nil, nil) // writes segment 3
	for _, tc := range []struct {
		name string
		in   Position
		want Position
		ok   bool
	}{
		{"zero", Position{}, Position{}, true},
		{"retained", Position{Segment: 2, Offset: 120}, Position{Segment: 2, Offset: 120}, true},
		{"start of the new segment", Position{Segment: 3}, Position{Segment: 3}, true},
		{"truncated away", Position{Segment: 1, Offset: 50}, Position{}, false},
		{"inside the new segment", Position{Segment: 3, Offset: 10}, Position{}, false},
		{"past the end", Position{Segment: 9}, Position{}, false},
		{"negative", Position{Segment: 2, Offset: -1}, Position{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := w.Resume(tc.in)
			if got != tc.want || (err == nil) != tc.ok {
				t.Fatalf("Resume(%v) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestBytes(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, Options{Dir: dir}, nil, nil)
	ref := w.NewRef()
	mustLog(t, w, batch([]chunks.HeadSeriesRef{ref}, true, 3, 0)) // segment 0
	rotate(t, w)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{ref}, false, 3, 100)) // segment 1
	rotate(t, w)
	must(w.Close())
	size := func(seg int) int64 {
		fi, err := os.Stat(wlog.SegmentName(dir, seg))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	s0, s1 := size(0), size(1)
	w = openWAL(t, Options{Dir: dir}, nil, nil) // writes segment 3
	if got := w.Started(); got != (Position{Segment: 3}) {
		t.Fatalf("Started = %v, want segment 3", got)
	}
	for _, tc := range []struct {
		name     string
		from, to Position
		want     int64
	}{
		{"empty", Position{Segment: 1, Offset: 5}, Position{Segment: 1, Offset: 5}, 0},
		{"backwards", Position{Segment: 1, Offset: 5}, Position{Segment: 0, Offset: 9}, 0},
		{"one segment", Position{Segment: 1, Offset: 5}, Position{Segment: 1, Offset: 25}, 20},
		{"across", Position{Segment: 0, Offset: 5}, Position{Segment: 1, Offset: 25}, s0 - 5 + 25},
		{"to the start", Position{}, w.Started(), s0 + s1 + size(2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := w.Bytes(tc.from, tc.to); got != tc.want {
				t.Fatalf("Bytes(%v, %v) = %d, want %d", tc.from, tc.to, got, tc.want)
			}
		})
	}
}
