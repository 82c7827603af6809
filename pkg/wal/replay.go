package wal

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/encoding"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"
)

// finishTruncation completes a Truncate cut short by a crash: segments
// covered by the newest checkpoint and older checkpoints are removed. It
// makes sure a segment follows the checkpoint, so that wlog never starts
// writing at an index the checkpoint claims to cover.
func (w *WAL) finishTruncation() error {
	_, cpIdx, err := wlog.LastCheckpoint(w.dir)
	if errors.Is(err, record.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find checkpoint in %s: %w", w.dir, err)
	}
	first, last, err := wlog.Segments(w.dir)
	if err != nil {
		return fmt.Errorf("list segments in %s: %w", w.dir, err)
	}
	if first >= 0 && first <= cpIdx {
		for i := first; i <= min(cpIdx, last); i++ {
			if err := os.Remove(wlog.SegmentName(w.dir, i)); err != nil {
				return fmt.Errorf("remove checkpointed segment %d in %s: %w", i, w.dir, err)
			}
		}
		w.logger.Info("removed segments left by an interrupted truncation", "first", first, "last", min(cpIdx, last))
	}
	if last <= cpIdx {
		s, err := wlog.CreateSegment(w.dir, cpIdx+1)
		if err != nil {
			return fmt.Errorf("create segment %d after checkpoint in %s: %w", cpIdx+1, w.dir, err)
		}
		if err := s.Close(); err != nil {
			return fmt.Errorf("close segment %d in %s: %w", cpIdx+1, w.dir, err)
		}
	}
	if err := wlog.DeleteCheckpoints(w.dir, cpIdx); err != nil {
		return fmt.Errorf("remove checkpoints before %d in %s: %w", cpIdx, w.dir, err)
	}
	return nil
}

// replay reads the checkpoint and the segments after it and returns the
// highest series ref. It streams, holding one record at a time (and
// wlog.Reader's buffer, as large as the largest record), so its memory does
// not grow with the WAL. It logs its progress: the percentage of segments
// read, at every tenth and at least every replayLogInterval, with the count
// of series records' entries read so far. Damage in a
// segment is returned as a *wlog.CorruptionErr naming it, for repair, with
// good, the offset in that segment just after its last good record; damage
// in the checkpoint cannot be repaired and is returned wrapped.
func (w *WAL) replay() (maxRef chunks.HeadSeriesRef, good int64, err error) {
	startSeg, series := 0, 0
	cpDir, cpIdx, err := wlog.LastCheckpoint(w.dir)
	switch {
	case errors.Is(err, record.ErrNotFound):
		cpDir = ""
	case err != nil:
		return 0, 0, fmt.Errorf("find checkpoint in %s: %w", w.dir, err)
	default:
		sr, err := wlog.NewSegmentsReader(cpDir)
		if err != nil {
			return 0, 0, fmt.Errorf("open checkpoint %s: %w", cpDir, err)
		}
		var n int
		maxRef, n, _, err = scanSeriesRefs(wlog.NewReader(sr), maxRef)
		sr.Close()
		if err != nil {
			return 0, 0, fmt.Errorf("replay checkpoint %s: %w", cpDir, err)
		}
		series += n
		startSeg = cpIdx + 1
	}
	first, last, err := wlog.Segments(w.dir)
	if err != nil {
		return 0, 0, fmt.Errorf("list segments in %s: %w", w.dir, err)
	}
	startSeg = max(startSeg, first)
	total := last - startSeg + 1
	w.logger.Info("replaying WAL", "checkpoint", cpDir, "checkpoint_series", series, "segments", total)
	lastTenth, lastLog := 0, time.Now()
	for i := startSeg; i <= last; i++ {
		seg, err := wlog.OpenReadSegment(wlog.SegmentName(w.dir, i))
		if err != nil {
			return maxRef, 0, fmt.Errorf("open segment %d in %s: %w", i, w.dir, err)
		}
		sr := wlog.NewSegmentBufReader(seg)
		var n int
		maxRef, n, good, err = scanSeriesRefs(wlog.NewReader(sr), maxRef)
		sr.Close()
		series += n
		if err != nil {
			return maxRef, good, err // a *wlog.CorruptionErr naming segment i
		}
		done := i - startSeg + 1
		tenth := done * 10 / total
		if tenth > lastTenth || time.Since(lastLog) >= replayLogInterval {
			w.logger.Info("replaying WAL", "percent", done*100/total, "segment", i,
				"segments_done", done, "segments", total, "series", series)
			lastTenth, lastLog = tenth, time.Now()
		}
	}
	return maxRef, 0, nil
}

// replayLogInterval is the longest replay goes without logging progress.
const replayLogInterval = 10 * time.Second

// scanSeriesRefs reads r to its end and returns the highest ref of its
// Series records, at least maxRef, their number of entries, and the offset
// just after the last good record. The error is r's, a *wlog.CorruptionErr.
func scanSeriesRefs(r *wlog.Reader, maxRef chunks.HeadSeriesRef) (chunks.HeadSeriesRef, int, int64, error) {
	var (
		good   int64
		series int
	)
	for r.Next() {
		good = r.Offset()
		if rec := r.Record(); len(rec) > 0 && record.Type(rec[0]) == record.Series {
			m, n := maxSeriesRef(rec)
			maxRef = max(maxRef, m)
			series += n
		}
	}
	return maxRef, series, good, r.Err()
}

// maxSeriesRef returns the highest ref in a Series record and its number of
// entries, without decoding labels. It stops at the first malformed entry.
func maxSeriesRef(rec []byte) (chunks.HeadSeriesRef, int) {
	d := encoding.Decbuf{B: rec[1:]}
	var (
		m     uint64
		count int
	)
	for d.Len() > 0 && d.Err() == nil {
		ref := d.Be64()
		n := d.Uvarint()
		for i := 0; i < 2*n && d.Err() == nil; i++ {
			d.UvarintBytes() // label name, then value
		}
		if d.Err() != nil {
			break
		}
		m = max(m, ref)
		count++
	}
	return chunks.HeadSeriesRef(m), count
}

// repair cuts the WAL at the damage cerr reports: the records before it in
// its segment (good bytes) are kept, the rest of the segment and every later
// segment go. What is cut is logged and counted.
//
// wlog's Repair rewrites the damaged segment record by record, which keeps
// their offsets, and then writes the segment after it. Left there, the
// writer would reuse the indices of the segments cut, and a Reader resuming
// at a Position saved in one of them would skip new records as if already
// read. So the writer moves on to the index Open would have written
// without damage, leaving empty segments in between.
func (w *WAL) repair(cerr *wlog.CorruptionErr, good int64) error {
	name := wlog.SegmentName(w.dir, cerr.Segment)
	cut, later := w.damage(cerr.Segment, good)
	_, active, err := wlog.Segments(w.dir) // the segment wlog opened for writing
	if err != nil {
		return fmt.Errorf("list segments in %s: %w", w.dir, err)
	}
	w.logger.Warn("WAL is damaged, cutting it after the last good record",
		"segment", name, "offset", good, "err", cerr.Err)
	if err := w.wl.Repair(cerr); err != nil {
		return fmt.Errorf("repair segment %s: %w", name, err)
	}
	for seg := cerr.Segment + 1; seg < active; {
		next, err := w.wl.NextSegmentSync()
		if err != nil {
			return fmt.Errorf("skip segment %d after repair in %s: %w", seg, w.dir, err)
		}
		seg = next
	}
	w.metrics.repairs.Inc()
	w.metrics.repairCutBytes.Add(float64(cut))
	w.logger.Warn("repaired WAL", "segment", name, "kept_bytes", good,
		"cut_bytes", cut, "later_segments_removed", later)
	return nil
}

// damage returns the bytes a repair of segment seg cuts (those after its
// first good bytes, and every later segment's) and the count of later
// segments holding data.
func (w *WAL) damage(seg int, good int64) (cut int64, later int) {
	_, last, err := wlog.Segments(w.dir)
	if err != nil {
		return 0, 0
	}
	for i := seg; i <= last; i++ {
		fi, err := os.Stat(wlog.SegmentName(w.dir, i))
		if err != nil {
			continue
		}
		switch {
		case i == seg:
			cut += max(fi.Size()-good, 0)
		case fi.Size() > 0:
			cut += fi.Size()
			later++
		}
	}
	return cut, later
}
