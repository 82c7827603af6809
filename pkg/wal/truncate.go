package wal

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/fileutil"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/tombstones"
	"github.com/prometheus/prometheus/tsdb/wlog"
)

// released tracks series that get no more samples, so that a checkpoint
// covering every segment that may hold their samples can drop them.
type released struct {
	mu   sync.Mutex
	refs map[chunks.HeadSeriesRef]int // ref → last segment that may hold its samples (-1: not known yet); mu

	// Series logged by an earlier process: refs up to prevMaxRef, with
	// samples in segments up to prevLastSegment. Set by Open, then read-only.
	prevMaxRef      chunks.HeadSeriesRef
	prevLastSegment int
}

// Release says that the series of refs get no more samples: the caller has
// logged their last ones. It logs a Tombstones record deleting each series
// whole, so that Readers, which yield it as record.Tombstones, can forget
// them; and the first Truncate whose checkpoint covers the segment being
// written now drops their series records, so Readers opened at a later
// Position no longer see them. Refs must not be logged again. Release is
// safe for concurrent use, and does nothing after Close. A failed write of
// the record is logged: the series are then only forgotten at a restart.
func (w *WAL) Release(refs []chunks.HeadSeriesRef) {
	if len(refs) == 0 || w.closed.Load() {
		return
	}
	if err := w.logReleased(refs); err != nil && !errors.Is(err, ErrClosed) {
		w.logger.Warn("log the end of released series; readers keep them until a restart", "series", len(refs), "err", err)
	}
	seg := -1 // stamped by the next Truncate if the directory cannot be read now
	if _, last, _, err := segmentRange(w.dir); err == nil {
		seg = last
	} else {
		w.logger.Warn("list segments to release series", "err", err)
	}
	w.released.mu.Lock()
	if w.released.refs == nil {
		w.released.refs = make(map[chunks.HeadSeriesRef]int, len(refs))
	}
	for _, ref := range refs {
		w.released.refs[ref] = seg
	}
	w.released.mu.Unlock()
}

// logReleased logs refs as one Tombstones record, each series deleted for
// all time.
func (w *WAL) logReleased(refs []chunks.HeadSeriesRef) error {
	stones := make([]tombstones.Stone, len(refs))
	whole := tombstones.Intervals{{Mint: math.MinInt64, Maxt: math.MaxInt64}}
	for i, ref := range refs {
		stones[i] = tombstones.Stone{Ref: storage.SeriesRef(ref), Intervals: whole}
	}
	var enc record.Encoder
	rec := enc.Tombstones(stones, nil)
	w.mu.Lock()
	if w.closed.Load() {
		w.mu.Unlock()
		return ErrClosed
	}
	err := w.write([][]byte{rec})
	w.mu.Unlock()
	if err != nil {
		w.metrics.writeFailures.Inc()
		return fmt.Errorf("write tombstones record to wal %s: %w", w.dir, err)
	}
	w.wakeReaders()
	return nil
}

// keep reports whether a checkpoint of the segments up to to keeps the
// series ref: unless it was released with all its samples in those
// segments. Its answer for a ref does not change while a checkpoint runs:
// a concurrent Release stamps a segment after to.
func (r *released) keep(ref chunks.HeadSeriesRef, to int) bool {
	if ref <= r.prevMaxRef {
		return r.prevLastSegment > to
	}
	r.mu.Lock()
	seg, ok := r.refs[ref]
	r.mu.Unlock()
	return !ok || seg > to
}

// stamp gives refs released with an unknown segment the segment last.
func (r *released) stamp(last int) {
	r.mu.Lock()
	for ref, seg := range r.refs {
		if seg < 0 {
			r.refs[ref] = last
		}
	}
	r.mu.Unlock()
}

// forget drops the refs a checkpoint of the segments up to to has dropped.
func (r *released) forget(to int) {
	r.mu.Lock()
	for ref, seg := range r.refs {
		if seg <= to {
			delete(r.refs, ref)
		}
	}
	r.mu.Unlock()
}

// Truncate drops the segments before before.Segment, which every Reader
// that matters must have passed. A checkpoint keeps their series records,
// except those of released series whose samples all lie in them, and the
// latest metadata of the kept series; samples and exemplars are dropped,
// having been sent. The segment being written is never dropped, nor, with
// Options.MinAge, a segment written to less than MinAge ago and those after
// it. Readers past before are unaffected. Truncating nothing is a no-op.
//
// Truncate is safe for concurrent use; calls run one at a time. It returns
// ErrClosed after Close.
func (w *WAL) Truncate(before Position) error {
	_, err := w.truncateBelow(before, -1)
	return err
}

// TruncateLazily is Truncate deferred until it pays for its checkpoint:
// it truncates only once the segments it would remove hold checkpointFactor
// times as many bytes as the next checkpoint will at most (the last
// checkpoint plus the series and metadata records logged since), or limit
// bytes if limit is positive and smaller. A checkpoint rewrites every live
// series, so truncating each time a segment has been sent would write the
// series many times over (at 500k series, a 120 MB checkpoint for each
// 32 MB segment); deferred like this, checkpoints write at most half as
// many bytes as the segments they replace, the first one included, and the
// WAL keeps about twice the checkpoint's size (or limit) in sent segments,
// plus one. It reports whether it truncated.
func (w *WAL) TruncateLazily(before Position, limit int64) (bool, error) {
	return w.truncateBelow(before, limit)
}

// truncateBelow is Truncate; with lazy (TruncateLazily), it defers as
// TruncateLazily says, lazy being its limit, or -1 for none.
func (w *WAL) truncateBelow(before Position, lazy int64) (bool, error) {
	w.truncMu.Lock()
	defer w.truncMu.Unlock()
	if w.closed.Load() {
		return false, ErrClosed
	}
	if err := w.fillHoles(); err != nil { // wlog's checkpoint refuses holes
		w.metrics.truncateFails.Inc()
		return false, err
	}
	first, last, err := wlog.Segments(w.dir)
	if err != nil {
		w.metrics.truncateFails.Inc()
		return false, fmt.Errorf("list segments in %s: %w", w.dir, err)
	}
	cpDir, cpIdx := "", -1
	if dir, idx, err := wlog.LastCheckpoint(w.dir); err == nil {
		cpDir, cpIdx = dir, idx
	} else if !errors.Is(err, record.ErrNotFound) {
		w.metrics.truncateFails.Inc()
		return false, fmt.Errorf("find checkpoint in %s: %w", w.dir, err)
	}
	to := min(before.Segment, last) - 1 // never the segment being written
	if first < 0 || to < first || to <= cpIdx {
		return false, nil
	}
	if to, err = w.belowMinAge(first, to, time.Now()); err != nil {
		w.metrics.truncateFails.Inc()
		return false, err
	}
	if to < first || to <= cpIdx {
		return false, nil
	}
	if lazy >= 0 {
		worth, err := w.worthCheckpoint(cpDir, first, to, lazy)
		if err != nil {
			w.metrics.truncateFails.Inc()
			return false, err
		}
		if !worth {
			return false, nil
		}
	}
	if err := w.truncate(first, to, last); err != nil {
		w.metrics.truncateFails.Inc()
		return false, err
	}
	if w.trimmed.forget(to) { // every Reader has passed what it counted
		if err := w.trimmed.save(w.dir); err != nil {
			w.logger.Warn("forget what truncated segments held", "err", err)
		}
	}
	w.metrics.truncations.Inc()
	return true, nil
}

// checkpointFactor is how many times the size of the next checkpoint the
// segments it replaces must hold (TruncateLazily).
const checkpointFactor = 2

// worthCheckpoint says whether segments first to to hold checkpointFactor
// times the bound of the next checkpoint's size (the checkpoint in cpDir,
// if any, plus the series bytes logged since), or limit if positive and
// smaller.
func (w *WAL) worthCheckpoint(cpDir string, first, to int, limit int64) (bool, error) {
	need := w.seriesBytes.Load()
	if cpDir != "" {
		cp, err := fileutil.DirSize(cpDir)
		if err != nil {
			return false, fmt.Errorf("size checkpoint %s: %w", cpDir, err)
		}
		need += cp
	}
	need *= checkpointFactor
	if limit > 0 {
		need = min(need, limit)
	}
	var have int64
	for seg := first; seg <= to && have < need; seg++ {
		fi, err := os.Stat(wlog.SegmentName(w.dir, seg))
		if err != nil {
			return false, fmt.Errorf("stat segment %d in %s: %w", seg, w.dir, err)
		}
		have += fi.Size()
	}
	return have >= need, nil
}

// belowMinAge returns the last segment up to to from which on every segment
// was last written Options.MinAge or longer before now: segments modified
// later are kept, and those after them. It is to when MinAge is zero.
func (w *WAL) belowMinAge(first, to int, now time.Time) (int, error) {
	if w.opts.MinAge <= 0 {
		return to, nil
	}
	for seg := first; seg <= to; seg++ {
		fi, err := os.Stat(wlog.SegmentName(w.dir, seg))
		if err != nil {
			return 0, fmt.Errorf("stat segment %d in %s: %w", seg, w.dir, err)
		}
		if now.Sub(fi.ModTime()) < w.opts.MinAge {
			return seg - 1, nil
		}
	}
	return to, nil
}

// truncate checkpoints segments first to to and removes them; last is the
// segment being written.
func (w *WAL) truncate(first, to, last int) error {
	start := time.Now()
	w.released.stamp(last)
	keep := func(ref chunks.HeadSeriesRef) bool { return w.released.keep(ref, to) }
	// checkpoint reads only immutable fields of wl (its directory and
	// compression, the same in a writer replaced after a write error), so
	// it runs without w.mu.
	w.mu.Lock()
	wl := w.wl
	w.mu.Unlock()
	// Series logged from now on are in segments after to, so in the next
	// checkpoint, not this one.
	w.seriesBytes.Store(0)
	stats, err := checkpoint(w.logger, wl, first, to, keep)
	if err != nil {
		return fmt.Errorf("checkpoint segments %d to %d in %s: %w", first, to, w.dir, err)
	}
	// wlog's Truncate only removes files, so it too runs without w.mu.
	if err := wl.Truncate(to + 1); err != nil {
		// The next Truncate or Open removes them: the checkpoint supersedes them.
		return fmt.Errorf("remove segments before %d in %s: %w", to+1, w.dir, err)
	}
	if err := wlog.DeleteCheckpoints(w.dir, to); err != nil {
		// Harmless but for the disk they use: only the newest is read.
		w.logger.Warn("remove old checkpoints", "err", err)
	}
	w.released.forget(to)
	w.logger.Info("truncated WAL", "first", first, "last", to,
		"series_kept", stats.Series-stats.DroppedSeries, "series_dropped", stats.DroppedSeries,
		"tombstones_kept", stats.Tombstones-stats.DroppedTombstones,
		"metadata_kept", stats.Metadata-stats.DroppedMetadata,
		"duration", time.Since(start))
	return nil
}
