package wal

import (
	"errors"
	"fmt"
	"os"

	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"
)

// ErrPositionPastEnd is returned (wrapped) by WAL.Resume for a position
// this WAL cannot have given: past the end of its segment, or at or past
// the segment this process started writing. A position file holding one
// is as good as corrupt.
var ErrPositionPastEnd = errors.New("wal: position past the end")

// Resume checks p, a Position saved by an earlier process (a queue's send
// position), against what this WAL holds, and returns where a Reader must
// start so that it skips nothing the WAL still holds after p.
//
// A p inside the segments the WAL holds is returned as it is, with a nil
// error; so is one in a stretch a repair cut (damage.go). Otherwise Resume returns the zero Position (the oldest data
// retained) and an error saying why, for the caller to log: p lies in
// segments already truncated away (the position was saved before a
// truncation it did not hold back, or the WAL was trimmed), or at or past
// the segment this process started writing, which no earlier process can
// have read (the WAL directory was replaced or the position file belongs to
// another WAL), or past the end of its segment: both wrap
// ErrPositionPastEnd. Resending from the oldest data may send some samples twice;
// skipping could lose some. When Trim removed segments from p on (this
// process or an earlier one: it remembers them in the WAL directory), the
// error is a *GapError with what they held, the whole of p's segment
// counted: what the endpoint lost, give or take the part of that segment
// it had sent.
//
// Resume is safe for concurrent use.
func (w *WAL) Resume(p Position) (Position, error) {
	if p == (Position{}) {
		return p, nil
	}
	if p.Segment < 0 || p.Offset < 0 {
		return Position{}, fmt.Errorf("position %s is negative", p)
	}
	if p.Segment > w.openSegment || (p.Segment == w.openSegment && p.Offset > 0) {
		return Position{}, fmt.Errorf("%w: %s is past the end of the WAL in %s, which this process started at segment %d",
			ErrPositionPastEnd, p, w.dir, w.openSegment)
	}
	first, _, _, err := segmentRange(w.dir)
	if err != nil {
		return Position{}, err
	}
	low := first
	if _, cpIdx, err := wlog.LastCheckpoint(w.dir); err == nil {
		low = max(low, cpIdx+1)
	} else if !errors.Is(err, record.ErrNotFound) {
		return Position{}, fmt.Errorf("find checkpoint in %s: %w", w.dir, err)
	}
	if p.Segment < low {
		if full, tooOld, corrupt, ok := w.trimmed.gap(p.Segment, low); ok {
			return Position{}, &GapError{From: p, To: Position{Segment: low}, Full: full, TooOld: tooOld, Corrupt: corrupt}
		}
		return Position{}, fmt.Errorf("position %s lies in segments truncated away; the oldest left is %d", p, low)
	}
	// A position is a record's end: past its segment's end, it is not one
	// of this WAL's, unless a repair cut the segment short (or replaced it,
	// missing) before it: a Reader starting there then reports the cut.
	fi, err := os.Stat(wlog.SegmentName(w.dir, p.Segment))
	if err != nil {
		return Position{}, fmt.Errorf("stat segment %d of position %s in %s: %w", p.Segment, p, w.dir, err)
	}
	if p.Offset > fi.Size() && !w.trimmed.cutBefore(p.Segment, p.Offset) {
		return Position{}, fmt.Errorf("%w: %s lies past the end of its segment, %d bytes long", ErrPositionPastEnd, p, fi.Size())
	}
	return p, nil
}

// Started returns the position where this process started writing: no
// earlier process can have read (or sent) anything at or after it. It is
// safe for concurrent use.
func (w *WAL) Started() Position { return Position{Segment: w.openSegment} }

// Bytes returns how many bytes of the segments the WAL holds lie between
// from and to: what a Reader reads going from one to the other. Segments
// no longer there count nothing. Zero when to is not after from. It is
// safe for concurrent use.
func (w *WAL) Bytes(from, to Position) int64 {
	var n int64
	for seg := from.Segment; seg <= to.Segment && from.Compare(to) < 0; seg++ {
		lo, hi := int64(0), int64(-1)
		if seg == from.Segment {
			lo = from.Offset
		}
		if seg == to.Segment {
			hi = to.Offset
		}
		if hi < 0 {
			fi, err := os.Stat(wlog.SegmentName(w.dir, seg))
			if err != nil {
				continue
			}
			hi = fi.Size()
		}
		n += max(hi-lo, 0)
	}
	return n
}
