package remotewrite

import (
	"fmt"
	"math"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/prompb"
)

// encoder turns a batch of samples into a snappy-compressed remote-write 1.0
// request. It keeps every buffer between calls (the []prompb.TimeSeries with
// their sample slices, histogram scratch, the protobuf and snappy buffers),
// so encoding a batch no larger than earlier ones allocates nothing. It is
// not safe for concurrent use; each shard owns one.
type encoder struct {
	req   prompb.WriteRequest
	hists []*histScratch // one per histogram in the batch, reused
	pb    []byte
	out   []byte
}

// histScratch holds what a prompb.Histogram points to, so converting a
// histogram allocates nothing once the scratch has grown.
type histScratch struct {
	countInt   prompb.Histogram_CountInt
	countFloat prompb.Histogram_CountFloat
	zeroInt    prompb.Histogram_ZeroCountInt
	zeroFloat  prompb.Histogram_ZeroCountFloat
	neg, pos   []prompb.BucketSpan
}

// encode builds the request for batch, marshals and compresses it. The
// returned bytes are owned by the encoder and valid until the next call.
// Consecutive samples of the same series and kind share one TimeSeries;
// otherwise each sample gets its own, in batch order, so per-series order
// holds. highest is the highest timestamp in the batch, in milliseconds.
func (e *encoder) encode(batch []sample) (body []byte, highest int64, err error) {
	ts := e.req.Timeseries[:0]
	var (
		last     *series
		lastKind = -1
		nh       int
	)
	highest = math.MinInt64
	for i := range batch {
		s := &batch[i]
		highest = max(highest, s.t)
		kind := kindOf(s)
		if s.series != last || kind != lastKind || len(ts) == 0 {
			if len(ts) < cap(ts) {
				ts = ts[:len(ts)+1]
			} else {
				ts = append(ts, prompb.TimeSeries{})
			}
			t := &ts[len(ts)-1]
			t.Labels = s.series.labels
			t.Samples = t.Samples[:0]
			t.Exemplars = t.Exemplars[:0]
			t.Histograms = t.Histograms[:0]
			last, lastKind = s.series, kind
		}
		t := &ts[len(ts)-1]
		switch x := s.x.(type) {
		case nil:
			t.Samples = append(t.Samples, prompb.Sample{Value: s.v, Timestamp: s.t})
		case *exemplar:
			t.Exemplars = append(t.Exemplars, prompb.Exemplar{Labels: x.labels, Value: s.v, Timestamp: s.t})
		case *histogram.Histogram:
			t.Histograms = append(t.Histograms, prompb.Histogram{})
			e.scratch(nh).fromInt(&t.Histograms[len(t.Histograms)-1], s.t, x)
			nh++
		case *histogram.FloatHistogram:
			t.Histograms = append(t.Histograms, prompb.Histogram{})
			e.scratch(nh).fromFloat(&t.Histograms[len(t.Histograms)-1], s.t, x)
			nh++
		}
	}
	e.req.Timeseries = ts

	size := e.req.Size()
	if cap(e.pb) < size {
		e.pb = make([]byte, size)
	}
	n, err := e.req.MarshalToSizedBuffer(e.pb[:size])
	if err != nil {
		return nil, 0, fmt.Errorf("marshal write request: %w", err)
	}
	pb := e.pb[size-n : size]
	if m := snappy.MaxEncodedLen(len(pb)); cap(e.out) < m {
		e.out = make([]byte, m)
	}
	e.out = snappy.Encode(e.out[:cap(e.out)], pb)
	return e.out, highest, nil
}

func kindOf(s *sample) int {
	switch s.x.(type) {
	case nil:
		return 0
	case *exemplar:
		return 1
	default:
		return 2
	}
}

func (e *encoder) scratch(i int) *histScratch {
	for len(e.hists) <= i {
		e.hists = append(e.hists, &histScratch{})
	}
	return e.hists[i]
}

// fromInt fills dst from h. dst's bucket slices alias h's, so h must not
// change until dst has been marshalled.
func (hs *histScratch) fromInt(dst *prompb.Histogram, t int64, h *histogram.Histogram) {
	hs.countInt.CountInt = h.Count
	hs.zeroInt.ZeroCountInt = h.ZeroCount
	hs.neg = appendSpans(hs.neg[:0], h.NegativeSpans)
	hs.pos = appendSpans(hs.pos[:0], h.PositiveSpans)
	*dst = prompb.Histogram{
		Count:          &hs.countInt,
		Sum:            h.Sum,
		Schema:         h.Schema,
		ZeroThreshold:  h.ZeroThreshold,
		ZeroCount:      &hs.zeroInt,
		NegativeSpans:  hs.neg,
		NegativeDeltas: h.NegativeBuckets,
		PositiveSpans:  hs.pos,
		PositiveDeltas: h.PositiveBuckets,
		ResetHint:      prompb.Histogram_ResetHint(h.CounterResetHint),
		Timestamp:      t,
	}
}

// fromFloat fills dst from h, aliasing h's bucket slices like fromInt.
func (hs *histScratch) fromFloat(dst *prompb.Histogram, t int64, h *histogram.FloatHistogram) {
	hs.countFloat.CountFloat = h.Count
	hs.zeroFloat.ZeroCountFloat = h.ZeroCount
	hs.neg = appendSpans(hs.neg[:0], h.NegativeSpans)
	hs.pos = appendSpans(hs.pos[:0], h.PositiveSpans)
	*dst = prompb.Histogram{
		Count:          &hs.countFloat,
		Sum:            h.Sum,
		Schema:         h.Schema,
		ZeroThreshold:  h.ZeroThreshold,
		ZeroCount:      &hs.zeroFloat,
		NegativeSpans:  hs.neg,
		NegativeCounts: h.NegativeBuckets,
		PositiveSpans:  hs.pos,
		PositiveCounts: h.PositiveBuckets,
		ResetHint:      prompb.Histogram_ResetHint(h.CounterResetHint),
		Timestamp:      t,
	}
}

func appendSpans(dst []prompb.BucketSpan, src []histogram.Span) []prompb.BucketSpan {
	for _, s := range src {
		dst = append(dst, prompb.BucketSpan{Offset: s.Offset, Length: s.Length})
	}
	return dst
}
