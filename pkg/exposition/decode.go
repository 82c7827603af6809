package exposition

import (
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// The types of io.prometheus.client.MetricFamily.
const (
	typeCounter = iota
	typeGauge
	typeSummary
	typeUntyped
	typeHistogram
	typeGaugeHistogram
)

// family is one decoded MetricFamily whose every field the fast path
// understands. Its byte slices point into the exposition.
type family struct {
	name, help, unit []byte
	typ              uint64
}

// metric is one decoded Metric of a fast family.
type metric struct {
	// labels is the raw label fields of the Metric (tag, length and
	// LabelPair each), which are contiguous in the message.
	labels []byte
	ts     int64   // timestamp_ms; 0: none
	value  float64 // counter, gauge or untyped value
	count  uint64  // summary or histogram sample_count
	countF float64 // histogram sample_count_float
	sum    float64
	// points[first:first+n] are the quantiles or buckets.
	first, n int
	exemplar []byte // counter exemplar message; nil: none
	start    int64  // start timestamp in ms, if hasStart
	hasStart bool
}

// point is a summary quantile (bound is the quantile, count is unused and
// countF the value) or a classic histogram bucket.
type point struct {
	bound    float64
	count    uint64
	countF   float64
	exemplar []byte
}

// decoder decodes families for the fast path. It is strict: anything it
// does not fully understand (an unknown or repeated field, a field of the
// wrong wire type, a native histogram, a value message that does not match
// the family type, an invalid name or label) makes it give the family up,
// and the parser hands the family to Prometheus' parser, which decides
// whether it is valid and what it means. So the fast path never has to
// reproduce Prometheus' error handling, only its output for plain input.
type decoder struct {
	fam     family
	raws    [][]byte // Metric messages of the family
	metrics []metric
	points  []point
}

// decodeFamily decodes the MetricFamily message b. ok is false if the
// family is not for the fast path.
func (d *decoder) decodeFamily(b []byte) (ok bool) {
	d.fam = family{}
	d.raws, d.metrics, d.points = d.raws[:0], d.metrics[:0], d.points[:0]
	var seen uint8
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case num == 4 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return false
			}
			d.raws = append(d.raws, v)
			b = b[n:]
			continue
		case num == 3 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 || v > typeGaugeHistogram || !once(&seen, 1<<3) {
				return false
			}
			d.fam.typ = v
			b = b[n:]
			continue
		case (num == 1 || num == 2 || num == 5) && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 || !once(&seen, 1<<num) {
				return false
			}
			switch num {
			case 1:
				d.fam.name = v
			case 2:
				d.fam.help = v
			default:
				d.fam.unit = v
			}
			b = b[n:]
			continue
		}
		return false
	}
	if len(d.raws) == 0 {
		return true
	}
	if len(d.fam.name) == 0 || !utf8.Valid(d.fam.name) || !utf8.Valid(d.fam.help) {
		return false
	}
	for _, raw := range d.raws {
		if !d.decodeMetric(raw) {
			return false
		}
	}
	return true
}

// once sets bit in seen and reports whether it was clear.
func once(seen *uint8, bit uint8) bool {
	if *seen&bit != 0 {
		return false
	}
	*seen |= bit
	return true
}

// decodeMetric decodes one Metric of the current family into d.metrics.
func (d *decoder) decodeMetric(b []byte) bool {
	var (
		m         = metric{first: len(d.points)}
		whole     = b
		labStart  = -1
		labEnd    = -1
		seen      uint8
		haveValue bool
	)
	for len(b) > 0 {
		at := len(whole) - len(b)
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if num == 6 {
			v, n := protowire.ConsumeVarint(b)
			if typ != protowire.VarintType || n < 0 || !once(&seen, 1<<6) {
				return false
			}
			m.ts = int64(v)
			b = b[n:]
			continue
		}
		if typ != protowire.BytesType {
			return false
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch num {
		case 1:
			if labStart >= 0 && at != labEnd {
				return false
			}
			if labStart < 0 {
				labStart = at
			}
			labEnd = len(whole) - len(b)
			continue
		case 2, 3, 4, 5, 7:
			// One value message, the one the family type asks for.
			if haveValue || num != valueField[d.fam.typ] {
				return false
			}
			haveValue = true
		default:
			return false
		}
		var ok bool
		switch num {
		case 2, 5:
			m.value, ok = decodeValue(v)
		case 3:
			ok = decodeCounter(v, &m)
		case 4:
			ok = d.decodeSummary(v, &m)
		case 7:
			ok = d.decodeHistogram(v, &m)
		}
		if !ok {
			return false
		}
	}
	if !haveValue {
		return false
	}
	if labStart >= 0 {
		m.labels = whole[labStart:labEnd]
		if !validLabels(m.labels) {
			return false
		}
	}
	m.n = len(d.points) - m.first
	d.metrics = append(d.metrics, m)
	return true
}

// valueField is the Metric field holding the value of each family type.
var valueField = [...]protowire.Number{
	typeCounter:        3,
	typeGauge:          2,
	typeSummary:        4,
	typeUntyped:        5,
	typeHistogram:      7,
	typeGaugeHistogram: 7,
}

// validLabels says whether the label fields f (each a tag, a length and a
// LabelPair) hold valid pairs. The common case, short ASCII or UTF-8 names
// and values, is checked byte by byte with one UTF-8 pass over the whole:
// the tags and one-byte lengths between the strings are ASCII, which never
// occurs inside a multi-byte character, so if f is valid UTF-8 so is each
// string. Anything else takes the general path.
func validLabels(f []byte) bool {
	if shortPairs(f) && utf8.Valid(f) {
		return true
	}
	for len(f) > 0 {
		_, _, n := protowire.ConsumeTag(f)
		pair, m := protowire.ConsumeBytes(f[n:])
		if !validPair(pair) {
			return false
		}
		f = f[n+m:]
	}
	return true
}

// shortPairs says whether f is a sequence of label fields each of the form
// 0x0a len (0x0a nlen name [0x12 vlen value]) with every length below 128
// and a name of at least one byte.
func shortPairs(f []byte) bool {
	for len(f) > 0 {
		if len(f) < 4 || f[0] != 0x0a || f[1] >= 0x80 || int(f[1]) > len(f)-2 {
			return false
		}
		pair := f[2 : 2+int(f[1])]
		f = f[2+int(f[1]):]
		if pair[0] != 0x0a || pair[1] == 0 || pair[1] >= 0x80 || int(pair[1]) > len(pair)-2 {
			return false
		}
		pair = pair[2+int(pair[1]):]
		if len(pair) == 0 {
			continue
		}
		if len(pair) < 2 || pair[0] != 0x12 || pair[1] >= 0x80 || int(pair[1]) != len(pair)-2 {
			return false
		}
	}
	return true
}

// validPair says whether b is a LabelPair with a valid name (present, not
// empty, UTF-8) and a UTF-8 value, each given at most once.
func validPair(b []byte) bool {
	name, value, ok := decodePair(b)
	return ok && len(name) > 0 && utf8.Valid(name) && utf8.Valid(value)
}

// decodePair decodes a LabelPair; ok is false if it has any other field or
// a field twice. An absent field is empty.
func decodePair(b []byte) (name, value []byte, ok bool) {
	var seen uint8
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType || (num != 1 && num != 2) || !once(&seen, 1<<num) {
			return nil, nil, false
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, nil, false
		}
		b = b[n:]
		if num == 1 {
			name = v
		} else {
			value = v
		}
	}
	return name, value, true
}

// fields walks the fields of message b, calling f with each field's number,
// wire type and value bytes (varints decoded into v, fixed64 into bits).
// It stops with false when f does or when b is malformed.
func fields(b []byte, f func(num protowire.Number, typ protowire.Type, v uint64, bytes []byte) bool) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		var (
			v   uint64
			raw []byte
		)
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			raw, n = protowire.ConsumeBytes(b)
		default:
			return false
		}
		if n < 0 || !f(num, typ, v, raw) {
			return false
		}
		b = b[n:]
	}
	return true
}

// decodeValue decodes a Gauge or Untyped message.
func decodeValue(b []byte) (value float64, ok bool) {
	var seen uint8
	ok = fields(b, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) bool {
		if num != 1 || typ != protowire.Fixed64Type || !once(&seen, 2) {
			return false
		}
		value = math.Float64frombits(v)
		return true
	})
	return value, ok
}

func decodeCounter(b []byte, m *metric) bool {
	var seen uint8
	return fields(b, func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) bool {
		if num > 3 || !once(&seen, 1<<num) {
			return false
		}
		switch {
		case num == 1 && typ == protowire.Fixed64Type:
			m.value = math.Float64frombits(v)
			return true
		case num == 2 && typ == protowire.BytesType:
			m.exemplar = raw
			return validExemplar(raw)
		case num == 3 && typ == protowire.BytesType:
			return decodeStart(raw, m)
		}
		return false
	})
}

func (d *decoder) decodeSummary(b []byte, m *metric) bool {
	var seen uint8
	return fields(b, func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) bool {
		switch {
		case num == 3 && typ == protowire.BytesType:
			q, ok := decodeQuantile(raw)
			d.points = append(d.points, q)
			return ok
		case num > 4 || !once(&seen, 1<<num):
			return false
		case num == 1 && typ == protowire.VarintType:
			m.count = v
			return true
		case num == 2 && typ == protowire.Fixed64Type:
			m.sum = math.Float64frombits(v)
			return true
		case num == 4 && typ == protowire.BytesType:
			return decodeStart(raw, m)
		}
		return false
	})
}

func decodeQuantile(b []byte) (q point, ok bool) {
	var seen uint8
	ok = fields(b, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) bool {
		if num > 2 || typ != protowire.Fixed64Type || !once(&seen, 1<<num) {
			return false
		}
		if num == 1 {
			q.bound = math.Float64frombits(v)
		} else {
			q.countF = math.Float64frombits(v)
		}
		return true
	})
	return q, ok
}

// decodeHistogram decodes a classic histogram; a field of a native
// histogram (schema, zero bucket, spans, deltas, counts, exemplars) gives
// the family up, so Prometheus' parser decides native or classic.
func (d *decoder) decodeHistogram(b []byte, m *metric) bool {
	var seen uint16
	return fields(b, func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) bool {
		if num == 3 && typ == protowire.BytesType {
			bk, ok := decodeBucket(raw)
			d.points = append(d.points, bk)
			return ok
		}
		if num >= 16 || seen&(1<<num) != 0 {
			return false
		}
		seen |= 1 << num
		switch {
		case num == 1 && typ == protowire.VarintType:
			m.count = v
			return true
		case num == 2 && typ == protowire.Fixed64Type:
			m.sum = math.Float64frombits(v)
			return true
		case num == 4 && typ == protowire.Fixed64Type:
			m.countF = math.Float64frombits(v)
			return true
		case num == 15 && typ == protowire.BytesType:
			return decodeStart(raw, m)
		}
		return false
	})
}

func decodeBucket(b []byte) (bk point, ok bool) {
	var seen uint8
	ok = fields(b, func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) bool {
		if num > 4 || !once(&seen, 1<<num) {
			return false
		}
		switch {
		case num == 1 && typ == protowire.VarintType:
			bk.count = v
			return true
		case num == 2 && typ == protowire.Fixed64Type:
			bk.bound = math.Float64frombits(v)
			return true
		case num == 3 && typ == protowire.BytesType:
			bk.exemplar = raw
			return validExemplar(raw)
		case num == 4 && typ == protowire.Fixed64Type:
			bk.countF = math.Float64frombits(v)
			return true
		}
		return false
	})
	return bk, ok
}

// decodeStart decodes a start timestamp (google.protobuf.Timestamp) into m.
func decodeStart(b []byte, m *metric) bool {
	ms, ok := decodeTimestamp(b)
	m.start, m.hasStart = ms, true
	return ok
}

// decodeTimestamp decodes a google.protobuf.Timestamp to milliseconds.
func decodeTimestamp(b []byte) (ms int64, ok bool) {
	var (
		seen  uint8
		secs  int64
		nanos int32
	)
	ok = fields(b, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) bool {
		if num > 2 || typ != protowire.VarintType || !once(&seen, 1<<num) {
			return false
		}
		if num == 1 {
			secs = int64(v)
		} else {
			nanos = int32(v)
		}
		return true
	})
	return secs*1000 + int64(nanos)/1e6, ok
}

// exemplarMsg is a decoded Exemplar message. labels holds its LabelPair
// messages if collect is set.
type exemplarMsg struct {
	collect bool
	labels  [][]byte
	value   float64
	ts      int64
	hasTS   bool
}

// decodeExemplar decodes an Exemplar message into x.
func decodeExemplar(b []byte, x *exemplarMsg) bool {
	var seen uint8
	return fields(b, func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) bool {
		switch {
		case num == 1 && typ == protowire.BytesType:
			_, _, ok := decodePair(raw)
			if x.collect {
				x.labels = append(x.labels, raw)
			}
			return ok
		case num > 3 || !once(&seen, 1<<num):
			return false
		case num == 2 && typ == protowire.Fixed64Type:
			x.value = math.Float64frombits(v)
			return true
		case num == 3 && typ == protowire.BytesType:
			var ok bool
			x.ts, ok = decodeTimestamp(raw)
			x.hasTS = true
			return ok
		}
		return false
	})
}

func validExemplar(b []byte) bool {
	var x exemplarMsg
	return decodeExemplar(b, &x)
}
