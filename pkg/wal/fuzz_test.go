package wal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"
)

// validSegment returns the bytes of a segment holding a record of every kind.
func validSegment(f *testing.F) []byte {
	dir := f.TempDir()
	w, err := Open(Options{Dir: dir, Fsync: FsyncNever}, nil, nil)
	must(err)
	r := batch([]chunks.HeadSeriesRef{1, 2}, true, 3, 0)
	r.Histograms = []record.RefHistogramSample{{Ref: 1, T: 5, H: testHistogram(1)}, {Ref: 2, T: 5, H: testCustomHistogram(1)}}
	r.FloatHistograms = []record.RefFloatHistogramSample{{Ref: 1, T: 6, FH: testFloatHistogram(1)}}
	r.Exemplars = []record.RefExemplar{{Ref: 1, T: 7, V: 1, Labels: labels.FromStrings("trace_id", "x")}}
	r.Metadata = []record.RefMetadata{{Ref: 1, Type: uint8(record.Counter), Unit: "s", Help: "h"}}
	must(w.Log(r))
	must(w.Log(batch([]chunks.HeadSeriesRef{1}, false, 2000, 100))) // spans pages
	must(w.Close())
	b, err := os.ReadFile(wlog.SegmentName(dir, 0))
	must(err)
	return b
}

// readClosed reads a closed WAL to its end, tolerating damage and decode
// errors, and fails if the Reader does not get there. It returns the
// samples read from each segment, and whether it met damage (a
// *wlog.CorruptionErr) rather than only gaps and undecodable records.
func readClosed(t *testing.T, w *WAL) (perSegment map[int]int, damaged bool) {
	perSegment = map[int]int{}
	r, err := w.NewReader(Position{})
	if err != nil {
		return perSegment, false // e.g. an unreadable checkpoint; an error is fine
	}
	defer r.Close()
	for range 1_000_000 {
		err := r.Next(context.Background())
		if errors.Is(err, ErrClosed) {
			return perSegment, damaged
		}
		if _, ok := errors.AsType[*wlog.CorruptionErr](err); ok {
			damaged = true
		}
		if err == nil {
			perSegment[r.Position().Segment] += len(r.Samples())
		}
	}
	t.Fatal("reader did not reach the end of a closed WAL")
	return nil, false
}

// FuzzReader feeds arbitrary bytes as a segment to the Reader and to Open's
// repair, which must not panic or hang; errors are fine. The input is the
// middle one of three segments, between two intact ones: the repair must
// keep both of those whole, leave nothing a Reader takes for damage, and
// find nothing to repair at the next Open.
func FuzzReader(f *testing.F) {
	seg := validSegment(f)
	f.Add(seg)
	f.Add(seg[:len(seg)/2])
	f.Add(seg[:100])
	flipped := bytes.Clone(seg)
	flipped[len(flipped)/3] ^= 0xff
	f.Add(flipped)
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0x01}, 100))
	f.Add([]byte{0x02, 0x00, 0x03, 0, 0, 0, 0, 1, 2, 3})

	f.Fuzz(func(t *testing.T, data []byte) { fuzzReaderBody(t, seg, data) })
}

// fuzzReaderBody is FuzzReader's target: data is the middle segment.
func fuzzReaderBody(t *testing.T, seg, data []byte) {
	dir := t.TempDir()
	w, err := Open(Options{Dir: dir, Fsync: FsyncNever}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	must(w.Close())
	for i, b := range [][]byte{seg, data, seg} {
		if err := os.WriteFile(wlog.SegmentName(dir, i), b, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	intact, _ := readClosed(t, w)

	w2, err := Open(Options{Dir: dir, Fsync: FsyncNever}, nil, nil)
	if err != nil {
		t.Fatalf("open after damage to a middle segment: %v", err)
	}
	must(w2.Close())
	got, damaged := readClosed(t, w2)
	if damaged {
		t.Error("a Reader met damage after Open repaired the WAL")
	}
	for _, i := range []int{0, 2} {
		if got[i] != intact[i] || got[i] == 0 {
			t.Errorf("segment %d: %d samples after the repair, %d before", i, got[i], intact[i])
		}
	}

	reg := prometheus.NewRegistry()
	w3, err := Open(Options{Dir: dir, Fsync: FsyncNever}, nil, reg)
	if err != nil {
		t.Fatalf("open a repaired WAL: %v", err)
	}
	if n := testutil.ToFloat64(w3.metrics.repairs); n != 0 {
		t.Errorf("a second Open repaired %v times", n)
	}
	must(w3.Close())
}
