package wal

import (
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/wlog"
)

func TestReopenContinuesRefs(t *testing.T) {
	for _, tc := range []struct {
		name       string
		checkpoint bool // move the series into a checkpoint before closing
	}{
		{"series in segments", false},
		{"series in checkpoint", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := openWAL(t, Options{Dir: dir}, nil, nil)
			if ref := w.NewRef(); ref != 1 {
				t.Fatalf("first ref of an empty WAL: got %d, want 1", ref)
			}
			for range 5 {
				w.NewRef()
			}
			mustLog(t, w, batch([]chunks.HeadSeriesRef{3, 1000, 7}, true, 2, 100))
			if tc.checkpoint {
				rotate(t, w)
				seg := rotate(t, w)
				if err := w.Truncate(Position{Segment: seg}); err != nil {
					t.Fatal(err)
				}
				if first, _, _ := wlog.Segments(dir); first != seg {
					t.Fatalf("first segment after truncation: got %d, want %d", first, seg)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			w2 := openWAL(t, Options{Dir: dir}, nil, nil)
			if ref := w2.NewRef(); ref != 1001 {
				t.Fatalf("first ref after reopen: got %d, want 1001", ref)
			}
		})
	}
}

func TestRepairDamagedTail(t *testing.T) {
	for _, tc := range []struct {
		name    string
		samples int                         // per batch; 5000 spans pages
		lost    int                         // batches of samples lost
		damage  func(f *os.File, end int64) // end: offset just after the last record
	}{
		{"truncated mid-record", 10, 1, func(f *os.File, end int64) { must(f.Truncate(end - 10)) }},
		{"truncated mid-page after a page-spanning record", 5000, 1, func(f *os.File, end int64) { must(f.Truncate(end - 100)) }},
		{"flipped bytes at the end", 10, 1, func(f *os.File, end int64) {
			b := make([]byte, 4)
			_, err := f.ReadAt(b, end-4)
			must(err)
			for i := range b {
				b[i] ^= 0xff
			}
			_, err = f.WriteAt(b, end-4)
			must(err)
		}},
		{"garbage after the last record", 10, 0, func(f *os.File, end int64) {
			_, err := f.WriteAt([]byte{0x01, 0xff, 0xff, 0xde, 0xad}, end)
			must(err)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := openWAL(t, Options{Dir: dir}, nil, nil)
			const batches = 5
			for i := range batches {
				mustLog(t, w, batch([]chunks.HeadSeriesRef{chunks.HeadSeriesRef(i + 1)}, true, tc.samples, int64(i)*1e6))
			}
			must(w.Close())
			got := readToEnd(t, w, Position{})
			end := got.positions[len(got.positions)-1]

			f, err := os.OpenFile(wlog.SegmentName(dir, end.Segment), os.O_RDWR, 0)
			must(err)
			tc.damage(f, end.Offset)
			must(f.Close())

			var logs logBuffer
			reg := prometheus.NewRegistry()
			w2 := openWAL(t, Options{Dir: dir}, logs.logger(), reg)
			if n := testutil.ToFloat64(w2.metrics.repairs); n != 1 {
				t.Errorf("repairs counted: got %v, want 1", n)
			}
			if n := testutil.ToFloat64(w2.metrics.repairCutBytes); n <= 0 {
				t.Errorf("cut bytes counted: got %v, want > 0", n)
			}
			if want := "segment=" + wlog.SegmentName(dir, end.Segment); !strings.Contains(logs.String(), want) {
				t.Errorf("log does not name the segment (%s):\n%s", want, logs.String())
			}
			// The damaged batches are lost, everything before survives, and new
			// records follow.
			mustLog(t, w2, batch([]chunks.HeadSeriesRef{99}, true, 1, 7e6))
			must(w2.Close())
			after := readToEnd(t, w2, Position{})
			wantSamples := (batches-tc.lost)*tc.samples + 1
			if len(after.Samples) != wantSamples {
				t.Fatalf("samples after repair: got %d, want %d", len(after.Samples), wantSamples)
			}
			for i, s := range after.Samples[:wantSamples-1] {
				if want := got.Samples[i]; s != want {
					t.Fatalf("sample %d after repair: got %v, want %v", i, s, want)
				}
			}
			if last := after.Samples[wantSamples-1]; last.Ref != 99 {
				t.Fatalf("new sample after repair: got %v", last)
			}
		})
	}
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// TestRepairKeepsSegmentIndices damages a segment before the last: the
// segments after it are kept, the writer goes on after the last of them,
// and a Reader resuming at a Position saved in one of them misses nothing.
func TestRepairKeepsSegmentIndices(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, Options{Dir: dir}, nil, nil)
	for i := range 3 { // segments 0, 1, 2
		if i > 0 {
			rotate(t, w)
		}
		mustLog(t, w, batch([]chunks.HeadSeriesRef{1}, i == 0, 5, int64(i)*100))
	}
	must(w.Close())
	all := readToEnd(t, w, Position{})
	saved := all.positions[len(all.positions)-1] // in segment 2
	if saved.Segment != 2 {
		t.Fatalf("last record at %v, want segment 2", saved)
	}

	f, err := os.OpenFile(wlog.SegmentName(dir, 1), os.O_RDWR, 0)
	must(err)
	must(f.Truncate(all.positions[2].Offset - 5)) // into segment 1's only record
	must(f.Close())

	w2 := openWAL(t, Options{Dir: dir}, nil, nil)
	if _, last, _ := wlog.Segments(dir); last != 3 {
		t.Fatalf("writer segment after repair: got %d, want 3 as without damage", last)
	}
	mustLog(t, w2, batch([]chunks.HeadSeriesRef{1}, false, 5, 900))
	must(w2.Close())
	got := readToEnd(t, w2, saved)
	if len(got.Samples) != 5 || got.Samples[0].T != 900 {
		t.Fatalf("samples after resuming at %v: got %v, want the 5 logged after the repair", saved, got.Samples)
	}
}

// TestReplayProgress: Open logs replay progress at every tenth of the
// segments, with the series read so far, not once per segment.
func TestReplayProgress(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, Options{Dir: dir}, nil, nil)
	for i := range 39 { // segments 0 to 38; Open adds 39
		mustLog(t, w, batch([]chunks.HeadSeriesRef{w.NewRef(), w.NewRef()}, true, 1, 100))
		if i < 38 {
			rotate(t, w)
		}
	}
	must(w.Close())
	logs := &logBuffer{}
	openWAL(t, Options{Dir: dir}, logs.logger(), nil)
	var progress []string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "percent=") {
			progress = append(progress, line)
		}
	}
	// 39 segments (Open replays before it adds its own), each with two
	// series: every fourth ends a tenth, and the 39th the last.
	if len(progress) != 10 {
		t.Fatalf("%d progress lines, want one per tenth, 10:\n%s", len(progress), logs)
	}
	for _, want := range []string{"percent=10 ", "segments_done=4 ", "segments=39 "} {
		if !strings.Contains(progress[0], want) {
			t.Errorf("first progress line lacks %q: %s", want, progress[0])
		}
	}
	if !strings.HasSuffix(progress[0], " series=8") {
		t.Errorf("first progress line: %s, want series=8 at the end", progress[0])
	}
	if last := progress[len(progress)-1]; !strings.Contains(last, "percent=100 ") || !strings.HasSuffix(last, "series=78") {
		t.Errorf("last progress line: %s, want percent=100 and series=78", last)
	}
}
