package wal

import (
	"github.com/prometheus/prometheus/tsdb/record"
)

// Records is one batch appended by one caller with WAL.Log.
//
// Records is not safe for concurrent use. Reuse it: Reset empties the
// slices but keeps their capacity and the encode buffers, so that logging a
// batch of the same shape again allocates nothing. Log reads the slices and
// does not retain them after it returns.
//
// The zero value is an empty batch, ready to use.
type Records struct {
	Series []record.RefSeries // refs from WAL.NewRef; logged first
	// Samples, Histograms and FloatHistograms may carry a start
	// (created) timestamp in ST, zero for none. A kind with one is logged
	// as Prometheus' V2 record (SamplesV2, ...), which keeps ST and which
	// older Prometheus versions cannot read; without, as the V1 record
	// every version reads.
	Samples         []record.RefSample
	Histograms      []record.RefHistogramSample
	FloatHistograms []record.RefFloatHistogramSample
	Exemplars       []record.RefExemplar
	Metadata        []record.RefMetadata

	// Encode scratch, owned by the batch and overwritten by each Log.
	bufs [numKinds][]byte // one buffer per encoded WAL record kind
	recs [numKinds][]byte // views of bufs handed to wlog, in log order
	kind [numKinds]kind   // kind of each entry of recs
	n    int              // entries of recs in use
}

// Reset empties the batch, keeping the capacity of every slice. Entries
// holding pointers (labels, histograms) are cleared so that a reused batch
// does not keep them alive.
func (r *Records) Reset() {
	clear(r.Series)
	clear(r.Histograms)
	clear(r.FloatHistograms)
	clear(r.Exemplars)
	clear(r.Metadata)
	r.Series = r.Series[:0]
	r.Samples = r.Samples[:0]
	r.Histograms = r.Histograms[:0]
	r.FloatHistograms = r.FloatHistograms[:0]
	r.Exemplars = r.Exemplars[:0]
	r.Metadata = r.Metadata[:0]
}

// kind is one encoded WAL record kind, in the order Log writes them: series
// first, so every ref a later record of the batch uses is declared, then
// metadata, which also refers to series.
type kind int

const (
	kindSeries kind = iota
	kindMetadata
	kindSamples
	kindHistograms
	kindCustomHistograms // custom-bucket (NHCB) histograms need their own record
	kindFloatHistograms
	kindCustomFloatHistograms
	kindExemplars
	numKinds
)

// name is the metric label of the kind. The custom-bucket variants count
// with their plain kinds.
func (k kind) name() string {
	switch k {
	case kindSeries:
		return "series"
	case kindMetadata:
		return "metadata"
	case kindSamples:
		return "samples"
	case kindHistograms, kindCustomHistograms:
		return "histograms"
	case kindFloatHistograms, kindCustomFloatHistograms:
		return "float_histograms"
	default:
		return "exemplars"
	}
}

// encode encodes every non-empty kind into r's scratch buffers and returns
// the records to log, valid until the next encode. In steady state (buffers
// grown to the batch size) it allocates nothing; the one exception is a
// batch mixing custom-bucket histograms with exponential ones, for which
// record.Encoder allocates the list of custom-bucket samples.
func (r *Records) encode() [][]byte {
	var enc record.Encoder // V1 records unless ST needs V2, see Records.
	r.n = 0
	if len(r.Series) > 0 {
		r.add(kindSeries, enc.Series(r.Series, r.bufs[kindSeries][:0]))
	}
	if len(r.Metadata) > 0 {
		r.add(kindMetadata, enc.Metadata(r.Metadata, r.bufs[kindMetadata][:0]))
	}
	if len(r.Samples) > 0 {
		enc.EnableSTStorage = hasST(r.Samples, func(s *record.RefSample) int64 { return s.ST })
		r.add(kindSamples, enc.Samples(r.Samples, r.bufs[kindSamples][:0]))
	}
	if len(r.Histograms) > 0 {
		enc.EnableSTStorage = hasST(r.Histograms, func(s *record.RefHistogramSample) int64 { return s.ST })
		// HistogramSamples returns an empty record when every histogram
		// uses custom buckets, and hands those back for their own record.
		b, custom := enc.HistogramSamples(r.Histograms, r.bufs[kindHistograms][:0])
		r.add(kindHistograms, b)
		if len(custom) > 0 {
			r.add(kindCustomHistograms, enc.CustomBucketsHistogramSamples(custom, r.bufs[kindCustomHistograms][:0]))
		}
	}
	if len(r.FloatHistograms) > 0 {
		enc.EnableSTStorage = hasST(r.FloatHistograms, func(s *record.RefFloatHistogramSample) int64 { return s.ST })
		b, custom := enc.FloatHistogramSamples(r.FloatHistograms, r.bufs[kindFloatHistograms][:0])
		r.add(kindFloatHistograms, b)
		if len(custom) > 0 {
			r.add(kindCustomFloatHistograms, enc.CustomBucketsFloatHistogramSamples(custom, r.bufs[kindCustomFloatHistograms][:0]))
		}
	}
	if len(r.Exemplars) > 0 {
		r.add(kindExemplars, enc.Exemplars(r.Exemplars, r.bufs[kindExemplars][:0]))
	}
	return r.recs[:r.n]
}

// seriesBytes is the size of the series and metadata records of the last
// encode: what a checkpoint will hold of them.
func (r *Records) seriesBytes() int {
	n := 0
	for i, rec := range r.recs[:r.n] {
		if k := r.kind[i]; k == kindSeries || k == kindMetadata {
			n += len(rec)
		}
	}
	return n
}

// add keeps b as r's buffer for k and, if b holds a record, queues it.
func (r *Records) add(k kind, b []byte) {
	r.bufs[k] = b
	if len(b) == 0 {
		return
	}
	r.recs[r.n] = b
	r.kind[r.n] = k
	r.n++
}

// entries returns how many series, samples, ... the batch holds of kind k.
// Custom-bucket kinds return 0: their entries count with the plain kind.
func (r *Records) entries(k kind) int {
	switch k {
	case kindSeries:
		return len(r.Series)
	case kindMetadata:
		return len(r.Metadata)
	case kindSamples:
		return len(r.Samples)
	case kindHistograms:
		return len(r.Histograms)
	case kindFloatHistograms:
		return len(r.FloatHistograms)
	case kindExemplars:
		return len(r.Exemplars)
	default:
		return 0
	}
}

// hasST reports whether any entry of s has a start timestamp.
func hasST[T any](s []T, st func(*T) int64) bool {
	for i := range s {
		if st(&s[i]) != 0 {
			return true
		}
	}
	return false
}
