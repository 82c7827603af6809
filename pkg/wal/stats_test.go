package wal

import (
	"testing"
	"time"

	"github.com/prometheus/prometheus/tsdb/chunks"
)

// TestStats checks the status page's WAL numbers against a WAL cut into
// segments and truncated once: the segments left, their bytes with the
// checkpoint's, the checkpoint's name and the fsync policy.
func TestStats(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, Options{Dir: dir, Fsync: FsyncAlways}, nil, nil)
	s, err := w.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.Segments != 1 || s.Checkpoint != "" || s.Fsync != FsyncAlways || s.SegmentSize != DefaultSegmentSize {
		t.Errorf("fresh WAL: %+v, want one segment, no checkpoint, fsync always, the default segment size", s)
	}
	before := time.Now().Add(-time.Second)
	a := w.NewRef()
	mustLog(t, w, batch([]chunks.HeadSeriesRef{a}, true, 3, 0)) // segment 0
	rotate(t, w)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{a}, false, 3, 100)) // segment 1
	rotate(t, w)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{a}, false, 3, 200)) // segment 2
	if err := w.Truncate(Position{Segment: 2}); err != nil {
		t.Fatal(err)
	}
	s, err = w.Stats()
	if err != nil {
		t.Fatal(err)
	}
	segBytes, err := w.BytesAfter(Position{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Segments != 1 || s.FirstSegment != 2 || s.LastSegment != 2 || s.Checkpoint != "checkpoint.00000001" {
		t.Errorf("after truncation: %+v, want segment 2 alone and checkpoint.00000001", s)
	}
	if s.Bytes <= segBytes || s.OldestWrite.Before(before) || s.CheckpointTime.Before(before) {
		t.Errorf("bytes %d (segments %d), oldest write %v, checkpoint %v: want the checkpoint counted and recent times", s.Bytes, segBytes, s.OldestWrite, s.CheckpointTime)
	}
}
