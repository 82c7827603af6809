package wal

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/fileutil"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"
)

// TestTrim: segments removed for size or age, read or not, are counted,
// and a Reader that had not read them learns what it lost from a GapError,
// then reads on from the first segment left, resolving every series.
func TestTrim(t *testing.T) {
	for _, tc := range []struct {
		name    string
		maxSize int64
		maxAge  time.Duration
		old     int // segments whose mtime is set an hour back
	}{
		{"size", 3 * 32 << 10, 0, 0},
		{"age", 0, time.Minute, 3},
		{"age then size", 3 * 32 << 10, time.Minute, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := openWAL(t, Options{Dir: dir, SegmentSize: 32 << 10}, nil, nil)
			ref := w.NewRef()
			mustLog(t, w, batch([]chunks.HeadSeriesRef{ref}, true, 1, 0))
			perSeg := make([]int, 8)
			for seg := range 8 {
				if seg > 0 {
					rotate(t, w)
				}
				for i := range 10 {
					mustLog(t, w, batch([]chunks.HeadSeriesRef{ref}, false, 100, int64(seg*10000+i*100)))
					perSeg[seg] += 100
				}
			}
			perSeg[0]++ // the first batch
			for seg := range tc.old {
				old := time.Now().Add(-time.Hour)
				must(os.Chtimes(wlog.SegmentName(dir, seg), old, old))
			}

			// A Reader inside segment 0: it keeps what it has open.
			r, err := w.NewReader(Position{})
			must(err)
			defer r.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			read := 0
			for read == 0 {
				must(r.Next(ctx))
				read += len(r.Samples())
			}

			res, err := w.Trim(tc.maxSize, tc.maxAge, time.Now())
			must(err)
			if res.Segments < 3 {
				t.Fatalf("trimmed %d segments, want at least 3: %+v", res.Segments, res)
			}
			if tc.maxSize > 0 {
				size, err := fileutil.DirSize(dir)
				must(err)
				if size > tc.maxSize {
					t.Errorf("WAL is %d bytes after trimming to %d", size, tc.maxSize)
				}
			}
			want := 0
			for _, n := range perSeg[:res.Segments] {
				want += n
			}
			if got := res.Full.Samples + res.TooOld.Samples; got != want {
				t.Errorf("trim counted %d samples, want %d", got, want)
			}
			if got := res.TooOld.Samples; (tc.old > 0) != (got > 0) {
				t.Errorf("too old: %d samples with %d old segments", got, tc.old)
			}
			if n := testutil.ToFloat64(w.metrics.trimmedSegments); n != float64(res.Segments) {
				t.Errorf("trimmed segments counted: %v, want %d", n, res.Segments)
			}

			// The Reader finishes segment 0, then reports what it lost
			// of the others, then reads on.
			var gap *GapError
			for gap == nil {
				err := r.Next(ctx)
				if errors.As(err, &gap) {
					break
				}
				must(err)
				read += len(r.Samples())
			}
			if read != perSeg[0] {
				t.Errorf("read %d samples of the open segment 0, want %d", read, perSeg[0])
			}
			lost := gap.Full.Samples + gap.TooOld.Samples
			if lost != want-perSeg[0] {
				t.Errorf("gap reports %d samples lost, want %d: %v", lost, want-perSeg[0], gap)
			}
			if gap.From.Segment != 1 || gap.To.Segment != res.Before.Segment {
				t.Errorf("gap from %v to %v, want 1 to %v", gap.From, gap.To, res.Before)
			}
			mustLog(t, w, batch([]chunks.HeadSeriesRef{ref}, false, 1, 1e9))
			known := false
			for {
				must(r.Next(ctx))
				if r.Type() == record.Series {
					known = true
				}
				if s := r.Samples(); len(s) > 0 && s[len(s)-1].T == 1e9 {
					break
				}
				read += len(r.Samples())
			}
			if !known {
				t.Error("the series was not replayed from the checkpoint after the gap")
			}
			if total := read + lost; total != perSeg[0]+sum(perSeg[1:]) {
				t.Errorf("read %d + lost %d != logged %d", read, lost, sum(perSeg))
			}
		})
	}
}

func sum(s []int) int {
	n := 0
	for _, v := range s {
		n += v
	}
	return n
}

func TestTrimNoLimitsNoop(t *testing.T) {
	w := openWAL(t, Options{Dir: t.TempDir(), SegmentSize: 32 << 10}, nil, nil)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{w.NewRef()}, true, 10, 0))
	rotate(t, w)
	if res, err := w.Trim(0, 0, time.Now()); err != nil || res.Segments != 0 {
		t.Fatalf("trim without limits: %+v, %v", res, err)
	}
	if res, err := w.Trim(1<<30, time.Hour, time.Now()); err != nil || res.Segments != 0 {
		t.Fatalf("trim under the limits: %+v, %v", res, err)
	}
}

// TestRepairDamagedMiddle: a record damaged in the middle of a segment is
// cut alone; the records after it in its page are kept, and a Reader
// reports the cut, bounding what it held.
func TestRepairDamagedMiddle(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, Options{Dir: dir}, nil, nil)
	const batches = 5
	for i := range batches {
		mustLog(t, w, batch([]chunks.HeadSeriesRef{chunks.HeadSeriesRef(i + 1)}, true, 10, int64(i)*1000))
	}
	must(w.Close())
	got := readToEnd(t, w, Position{})
	if len(got.positions) != 2*batches {
		t.Fatalf("records: got %d, want %d", len(got.positions), 2*batches)
	}
	// Record 5 is batch 2's samples; damage it a few bytes before its end.
	at := got.positions[5]
	f, err := os.OpenFile(wlog.SegmentName(dir, at.Segment), os.O_RDWR, 0)
	must(err)
	b := make([]byte, 2)
	_, err = f.ReadAt(b, at.Offset-6)
	must(err)
	b[0], b[1] = b[0]^0xff, b[1]^0x55
	_, err = f.WriteAt(b, at.Offset-6)
	must(err)
	must(f.Close())

	w2 := openWAL(t, Options{Dir: dir}, nil, nil)
	if n := testutil.ToFloat64(w2.metrics.repairs); n != 1 {
		t.Errorf("repairs counted: got %v, want 1", n)
	}
	if n := testutil.ToFloat64(w2.metrics.repairCutBytes); n <= 0 || n >= 200 {
		t.Errorf("cut bytes counted: got %v, want the damaged record's, under 200", n)
	}
	mustLog(t, w2, batch([]chunks.HeadSeriesRef{99}, true, 1, 1e6))
	must(w2.Close())
	after := readToEnd(t, w2, Position{})
	want := slices.Concat(got.Samples[:20], got.Samples[30:])
	if len(after.Samples) != len(want)+1 {
		t.Fatalf("samples after repair: got %d, want %d (all but batch 2's, then the new one)", len(after.Samples), len(want)+1)
	}
	for i, s := range want {
		if after.Samples[i] != s {
			t.Fatalf("sample %d after repair: got %v, want %v", i, after.Samples[i], s)
		}
	}
	if last := after.Samples[len(want)]; last.Ref != 99 {
		t.Fatalf("new sample after repair: got %v", last)
	}
	if len(after.gaps) != 1 || after.gaps[0].Corrupt.Samples < 10 {
		t.Errorf("gaps: %v, want one bounding batch 2's 10 samples", after.gaps)
	}
}

// TestTrimRemembered: what Trim removed is remembered in the WAL
// directory, so that a later process resuming at a position in the removed
// segments gets a *GapError from Resume with what they held; a truncation
// past them forgets them, file included.
func TestTrimRemembered(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentSize: 32 << 10}
	w := openWAL(t, opts, nil, nil)
	ref := w.NewRef()
	mustLog(t, w, batch([]chunks.HeadSeriesRef{ref}, true, 1, 0))
	for seg := range 6 {
		if seg > 0 {
			rotate(t, w)
		}
		mustLog(t, w, batch([]chunks.HeadSeriesRef{ref}, false, 100, int64(seg*1000)))
	}
	res, err := w.Trim(3*32<<10, 0, time.Now())
	must(err)
	if res.Segments < 2 {
		t.Fatalf("trimmed %d segments, want at least 2", res.Segments)
	}
	must(w.Close())

	w2 := openWAL(t, opts, nil, nil)
	first, _, err := wlog.Segments(dir)
	must(err)
	_, err = w2.Resume(Position{Segment: 1, Offset: 10})
	gap, ok := errors.AsType[*GapError](err)
	if !ok {
		t.Fatalf("Resume in a trimmed segment after a restart: %v, want a *GapError", err)
	}
	// Segments 1 to first-1, 100 samples each.
	if want := 100 * (first - 1); gap.Full.Samples != want || gap.To.Segment != first {
		t.Errorf("gap %+v, want %d samples up to segment %d", gap, want, first)
	}
	if _, err := os.Stat(filepath.Join(dir, trimLogName)); err != nil {
		t.Fatalf("no trim log while trimmed segments are remembered: %v", err)
	}
	// A truncation past the trimmed segments forgets them.
	rotate(t, w2)
	must(w2.Truncate(Position{Segment: first + 1}))
	if _, err := os.Stat(filepath.Join(dir, trimLogName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("trim log left after a truncation past every trimmed segment: %v", err)
	}
}

func TestParseTrimLog(t *testing.T) {
	good := trimLogHeader + "3 wal_full 10 2 1\n4 too_old 7 0 0\n5 wal_corrupt 9 0 0 100 32768\n5 wal_corrupt 3 0 0 0 30\n"
	segs, cuts, err := parseTrimLog([]byte(good))
	if err != nil || len(segs) != 2 || segs[3].c.Samples != 10 || segs[3].tooOld || !segs[4].tooOld || segs[4].c.Samples != 7 {
		t.Fatalf("parse %q: %v, %v", good, segs, err)
	}
	if want := []cutStretch{{From: 0, To: 30, Samples: 3}, {From: 100, To: 32768, Samples: 9}}; !slices.Equal(cuts[5], want) {
		t.Fatalf("cuts of segment 5: %v, want %v (ordered by offset)", cuts[5], want)
	}
	for _, bad := range []string{"", "3 wal_full 1 1 1\n", trimLogHeader + "3 lost 1 1 1\n", trimLogHeader + "3 wal_full -1 0 0\n",
		trimLogHeader + "x wal_full 1 0 0\n", trimLogHeader + "3 wal_full 1 0\n", trimLogHeader + "3 wal_corrupt 1 0 0\n",
		trimLogHeader + "3 wal_corrupt 1 0 0 50 10\n", trimLogHeader + "3 wal_full 1 0 0 0 10\n"} {
		if _, _, err := parseTrimLog([]byte(bad)); err == nil {
			t.Errorf("parse %q succeeded", bad)
		}
	}
}

// TestTrimLogRoundTrip: what save writes, load reads back, trims and cuts.
func TestTrimLogRoundTrip(t *testing.T) {
	dir := t.TempDir()
	var tr trimmed
	tr.segs = map[int]trimmedSegment{2: {tooOld: true, c: Counts{Samples: 5, Histograms: 1, Exemplars: 2}}}
	tr.cut(2, []cutStretch{{From: 10, To: 20, Samples: 1}})
	tr.cut(7, []cutStretch{{From: 0, To: 65536, Samples: 6553}})
	if err := tr.save(dir); err != nil {
		t.Fatal(err)
	}
	var got trimmed
	if err := got.load(dir); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got.segs, tr.segs) || !maps.EqualFunc(got.cuts, tr.cuts, slices.Equal) {
		t.Fatalf("loaded %v %v, saved %v %v", got.segs, got.cuts, tr.segs, tr.cuts)
	}
}

func FuzzParseTrimLog(f *testing.F) {
	f.Add([]byte(trimLogHeader + "3 wal_full 10 2 1\n"))
	f.Add([]byte(trimLogHeader + "3 wal_corrupt 10 0 0 5 100\n"))
	f.Add([]byte(trimLogHeader))
	f.Fuzz(func(t *testing.T, b []byte) {
		segs, cuts, err := parseTrimLog(b)
		if err != nil {
			return
		}
		for seg, s := range segs {
			if seg < 0 || s.c.Samples < 0 || s.c.Histograms < 0 || s.c.Exemplars < 0 {
				t.Errorf("parsed a negative count: %d %+v", seg, s)
			}
		}
		for seg, cs := range cuts {
			for _, c := range cs {
				if seg < 0 || c.Samples < 0 || c.From < 0 || c.To < c.From {
					t.Errorf("parsed an impossible cut: %d %+v", seg, c)
				}
			}
		}
	})
}
