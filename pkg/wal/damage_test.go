package wal

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"
)

// bySegment is what a Reader yielded: each sample's value by timestamp
// (unique in these tests), the segment of its record, and the gaps.
type bySegment struct {
	value map[int64]float64
	seg   map[int64]int
	gaps  []*GapError
}

// readBySegment reads the closed WAL w from from to its end.
func readBySegment(t *testing.T, w *WAL, from Position) bySegment {
	t.Helper()
	r, err := w.NewReader(from)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out := bySegment{value: map[int64]float64{}, seg: map[int64]int{}}
	for {
		err := r.Next(ctx)
		if errors.Is(err, ErrClosed) {
			return out
		}
		if gap, ok := errors.AsType[*GapError](err); ok {
			out.gaps = append(out.gaps, gap)
			continue
		}
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		for _, s := range r.Samples() {
			if _, dup := out.value[s.T]; dup {
				t.Fatalf("sample at %d read twice", s.T)
			}
			out.value[s.T], out.seg[s.T] = s.V, r.Position().Segment
		}
	}
}

// writeSegments logs batches (a new series and 300 samples each, about
// 3KB) until segments 0 to 11 are full, into 64KB segments: two pages each,
// so damage in a segment's first page leaves a second to keep.
func writeSegments(t *testing.T, dir string) chunks.HeadSeriesRef {
	t.Helper()
	w := openWAL(t, Options{Dir: dir, SegmentSize: 64 << 10, Fsync: FsyncNever}, nil, nil)
	var ref chunks.HeadSeriesRef
	for i := 0; ; i++ {
		if _, last, _ := wlog.Segments(dir); last >= 12 {
			break
		}
		ref = w.NewRef()
		mustLog(t, w, batch([]chunks.HeadSeriesRef{ref}, true, 300, int64(i)*1000))
	}
	must(w.Close())
	return ref
}

// TestRepairCutsOnlyDamage: a segment missing from the middle, one flipped
// byte in a middle segment, and a middle segment cut short each lose only
// what is damaged. Open starts; every sample of the other segments (and of
// the damaged segment's intact part) is read; the Reader reports the cut,
// and what it reports bounds what was lost; a Reader starting after the
// damage reports nothing; a second Open finds nothing to repair; new refs
// stay above every ref in use.
func TestRepairCutsOnlyDamage(t *testing.T) {
	const damaged = 5
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, name string)
		keeps  bool  // some of the damaged segment's samples survive
		before int64 // an offset in the damaged segment before the damage
	}{
		{"segment missing", func(t *testing.T, name string) { must(os.Remove(name)) }, false, 30000},
		{"flipped byte in the first page", func(t *testing.T, name string) {
			f, err := os.OpenFile(name, os.O_RDWR, 0)
			must(err)
			defer f.Close()
			b := make([]byte, 1)
			_, err = f.ReadAt(b, 5000)
			must(err)
			b[0] ^= 0x10
			_, err = f.WriteAt(b, 5000)
			must(err)
		}, true, 1000},
		{"truncated mid-record", func(t *testing.T, name string) { must(os.Truncate(name, 40000)) }, true, 30000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			maxRef := writeSegments(t, dir)
			w := openWAL(t, Options{Dir: dir, SegmentSize: 64 << 10}, nil, nil)
			must(w.Close())
			before := readBySegment(t, w, Position{})
			if len(before.gaps) != 0 {
				t.Fatalf("gaps before any damage: %v", before.gaps)
			}

			tc.damage(t, wlog.SegmentName(dir, damaged))
			var logs logBuffer
			reg := prometheus.NewRegistry()
			w2 := openWAL(t, Options{Dir: dir, SegmentSize: 64 << 10}, logs.logger(), reg)
			if n := testutil.ToFloat64(w2.metrics.repairs); n != 1 {
				t.Errorf("repairs counted: %v, want 1\n%s", n, logs.String())
			}
			if ref := w2.NewRef(); ref <= maxRef {
				t.Errorf("new ref %d after the repair, want above %d, the highest in use", ref, maxRef)
			}
			must(w2.Close())
			after := readBySegment(t, w2, Position{})

			lost, keptDamaged := 0, 0
			for ts, v := range before.value {
				got, ok := after.value[ts]
				switch {
				case ok && got != v:
					t.Fatalf("sample at %d is %v after the repair, was %v", ts, got, v)
				case !ok && before.seg[ts] != damaged:
					t.Fatalf("sample at %d of intact segment %d lost by the repair", ts, before.seg[ts])
				case !ok:
					lost++
				case before.seg[ts] == damaged:
					keptDamaged++
				}
			}
			if lost == 0 {
				t.Fatal("the damage lost nothing: the test damaged nothing")
			}
			if tc.keeps && keptDamaged == 0 {
				t.Errorf("nothing kept of the damaged segment")
			}
			bound := 0
			for _, g := range after.gaps {
				if g.From.Segment != damaged || g.To.Segment != damaged {
					t.Errorf("gap %v outside the damaged segment", g)
				}
				bound += g.Corrupt.Samples
			}
			if bound < lost {
				t.Errorf("gaps report at most %d samples lost, %d were", bound, lost)
			}
			if n := testutil.ToFloat64(w2.metrics.repairCutSamples); int(n) != bound {
				t.Errorf("rwagent_wal_repair_cut_samples_total = %v, the Reader reported %d", n, bound)
			}
			t.Logf("lost %d samples, reported at most %d, kept %d of the damaged segment", lost, bound, keptDamaged)

			// An endpoint that had sent part of the damaged segment resumes
			// in it and counts the cut after its position.
			inside := Position{Segment: damaged, Offset: tc.before}
			if p, err := w2.Resume(inside); err != nil || p != inside {
				t.Errorf("resume in the damaged segment at %v: %v, %v", inside, p, err)
			}
			if from := readBySegment(t, w2, inside); len(from.gaps) == 0 {
				t.Errorf("a Reader starting at %v, before the cut, reported none", inside)
			}
			if later := readBySegment(t, w2, Position{Segment: damaged + 1}); len(later.gaps) != 0 {
				t.Errorf("a Reader starting after the damage reported %v", later.gaps)
			}

			w3 := openWAL(t, Options{Dir: dir, SegmentSize: 64 << 10}, nil, nil)
			if n := testutil.ToFloat64(w3.metrics.repairs); n != 0 {
				t.Errorf("a second Open repaired %v times", n)
			}
			must(w3.Close())
			again := readBySegment(t, w3, Position{})
			if len(again.value) != len(after.value) || len(again.gaps) != len(after.gaps) {
				t.Errorf("after a second Open: %d samples, %d gaps; after the first: %d, %d",
					len(again.value), len(again.gaps), len(after.value), len(after.gaps))
			}
		})
	}
}

// TestSegmentRemovedWhileRunning: a segment deleted while the WAL is open
// does not stop fsyncs, does not turn the size metrics to -1 or lag bytes
// to an error, is replaced by the fsync loop and counted, and a Reader goes
// past it with a *GapError.
func TestSegmentRemovedWhileRunning(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	var logs logBuffer
	w := openWAL(t, Options{Dir: dir, Fsync: FsyncInterval, FsyncInterval: 10 * time.Millisecond}, logs.logger(), reg)
	ref := w.NewRef()
	for i := range 4 {
		mustLog(t, w, batch([]chunks.HeadSeriesRef{ref}, i == 0, 10, int64(i)*100))
		if i < 3 {
			rotate(t, w)
		}
	}
	must(os.Remove(wlog.SegmentName(dir, 1)))

	if got := gathered(t, reg, "rwagent_wal_segment_current"); got != 3 {
		t.Errorf("rwagent_wal_segment_current = %v with a segment missing, want 3", got)
	}
	if got := gathered(t, reg, "rwagent_wal_storage_size_bytes"); got <= 0 {
		t.Errorf("rwagent_wal_storage_size_bytes = %v with a segment missing", got)
	}
	if n, err := w.BytesAfter(Position{}); err != nil || n <= 0 {
		t.Errorf("BytesAfter with a segment missing: %d, %v", n, err)
	}
	if holes, err := w.syncSegments(); err != nil || !holes {
		t.Errorf("syncSegments with a segment missing: holes %v, %v", holes, err)
	}
	if n := testutil.ToFloat64(w.metrics.fsyncFailures); n != 0 {
		t.Errorf("fsync failures counted for a missing segment: %v", n)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(w.metrics.repairs) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the missing segment was not replaced within 10s:\n%s", logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	must(<-done)
	if _, _, err := wlog.Segments(dir); err != nil {
		t.Fatalf("segments after the fsync loop filled the hole: %v", err)
	}
	must(w.Close())
	got := readBySegment(t, w, Position{})
	if len(got.value) != 30 {
		t.Errorf("%d samples read, want the 30 of segments 0, 2 and 3", len(got.value))
	}
	if len(got.gaps) != 1 || got.gaps[0].From.Segment != 1 || got.gaps[0].Corrupt.Samples < 10 {
		t.Errorf("gaps reported: %v, want one for segment 1 bounding its 10 samples", got.gaps)
	}
}

// TestReaderFillsHole: a Reader that reaches a segment deleted while the
// WAL runs goes on after it, reports it, and the WAL can be truncated.
func TestReaderFillsHole(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, Options{Dir: dir, Fsync: FsyncNever}, nil, nil)
	ref := w.NewRef()
	for i := range 4 {
		mustLog(t, w, batch([]chunks.HeadSeriesRef{ref}, i == 0, 10, int64(i)*100))
		rotate(t, w)
	}
	must(os.Remove(wlog.SegmentName(dir, 2)))
	must(w.Close())
	got := readBySegment(t, w, Position{Segment: 1})
	if len(got.value) != 20 || len(got.gaps) != 1 || got.gaps[0].From.Segment != 2 {
		t.Fatalf("read from segment 1 past a missing segment 2: %d samples, gaps %v", len(got.value), got.gaps)
	}
	w2 := openWAL(t, Options{Dir: dir, Fsync: FsyncNever}, nil, nil)
	defer w2.Close()
	if err := w2.Truncate(Position{Segment: 4}); err != nil {
		t.Fatalf("truncate past the replaced segment: %v", err)
	}
}

// TestResumePastSegmentEnd: a saved position past the end of its segment
// is not this WAL's: Resume refuses it, and the caller resends from the
// oldest data.
func TestResumePastSegmentEnd(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, Options{Dir: dir}, nil, nil)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{w.NewRef()}, true, 10, 0))
	must(w.Close())
	w2 := openWAL(t, Options{Dir: dir}, nil, nil)
	defer w2.Close()
	fi, err := os.Stat(wlog.SegmentName(dir, 0))
	must(err)
	if p, err := w2.Resume(Position{Segment: 0, Offset: fi.Size()}); err != nil || p.Offset != fi.Size() {
		t.Errorf("resume at the end of segment 0: %v, %v", p, err)
	}
	if p, err := w2.Resume(Position{Segment: 0, Offset: fi.Size() + 1}); !errors.Is(err, ErrPositionPastEnd) || p != (Position{}) {
		t.Errorf("resume past the end of segment 0 (%d bytes): %v, %v; want the start and an error", fi.Size(), p, err)
	}
}

// gathered returns the value of the single gauge named name on reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	must(err)
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s registered", name)
	return 0
}

// TestRepairKeepsRefsOfCutSeries: when the series record of the highest
// ref is cut, its samples in later records still hold the ref: Open must
// not hand it out again, or they would be sent under a new series' labels.
func TestRepairKeepsRefsOfCutSeries(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, Options{Dir: dir}, nil, nil)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{1}, true, 1, 0))
	mustLog(t, w, &Records{Series: batch([]chunks.HeadSeriesRef{7}, true, 0, 0).Series})
	rotate(t, w)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{7}, false, 5, 100))
	must(w.Close())
	got := readToEnd(t, w, Position{})
	if len(got.positions) < 3 || got.types[2] != record.Series {
		t.Fatalf("records %v, want the series of ref 7 third", got.types)
	}
	seriesEnd := got.positions[2] // the series record of ref 7 ends here
	f, err := os.OpenFile(wlog.SegmentName(dir, seriesEnd.Segment), os.O_RDWR, 0)
	must(err)
	b := make([]byte, 1)
	_, err = f.ReadAt(b, seriesEnd.Offset-3)
	must(err)
	b[0] ^= 0x01
	_, err = f.WriteAt(b, seriesEnd.Offset-3)
	must(err)
	must(f.Close())

	w2 := openWAL(t, Options{Dir: dir}, nil, nil)
	if ref := w2.NewRef(); ref <= 7 {
		t.Fatalf("new ref %d after the series record of ref 7 was cut; its samples still use 7", ref)
	}
}
