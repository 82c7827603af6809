package gateway

import (
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
)

// refDecodeV1 is the decoder of remote write 1.0 as it was before
// decoder: prompb's Unmarshal, then the checks. It is the reference
// FuzzDecodeDifferential holds decoder to. It decodes a remote write 1.0 WriteRequest (uncompressed) into a
// batch, checking every bound. Its metadata (per metric family, not per
// series) is not kept.
func refDecodeV1(raw []byte, l limits) (*batch, error) {
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		return nil, badRequest(reasonMalformed, "decode prometheus.WriteRequest: %v", err)
	}
	if l.maxSeries > 0 && len(req.Timeseries) > l.maxSeries {
		return nil, tooManySeries(len(req.Timeseries), l.maxSeries)
	}
	b := &batch{series: make([]labels.Labels, 0, len(req.Timeseries))}
	var sb seriesBuilder
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		if len(ts.Samples) > 0 && len(ts.Histograms) > 0 {
			return nil, badRequest(reasonInvalidSample, "series %d has both samples and histograms", i)
		}
		sb.reset()
		for _, lp := range ts.Labels {
			sb.add(lp.Name, lp.Value)
		}
		ls, err := checkLabels(&sb, l)
		if err != nil {
			return nil, err
		}
		ref := chunks.HeadSeriesRef(len(b.series))
		b.series = append(b.series, ls)
		for _, s := range ts.Samples {
			b.samples = append(b.samples, record.RefSample{Ref: ref, T: s.Timestamp, V: s.Value})
		}
		for i := range ts.Histograms {
			h := &ts.Histograms[i]
			if err := b.addWireHistogram(ref, ls, 0, h.Timestamp, h); err != nil {
				return nil, err
			}
		}
		for _, e := range ts.Exemplars {
			sb.reset()
			for _, lp := range e.Labels {
				sb.add(lp.Name, lp.Value)
			}
			el, err := checkExemplarLabels(&sb)
			if err != nil {
				return nil, err
			}
			b.exemplars = append(b.exemplars, record.RefExemplar{Ref: ref, T: e.Timestamp, V: e.Value, Labels: el})
		}
	}
	return b, nil
}

// refDecodeV2 is decoder's reference for remote write 2.0, as
// refDecodeV1 is for 1.0. It decodes a remote write 2.0 Request (uncompressed) into a batch,
// checking every bound. Each series' metadata is kept.
func refDecodeV2(raw []byte, l limits) (*batch, error) {
	var req writev2.Request
	if err := req.Unmarshal(raw); err != nil {
		return nil, badRequest(reasonMalformed, "decode io.prometheus.write.v2.Request: %v", err)
	}
	if l.maxSeries > 0 && len(req.Timeseries) > l.maxSeries {
		return nil, tooManySeries(len(req.Timeseries), l.maxSeries)
	}
	syms := req.Symbols
	b := &batch{series: make([]labels.Labels, 0, len(req.Timeseries))}
	var sb seriesBuilder
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		if len(ts.Samples) > 0 && len(ts.Histograms) > 0 {
			return nil, badRequest(reasonInvalidSample, "series %d has both samples and histograms", i)
		}
		if len(ts.LabelsRefs)%2 != 0 {
			return nil, badRequest(reasonMalformed, "series %d has an odd number of label refs", i)
		}
		sb.reset()
		if !addRefs(&sb, ts.LabelsRefs, syms) {
			return nil, badRequest(reasonMalformed, "series %d: label ref outside the %d symbols", i, len(syms))
		}
		ls, err := checkLabels(&sb, l)
		if err != nil {
			return nil, err
		}
		ref := chunks.HeadSeriesRef(len(b.series))
		b.series = append(b.series, ls)
		for _, s := range ts.Samples {
			b.samples = append(b.samples, record.RefSample{Ref: ref, ST: s.StartTimestamp, T: s.Timestamp, V: s.Value})
		}
		for i := range ts.Histograms {
			h := &ts.Histograms[i]
			if err := b.addWireHistogram(ref, ls, h.StartTimestamp, h.Timestamp, h); err != nil {
				return nil, err
			}
		}
		for _, e := range ts.Exemplars {
			if len(e.LabelsRefs)%2 != 0 {
				return nil, badRequest(reasonMalformed, "series %d: exemplar with an odd number of label refs", i)
			}
			sb.reset()
			if !addRefs(&sb, e.LabelsRefs, syms) {
				return nil, badRequest(reasonMalformed, "series %d: exemplar label ref outside the %d symbols", i, len(syms))
			}
			el, err := checkExemplarLabels(&sb)
			if err != nil {
				return nil, err
			}
			b.exemplars = append(b.exemplars, record.RefExemplar{Ref: ref, T: e.Timestamp, V: e.Value, Labels: el})
		}
		if md := ts.Metadata; md.Type != writev2.Metadata_METRIC_TYPE_UNSPECIFIED || md.HelpRef != 0 || md.UnitRef != 0 {
			m, err := ts.ToMetadata(syms)
			if err != nil {
				return nil, badRequest(reasonMalformed, "series %d: %v", i, err)
			}
			if !utf8.ValidString(m.Help) || !utf8.ValidString(m.Unit) {
				return nil, badRequest(reasonInvalidLabels, "series %s: metadata is not valid UTF-8", name(ls))
			}
			b.metadata = append(b.metadata, record.RefMetadata{Ref: ref, Type: record.GetMetricType(m.Type), Unit: m.Unit, Help: m.Help})
		}
	}
	return b, nil
}

// addRefs adds the labels of a remote write 2.0 series or exemplar to s:
// refs are pairs of indexes into syms, name then value. It returns false
// if one is outside syms, having added the pairs before it.
func addRefs(s *seriesBuilder, refs []uint32, syms []string) bool {
	for j := 0; j+1 < len(refs); j += 2 {
		n, v := refs[j], refs[j+1]
		if int(n) >= len(syms) || int(v) >= len(syms) {
			return false
		}
		s.add(syms[n], syms[v])
	}
	return true
}
