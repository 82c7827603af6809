package wal

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/fileutil"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"
)

// readUntil reads until a samples record with a sample at time ts.
func readUntil(t *testing.T, r *Reader, ts int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		if err := r.Next(ctx); err != nil {
			t.Fatalf("next, looking for the sample at %d: %v", ts, err)
		}
		for _, s := range r.Samples() {
			if s.T == ts {
				return
			}
		}
	}
}

func TestTruncate(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	w := openWAL(t, Options{Dir: dir}, nil, reg)

	// Nothing to truncate yet.
	for _, p := range []Position{{}, {Segment: 0, Offset: 100}, {Segment: 7}} {
		if err := w.Truncate(p); err != nil {
			t.Fatalf("truncate(%v) of a one-segment WAL: %v", p, err)
		}
	}
	if _, _, err := wlog.LastCheckpoint(dir); !errors.Is(err, record.ErrNotFound) {
		t.Fatalf("a no-op truncation wrote a checkpoint: %v", err)
	}

	a, b := w.NewRef(), w.NewRef()
	first := batch([]chunks.HeadSeriesRef{a, b}, true, 3, 0)
	first.Metadata = []record.RefMetadata{{Ref: a, Type: uint8(record.Gauge), Help: "a"}, {Ref: b, Type: uint8(record.Counter), Help: "b"}}
	mustLog(t, w, first)                                           // segment 0
	rotate(t, w)                                                   //
	mustLog(t, w, batch([]chunks.HeadSeriesRef{a}, false, 3, 100)) // segment 1
	w.Release([]chunks.HeadSeriesRef{b})                           // b's samples all lie in segments up to 1
	rotate(t, w)                                                   //
	mustLog(t, w, batch([]chunks.HeadSeriesRef{a}, false, 3, 200)) // segment 2

	r1, err := w.NewReader(Position{})
	must(err)
	defer r1.Close()
	readUntil(t, r1, 200)
	if p := r1.Position(); p.Segment != 2 {
		t.Fatalf("reader at %v, want segment 2", p)
	}

	if err := w.Truncate(Position{Segment: 2}); err != nil {
		t.Fatal(err)
	}
	if first, _, _ := wlog.Segments(dir); first != 2 {
		t.Errorf("first segment after truncation: got %d, want 2", first)
	}
	if cp, idx, err := wlog.LastCheckpoint(dir); err != nil || idx != 1 {
		t.Errorf("checkpoint: %s %d %v, want checkpoint.00000001", cp, idx, err)
	}
	if n := testutil.ToFloat64(w.metrics.truncations); n != 1 {
		t.Errorf("truncations counted: got %v, want 1", n)
	}
	// Again: nothing left to do.
	if err := w.Truncate(Position{Segment: 2}); err != nil || testutil.ToFloat64(w.metrics.truncations) != 1 {
		t.Errorf("repeated truncation: %v, truncations %v", err, testutil.ToFloat64(w.metrics.truncations))
	}

	// The reader past the truncation point keeps going.
	mustLog(t, w, batch([]chunks.HeadSeriesRef{a}, false, 3, 300))
	readUntil(t, r1, 300)

	// A new reader resolves a from the checkpoint and never sees b.
	must(w.Close())
	got := readToEnd(t, w, Position{})
	if len(got.Series) != 1 || got.Series[0].Ref != a {
		t.Errorf("series after truncation: got %v, want only ref %d", got.Series, a)
	}
	if len(got.Metadata) != 1 || got.Metadata[0].Ref != a || got.Metadata[0].Help != "a" {
		t.Errorf("metadata after truncation: got %v, want only ref %d's", got.Metadata, a)
	}
	if len(got.Samples) != 6 || got.Samples[0].T != 200 || got.Samples[3].T != 300 {
		t.Errorf("samples after truncation: got %v, want those of segment 2", got.Samples)
	}
}

// TestTruncateDropsEarlierProcess checks that series logged before a
// restart count as released: nothing logs samples for them again.
func TestTruncateDropsEarlierProcess(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, Options{Dir: dir}, nil, nil)
	old := w.NewRef()
	mustLog(t, w, batch([]chunks.HeadSeriesRef{old}, true, 2, 0)) // segment 0
	must(w.Close())

	w2 := openWAL(t, Options{Dir: dir}, nil, nil)                   // writes segment 1
	cur := w2.NewRef()                                              //
	mustLog(t, w2, batch([]chunks.HeadSeriesRef{cur}, true, 2, 10)) // segment 1
	seg := rotate(t, w2)
	if err := w2.Truncate(Position{Segment: seg}); err != nil {
		t.Fatal(err)
	}
	must(w2.Close())
	got := readToEnd(t, w2, Position{})
	if len(got.Series) != 1 || got.Series[0].Ref != cur {
		t.Errorf("series after truncation: got %v, want only ref %d", got.Series, cur)
	}
}

// TestTruncateDuringReplay truncates the segments a Reader is replaying
// series from: it starts over from the new checkpoint and misses nothing.
func TestTruncateDuringReplay(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, Options{Dir: dir}, nil, nil)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{1}, true, 2, 0)) // segment 0
	rotate(t, w)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{2}, true, 2, 10)) // segment 1
	rotate(t, w)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{1, 2}, false, 2, 20)) // segment 2

	r, err := w.NewReader(Position{Segment: 2})
	must(err)
	defer r.Close()
	if err := r.Next(t.Context()); err != nil || r.Type() != record.Series || r.Series()[0].Ref != 1 {
		t.Fatalf("first record: %v %v %v", err, r.Type(), r.Series())
	}
	if err := w.Truncate(Position{Segment: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(wlog.SegmentName(dir, 1)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("segment 1 not removed: %v", err)
	}
	known := map[chunks.HeadSeriesRef]bool{1: true}
	var samples int
	for samples < 4 {
		if err := r.Next(t.Context()); err != nil {
			t.Fatal(err)
		}
		for _, s := range r.Series() {
			known[s.Ref] = true
		}
		for _, s := range r.Samples() {
			if !known[s.Ref] || s.T < 20 {
				t.Fatalf("sample %v: known %v", s, known[s.Ref])
			}
			samples++
		}
	}
}

// TestOpenFinishesTruncation reopens a WAL whose truncation was cut short
// after the checkpoint was written: the covered segment and the older
// checkpoint are still there.
func TestOpenFinishesTruncation(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, Options{Dir: dir}, nil, nil)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{1}, true, 2, 0)) // segment 0
	rotate(t, w)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{1}, false, 2, 10)) // segment 1
	rotate(t, w)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{1}, false, 2, 20)) // segment 2
	if err := w.Truncate(Position{Segment: 2}); err != nil {
		t.Fatal(err)
	}
	must(w.Close())
	// What a crash between checkpointing and removing would leave.
	must(os.WriteFile(wlog.SegmentName(dir, 1), nil, 0o666))
	must(os.Mkdir(wlog.CheckpointDir(dir, 0), 0o777))

	w2 := openWAL(t, Options{Dir: dir}, nil, nil)
	if first, _, _ := wlog.Segments(dir); first != 2 {
		t.Errorf("first segment: got %d, want 2", first)
	}
	if _, err := os.Stat(wlog.CheckpointDir(dir, 0)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old checkpoint left: %v", err)
	}
	if ref := w2.NewRef(); ref != 2 {
		t.Errorf("next ref: got %d, want 2", ref)
	}
	must(w2.Close())
	got := readToEnd(t, w2, Position{})
	if len(got.Series) != 1 || len(got.Samples) != 2 || got.Samples[0].T != 20 {
		t.Errorf("after reopen: series %v, samples %v", got.Series, got.Samples)
	}
}

// TestTruncateMinAge: with Options.MinAge, a sent segment written to less
// than MinAge ago stays, and so do the segments after it.
func TestTruncateMinAge(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, Options{Dir: dir, MinAge: time.Hour}, nil, nil)
	ref := w.NewRef()
	for i := range 4 { // segments 0 to 3 hold samples; 4 is being written
		mustLog(t, w, batch([]chunks.HeadSeriesRef{ref}, i == 0, 1, int64(i)))
		rotate(t, w)
	}
	if err := w.Truncate(Position{Segment: 4}); err != nil {
		t.Fatal(err)
	}
	if first, _, _ := wlog.Segments(dir); first != 0 {
		t.Fatalf("first segment after truncating fresh segments: %d, want 0", first)
	}
	old := time.Now().Add(-2 * time.Hour)
	for _, seg := range []int{0, 1, 3} { // 2 is young: it holds back 3
		must(os.Chtimes(wlog.SegmentName(dir, seg), old, old))
	}
	if err := w.Truncate(Position{Segment: 4}); err != nil {
		t.Fatal(err)
	}
	if first, _, _ := wlog.Segments(dir); first != 2 {
		t.Errorf("first segment after truncation: %d, want 2, the youngest", first)
	}
	if err := (Options{Dir: dir, MinAge: -time.Second}).Validate(); err == nil {
		t.Error("negative MinAge accepted")
	}
}

func TestTruncateLazily(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, Options{Dir: dir}, nil, prometheus.NewRegistry())
	refs := make([]chunks.HeadSeriesRef, 5000) // a checkpoint of several pages
	for i := range refs {
		refs[i] = w.NewRef()
	}
	one := refs[:1]
	mustLog(t, w, batch(refs, true, 1, 0)) // segment 0: 5000 series
	rotate(t, w)
	mustLog(t, w, batch(one, false, 1, 100)) // segment 1: one sample
	rotate(t, w)
	mustLog(t, w, batch(one, false, 1, 200)) // segment 2: one sample
	rotate(t, w)                             // segment 3, being written

	segSize := func(seg int) int64 {
		fi, err := os.Stat(wlog.SegmentName(dir, seg))
		must(err)
		return fi.Size()
	}
	// No checkpoint yet: segment 0 is nearly all series records, so it
	// holds less than twice what the first checkpoint will.
	if did, err := w.TruncateLazily(Position{Segment: 1}, 0); err != nil || did {
		t.Fatalf("first lazy truncation of series only: truncated %v, err %v; want false", did, err)
	}
	if did, err := w.TruncateLazily(Position{Segment: 1}, segSize(0)); err != nil || !did {
		t.Fatalf("first lazy truncation with a limit of segment 0's size: truncated %v, err %v; want true", did, err)
	}
	cpDir, _, err := wlog.LastCheckpoint(dir)
	if err != nil {
		t.Fatalf("no checkpoint after the first truncation: %v", err)
	}
	cpSize, err := fileutil.DirSize(cpDir)
	must(err)
	if s1 := segSize(1); s1 >= cpSize {
		t.Fatalf("segment 1 (%d bytes) is not smaller than the checkpoint (%d bytes): the test proves nothing", s1, cpSize)
	}

	for _, tc := range []struct {
		name   string
		before Position
		limit  int64
		want   bool
	}{
		{"segment smaller than the checkpoint", Position{Segment: 2}, 0, false},
		{"two segments smaller than the checkpoint", Position{Segment: 3}, 0, false},
		{"limit above the checkpoint size changes nothing", Position{Segment: 3}, cpSize * 10, false},
		{"limit below what the segments hold", Position{Segment: 3}, segSize(1) + 1, true},
	} {
		did, err := w.TruncateLazily(tc.before, tc.limit)
		if err != nil || did != tc.want {
			t.Fatalf("%s: truncated %v, err %v; want %v", tc.name, did, err, tc.want)
		}
	}
	if first, _, err := wlog.Segments(dir); err != nil || first != 3 {
		t.Fatalf("first segment after truncating below 3: %d, %v", first, err)
	}
	// The eager Truncate is never deferred.
	mustLog(t, w, batch(one, false, 1, 300))
	rotate(t, w)
	if err := w.Truncate(Position{Segment: 4}); err != nil {
		t.Fatal(err)
	}
	if first, _, err := wlog.Segments(dir); err != nil || first != 4 {
		t.Fatalf("first segment after Truncate below 4: %d, %v", first, err)
	}
}

// TestReleaseTellsReaders: Release logs a record Readers yield as
// record.Tombstones with the released refs, also to a Reader that starts
// after it (as Series records are), so that it can forget them.
func TestReleaseTellsReaders(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, Options{Dir: dir}, nil, prometheus.NewRegistry())
	a, b, c := w.NewRef(), w.NewRef(), w.NewRef()
	mustLog(t, w, batch([]chunks.HeadSeriesRef{a, b, c}, true, 1, 0))
	w.Release([]chunks.HeadSeriesRef{b, c})
	mustLog(t, w, batch([]chunks.HeadSeriesRef{a}, false, 1, 100))

	released := func(from Position) (got []chunks.HeadSeriesRef) {
		r, err := w.NewReader(from)
		must(err)
		defer r.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		for {
			if err := r.Next(ctx); err != nil {
				t.Fatalf("next: %v", err)
			}
			got = r.Released(got)
			if r.Type() != record.Tombstones && len(r.Released(nil)) > 0 {
				t.Fatalf("Released returned refs for a %s record", r.Type())
			}
			for _, s := range r.Samples() {
				if s.T == 100 {
					return got
				}
			}
		}
	}
	if got := released(Position{}); !slices.Equal(got, []chunks.HeadSeriesRef{b, c}) {
		t.Errorf("released refs from the start: %v, want %v", got, []chunks.HeadSeriesRef{b, c})
	}
	// A Reader starting at the last record still learns of the release.
	r, err := w.NewReader(Position{})
	must(err)
	readUntil(t, r, 0)
	from := r.Position()
	r.Close()
	if got := released(from); !slices.Equal(got, []chunks.HeadSeriesRef{b, c}) {
		t.Errorf("released refs from %v: %v, want %v", from, got, []chunks.HeadSeriesRef{b, c})
	}
}
