package remotewrite

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/wal"
)

// Reader is what a Queue needs of a WAL reader; *wal.Reader implements it.
// Next blocks until the next record; it returns ctx.Err() when ctx is done,
// wal.ErrClosed when the WAL is closed and read to its end, and any other
// error for a stretch it skips. The slices the accessors return need only
// be valid until the next call to Next, but the labels and histograms in
// them must be the caller's to keep (the Queue holds on to them until they
// are sent, and never modifies them).
type Reader interface {
	Next(ctx context.Context) error
	Type() record.Type
	Series() []record.RefSeries
	Samples() []record.RefSample
	Histograms() []record.RefHistogramSample
	FloatHistograms() []record.RefFloatHistogramSample
	Exemplars() []record.RefExemplar
	Metadata() []record.RefMetadata
	// Released appends to dst the refs a record.Tombstones record says
	// get no more samples (wal.WAL.Release).
	Released(dst []chunks.HeadSeriesRef) []chunks.HeadSeriesRef
	// Position is the position just after the current record.
	Position() wal.Position
	Close() error
}

// Log opens Readers. Use WALLog to adapt a *wal.WAL.
type Log interface {
	NewReader(from wal.Position) (Reader, error)
}

// SizedLog is a Log that can say how many bytes it holds from a position
// on, as *wal.WAL.BytesAfter does; a Queue on one exports
// rwagent_remote_write_lag_bytes. WALLog's Log is one.
type SizedLog interface {
	Log
	BytesAfter(p wal.Position) (int64, error)
}

// WALLog adapts w to Log.
func WALLog(w *wal.WAL) Log { return walLog{w} }

type walLog struct{ w *wal.WAL }

func (l walLog) BytesAfter(p wal.Position) (int64, error) { return l.w.BytesAfter(p) }

func (l walLog) NewReader(from wal.Position) (Reader, error) {
	r, err := l.w.NewReader(from)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return r, nil
}

// Reasons for samples_dropped_total and friends. The first four are
// Prometheus' own. Prometheus counts a batch the receiver rejects only in
// samples_failed_total; we count it there and here, as every drop has a
// reason.
const (
	reasonDroppedSeries = "dropped_series"                 // dropped by write_relabel_configs
	reasonUnknownSeries = "unintentionally_dropped_series" // ref never seen in a Series record
	reasonTooOld        = "too_old"                        // older than sample_age_limit
	reasonNHCB          = "nhcb_in_rw1_not_supported"      // custom-bucket histograms have no RW 1.0 form
	reasonRejected      = "rejected"                       // the receiver answered a non-retryable status
	reasonEncode        = "encode_error"                   // the request could not be marshalled
	reasonWALFull       = "wal_full"                       // trimmed unsent by wal.max_size
	reasonWALCorrupt    = "wal_corrupt"                    // cut unsent by a repair of the WAL (an upper bound)
)

// staging collects one record's samples for one shard, so each shard's lock
// is taken once per record rather than once per sample.
type staging struct {
	items []sample
	c     counts
}

// read runs the reader loop until ctx is done or the WAL is closed and read
// to its end. A read error (a damaged stretch of the WAL, which the reader
// skips) is logged and counted, and reading goes on. read owns q.series,
// q.stage and q.cur.
// Between records it applies a shard count from the resharding goroutine;
// sendCtx is what new shards send with.
func (q *Queue) read(ctx, sendCtx context.Context, r Reader) {
	failures := 0
	for {
		if err := r.Next(ctx); err != nil {
			switch {
			case ctx.Err() != nil:
				return
			case errors.Is(err, wal.ErrClosed):
				q.logger.Info("wal closed, remote write read all of it")
				return
			}
			if gap, ok := errors.AsType[*wal.GapError](err); ok {
				q.lost(gap)
				continue
			}
			q.metrics.walReadErrors.Inc()
			q.readErrLog.Log(q.logger, "read wal, skipping what cannot be read", "err", err)
			// Back off, so an error that persists does not spin.
			failures++
			t := time.NewTimer(min(time.Duration(failures)*10*time.Millisecond, time.Second))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		failures = 0
		q.acks.reading(r.Position())
		switch r.Type() {
		case record.Series:
			if n := q.series.store(r.Series()); n > 0 {
				q.metrics.seriesDropped.Add(float64(n))
			}
			if n := q.series.notRouted; n > 0 {
				q.metrics.seriesNotRouted.Add(float64(n))
			}
			q.logOverLimit()
		case record.Tombstones:
			q.released = r.Released(q.released[:0])
			q.series.forget(q.released, q.acks.nextSeq())
		case record.Metadata:
			if q.metadata != nil {
				q.families.update(q.series, r.Metadata())
			}
		case record.Samples, record.SamplesV2:
			q.begin()
			for _, s := range r.Samples() {
				if !q.add(ctx, s.Ref, s.T, s.ST, s.V, nil) {
					break
				}
			}
		case record.HistogramSamples, record.HistogramSamplesV2, record.CustomBucketsHistogramSamples:
			if q.sendHistograms {
				q.begin()
				for _, h := range r.Histograms() {
					if !q.add(ctx, h.Ref, h.T, h.ST, 0, h.H) {
						break
					}
				}
			}
		case record.FloatHistogramSamples, record.FloatHistogramSamplesV2, record.CustomBucketsFloatHistogramSamples:
			if q.sendHistograms {
				q.begin()
				for _, h := range r.FloatHistograms() {
					if !q.add(ctx, h.Ref, h.T, h.ST, 0, h.FH) {
						break
					}
				}
			}
		case record.Exemplars:
			if q.sendExemplars {
				q.begin()
				for _, e := range r.Exemplars() {
					if !q.add(ctx, e.Ref, e.T, 0, e.V, e.Labels) {
						break
					}
				}
			}
		}
		if q.cur.active {
			if err := q.finish(ctx); err != nil {
				return // ctx done while blocked on a full shard; the record stays unacknowledged
			}
		}
		q.acks.end(r.Position())
		if len(q.series.retired) > 0 {
			q.series.release(q.oldestQueued())
		}
		select {
		case n := <-q.reshardCh:
			if q.reshard(ctx, sendCtx, n) != nil {
				return
			}
		default:
		}
	}
}

// oldestQueued returns the lowest sequence number a queued or in-flight
// sample may have: that of the oldest such sample, or the next record's if
// there is none. Only the reader goroutine may call it, between records.
func (q *Queue) oldestQueued() uint64 {
	oldest := q.acks.nextSeq()
	for _, s := range q.shards {
		if seq, ok := s.oldest(); ok {
			oldest = min(oldest, seq)
		}
	}
	return oldest
}

// current is the record being queued. It is owned by the reader goroutine.
type current struct {
	active  bool
	seq     uint64
	minT    int64                    // samples before it are too old; math.MinInt64 if no limit
	dropped [len(dropReasons)]counts // indexed by the drop* constants
	highest int64                    // newest timestamp queued
	read    int64                    // newest timestamp read, queued or dropped
	err     error                    // from a push interrupted by ctx
}

const (
	dropRelabeled = iota
	dropUnknown
	dropTooOld
	dropNHCB
	dropTooManyLabels
	dropLabelTooLong
)

var dropReasons = [...]string{
	dropRelabeled:     reasonDroppedSeries,
	dropUnknown:       reasonUnknownSeries,
	dropTooOld:        reasonTooOld,
	dropNHCB:          reasonNHCB,
	dropTooManyLabels: reasonTooManyLabels,
	dropLabelTooLong:  reasonLabelTooLong,
}

// begin starts queueing a record's samples.
func (q *Queue) begin() {
	seq, trim := q.acks.begin()
	if trim {
		q.Acked()
	}
	q.cur = current{active: true, seq: seq, minT: math.MinInt64, highest: math.MinInt64, read: math.MinInt64}
	if q.ageLimit > 0 {
		q.cur.minT = time.Now().Add(-q.ageLimit).UnixMilli()
	}
}

// add stages one sample of the current record for its series' shard, or
// counts it as dropped. start is its start timestamp, zero if none. x is nil for a float sample, the WAL reader's
// *histogram.Histogram or *histogram.FloatHistogram, or an exemplar's
// labels.Labels. add returns false if ctx was done
// while the shard was full; the caller must stop adding then.
func (q *Queue) add(ctx context.Context, ref chunks.HeadSeriesRef, t, start int64, v float64, x any) bool {
	st, known := q.series.get(ref)
	if st == q.series.unrouted {
		return true // routed to other endpoints: not this one's to send, nor dropped
	}
	c := &q.cur
	c.read = max(c.read, t)
	s := sample{seq: c.seq, t: t, st: start, v: v}
	drop := -1
	switch {
	case !known:
		drop = dropUnknown
		q.unknownLog.Log(q.logger, "dropped sample of a series not in the WAL", "ref", ref)
	case st == nil:
		drop = dropRelabeled
	default:
		if drop = q.series.refusal(st); drop < 0 && t < c.minT {
			drop = dropTooOld
		}
	}
	switch h := x.(type) {
	case *histogram.Histogram:
		if drop < 0 && histogram.IsCustomBucketsSchema(h.Schema) {
			drop = dropNHCB
		}
		if drop < 0 {
			s.x = h
		}
	case *histogram.FloatHistogram:
		if drop < 0 && histogram.IsCustomBucketsSchema(h.Schema) {
			drop = dropNHCB
		}
		if drop < 0 {
			s.x = h
		}
	case labels.Labels:
		if drop < 0 {
			s.x = &exemplar{labels: exemplarLabels(h)}
		}
	}
	if drop >= 0 {
		d := &c.dropped[drop]
		switch x.(type) {
		case nil:
			d.samples++
		case labels.Labels:
			d.exemplars++
		default:
			d.histograms++
		}
		return true
	}
	s.series = st
	c.highest = max(c.highest, t)
	i := uint64(ref) % uint64(len(q.shards))
	sg := &q.stage[i]
	sg.items = append(sg.items, s)
	sg.c.add(&s)
	if len(sg.items) >= q.maxPerSend {
		c.err = q.flushStage(ctx, int(i))
		return c.err == nil
	}
	return true
}

// finish pushes what is staged for the current record and counts its drops.
// It returns ctx.Err() if ctx was done before everything was queued.
func (q *Queue) finish(ctx context.Context) error {
	c := &q.cur
	c.active = false
	for i := range q.stage {
		if c.err != nil {
			q.stage[i].items = q.stage[i].items[:0]
			q.stage[i].c = counts{}
			continue
		}
		c.err = q.flushStage(ctx, i)
	}
	for i, d := range c.dropped {
		q.metrics.dropped(dropReasons[i], d)
		q.rates.dropped.add(int64(d.samples + d.histograms + d.exemplars))
	}
	if c.highest != math.MinInt64 {
		q.metrics.highestEnqueued.set(float64(c.highest) / 1000)
	}
	if c.read != math.MinInt64 {
		q.metrics.highestRead.set(float64(c.read) / 1000)
	}
	return c.err
}

// flushStage pushes the staged samples of shard i.
func (q *Queue) flushStage(ctx context.Context, i int) error {
	sg := &q.stage[i]
	if len(sg.items) == 0 {
		return nil
	}
	q.metrics.pending(sg.c.samples, sg.c.histograms, sg.c.exemplars)
	q.rates.in.add(int64(len(sg.items)))
	err := q.shards[i].push(ctx, sg.items)
	sg.items = sg.items[:0]
	sg.c = counts{}
	return err
}

// lost counts what the WAL trimmed before this queue read it, or what a
// repair cut from it, and says so: for a trim, this endpoint held the WAL
// back past wal.max_size or wal.max_age; for a repair, the count is an
// upper bound (wal.GapError.Corrupt).
func (q *Queue) lost(gap *wal.GapError) {
	for _, d := range [...]struct {
		reason string
		c      wal.Counts
	}{{reasonWALFull, gap.Full}, {reasonTooOld, gap.TooOld}, {reasonWALCorrupt, gap.Corrupt}} {
		c := counts{samples: d.c.Samples}
		if q.sendHistograms {
			c.histograms = d.c.Histograms
		}
		if q.sendExemplars {
			c.exemplars = d.c.Exemplars
		}
		q.metrics.dropped(d.reason, c)
	}
	if gap.Full != (wal.Counts{}) || gap.TooOld != (wal.Counts{}) {
		q.logger.Warn("the WAL removed segments this endpoint had not sent (wal.max_size or wal.max_age): this endpoint held it back, their samples are dropped",
			"from", gap.From.String(), "to", gap.To.String(),
			"samples_wal_full", gap.Full.Samples, "samples_too_old", gap.TooOld.Samples,
			"histograms", gap.Full.Histograms+gap.TooOld.Histograms, "samples_wal_corrupt", gap.Corrupt.Samples)
		return
	}
	q.logger.Warn("the WAL was damaged where this endpoint had not sent: what the repair cut is counted as dropped (wal_corrupt), an upper bound",
		"from", gap.From.String(), "to", gap.To.String(), "samples_at_most", gap.Corrupt.Samples)
}
