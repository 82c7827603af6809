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
// of series records' entries read so far. Damage in a segment is repaired
// in place as it goes (scanSegment): only what is damaged is cut. Once
// anything was cut or found missing (lossy), refs in sample records count
// too, since the series record of a ref still in use may be what was cut,
// and a new series must not get its ref. Damage in the checkpoint cannot
// be repaired and is returned wrapped.
func (w *WAL) replay(lossy bool) (maxRef chunks.HeadSeriesRef, err error) {
	startSeg, series := 0, 0
	cpDir, cpIdx, err := wlog.LastCheckpoint(w.dir)
	switch {
	case errors.Is(err, record.ErrNotFound):
		cpDir = ""
	case err != nil:
		return 0, fmt.Errorf("find checkpoint in %s: %w", w.dir, err)
	default:
		sr, err := wlog.NewSegmentsReader(cpDir)
		if err != nil {
			return 0, fmt.Errorf("open checkpoint %s: %w", cpDir, err)
		}
		var n int
		maxRef, n, _, err = scanSeriesRefs(wlog.NewReader(sr), maxRef)
		sr.Close()
		if err != nil {
			return 0, fmt.Errorf("replay checkpoint %s: %w", cpDir, err)
		}
		series += n
		startSeg = cpIdx + 1
	}
	first, last, err := wlog.Segments(w.dir)
	if err != nil {
		return 0, fmt.Errorf("list segments in %s: %w", w.dir, err)
	}
	startSeg = max(startSeg, first)
	total := last - startSeg + 1
	w.logger.Info("replaying WAL", "checkpoint", cpDir, "checkpoint_series", series, "segments", total)
	lastTenth, lastLog := 0, time.Now()
	var (
		dec  = record.NewDecoder(nil, w.logger)
		refs refScratch
		cut  bool
	)
	for i := startSeg; i <= last; i++ {
		cuts, err := w.scanSegment(i, i == last, func(rec []byte, afterCut bool) {
			if len(rec) == 0 {
				return
			}
			if record.Type(rec[0]) == record.Series {
				m, n := maxSeriesRef(rec)
				maxRef = max(maxRef, m)
				series += n
			} else if lossy || afterCut {
				maxRef = max(maxRef, refs.max(&dec, rec))
			}
		})
		if len(cuts) > 0 {
			lossy, cut = true, true
		}
		if err != nil {
			return maxRef, err
		}
		done := i - startSeg + 1
		tenth := done * 10 / total
		if tenth > lastTenth || time.Since(lastLog) >= replayLogInterval {
			w.logger.Info("replaying WAL", "percent", done*100/total, "segment", i,
				"segments_done", done, "segments", total, "series", series)
			lastTenth, lastLog = tenth, time.Now()
		}
	}
	if cut {
		if err := w.trimmed.save(w.dir); err != nil {
			w.logger.Warn("remember what repairs cut; an endpoint resuming before the damage after a restart will not count its loss", "err", err)
		}
	}
	return maxRef, nil
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

// refScratch holds the decoding buffers of refScratch.max.
type refScratch struct {
	samples    []record.RefSample
	hists      []record.RefHistogramSample
	floatHists []record.RefFloatHistogramSample
}

// max returns the highest series ref a sample or histogram record refers
// to; zero for any other record, or one that does not decode.
func (s *refScratch) max(dec *record.Decoder, rec []byte) chunks.HeadSeriesRef {
	var m chunks.HeadSeriesRef
	var err error
	switch dec.Type(rec) {
	case record.Samples, record.SamplesV2:
		s.samples, err = dec.Samples(rec, s.samples[:0])
		for _, x := range s.samples {
			m = max(m, x.Ref)
		}
	case record.HistogramSamples, record.CustomBucketsHistogramSamples, record.HistogramSamplesV2:
		s.hists, err = dec.HistogramSamples(rec, s.hists[:0])
		for _, x := range s.hists {
			m = max(m, x.Ref)
		}
	case record.FloatHistogramSamples, record.CustomBucketsFloatHistogramSamples, record.FloatHistogramSamplesV2:
		s.floatHists, err = dec.FloatHistogramSamples(rec, s.floatHists[:0])
		for _, x := range s.floatHists {
			m = max(m, x.Ref)
		}
	}
	if err != nil {
		return 0
	}
	return m
}
