package exposition

import (
	"errors"
	"io"
	"math"
	"unsafe"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"google.golang.org/protobuf/encoding/protowire"
)

// protobufParser parses a delimited protobuf exposition (a sequence of
// length-prefixed io.prometheus.client.MetricFamily messages) and presents
// it as textparse.Parser, entry for entry as textparse's ProtobufParser
// does. Each family is decoded whole first; a family the decoder gives up
// on is parsed by textparse's ProtobufParser (fb) instead.
//
// The key of a series, returned by Series, is
//
//	raw label fields of the Metric | 0xff | family name | suffix [| bound]
//
// where suffix is one byte (none, _count, _sum, _bucket, quantile) and
// bound the 8 bytes of the bucket's upper bound or the quantile. 0xff
// never occurs in a valid name and the label fields each start with their
// tag, so the layout is unambiguous: equal keys mean equal series.
type protobufParser struct {
	in  []byte
	pos int // start of the next family in in
	st  *labels.SymbolTable

	ignoreNative, keepClassic bool

	fb textparse.Parser // parser of the current family if the fast path gave it up

	dec   decoder
	state textparse.Entry // the entry returned last; EntryInvalid between families
	mi    int             // current metric in dec.metrics
	sub   int             // position in a summary or histogram: -2 count, -1 sum, else quantile or bucket

	key    []byte
	keyLen int // length of the key up to the suffix

	exemplarReturned bool
	builder          labels.ScratchBuilder
	ex               exemplarMsg
}

// Key suffixes.
const (
	suffixNone byte = iota
	suffixCount
	suffixSum
	suffixBucket
	suffixQuantile
)

func newProtobufParser(b []byte, st *labels.SymbolTable, opts textparse.ParserOptions) *protobufParser {
	if st == nil {
		st = labels.NewSymbolTable()
	}
	p := &protobufParser{
		in:           b,
		st:           st,
		ignoreNative: opts.IgnoreNativeHistograms,
		keepClassic:  opts.KeepClassicOnClassicAndNativeHistograms,
		state:        textparse.EntryInvalid,
		builder:      labels.NewScratchBuilderWithSymbolTable(st, 16),
		ex:           exemplarMsg{collect: true},
	}
	// The strings added point into the exposition: a labels
	// implementation that keeps them must copy them.
	p.builder.SetUnsafeAdd(true)
	return p
}

// reset readies p for the exposition b, keeping its buffers.
func (p *protobufParser) reset(b []byte, st *labels.SymbolTable, opts textparse.ParserOptions) {
	if st == nil {
		st = labels.NewSymbolTable()
	}
	if st != p.st {
		p.st = st
		p.builder = labels.NewScratchBuilderWithSymbolTable(st, 16)
		p.builder.SetUnsafeAdd(true)
	}
	p.in, p.pos, p.fb, p.state = b, 0, nil, textparse.EntryInvalid
	p.ignoreNative = opts.IgnoreNativeHistograms
	p.keepClassic = opts.KeepClassicOnClassicAndNativeHistograms
	p.exemplarReturned = false
	// Drop the references into the last exposition.
	clear(p.dec.raws[:cap(p.dec.raws)])
	clear(p.dec.metrics[:cap(p.dec.metrics)])
	clear(p.dec.points[:cap(p.dec.points)])
	p.dec.raws, p.dec.metrics, p.dec.points = p.dec.raws[:0], p.dec.metrics[:0], p.dec.points[:0]
	p.dec.fam = family{}
}

// Next advances to the next entry. It returns (EntryInvalid, io.EOF) at the
// end of the exposition.
func (p *protobufParser) Next() (textparse.Entry, error) {
	p.exemplarReturned = false
	for {
		if p.fb != nil {
			e, err := p.fb.Next()
			if errors.Is(err, io.EOF) {
				p.fb = nil
				continue
			}
			return e, err
		}
		switch p.state {
		case textparse.EntryInvalid:
			if p.pos >= len(p.in) {
				return textparse.EntryInvalid, io.EOF
			}
			if p.nextFamily() {
				p.state = textparse.EntryHelp
				return p.state, nil
			}
		case textparse.EntryHelp:
			p.state = textparse.EntryType
			if len(p.dec.fam.unit) > 0 {
				p.state = textparse.EntryUnit
			}
			return p.state, nil
		case textparse.EntryUnit:
			p.state = textparse.EntryType
			return p.state, nil
		case textparse.EntryType:
			p.mi = 0
			p.startMetric()
			p.state = textparse.EntrySeries
			return p.state, nil
		default: // EntrySeries
			if p.nextSub() {
				return p.state, nil
			}
			if p.mi++; p.mi < len(p.dec.metrics) {
				p.startMetric()
				return p.state, nil
			}
			p.state = textparse.EntryInvalid
		}
	}
}

// nextFamily decodes the next family. It returns true if the fast path
// takes it, and false if it is empty (skipped, as Prometheus does) or was
// handed to Prometheus' parser in p.fb.
func (p *protobufParser) nextFamily() bool {
	rest := p.in[p.pos:]
	size, n := protowire.ConsumeVarint(rest)
	if n <= 0 || n > 5 || size > uint64(len(rest)-n) {
		// Let Prometheus' parser report the broken framing.
		p.pos = len(p.in)
		p.fb = p.fallback(rest)
		return false
	}
	raw := rest[:n+int(size)]
	p.pos += len(raw)
	if !p.dec.decodeFamily(raw[n:]) {
		p.fb = p.fallback(raw)
		return false
	}
	return len(p.dec.metrics) > 0
}

func (p *protobufParser) fallback(b []byte) textparse.Parser {
	return textparse.NewProtobufParser(b, p.ignoreNative, p.keepClassic, false, false, p.st)
}

// startMetric starts the entries of metric p.mi: its key prefix and its
// first series.
func (p *protobufParser) startMetric() {
	m := &p.dec.metrics[p.mi]
	p.key = append(p.key[:0], m.labels...)
	p.key = append(p.key, 0xff)
	p.key = append(p.key, p.dec.fam.name...)
	p.keyLen = len(p.key)
	p.sub = 0
	switch p.dec.fam.typ {
	case typeSummary, typeHistogram, typeGaugeHistogram:
		p.sub = -2
	}
	p.setKeySuffix()
}

// nextSub moves to the next series of the current summary or histogram
// metric; false when there is none. A histogram ends after its +Inf
// bucket, which is added if the exposition lacks it; a summary after its
// last quantile.
func (p *protobufParser) nextSub() bool {
	m := &p.dec.metrics[p.mi]
	switch p.dec.fam.typ {
	case typeSummary:
		if p.sub+1 >= m.n {
			return false
		}
	case typeHistogram, typeGaugeHistogram:
		if p.sub >= m.n || p.sub >= 0 && math.IsInf(p.dec.points[m.first+p.sub].bound, +1) {
			return false
		}
	default:
		return false
	}
	p.sub++
	p.setKeySuffix()
	return true
}

func (p *protobufParser) setKeySuffix() {
	p.key = p.key[:p.keyLen]
	suffix, hasBound, bound := p.suffix()
	p.key = append(p.key, suffix)
	if hasBound {
		p.key = protowire.AppendFixed64(p.key, math.Float64bits(bound))
	}
}

// suffix returns the key suffix of the current series and its bucket bound
// or quantile.
func (p *protobufParser) suffix() (suffix byte, hasBound bool, bound float64) {
	switch {
	case p.sub == -2:
		return suffixCount, false, 0
	case p.sub == -1:
		return suffixSum, false, 0
	}
	switch p.dec.fam.typ {
	case typeSummary:
		return suffixQuantile, true, p.point().bound
	case typeHistogram, typeGaugeHistogram:
		if m := &p.dec.metrics[p.mi]; p.sub >= m.n {
			return suffixBucket, true, math.Inf(+1)
		}
		return suffixBucket, true, p.point().bound
	}
	return suffixNone, false, 0
}

// point is the current quantile or bucket.
func (p *protobufParser) point() *point {
	return &p.dec.points[p.dec.metrics[p.mi].first+p.sub]
}

// Series returns the key, timestamp and value of the current series.
func (p *protobufParser) Series() ([]byte, *int64, float64) {
	if p.fb != nil {
		return p.fb.Series()
	}
	m := &p.dec.metrics[p.mi]
	var v float64
	switch p.dec.fam.typ {
	case typeCounter, typeGauge, typeUntyped:
		v = m.value
	case typeSummary:
		switch p.sub {
		case -2:
			v = float64(m.count)
		case -1:
			v = m.sum
		default:
			v = p.point().countF
		}
	default:
		switch {
		case p.sub == -1:
			v = m.sum
		case p.sub == -2 || p.sub >= m.n:
			v = countOf(m.countF, m.count)
		default:
			pt := p.point()
			v = countOf(pt.countF, pt.count)
		}
	}
	if m.ts != 0 {
		return p.key, &m.ts, v
	}
	return p.key, nil, v
}

// countOf is a histogram count: the float one if set, else the integer one.
func countOf(f float64, i uint64) float64 {
	if f != 0 {
		return f
	}
	return float64(i)
}

// Histogram is only called on native histograms, which the fast path
// leaves to Prometheus' parser.
func (p *protobufParser) Histogram() ([]byte, *int64, *histogram.Histogram, *histogram.FloatHistogram) {
	if p.fb != nil {
		return p.fb.Histogram()
	}
	return p.key, nil, nil, nil
}

// Help returns the family name and help text.
func (p *protobufParser) Help() ([]byte, []byte) {
	if p.fb != nil {
		return p.fb.Help()
	}
	return p.dec.fam.name, p.dec.fam.help
}

// Type returns the family name and type.
func (p *protobufParser) Type() ([]byte, model.MetricType) {
	if p.fb != nil {
		return p.fb.Type()
	}
	return p.dec.fam.name, metricTypes[p.dec.fam.typ]
}

var metricTypes = [...]model.MetricType{
	typeCounter:        model.MetricTypeCounter,
	typeGauge:          model.MetricTypeGauge,
	typeSummary:        model.MetricTypeSummary,
	typeUntyped:        model.MetricTypeUnknown,
	typeHistogram:      model.MetricTypeHistogram,
	typeGaugeHistogram: model.MetricTypeGaugeHistogram,
}

// Unit returns the family name and unit.
func (p *protobufParser) Unit() ([]byte, []byte) {
	if p.fb != nil {
		return p.fb.Unit()
	}
	return p.dec.fam.name, p.dec.fam.unit
}

// Comment returns nil: the protobuf format has no comments.
func (*protobufParser) Comment() []byte { return nil }

// Labels writes the labels of the current series into l: the metric name
// with its suffix, the Metric's labels and the le or quantile label,
// sorted by name.
func (p *protobufParser) Labels(l *labels.Labels) {
	if p.fb != nil {
		p.fb.Labels(l)
		return
	}
	m := &p.dec.metrics[p.mi]
	b := &p.builder
	b.Reset()
	name := p.dec.fam.name
	switch p.sub {
	case -2:
		b.Add(labels.MetricName, string(name)+"_count")
	case -1:
		b.Add(labels.MetricName, string(name)+"_sum")
	default:
		if t := p.dec.fam.typ; t == typeHistogram || t == typeGaugeHistogram {
			b.Add(labels.MetricName, string(name)+"_bucket")
		} else {
			b.Add(labels.MetricName, string(name))
		}
	}
	addPairs(b, m.labels)
	if suffix, _, bound := p.suffix(); suffix == suffixBucket {
		b.Add(model.BucketLabel, labels.FormatOpenMetricsFloat(bound))
	} else if suffix == suffixQuantile {
		b.Add(model.QuantileLabel, labels.FormatOpenMetricsFloat(bound))
	}
	b.Sort()
	*l = b.Labels()
}

// addPairs adds the LabelPairs of the label fields f (validated by the
// decoder) to b. The strings point into the exposition: b.Labels copies.
func addPairs(b *labels.ScratchBuilder, f []byte) {
	for len(f) > 0 {
		_, _, n := protowire.ConsumeTag(f)
		pair, m := protowire.ConsumeBytes(f[n:])
		f = f[n+m:]
		name, value, _ := decodePair(pair)
		b.Add(unsafeString(name), unsafeString(value))
	}
}

func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// Exemplar writes the exemplar of the current series into ex, once: a
// counter's exemplar, or a classic bucket's.
func (p *protobufParser) Exemplar(ex *exemplar.Exemplar) bool {
	if p.fb != nil {
		return p.fb.Exemplar(ex)
	}
	if p.exemplarReturned {
		return false
	}
	var raw []byte
	switch p.dec.fam.typ {
	case typeCounter:
		raw = p.dec.metrics[p.mi].exemplar
	case typeHistogram, typeGaugeHistogram:
		if p.sub >= 0 && p.sub < p.dec.metrics[p.mi].n {
			raw = p.point().exemplar
		}
	}
	if raw == nil {
		return false
	}
	x := &p.ex
	x.labels, x.value, x.ts, x.hasTS = x.labels[:0], 0, 0, false
	decodeExemplar(raw, x) // validated by the decoder
	ex.Value = x.value
	if x.hasTS {
		ex.HasTs, ex.Ts = true, x.ts
	}
	b := &p.builder
	b.Reset()
	for _, pair := range x.labels {
		name, value, _ := decodePair(pair)
		b.Add(unsafeString(name), unsafeString(value))
	}
	b.Sort()
	ex.Labels = b.Labels()
	p.exemplarReturned = true
	return true
}

// StartTimestamp returns the start timestamp of the current counter,
// summary or histogram in ms, or 0.
func (p *protobufParser) StartTimestamp() int64 {
	if p.fb != nil {
		return p.fb.StartTimestamp()
	}
	return p.dec.metrics[p.mi].start
}
