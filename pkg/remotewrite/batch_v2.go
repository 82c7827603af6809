package remotewrite

import (
	"fmt"
	"math"

	"github.com/klauspost/compress/s2"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// encoderV2 turns a batch of samples into a snappy-compressed remote-write
// 2.0 request (io.prometheus.write.v2.Request). Like encoder it keeps every
// buffer between calls: the symbols table, the []writev2.TimeSeries with
// their label-ref, sample, histogram and exemplar slices, histogram scratch,
// and the protobuf and snappy buffers, so encoding a batch no larger than
// earlier ones allocates nothing. It is not safe for concurrent use; each
// shard owns one, with pairs set to its queue's pair table.
type encoderV2 struct {
	symbols symbolTable
	named   pairRefs // the request's pairs' symbol refs, reset with symbols
	req     writev2.Request
	owner   []*series  // owner[i] is the series of req.Timeseries[i]
	prev    []prevName // see symbolizeSeries; emptied per request
	// family is the family metadata the request's last TimeSeries with
	// metadata got, familyRefs that metadata with provisional refs.
	family     *family
	familyRefs writev2.Metadata
	hists      []*histScratchV2
	pb         []byte
	out        []byte
	pairs      *pairTable  // of the queue's series table; must be set
	pages      []*pairPage // pairs', loaded per request
}

// v2Result is what encoderV2.encode made: the body (owned by the encoder),
// the highest timestamp in milliseconds, and orphans, the exemplars left
// out because no float sample or histogram of their series is in the
// batch. Prometheus' 2.0 receiver refuses a TimeSeries with only exemplars
// (with 400, for the whole request), so the caller counts them dropped.
type v2Result struct {
	body    []byte
	highest int64
	orphans int
}

// encode builds the request for batch, marshals and compresses it. The
// returned body is owned by the encoder and valid until the next call.
// Symbols are collected per request. Consecutive float samples (or
// histograms) of one series share one TimeSeries; otherwise each gets its
// own, in batch order, so per-series order holds. An exemplar joins the
// latest TimeSeries of its series in the batch. Each TimeSeries carries its
// series' family metadata, if it has any (series.meta), and each sample
// and histogram its start timestamp (created timestamp), if the WAL had one.
// The symbols table is ordered by use (symbolTable.finish).
func (e *encoderV2) encode(batch []sample) (v2Result, error) {
	e.symbols.reset()
	e.named.reset()
	e.family = nil
	clear(e.prev)
	e.pages = e.pairs.pages()
	ts := e.req.Timeseries[:0]
	e.owner = e.owner[:0]
	res := v2Result{highest: math.MinInt64}
	lastKind, nh := -1, 0
	for i := range batch {
		s := &batch[i]
		if ex, ok := s.x.(*exemplar); ok {
			j := len(ts) - 1
			for j >= 0 && e.owner[j] != s.series {
				j--
			}
			if j < 0 {
				res.orphans++
				continue
			}
			res.highest = max(res.highest, s.t)
			t := &ts[j]
			var x *writev2.Exemplar
			if len(t.Exemplars) < cap(t.Exemplars) {
				t.Exemplars = t.Exemplars[:len(t.Exemplars)+1]
				x = &t.Exemplars[len(t.Exemplars)-1]
			} else {
				t.Exemplars = append(t.Exemplars, writev2.Exemplar{})
				x = &t.Exemplars[len(t.Exemplars)-1]
			}
			x.LabelsRefs = e.symbolize(x.LabelsRefs[:0], ex.labels)
			x.Value, x.Timestamp = s.v, s.t
			continue
		}
		res.highest = max(res.highest, s.t)
		kind := kindOf(s)
		if len(ts) == 0 || e.owner[len(ts)-1] != s.series || kind != lastKind {
			if len(ts) < cap(ts) {
				ts = ts[:len(ts)+1]
			} else {
				ts = append(ts, writev2.TimeSeries{})
			}
			t := &ts[len(ts)-1]
			t.LabelsRefs = e.symbolizeSeries(t.LabelsRefs[:0], s.series)
			t.Samples = t.Samples[:0]
			t.Histograms = t.Histograms[:0]
			t.Exemplars = t.Exemplars[:0]
			t.Metadata = writev2.Metadata{}
			if f := s.series.meta.Load(); f != nil {
				// A family's series come mostly together.
				if f != e.family {
					e.family = f
					e.familyRefs = writev2.Metadata{
						Type:    f.v2Type,
						HelpRef: e.symbols.symbolize(f.help),
						UnitRef: e.symbols.symbolize(f.unit),
					}
				} else {
					e.symbols.use(e.familyRefs.HelpRef)
					e.symbols.use(e.familyRefs.UnitRef)
				}
				t.Metadata = e.familyRefs
			}
			e.owner = append(e.owner, s.series)
			lastKind = kind
		}
		t := &ts[len(ts)-1]
		switch x := s.x.(type) {
		case nil:
			t.Samples = append(t.Samples, writev2.Sample{Value: s.v, Timestamp: s.t, StartTimestamp: s.st})
		case *histogram.Histogram:
			t.Histograms = append(t.Histograms, writev2.Histogram{})
			h := &t.Histograms[len(t.Histograms)-1]
			e.scratch(nh).fromInt(h, s.t, x)
			h.StartTimestamp = s.st
			nh++
		case *histogram.FloatHistogram:
			t.Histograms = append(t.Histograms, writev2.Histogram{})
			h := &t.Histograms[len(t.Histograms)-1]
			e.scratch(nh).fromFloat(h, s.t, x)
			h.StartTimestamp = s.st
			nh++
		}
	}
	e.req.Timeseries = ts
	e.req.Symbols = e.symbols.finish(ts)

	pb, err := appendRequestV2(e.pb[:0], &e.req)
	e.pb = pb
	if err != nil {
		return v2Result{}, fmt.Errorf("marshal write v2 request: %w", err)
	}
	// Snappy's block format, as the spec requires, written by s2's
	// snappy-compatible encoder, as 1.0's is: it matches across the whole
	// request, and any snappy decoder reads it. Its "better" encoder
	// makes requests 9 % smaller (BenchmarkWire, 10,000 samples) but
	// was a third of the 2.0 encode's CPU, the largest part of what 2.0
	// cost over 1.0: issue 15 asks 2.0 for at most 1.1x 1.0's CPU, and
	// its bytes stay under half of 1.0's.
	if m := s2.MaxEncodedLen(len(pb)); cap(e.out) < m {
		e.out = make([]byte, m)
	}
	e.out = s2.EncodeSnappy(e.out[:cap(e.out)], pb)
	res.body = e.out
	return res, nil
}

// symbolize appends the symbol refs of ls, name then value, to dst.
func (e *encoderV2) symbolize(dst []uint32, ls []prompb.Label) []uint32 {
	for _, l := range ls {
		dst = append(dst, e.symbols.symbolize(l.Name), e.symbols.symbolize(l.Value))
	}
	return dst
}

// symbolizeSeries appends the symbol refs of s's labels, name then value,
// to dst. A pair the request has named before has its refs in e.named.
// A new one is read from the pair table; its name is often the previous
// new pair's name at the same position (series come mostly in exposition
// order, a metric family's together), and comparing with it is cheaper
// than looking the string up.
func (e *encoderV2) symbolizeSeries(dst []uint32, s *series) []uint32 {
	_, ids := s.size()
	for k := 0; ids != ""; k++ {
		var id uint32
		id, ids = nextPairID(ids)
		r, at := e.named.find(id)
		if r != nil {
			e.symbols.use(r.name)
			e.symbols.use(r.value)
			dst = append(dst, r.name, r.value)
			continue
		}
		name, value, _, ok := decodeLabel(e.pages[id>>pairBits].enc[id&(1<<pairBits-1)])
		if !ok {
			break
		}
		for len(e.prev) <= k {
			e.prev = append(e.prev, prevName{})
		}
		p := &e.prev[k]
		if p.name == name {
			e.symbols.use(p.ref)
		} else {
			p.name, p.ref = name, e.symbols.symbolize(name)
		}
		nr := pairRef{id: id, name: p.ref, value: e.symbols.symbolize(value)}
		e.named.insert(at, nr)
		dst = append(dst, nr.name, nr.value)
	}
	return dst
}

// prevName is the name of a label, at its position in the series, of the
// last pair symbolizeSeries read from the pair table in the request, and
// its provisional ref.
type prevName struct {
	name string
	ref  uint32
}

func (e *encoderV2) scratch(i int) *histScratchV2 {
	for len(e.hists) <= i {
		e.hists = append(e.hists, &histScratchV2{})
	}
	return e.hists[i]
}

// histScratchV2 holds what a writev2.Histogram points to, like histScratch.
type histScratchV2 struct {
	countInt   writev2.Histogram_CountInt
	countFloat writev2.Histogram_CountFloat
	zeroInt    writev2.Histogram_ZeroCountInt
	zeroFloat  writev2.Histogram_ZeroCountFloat
	neg, pos   []writev2.BucketSpan
}

// fromInt fills dst from h. dst's bucket and custom-value slices alias h's,
// so h must not change until dst has been marshalled.
func (hs *histScratchV2) fromInt(dst *writev2.Histogram, t int64, h *histogram.Histogram) {
	hs.countInt.CountInt = h.Count
	hs.zeroInt.ZeroCountInt = h.ZeroCount
	hs.neg = appendSpansV2(hs.neg[:0], h.NegativeSpans)
	hs.pos = appendSpansV2(hs.pos[:0], h.PositiveSpans)
	*dst = writev2.Histogram{
		Count:          &hs.countInt,
		Sum:            h.Sum,
		Schema:         h.Schema,
		ZeroThreshold:  h.ZeroThreshold,
		ZeroCount:      &hs.zeroInt,
		NegativeSpans:  hs.neg,
		NegativeDeltas: h.NegativeBuckets,
		PositiveSpans:  hs.pos,
		PositiveDeltas: h.PositiveBuckets,
		ResetHint:      writev2.Histogram_ResetHint(h.CounterResetHint),
		Timestamp:      t,
		CustomValues:   h.CustomValues,
	}
}

// fromFloat fills dst from h, aliasing h's slices like fromInt.
func (hs *histScratchV2) fromFloat(dst *writev2.Histogram, t int64, h *histogram.FloatHistogram) {
	hs.countFloat.CountFloat = h.Count
	hs.zeroFloat.ZeroCountFloat = h.ZeroCount
	hs.neg = appendSpansV2(hs.neg[:0], h.NegativeSpans)
	hs.pos = appendSpansV2(hs.pos[:0], h.PositiveSpans)
	*dst = writev2.Histogram{
		Count:          &hs.countFloat,
		Sum:            h.Sum,
		Schema:         h.Schema,
		ZeroThreshold:  h.ZeroThreshold,
		ZeroCount:      &hs.zeroFloat,
		NegativeSpans:  hs.neg,
		NegativeCounts: h.NegativeBuckets,
		PositiveSpans:  hs.pos,
		PositiveCounts: h.PositiveBuckets,
		ResetHint:      writev2.Histogram_ResetHint(h.CounterResetHint),
		Timestamp:      t,
		CustomValues:   h.CustomValues,
	}
}

func appendSpansV2(dst []writev2.BucketSpan, src []histogram.Span) []writev2.BucketSpan {
	for _, s := range src {
		dst = append(dst, writev2.BucketSpan{Offset: s.Offset, Length: s.Length})
	}
	return dst
}
