package loadgen

import (
	"fmt"
	"math"
	"strconv"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
)

// ProtobufContentType is the delimited protobuf exposition format, the only
// one that carries native histograms.
const ProtobufContentType = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"

// nativeName is the family of the native histograms.
const nativeName = "http_server_request_duration_native_seconds"

// nativeBuckets is the number of positive buckets each native histogram
// fills, at schema 3 (8 buckets per power of two) from about 1 ms to 8 s.
const nativeBuckets = 104

// native is one native histogram (no classic buckets), so an agent
// that scrapes it stores one histogram sample per scrape.
type native struct {
	labels []string
	counts [nativeBuckets]uint64 // absolute, per bucket
	zero   uint64
	sum    float64
	metric *dto.Metric
}

func newNative(i int) native {
	methods := [...]string{"GET", "POST", "PUT", "DELETE"}
	return native{labels: []string{"handler", fmt.Sprintf("/api/v2/item%d/{id}", i/4), "method", methods[i%4],
		"pod", fmt.Sprintf("web-0-%05x", i/4)}}
}

// advance records a handful of observations chosen by r.
func (n *native) advance(r uint64) {
	for k := range 8 {
		b := int((r >> (k * 7)) % nativeBuckets)
		n.counts[b]++
		n.sum += math.Pow(2, float64(b-80)/8)
	}
	n.zero += r >> 60 & 1
}

// toProto refreshes n.metric from the current counts.
func (n *native) toProto() *dto.Metric {
	if n.metric == nil {
		n.metric = &dto.Metric{Label: labelPairs(n.labels), Histogram: &dto.Histogram{
			Schema:        proto.Int32(3),
			ZeroThreshold: proto.Float64(1e-128),
			PositiveSpan:  []*dto.BucketSpan{{Offset: proto.Int32(-80), Length: proto.Uint32(nativeBuckets)}},
			PositiveDelta: make([]int64, nativeBuckets),
		}}
	}
	h := n.metric.Histogram
	count := n.zero
	var prev int64
	for i, c := range n.counts {
		h.PositiveDelta[i] = int64(c) - prev
		prev = int64(c)
		count += c
	}
	h.SampleCount = proto.Uint64(count)
	h.SampleSum = proto.Float64(n.sum)
	h.ZeroCount = proto.Uint64(n.zero)
	return n.metric
}

func labelPairs(pairs []string) []*dto.LabelPair {
	out := make([]*dto.LabelPair, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, &dto.LabelPair{Name: proto.String(pairs[i]), Value: proto.String(pairs[i+1])})
	}
	return out
}

// toProto refreshes in.metric from the instance's values.
func (in *instance) toProto(k kind) *dto.Metric {
	if in.metric == nil {
		in.metric = &dto.Metric{Label: labelPairs(in.labels)}
		switch k {
		case kindCounter:
			in.metric.Counter = &dto.Counter{}
		case kindGauge:
			in.metric.Gauge = &dto.Gauge{}
		case kindHistogram:
			h := &dto.Histogram{}
			for _, le := range bucketBounds {
				ub, _ := strconv.ParseFloat(le, 64)
				h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: proto.Float64(ub)})
			}
			in.metric.Histogram = h
		}
	}
	switch k {
	case kindCounter:
		in.metric.Counter.Value = proto.Float64(in.value)
	case kindGauge:
		in.metric.Gauge.Value = proto.Float64(in.value)
	case kindHistogram:
		h := in.metric.Histogram
		for i, b := range h.Bucket {
			b.CumulativeCount = proto.Uint64(uint64(in.buckets[i]))
		}
		h.SampleCount = proto.Uint64(uint64(in.buckets[len(in.buckets)-1]))
		h.SampleSum = proto.Float64(in.sum)
	}
	return in.metric
}

// scrapeProto is scrape in the protobuf format, native histograms
// included. It returns the body (valid until the next scrape) and the
// number of samples an agent stores from it.
func (t *target) scrapeProto(churn float64) ([]byte, int, error) {
	t.churn(churn)
	t.advance()
	w := appendWriter{b: t.buf[:0]}
	for fi := range t.families {
		f := &t.families[fi]
		if f.proto == nil {
			typ := map[kind]dto.MetricType{kindCounter: dto.MetricType_COUNTER, kindGauge: dto.MetricType_GAUGE,
				kindHistogram: dto.MetricType_HISTOGRAM}[f.spec.kind]
			f.proto = &dto.MetricFamily{Name: proto.String(f.spec.name), Help: proto.String(f.spec.help), Type: &typ}
		}
		f.proto.Metric = f.proto.Metric[:0]
		for ii := range f.instances {
			f.proto.Metric = append(f.proto.Metric, f.instances[ii].toProto(f.spec.kind))
		}
		if _, err := protodelim.MarshalTo(&w, f.proto); err != nil {
			return nil, 0, fmt.Errorf("marshal family %s: %w", f.spec.name, err)
		}
	}
	if len(t.natives) > 0 {
		typ := dto.MetricType_HISTOGRAM
		mf := &dto.MetricFamily{Name: proto.String(nativeName), Help: proto.String("Duration of HTTP server requests (native histogram)."), Type: &typ}
		for i := range t.natives {
			mf.Metric = append(mf.Metric, t.natives[i].toProto())
		}
		if _, err := protodelim.MarshalTo(&w, mf); err != nil {
			return nil, 0, fmt.Errorf("marshal family %s: %w", nativeName, err)
		}
	}
	t.buf = w.b
	return w.b, t.series + len(t.natives), nil
}

// appendWriter is an io.Writer appending to b.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}
