package wal

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/prometheus/tsdb/fileutil"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"
)

// Counts counts what a stretch of the WAL holds. Histograms counts integer
// and float native histograms together.
type Counts struct {
	Samples, Histograms, Exemplars int
}

func (c *Counts) add(d Counts) {
	c.Samples += d.Samples
	c.Histograms += d.Histograms
	c.Exemplars += d.Exemplars
}

// GapError is returned by Reader.Next when Trim removed segments the Reader
// had not read yet, or when it reaches a stretch a repair cut (damage.go):
// what they held is lost to it, by reason. The next call to Next goes on
// after the gap, with the first segment left or the rest of the segment.
type GapError struct {
	From, To Position // the Reader jumped from From to To
	Full     Counts   // removed because the WAL was over its size limit
	TooOld   Counts   // removed because they were older than the age limit
	// Corrupt is an upper bound of what repairs cut from the segments
	// between From and To (damaged or missing): bytes cut over the fewest
	// bytes a sample takes, histograms counted among the samples.
	Corrupt Counts
}

func (e *GapError) Error() string {
	if e.Full == (Counts{}) && e.TooOld == (Counts{}) {
		return fmt.Sprintf("wal: damage cut from %s to %s before it was read: at most %d samples lost", e.From, e.To, e.Corrupt.Samples)
	}
	return fmt.Sprintf("wal: segments from %s to %s were trimmed before they were read: %d samples, %d histograms, %d exemplars lost (size limit), %d samples, %d histograms, %d exemplars lost (age limit), at most %d samples cut by repairs",
		e.From, e.To, e.Full.Samples, e.Full.Histograms, e.Full.Exemplars, e.TooOld.Samples, e.TooOld.Histograms, e.TooOld.Exemplars, e.Corrupt.Samples)
}

// trimmed remembers what each segment removed by Trim held, for Readers
// that find it gone, and what repairs cut from each segment, for Readers
// that reach it. Entries below a normal truncation are forgotten: every
// Reader that matters has passed them.
type trimmed struct {
	mu   sync.Mutex
	segs map[int]trimmedSegment // mu
	cuts map[int][]cutStretch   // by segment, ordered by From; mu
}

// cut remembers stretches a repair cut from segment seg.
func (t *trimmed) cut(seg int, cs []cutStretch) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cuts == nil {
		t.cuts = map[int][]cutStretch{}
	}
	all := append(t.cuts[seg], cs...)
	slices.SortFunc(all, func(a, b cutStretch) int { return cmp.Compare(a.From, b.From) })
	t.cuts[seg] = all
}

// cutBefore says whether a repair cut segment seg from an offset at or
// before off.
func (t *trimmed) cutBefore(seg int, off int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.cuts[seg] {
		if s.From <= off {
			return true
		}
	}
	return false
}

// cutAfter returns what repairs cut from segment seg after offset from: the
// stretches ending after it, the first's start, the last's end, and whether
// there is one.
func (t *trimmed) cutAfter(seg int, from int64) (c Counts, start, end int64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.cuts[seg] {
		if s.To <= from {
			continue
		}
		if !ok {
			start = s.From
		}
		ok = true
		c.Samples += s.Samples
		end = s.To
	}
	return c, start, end, ok
}

type trimmedSegment struct {
	tooOld bool
	c      Counts
}

// gap returns what the segments from to to (exclusive) held, if Trim
// removed any of them, and what repairs had cut from them.
func (t *trimmed) gap(from, to int) (full, tooOld, corrupt Counts, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for seg := from; seg < to; seg++ {
		for _, c := range t.cuts[seg] {
			ok = true
			corrupt.Samples += c.Samples
		}
		s, found := t.segs[seg]
		if !found {
			continue
		}
		ok = true
		if s.tooOld {
			tooOld.add(s.c)
		} else {
			full.add(s.c)
		}
	}
	return full, tooOld, corrupt, ok
}

// forget drops the segments up to to, and says whether there were any.
func (t *trimmed) forget(to int) (changed bool) {
	t.mu.Lock()
	for seg := range t.segs {
		if seg <= to {
			delete(t.segs, seg)
			changed = true
		}
	}
	for seg := range t.cuts {
		if seg <= to {
			delete(t.cuts, seg)
			changed = true
		}
	}
	t.mu.Unlock()
	return changed
}

// TrimResult says what a Trim removed.
type TrimResult struct {
	// Before is the first Position left: segments before Before.Segment
	// were removed. Zero when nothing was removed.
	Before Position
	// Full and TooOld count what the removed segments held, by reason.
	Full, TooOld Counts
	// Segments is the number of segments removed.
	Segments int
}

// Trim bounds the WAL whether or not its Readers have read it: it removes
// the oldest segments last written more than maxAge ago, then the oldest
// segments until the WAL directory is at most maxSize bytes. The segment
// being written is never removed. Zero maxSize or maxAge means no limit of
// that kind. The removed segments' series are kept in a checkpoint, as
// Truncate does; their samples are counted, and a Reader that had not read
// them yet gets a *GapError with their counts from its next Next.
//
// Trim is safe for concurrent use; it runs one at a time with Truncate. It
// returns ErrClosed after Close.
func (w *WAL) Trim(maxSize int64, maxAge time.Duration, now time.Time) (TrimResult, error) {
	if maxSize <= 0 && maxAge <= 0 {
		return TrimResult{}, nil
	}
	w.truncMu.Lock()
	defer w.truncMu.Unlock()
	if w.closed.Load() {
		return TrimResult{}, ErrClosed
	}
	// The new checkpoint takes room the first pass could not know: go
	// again until the WAL fits or only the segment being written is left.
	var res TrimResult
	for range 10 {
		r, err := w.trimOnce(maxSize, maxAge, now)
		if err != nil || r.Segments == 0 {
			return res, err
		}
		res.Before = r.Before
		res.Segments += r.Segments
		res.Full.add(r.Full)
		res.TooOld.add(r.TooOld)
	}
	return res, nil
}

// trimOnce computes the cut once and trims up to it; w.truncMu is held.
func (w *WAL) trimOnce(maxSize int64, maxAge time.Duration, now time.Time) (TrimResult, error) {
	if err := w.fillHoles(); err != nil { // wlog's checkpoint refuses holes
		return TrimResult{}, err
	}
	first, last, err := wlog.Segments(w.dir)
	if err != nil {
		return TrimResult{}, fmt.Errorf("list segments in %s: %w", w.dir, err)
	}
	if first < 0 {
		return TrimResult{}, nil
	}
	total, err := dirSize(w.dir)
	if err != nil {
		return TrimResult{}, err
	}
	// A truncation writes the new checkpoint before it removes the
	// segments and the old one: leave room for it, so the directory stays
	// under the cap while it runs. The old checkpoint's size is the
	// estimate; without one, a segment's.
	reserve := int64(w.opts.SegmentSize)
	if cpDir, _, err := wlog.LastCheckpoint(w.dir); err == nil {
		if n, err := fileutil.DirSize(cpDir); err == nil {
			reserve = n
		}
	}
	total += reserve
	// cut is the first segment kept; those before it go, the older ones
	// for their age, the rest for the size.
	cut, ageCut := first, first
	for ; cut < last; cut++ {
		fi, err := os.Stat(wlog.SegmentName(w.dir, cut))
		if err != nil {
			return TrimResult{}, fmt.Errorf("stat segment %d in %s: %w", cut, w.dir, err)
		}
		tooOld := maxAge > 0 && now.Sub(fi.ModTime()) > maxAge
		if !tooOld && (maxSize <= 0 || total <= maxSize) {
			break
		}
		if tooOld {
			ageCut = cut + 1
		}
		total -= fi.Size()
	}
	if cut == first {
		return TrimResult{}, nil
	}
	res := TrimResult{Before: Position{Segment: cut}, Segments: cut - first}
	w.trimmed.mu.Lock()
	if w.trimmed.segs == nil {
		w.trimmed.segs = map[int]trimmedSegment{}
	}
	w.trimmed.mu.Unlock()
	for seg := first; seg < cut; seg++ {
		c, err := countSegment(w.dir, seg)
		if err != nil {
			// Count what could be read; the segment goes all the same.
			w.logger.Warn("count samples of a segment to trim", "segment", seg, "err", err)
		}
		ts := trimmedSegment{tooOld: seg < ageCut, c: c}
		if ts.tooOld {
			res.TooOld.add(c)
		} else {
			res.Full.add(c)
		}
		w.trimmed.mu.Lock()
		w.trimmed.segs[seg] = ts
		w.trimmed.mu.Unlock()
	}
	// Remembered on disk before the segments go, for a process started
	// later (Resume).
	if err := w.trimmed.save(w.dir); err != nil {
		w.logger.Warn("remember what trimmed segments held; an endpoint resuming in them after a restart will not count its loss", "err", err)
	}
	if err := w.truncate(first, cut-1, last); err != nil {
		w.metrics.truncateFails.Inc()
		return TrimResult{}, err
	}
	w.metrics.trimmedSegments.Add(float64(res.Segments))
	w.metrics.trimmedSamples.WithLabelValues(reasonFull).Add(float64(res.Full.Samples + res.Full.Histograms))
	w.metrics.trimmedSamples.WithLabelValues(reasonTooOld).Add(float64(res.TooOld.Samples + res.TooOld.Histograms))
	w.logger.Warn("WAL over its limits: removed the oldest segments, read or not",
		"first", first, "last", cut-1, "max_size", maxSize, "max_age", maxAge,
		"samples_over_size", res.Full.Samples+res.Full.Histograms, "samples_too_old", res.TooOld.Samples+res.TooOld.Histograms)
	return res, nil
}

// Reasons of rwagent_wal_trimmed_samples_total.
const (
	reasonFull   = "wal_full"
	reasonTooOld = "too_old"
)

// countSegment counts the samples, histograms and exemplars of segment seg.
// On damage it returns what it counted before it, and the error.
func countSegment(dir string, seg int) (Counts, error) {
	var c Counts
	s, err := wlog.OpenReadSegment(wlog.SegmentName(dir, seg))
	if err != nil {
		return c, fmt.Errorf("open segment %d in %s: %w", seg, dir, err)
	}
	sr := wlog.NewSegmentBufReader(s)
	defer sr.Close()
	r := wlog.NewReader(sr)
	var (
		dec        = record.NewDecoder(nil, nil)
		samples    []record.RefSample
		hists      []record.RefHistogramSample
		floatHists []record.RefFloatHistogramSample
		exemplars  []record.RefExemplar
	)
	for r.Next() {
		rec := r.Record()
		var err error
		switch dec.Type(rec) {
		case record.Samples, record.SamplesV2:
			samples, err = dec.Samples(rec, samples[:0])
			c.Samples += len(samples)
		case record.HistogramSamples, record.CustomBucketsHistogramSamples, record.HistogramSamplesV2:
			hists, err = dec.HistogramSamples(rec, hists[:0])
			c.Histograms += len(hists)
		case record.FloatHistogramSamples, record.CustomBucketsFloatHistogramSamples, record.FloatHistogramSamplesV2:
			floatHists, err = dec.FloatHistogramSamples(rec, floatHists[:0])
			c.Histograms += len(floatHists)
		case record.Exemplars:
			exemplars, err = dec.Exemplars(rec, exemplars[:0])
			c.Exemplars += len(exemplars)
		}
		if err != nil {
			return c, fmt.Errorf("decode record in segment %d of %s: %w", seg, dir, err)
		}
	}
	if err := r.Err(); err != nil {
		return c, fmt.Errorf("read segment %d of %s: %w", seg, dir, err)
	}
	return c, nil
}
