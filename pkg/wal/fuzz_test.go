package wal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

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
// errors, and fails if the Reader does not get there.
func readClosed(t *testing.T, w *WAL) {
	r, err := w.NewReader(Position{})
	if err != nil {
		return // e.g. an unreadable checkpoint; an error is fine
	}
	defer r.Close()
	for range 1_000_000 {
		err := r.Next(context.Background())
		if errors.Is(err, ErrClosed) {
			return
		}
		if err == nil {
			_ = r.Position()
		}
	}
	t.Fatal("reader did not reach the end of a closed WAL")
}

// FuzzReader feeds arbitrary bytes as a segment to the Reader and to Open's
// repair, which must not panic or hang; errors are fine.
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

	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		w, err := Open(Options{Dir: dir, Fsync: FsyncNever}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		must(w.Close())
		// Segment 0 is the empty one Open created: replace it with the input.
		if err := os.WriteFile(wlog.SegmentName(dir, 0), data, 0o666); err != nil {
			t.Fatal(err)
		}
		readClosed(t, w)

		w2, err := Open(Options{Dir: dir, Fsync: FsyncNever}, nil, nil)
		if err != nil {
			return // beyond repair is fine
		}
		must(w2.Close())
		readClosed(t, w2)
	})
}
