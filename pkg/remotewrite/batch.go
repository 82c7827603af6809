package remotewrite

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/klauspost/compress/s2"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/prompb"
	"google.golang.org/protobuf/encoding/protowire"
)

// encoder turns a batch of samples into a snappy-compressed remote-write 1.0
// request. It writes the protobuf bytes itself: each series' labels are
// copied already encoded from the pair table (labels.go) and float samples
// written directly, the same bytes gogo's WriteRequest.Marshal writes for
// the same request; only histograms and exemplars, rare, go through prompb
// and gogo. It keeps every buffer between calls, so encoding a batch no
// larger than earlier ones allocates nothing. It is not safe for concurrent
// use; each shard owns one, with pairs set to its queue's pair table.
type encoder struct {
	hists []*histScratch // one per histogram of a run, reused
	hpb   []prompb.Histogram
	xpb   []prompb.Exemplar
	pb    []byte
	out   []byte
	pairs *pairTable  // of the queue's series table; must be set
	pages []*pairPage // pairs', loaded per batch
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

// Protobuf tags of a 1.0 request: field number << 3 | wire type (0 varint,
// 1 fixed64, 2 length-delimited). Every protobuf field this package writes
// itself starts with such a constant tag byte (see also labels.go and
// marshal_v2.go); lengths and varints go through protowire.AppendVarint.
// Appending the constant measured faster than protowire.AppendTag, which
// calls the non-inlined AppendVarint for every field.
const (
	tagTimeseries = 1<<3 | 2 // WriteRequest.timeseries
	tagSample     = 2<<3 | 2 // TimeSeries.samples
	tagExemplar   = 3<<3 | 2 // TimeSeries.exemplars
	tagHistogram  = 4<<3 | 2 // TimeSeries.histograms
	tagValue      = 1<<3 | 1 // Sample.value, fixed64
	tagTimestamp  = 2<<3 | 0 // Sample.timestamp, varint
)

// encode builds the request for batch, marshals and compresses it. The
// returned bytes are owned by the encoder and valid until the next call.
// Consecutive samples of the same series and kind share one TimeSeries;
// otherwise each sample gets its own, in batch order, so per-series order
// holds. highest is the highest timestamp in the batch, in milliseconds.
func (e *encoder) encode(batch []sample) (body []byte, highest int64, err error) {
	pb := e.pb[:0]
	highest = math.MinInt64
	e.pages = e.pairs.pages()
	for i := 0; i < len(batch); {
		s := &batch[i]
		kind := kindOf(s)
		j := i + 1
		for j < len(batch) && batch[j].series == s.series && kindOf(&batch[j]) == kind {
			j++
		}
		run := batch[i:j]
		for k := range run {
			highest = max(highest, run[k].t)
		}
		if pb, err = e.appendTimeSeries(pb, run, kind); err != nil {
			return nil, 0, err
		}
		i = j
	}
	e.pb = pb
	if m := s2.MaxEncodedLen(len(pb)); cap(e.out) < m {
		e.out = make([]byte, m)
	}
	e.out = s2.EncodeSnappy(e.out[:cap(e.out)], pb)
	return e.out, highest, nil
}

// appendTimeSeries appends one WriteRequest.timeseries field holding run,
// samples of one series and one kind, to dst.
func (e *encoder) appendTimeSeries(dst []byte, run []sample, kind int) ([]byte, error) {
	size, ids := run[0].series.size()
	switch kind {
	case kindFloat:
		for k := range run {
			n := sampleSize(run[k].v, run[k].t)
			size += 1 + protowire.SizeVarint(uint64(n)) + n
		}
	case kindExemplar:
		e.xpb = e.xpb[:0]
		for k := range run {
			e.xpb = append(e.xpb, prompb.Exemplar{Labels: run[k].x.(*exemplar).labels, Value: run[k].v, Timestamp: run[k].t})
			n := e.xpb[k].Size()
			size += 1 + protowire.SizeVarint(uint64(n)) + n
		}
	default:
		e.hpb = e.hpb[:0]
		for k := range run {
			e.hpb = append(e.hpb, prompb.Histogram{})
			switch x := run[k].x.(type) {
			case *histogram.Histogram:
				e.scratch(k).fromInt(&e.hpb[k], run[k].t, x)
			case *histogram.FloatHistogram:
				e.scratch(k).fromFloat(&e.hpb[k], run[k].t, x)
			}
			n := e.hpb[k].Size()
			size += 1 + protowire.SizeVarint(uint64(n)) + n
		}
	}
	dst = append(dst, tagTimeseries)
	dst = protowire.AppendVarint(dst, uint64(size))
	dst = appendPairs(dst, e.pages, ids)
	switch kind {
	case kindFloat:
		for k := range run {
			dst = appendSample(dst, run[k].v, run[k].t)
		}
	case kindExemplar:
		for k := range e.xpb {
			var err error
			if dst, err = appendMessage(dst, tagExemplar, &e.xpb[k]); err != nil {
				return dst, fmt.Errorf("marshal exemplar: %w", err)
			}
		}
	default:
		for k := range e.hpb {
			var err error
			if dst, err = appendMessage(dst, tagHistogram, &e.hpb[k]); err != nil {
				return dst, fmt.Errorf("marshal histogram: %w", err)
			}
		}
	}
	return dst, nil
}

// appendPairs appends the encoded labels of pair ids, looked up in pages.
// (Plain appends measured faster than growing dst once and copying into it,
// or than looking up all pairs before copying.) It splits the ids itself
// rather than through nextPairID, which does not inline: this runs for
// every label of every series of every request.
func appendPairs(dst []byte, pages []*pairPage, ids string) []byte {
	for len(ids) > 0 {
		id := uint32(ids[0])
		if id < 0x80 {
			ids = ids[1:]
		} else {
			v, rest, _ := cutUvarint(ids)
			id, ids = uint32(v), rest
		}
		dst = append(dst, pages[id>>pairBits].enc[id&(1<<pairBits-1)]...)
	}
	return dst
}

// sampleSize is the size of a prompb.Sample message; gogo leaves out a
// zero value (+0 and -0) and a zero timestamp.
func sampleSize(v float64, t int64) int {
	n := 0
	if v != 0 {
		n += 1 + 8
	}
	if t != 0 {
		n += 1 + protowire.SizeVarint(uint64(t))
	}
	return n
}

// appendSample appends one TimeSeries.samples field.
func appendSample(dst []byte, v float64, t int64) []byte {
	dst = append(dst, tagSample, byte(sampleSize(v, t))) // at most 20: one byte
	if v != 0 {
		dst = append(dst, tagValue)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
	}
	if t != 0 {
		dst = append(dst, tagTimestamp)
		dst = protowire.AppendVarint(dst, uint64(t))
	}
	return dst
}

// gogoMessage is what gogo generates for every prompb message.
type gogoMessage interface {
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
}

// appendMessage appends m as a length-delimited field with tag, marshalled
// by gogo into dst's spare capacity.
func appendMessage(dst []byte, tag byte, m gogoMessage) ([]byte, error) {
	size := m.Size()
	dst = append(dst, tag)
	dst = protowire.AppendVarint(dst, uint64(size))
	n := len(dst)
	dst = grow(dst, size)
	if _, err := m.MarshalToSizedBuffer(dst[n : n+size]); err != nil {
		return dst, err
	}
	return dst, nil
}

// Kinds of queued items; consecutive items of one series and kind share a
// TimeSeries.
const (
	kindFloat = iota
	kindExemplar
	kindHistogram
)

func kindOf(s *sample) int {
	switch s.x.(type) {
	case nil:
		return kindFloat
	case *exemplar:
		return kindExemplar
	default:
		return kindHistogram
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
