package gateway

import (
	"math"

	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/tsdb/record"
)

// The decoder's first pass: reading a request's protobuf into its
// buffers, as prompb's and writev2's Unmarshal read it (wire.go), with no
// check beyond the protobuf's own.

// parseV1 reads a WriteRequest into d.series, d.pairs, b.samples, d.h1
// and d.e1, as prompb.WriteRequest.Unmarshal reads it.
func (d *decoder) parseV1(b []byte) error {
	for i := 0; i < len(b); {
		field, typ, next, err := tag(b, i, "WriteRequest")
		if err != nil {
			return err
		}
		switch field {
		case 1, 3:
			if typ != wireBytes {
				return wrongType(typ, [...]string{1: "Timeseries", 3: "Metadata"}[field])
			}
			s, e, err := delimited(b, next)
			if err != nil {
				return err
			}
			if field == 1 {
				if err = d.addSeries(); err == nil {
					err = d.parseSeriesV1(b, s, e)
				}
			} else {
				d.md = prompb.MetricMetadata{}
				err = d.md.Unmarshal(b[s:e])
			}
			if err != nil {
				return err
			}
			i = e
		default:
			if i, err = skip(b, i); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseSeriesV1 reads the prompb.TimeSeries in body[from:to].
func (d *decoder) parseSeriesV1(body []byte, from, to int) error {
	b := body[from:to]
	ws := wireSeries{
		labels:     span{len(d.pairs), len(d.pairs)},
		histograms: span{len(d.h1), len(d.h1)},
		exemplars:  span{len(d.e1), len(d.e1)},
	}
	// wireFrom, wireTo: the label fields read so far, while they are
	// adjacent; wireFrom -1 once they are not.
	wireFrom, wireTo := 0, 0
	for i := 0; i < len(b); {
		field, typ, next, err := tag(b, i, "TimeSeries")
		if err != nil {
			return err
		}
		if field < 1 || field > 4 {
			if i, err = skip(b, i); err != nil {
				return err
			}
			continue
		}
		if typ != wireBytes {
			return wrongType(typ, [...]string{1: "Labels", 2: "Samples", 3: "Exemplars", 4: "Histograms"}[field])
		}
		s, e, err := delimited(b, next)
		if err != nil {
			return err
		}
		if err := d.charge(partCost(field, e-s, false)); err != nil {
			return err
		}
		switch field {
		case 1:
			err = d.parseLabel(b[s:e])
			ws.labels.to = len(d.pairs)
			switch {
			case wireFrom == wireTo:
				wireFrom, wireTo = i, e
			case wireFrom >= 0 && wireTo == i:
				wireTo = e
			default:
				wireFrom = -1
			}
		case 2:
			err = d.parseSample(b[s:e], "Sample", false)
			ws.samples++
		case 3:
			d.e1 = append(d.e1, prompb.Exemplar{})
			err = d.e1[len(d.e1)-1].Unmarshal(b[s:e])
			ws.exemplars.to = len(d.e1)
		case 4:
			d.h1 = append(d.h1, prompb.Histogram{})
			err = d.h1[len(d.h1)-1].Unmarshal(b[s:e])
			ws.histograms.to = len(d.h1)
		}
		if err != nil {
			return err
		}
		i = e
	}
	if wireFrom >= 0 && from+wireTo <= math.MaxUint32 {
		ws.wire = wireSpan{uint32(from + wireFrom), uint32(from + wireTo)}
	}
	d.series = append(d.series, ws)
	return nil
}

// parseLabel reads a prompb.Label into d.pairs.
func (d *decoder) parseLabel(b []byte) error {
	// As senders write it: name, value, short, nothing else.
	if len(b) >= 4 && b[0] == 0x0a && b[1] < 0x80 {
		n := 2 + int(b[1])
		if n+2 <= len(b) && b[n] == 0x12 && b[n+1] < 0x80 && n+2+int(b[n+1]) == len(b) {
			d.pairs = append(d.pairs, wirePair{b[2:n], b[n+2:]})
			return nil
		}
	}
	var p wirePair
	for i := 0; i < len(b); {
		field, typ, next, err := tag(b, i, "Label")
		if err != nil {
			return err
		}
		if field != 1 && field != 2 {
			if i, err = skip(b, i); err != nil {
				return err
			}
			continue
		}
		if typ != wireBytes {
			return wrongType(typ, [...]string{1: "Name", 2: "Value"}[field])
		}
		s, e, err := delimited(b, next)
		if err != nil {
			return err
		}
		if field == 1 {
			p.name = b[s:e]
		} else {
			p.value = b[s:e]
		}
		i = e
	}
	d.pairs = append(d.pairs, p)
	return nil
}

// parseSample reads a sample (prompb.Sample, or writev2.Sample when v2)
// into b.samples.
func (d *decoder) parseSample(b []byte, msg string, v2 bool) error {
	// As senders write it: value, then timestamp, nothing else.
	if len(b) >= 11 && b[0] == 0x09 && b[9] == 0x10 {
		if t, i, err := uvarint(b, 10); err == nil && i == len(b) {
			v, _, _ := fixed64(b, 1)
			d.b.samples = append(d.b.samples, record.RefSample{T: int64(t), V: math.Float64frombits(v)})
			return nil
		}
	}
	var s record.RefSample
	for i := 0; i < len(b); {
		field, typ, next, err := tag(b, i, msg)
		if err != nil {
			return err
		}
		switch {
		case field == 1:
			if typ != wireFixed64 {
				return wrongType(typ, "Value")
			}
			var v uint64
			if v, i, err = fixed64(b, next); err != nil {
				return err
			}
			s.V = math.Float64frombits(v)
		case field == 2, field == 3 && v2:
			if typ != wireVarint {
				return wrongType(typ, [...]string{2: "Timestamp", 3: "StartTimestamp"}[field])
			}
			var v uint64
			if v, i, err = uvarint(b, next); err != nil {
				return err
			}
			if field == 2 {
				s.T = int64(v)
			} else {
				s.ST = int64(v)
			}
		default:
			if i, err = skip(b, i); err != nil {
				return err
			}
		}
	}
	d.b.samples = append(d.b.samples, s)
	return nil
}

// parseV2 reads a writev2.Request into d.syms, d.series, d.refs,
// b.samples, d.h2 and d.e2, as writev2.Request.Unmarshal reads it.
func (d *decoder) parseV2(b []byte) error {
	for i := 0; i < len(b); {
		field, typ, next, err := tag(b, i, "Request")
		if err != nil {
			return err
		}
		switch field {
		case 4, 5:
			if typ != wireBytes {
				return wrongType(typ, [...]string{4: "Symbols", 5: "Timeseries"}[field])
			}
			s, e, err := delimited(b, next)
			if err != nil {
				return err
			}
			if field == 4 {
				if err := d.charge(costSymbol); err != nil {
					return err
				}
				d.syms = append(d.syms, b[s:e])
			} else if err := d.addSeries(); err != nil {
				return err
			} else if err := d.parseSeriesV2(b[s:e]); err != nil {
				return err
			}
			i = e
		default:
			if i, err = skip(b, i); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseSeriesV2 reads a writev2.TimeSeries.
func (d *decoder) parseSeriesV2(b []byte) error {
	ws := wireSeries{
		labels:     span{len(d.refs), len(d.refs)},
		histograms: span{len(d.h2), len(d.h2)},
		exemplars:  span{len(d.e2), len(d.e2)},
	}
	for i := 0; i < len(b); {
		field, typ, next, err := tag(b, i, "TimeSeries")
		if err != nil {
			return err
		}
		if field == 1 {
			if i, err = d.parseRefs(b, typ, next); err != nil {
				return err
			}
			continue
		}
		if field < 1 || field > 5 {
			if i, err = skip(b, i); err != nil {
				return err
			}
			continue
		}
		if typ != wireBytes {
			return wrongType(typ, [...]string{2: "Samples", 3: "Histograms", 4: "Exemplars", 5: "Metadata"}[field])
		}
		s, e, err := delimited(b, next)
		if err != nil {
			return err
		}
		if err := d.charge(partCost(field, e-s, true)); err != nil {
			return err
		}
		switch field {
		case 2:
			err = d.parseSample(b[s:e], "Sample", true)
			ws.samples++
		case 3:
			d.h2 = append(d.h2, writev2.Histogram{})
			err = d.h2[len(d.h2)-1].Unmarshal(b[s:e])
			ws.histograms.to = len(d.h2)
		case 4:
			d.e2 = append(d.e2, writev2.Exemplar{})
			err = d.e2[len(d.e2)-1].Unmarshal(b[s:e])
			ws.exemplars.to = len(d.e2)
		case 5:
			err = ws.meta.Unmarshal(b[s:e]) // merges, as a repeated field 5 does
		}
		if err != nil {
			return err
		}
		i = e
	}
	ws.labels.to = len(d.refs)
	d.series = append(d.series, ws)
	return nil
}

// parseRefs reads the labels_refs field (packed or not) whose content
// starts at b[i], of wire type typ, into d.refs. As gogo's code does, a
// packed varint may read past the field's end, and the series goes on
// after it.
func (d *decoder) parseRefs(b []byte, typ, i int) (int, error) {
	switch typ {
	case wireVarint:
		v, i, err := uvarint(b, i)
		if err != nil {
			return i, err
		}
		if err := d.charge(costRef); err != nil {
			return i, err
		}
		d.refs = append(d.refs, uint32(v))
		return i, nil
	case wireBytes:
		s, e, err := delimited(b, i)
		if err != nil {
			return i, err
		}
		// At most one ref a byte: charged before they are read.
		if err := d.charge(costRef * (e - s)); err != nil {
			return i, err
		}
		for i = s; i < e; {
			var v uint64
			if v, i, err = uvarint(b, i); err != nil {
				return i, err
			}
			d.refs = append(d.refs, uint32(v))
		}
		return i, nil
	default:
		return i, wrongType(typ, "LabelsRefs")
	}
}

// partCost is what a field of a series, of n bytes, costs to decode: a
// label (1.0), sample, histogram or exemplar.
func partCost(field int32, n int, v2 bool) int {
	if v2 {
		switch field {
		case 2:
			return costSample
		case 3:
			return costHistogram + costHistogramByte*n
		case 4:
			return costExemplar + costExemplarByte*n
		}
		return 0 // metadata, in the series' entry
	}
	switch field {
	case 1:
		return costPair
	case 2:
		return costSample
	case 3:
		return costExemplar + costExemplarByte*n
	case 4:
		return costHistogram + costHistogramByte*n
	}
	return 0
}
