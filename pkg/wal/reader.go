package wal

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"time"

	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/tombstones"
	"github.com/prometheus/prometheus/tsdb/wlog"
)

// Position is a place in the WAL: a segment index and a byte offset in that
// segment, at the start of a record or at the end of the segment. The zero
// Position is the start of the WAL. Positions order by Segment, then Offset.
type Position struct {
	Segment int
	Offset  int64
}

// Compare returns -1, 0 or +1 as p is before, at or after q.
func (p Position) Compare(q Position) int {
	if c := cmp.Compare(p.Segment, q.Segment); c != 0 {
		return c
	}
	return cmp.Compare(p.Offset, q.Offset)
}

// Max returns the later of p and q.
func (p Position) Max(q Position) Position {
	if p.Compare(q) < 0 {
		return q
	}
	return p
}

// String formats p as segment:offset.
func (p Position) String() string {
	return fmt.Sprintf("%08d:%d", p.Segment, p.Offset)
}

// pollInterval bounds how long a Reader at the end of the WAL waits when it
// misses a wake-up (a segment written by another process, say).
const pollInterval = 250 * time.Millisecond

// Reader tails the WAL from a Position. Build it with WAL.NewReader.
//
// It first yields the Series and Metadata records of the checkpoint and of
// the WAL before that Position, so that every ref it then meets is
// resolvable, and then every record from the Position on, in the order
// they were logged, following the writer from segment to segment. Series
// records may repeat (a truncation racing with that replay restarts it), so
// treat them as upserts.
//
// A Reader is not safe for concurrent use. The slices its accessors return
// are valid until the next call to Next; the labels, strings and histograms
// in them are the caller's to keep.
type Reader struct {
	w     *WAL
	wake  chan struct{} // buffered(1); WAL.Log sends without blocking
	timer *time.Timer   // pollInterval fallback, reused
	want  Position      // the Position asked for
	from  Position      // where the WAL can serve want; before it only series and metadata are yielded

	cpDir  string           // checkpoint being read, if cp is set
	cp     io.ReadCloser    // checkpoint being read, if any
	seg    *wlog.Segment    // segment being read, if any
	segIdx int              // index of seg, or of the segment to open next
	lr     *wlog.LiveReader // over cp or seg; nil between sources

	nextSeen bool // a later segment existed at the last end of data: the next end finishes seg
	// tailing: the Reader waited at the end of seg for the writer; fresh:
	// it read a record of seg since its last end of data. When both hold,
	// the writer was writing seg a moment ago, so the end of data does not
	// look for a next segment (two stat calls on every wake-up otherwise):
	// the next end that finds nothing new (a wake-up or pollInterval later)
	// does.
	tailing, fresh bool
	closedSeen     bool // the WAL was closed at the last end of data: the next end is final
	skip           bool // the rest of the source is damaged and is not read
	closed         bool
	listed         time.Time // when nextExists last listed the segments

	dec             record.Decoder
	typ             record.Type
	pos             Position
	series          []record.RefSeries
	samples         []record.RefSample
	histograms      []record.RefHistogramSample
	floatHistograms []record.RefFloatHistogramSample
	exemplars       []record.RefExemplar
	metadata        []record.RefMetadata
	tombstones      []tombstones.Stone
}

// NewReader returns a Reader that starts at from; the zero Position is the
// start of the WAL (checkpoint first). A from in segments already truncated
// away starts at the first segment left, and a from past the newest segment
// starts at the newest; both are logged. NewReader also works after Close:
// the Reader reads what is left and then returns ErrClosed.
// It is safe for concurrent use.
func (w *WAL) NewReader(from Position) (*Reader, error) {
	r := &Reader{
		w:     w,
		wake:  make(chan struct{}, 1),
		timer: time.NewTimer(pollInterval),
		want:  Position{Segment: max(from.Segment, 0), Offset: max(from.Offset, 0)},
		dec:   record.NewDecoder(nil, w.logger),
		typ:   record.Unknown,
	}
	r.timer.Stop()
	if err := r.start(); err != nil {
		return nil, err
	}
	w.addReader(r.wake)
	return r, nil
}

// start (re)starts reading for r.want: the newest checkpoint, then the
// segments after it. A truncation may remove what it lists before it opens
// it; it then lists again.
func (r *Reader) start() error {
	var err error
	for range 10 {
		if err = r.tryStart(); !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return err
}

func (r *Reader) tryStart() error {
	if err := r.closeSource(); err != nil {
		return err
	}
	dir := r.w.dir
	cpDir, cpIdx, err := wlog.LastCheckpoint(dir)
	switch {
	case errors.Is(err, record.ErrNotFound):
		cpDir, cpIdx = "", -1
	case err != nil:
		return fmt.Errorf("find checkpoint in %s: %w", dir, err)
	}
	first, last, _, err := segmentRange(dir) // a hole is filled when the Reader reaches it
	if err != nil {
		return err
	}
	low := max(cpIdx+1, first) // segments up to the checkpoint are in it
	from := r.want
	switch {
	case from.Segment < low:
		from = Position{Segment: low}
		if r.want != (Position{}) {
			r.w.logger.Warn("reader position was truncated away, reading from the first segment left",
				"position", r.want.String(), "segment", low)
		}
	case from.Segment > max(last, low):
		from = Position{Segment: max(last, low)}
		r.w.logger.Warn("reader position is past the newest segment, reading from the newest",
			"position", r.want.String(), "segment", from.Segment)
	}
	if cpDir != "" {
		cp, err := wlog.NewSegmentsReader(cpDir)
		if err != nil {
			return fmt.Errorf("open checkpoint %s: %w", cpDir, err)
		}
		r.cpDir, r.cp = cpDir, cp
		r.lr = wlog.NewLiveReader(r.w.logger, r.w.lrm, cp)
	}
	r.from, r.pos, r.segIdx = from, from, low
	return nil
}

// Next advances to the next record, blocking at the end of the WAL until
// more is logged. It returns ctx.Err() when ctx is done while it waits,
// ErrClosed when the WAL is closed and everything has been read, or after
// Close. It returns a *GapError when WAL.Trim removed segments the Reader
// had not read, or when it opens a segment a repair cut after where it
// started (Corrupt counts; damage.go); the next call goes on after them. A damaged stretch of a segment or a record that does not decode
// returns an error naming where; the next call goes on after it (after
// damage, with the next segment).
func (r *Reader) Next(ctx context.Context) error {
	if r.closed {
		return ErrClosed
	}
	r.typ = record.Unknown
	for i := 1; ; i++ {
		if i%4096 == 0 { // skipping many samples before r.from
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if r.lr == nil {
			wait, err := r.openSegment()
			if err != nil {
				return err
			}
			if wait {
				if r.w.closed.Load() {
					return ErrClosed // the segment will never be written
				}
				if err := r.wait(ctx); err != nil {
					return err
				}
			}
			continue
		}
		if !r.skip && r.lr.Next() {
			r.fresh = true
			if ok, err := r.decode(r.lr.Record()); ok || err != nil {
				return err
			}
			continue
		}
		if err := r.lr.Err(); !r.skip && err != nil && !errors.Is(err, io.EOF) {
			r.skip = true
			return r.damaged(err)
		}
		// At the end of what is written so far.
		if r.cp != nil {
			if err := r.closeSource(); err != nil {
				return err
			}
			continue
		}
		fresh := r.fresh
		r.fresh = false
		if !r.nextSeen && !(r.tailing && fresh && !r.w.closed.Load()) && r.nextExists() {
			r.nextSeen = true
			if !r.skip {
				continue // read what the writer wrote before it moved on
			}
		}
		if r.nextSeen {
			if err := r.finishSegment(); err != nil {
				return err
			}
			continue
		}
		if r.w.closed.Load() {
			if r.closedSeen {
				return ErrClosed
			}
			r.closedSeen = true
			continue // read what the WAL wrote before it closed
		}
		r.tailing = true
		if err := r.wait(ctx); err != nil {
			return err
		}
	}
}

// decode decodes rec into r's slices and reports whether r yields it: not
// a sample-like record before r.from, nor a kind it does not know.
func (r *Reader) decode(rec []byte) (bool, error) {
	replay := r.cp != nil || r.segIdx < r.from.Segment ||
		(r.segIdx == r.from.Segment && r.lr.Offset() <= r.from.Offset)
	if replay {
		r.pos = r.from
	} else {
		r.pos = Position{Segment: r.segIdx, Offset: r.lr.Offset()}
	}
	var err error
	t := r.dec.Type(rec)
	switch t {
	case record.Series:
		var s []record.RefSeries
		if s, err = r.dec.Series(rec, r.series[:0]); err == nil {
			r.series, r.typ = s, record.Series
		}
	case record.Metadata:
		var m []record.RefMetadata
		if m, err = r.dec.Metadata(rec, r.metadata[:0]); err == nil {
			r.metadata, r.typ = m, record.Metadata
		}
	case record.Samples, record.SamplesV2:
		if replay {
			return false, nil
		}
		var s []record.RefSample
		if s, err = r.dec.Samples(rec, r.samples[:0]); err == nil {
			r.samples, r.typ = s, record.Samples
		}
	case record.HistogramSamples, record.CustomBucketsHistogramSamples, record.HistogramSamplesV2:
		if replay {
			return false, nil
		}
		var h []record.RefHistogramSample
		if h, err = r.dec.HistogramSamples(rec, r.histograms[:0]); err == nil {
			r.histograms, r.typ = h, record.HistogramSamples
		}
	case record.FloatHistogramSamples, record.CustomBucketsFloatHistogramSamples, record.FloatHistogramSamplesV2:
		if replay {
			return false, nil
		}
		var h []record.RefFloatHistogramSample
		if h, err = r.dec.FloatHistogramSamples(rec, r.floatHistograms[:0]); err == nil {
			r.floatHistograms, r.typ = h, record.FloatHistogramSamples
		}
	case record.Exemplars:
		if replay {
			return false, nil
		}
		var e []record.RefExemplar
		if e, err = r.dec.Exemplars(rec, r.exemplars[:0]); err == nil {
			r.exemplars, r.typ = e, record.Exemplars
		}
	case record.Tombstones:
		var st []tombstones.Stone
		if st, err = r.dec.Tombstones(rec, r.tombstones[:0]); err == nil {
			r.tombstones, r.typ = st, record.Tombstones
		}
	default:
		return false, nil // markers, or a kind from a newer version
	}
	if err != nil {
		return false, fmt.Errorf("decode %s record in %s: %w", t, r.where(), err)
	}
	return true, nil
}

// where names the place just read, for errors.
func (r *Reader) where() string {
	if r.cp != nil {
		return fmt.Sprintf("checkpoint %s after %d bytes", r.cpDir, r.lr.Offset())
	}
	return fmt.Sprintf("segment %s at offset %d", wlog.SegmentName(r.w.dir, r.segIdx), r.lr.Offset())
}

// damaged wraps a LiveReader error in a *wlog.CorruptionErr naming where.
func (r *Reader) damaged(err error) error {
	if r.cp != nil {
		return fmt.Errorf("read checkpoint %s: %w", r.cpDir,
			&wlog.CorruptionErr{Segment: -1, Offset: r.lr.Offset(), Err: err})
	}
	return fmt.Errorf("tail wal: %w", &wlog.CorruptionErr{Dir: r.w.dir, Segment: r.segIdx, Offset: r.lr.Offset(), Err: err})
}

// openSegment opens segment r.segIdx. It reports wait when that segment is
// not written yet. If a truncation removed it, reading starts over: from
// the new checkpoint during the replay before r.from, else (the caller
// truncated past this Reader) from the first segment left, logged. A
// segment missing between others (deleted by hand: a truncation removes
// the oldest first) is replaced by an empty one and reported as cut
// (WAL.fillHoles). Once the segment is open, what repairs cut from it after
// r.from is returned as a *GapError; reading goes on in the segment.
func (r *Reader) openSegment() (wait bool, err error) {
	seg, err := wlog.OpenReadSegment(wlog.SegmentName(r.w.dir, r.segIdx))
	if err == nil {
		r.seg = seg
		r.lr = wlog.NewLiveReader(r.w.logger, r.w.lrm, seg)
		return false, r.cutGap()
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("open segment %d in %s: %w", r.segIdx, r.w.dir, err)
	}
	first, last, _, err := segmentRange(r.w.dir)
	if err != nil {
		return false, err
	}
	if last < r.segIdx {
		return true, nil
	}
	if first < r.segIdx {
		r.w.truncMu.Lock()
		err := r.w.fillHoles()
		r.w.truncMu.Unlock()
		return false, err // the next call opens the empty segment
	}
	passed := r.segIdx >= r.from.Segment // the truncation passed this Reader
	if passed {
		r.want = Position{Segment: r.segIdx}
	}
	r.w.logger.Info("segment removed by a truncation, reading again from the checkpoint", "segment", r.segIdx)
	gapFrom := Position{Segment: r.segIdx}
	if err := r.start(); err != nil {
		return false, err
	}
	if !passed {
		return false, nil
	}
	full, tooOld, corrupt, trimmed := r.w.trimmed.gap(gapFrom.Segment, r.from.Segment)
	if !trimmed {
		return false, nil
	}
	return false, &GapError{From: gapFrom, To: r.from, Full: full, TooOld: tooOld, Corrupt: corrupt}
}

// cutGap returns a *GapError for what repairs cut from segment r.segIdx
// after r.from, or nil if nothing was.
func (r *Reader) cutGap() error {
	if r.segIdx < r.from.Segment {
		return nil // before where the Reader was asked to start: not its loss
	}
	var from int64
	if r.segIdx == r.from.Segment {
		from = r.from.Offset
	}
	c, start, end, ok := r.w.trimmed.cutAfter(r.segIdx, from)
	if !ok {
		return nil
	}
	return &GapError{From: Position{Segment: r.segIdx, Offset: start}, To: Position{Segment: r.segIdx, Offset: end}, Corrupt: c}
}

// nextExists reports whether the writer has moved past segment r.segIdx:
// the next segment exists, or this one was truncated away (opening the
// next then finds out what is left), or (looked for at most every
// pollInterval) a later one exists, the next having been deleted.
func (r *Reader) nextExists() bool {
	if _, err := os.Stat(wlog.SegmentName(r.w.dir, r.segIdx+1)); err == nil {
		return true
	}
	if _, err := os.Stat(wlog.SegmentName(r.w.dir, r.segIdx)); errors.Is(err, fs.ErrNotExist) {
		return true
	}
	if time.Since(r.listed) < pollInterval {
		return false
	}
	r.listed = time.Now()
	_, last, _, err := segmentRange(r.w.dir)
	return err == nil && last > r.segIdx+1
}

// finishSegment closes the segment read to its end and moves to the next.
func (r *Reader) finishSegment() error {
	if fi, err := r.seg.Stat(); err == nil && !r.skip && fi.Size() > r.lr.Offset() {
		r.w.logger.Warn("segment ends with a torn record, skipping it",
			"segment", wlog.SegmentName(r.w.dir, r.segIdx), "offset", r.lr.Offset(), "size", fi.Size())
	}
	err := r.closeSource()
	r.segIdx++
	return err
}

// closeSource closes the checkpoint or segment being read.
func (r *Reader) closeSource() error {
	var err error
	if r.cp != nil {
		err = r.cp.Close()
		r.cp, r.cpDir = nil, ""
	}
	if r.seg != nil {
		err = errors.Join(err, r.seg.Close())
		r.seg = nil
	}
	r.lr = nil
	r.nextSeen, r.closedSeen, r.skip, r.tailing, r.fresh = false, false, false, false, false
	if err != nil {
		return fmt.Errorf("close wal file in %s: %w", r.w.dir, err)
	}
	return nil
}

// wait blocks until the WAL is written to, pollInterval passes, or ctx is done.
func (r *Reader) wait(ctx context.Context) error {
	r.timer.Reset(pollInterval)
	defer r.timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-r.wake:
	case <-r.timer.C:
	}
	return nil
}

// Type returns the kind of the current record: record.Series,
// record.Metadata, record.Tombstones, record.Samples, record.HistogramSamples (including
// custom-bucket ones), record.FloatHistogramSamples or record.Exemplars;
// record.Unknown before the first record or after an error.
func (r *Reader) Type() record.Type { return r.typ }

// Series returns the current record's series if Type is record.Series.
func (r *Reader) Series() []record.RefSeries { return pick(r, record.Series, r.series) }

// Samples returns the current record's samples if Type is record.Samples.
func (r *Reader) Samples() []record.RefSample { return pick(r, record.Samples, r.samples) }

// Histograms returns the current record's histograms if Type is record.HistogramSamples.
func (r *Reader) Histograms() []record.RefHistogramSample {
	return pick(r, record.HistogramSamples, r.histograms)
}

// FloatHistograms returns the current record's float histograms if Type is record.FloatHistogramSamples.
func (r *Reader) FloatHistograms() []record.RefFloatHistogramSample {
	return pick(r, record.FloatHistogramSamples, r.floatHistograms)
}

// Exemplars returns the current record's exemplars if Type is record.Exemplars.
func (r *Reader) Exemplars() []record.RefExemplar { return pick(r, record.Exemplars, r.exemplars) }

// Metadata returns the current record's metadata if Type is record.Metadata.
func (r *Reader) Metadata() []record.RefMetadata { return pick(r, record.Metadata, r.metadata) }

// Released returns the refs the current record says get no more samples
// (WAL.Release) if Type is record.Tombstones, appended to dst: series
// deleted for all time. Yielded, like Series, also before the start
// Position, so that a Reader forgets what was released before it.
func (r *Reader) Released(dst []chunks.HeadSeriesRef) []chunks.HeadSeriesRef {
	for _, st := range pick(r, record.Tombstones, r.tombstones) {
		if len(st.Intervals) == 1 && st.Intervals[0].Mint == math.MinInt64 && st.Intervals[0].Maxt == math.MaxInt64 {
			dst = append(dst, chunks.HeadSeriesRef(st.Ref))
		}
	}
	return dst
}

// pick returns s if the current record is of type t, else nil.
func pick[T any](r *Reader, t record.Type, s []T) []T {
	if r.typ != t {
		return nil
	}
	return s
}

// Position returns where to resume after the current record: a Reader
// opened there yields the next record and nothing before it but series and
// metadata. While series are replayed from before the Position the Reader
// was opened at, it returns that Position.
func (r *Reader) Position() Position { return r.pos }

// Close releases the Reader's files. Next then returns ErrClosed. Close is
// idempotent.
func (r *Reader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.w.removeReader(r.wake)
	r.timer.Stop()
	return r.closeSource()
}
