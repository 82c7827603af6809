package gateway

import (
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	otlptranslator "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/rwagent/rwagent/pkg/wal"
)

// FuzzDecode feeds the request decoders arbitrary bytes, as a body (snappy)
// and as the decoded message of either version: they must not panic, and
// what they accept must keep their promises (refs index the series, every
// series named, sorted, unique, within AMP's limits, tenant set).
func FuzzDecode(f *testing.F) {
	for _, b := range [][]byte{
		v1(ts([]string{"__name__", "up", "job", "node"}, 1000, 1, 2)),
		v1(ts([]string{"__name__", "m", "b", "1", "a", "2"}, 1, 1)),
		v1(ts([]string{wal.RouteLabel, "a", "__name__", "m"}, 1, 1)),
		v2req([]string{"__name__", "a_total", "x", "1"}, []string{"__name__", "b_total"}),
		snappyBomb(1 << 30),
	} {
		raw, err := snappy.Decode(nil, b)
		if err != nil {
			raw = b
		}
		f.Add(b, false)
		f.Add(raw, false)
		f.Add(raw, true)
	}
	hist := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "h"}}, Histograms: []prompb.Histogram{{Count: &prompb.Histogram_CountInt{CountInt: 1}, Schema: 0, PositiveSpans: []prompb.BucketSpan{{Offset: 0, Length: 1}}, PositiveDeltas: []int64{1}}}}
	raw, _ := (&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{hist}}).Marshal()
	f.Add(raw, false)

	l := limits{maxDecodedBytes: 1 << 20, maxSeries: 100, tenantLabel: "tenant", tenant: "t", route: "a,b"}
	var d decoder
	f.Fuzz(func(t *testing.T, data []byte, isV2 bool) {
		if raw, err := decompressInto(nil, data, l.maxDecodedBytes, nil); err == nil {
			check(t, &d, raw, isV2, l)
		}
		check(t, &d, data, isV2, l)
	})
}

func check(t *testing.T, d *decoder, raw []byte, isV2 bool, l limits) {
	b, err := decodeWith(d, raw, isV2, l, nil)
	if err != nil {
		if _, ok := err.(*decodeError); !ok {
			t.Fatalf("error of type %T: %v", err, err)
		}
		return
	}
	checkBatch(t, b, l)
}

// decodeWith decodes raw, of 2.0 if isV2, with d and the cache c (nil:
// none).
func decodeWith(d *decoder, raw []byte, isV2 bool, l limits, c *seriesCache) (*batch, error) {
	if isV2 {
		return d.decodeV2(raw, l, c)
	}
	return d.decodeV1(raw, l, c)
}

// checkBatch checks the promises of a decoded batch: refs index the
// series, every series named, sorted, unique, within AMP's limits, tenant
// set.
func checkBatch(t *testing.T, b *batch, l limits) {
	t.Helper()
	n := len(b.series)
	if n > l.maxSeries {
		t.Fatalf("%d series accepted over the limit of %d", n, l.maxSeries)
	}
	for _, ls := range b.series {
		if ls.Get("__name__") == "" || ls.Get(l.tenantLabel) != l.tenant || ls.Len() > maxLabels {
			t.Fatalf("accepted series %s", ls)
		}
		prev := ""
		ls.Range(func(lb labels.Label) {
			if lb.Name <= prev || len(lb.Name) > maxNameBytes || len(lb.Value) > maxValueBytes {
				t.Fatalf("accepted series %s", ls)
			}
			prev = lb.Name
		})
	}
	for _, s := range b.samples {
		if int(s.Ref) >= n {
			t.Fatalf("sample ref %d of %d series", s.Ref, n)
		}
	}
	for _, s := range b.histograms {
		if int(s.Ref) >= n || s.H == nil {
			t.Fatalf("histogram ref %d of %d series", s.Ref, n)
		}
	}
	for _, s := range b.floatHistograms {
		if int(s.Ref) >= n || s.FH == nil {
			t.Fatalf("float histogram ref %d of %d series", s.Ref, n)
		}
	}
	for _, s := range b.exemplars {
		if int(s.Ref) >= n {
			t.Fatalf("exemplar ref %d of %d series", s.Ref, n)
		}
	}
	for _, m := range b.metadata {
		if int(m.Ref) >= n {
			t.Fatalf("metadata ref %d of %d series", m.Ref, n)
		}
	}
}

// FuzzDecodeOTLP feeds the OTLP decoder arbitrary bodies, as protobuf or
// JSON, plain or gzipped: it must not panic, must refuse a body decoding
// past its bound, and what it accepts must keep the same promises as the
// remote-write decoders, within the samples bound of its size.
func FuzzDecodeOTLP(f *testing.F) {
	now := time.Unix(1700000000, 0)
	for _, req := range []pmetricotlp.ExportRequest{
		otlpRequest(func(ms pmetric.MetricSlice) { gauge(ms, "up", now, 1, map[string]string{"a": "1"}) }, "env", "prod"),
		otlpRequest(func(ms pmetric.MetricSlice) {
			m := ms.AppendEmpty()
			m.SetName("lat")
			m.SetUnit("s")
			h := m.SetEmptyHistogram()
			h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			p := h.DataPoints().AppendEmpty()
			p.SetTimestamp(pcommon.NewTimestampFromTime(now))
			p.SetCount(3)
			p.SetSum(1.5)
			p.ExplicitBounds().FromRaw([]float64{0.1, 1})
			p.BucketCounts().FromRaw([]uint64{1, 1, 1})
			m = ms.AppendEmpty()
			m.SetName("size")
			e := m.SetEmptyExponentialHistogram()
			e.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			ep := e.DataPoints().AppendEmpty()
			ep.SetTimestamp(pcommon.NewTimestampFromTime(now))
			ep.SetCount(2)
			ep.SetScale(1)
			ep.Positive().BucketCounts().FromRaw([]uint64{1, 1})
		}),
		otlpRequest(func(ms pmetric.MetricSlice) {
			gauge(ms, "old", time.Unix(0, 1), 1)
			gauge(ms, "new", now, 1)
		}, "env", "prod"),
	} {
		pb := protoBody(req)
		js, _ := req.MarshalJSON()
		f.Add(pb, false, false)
		f.Add(gzipBody(pb), false, true)
		f.Add(js, true, false)
	}
	f.Add(gzipBody(make([]byte, 1<<20)), false, true)

	l := limits{maxDecodedBytes: 1 << 16, maxSeries: 100, tenantLabel: "tenant", tenant: "t", route: "a"}
	conv := otlptranslator.NewPrometheusConverter(nil)
	set := otlpSettings()
	f.Fuzz(func(t *testing.T, body []byte, isJSON, gzipped bool) {
		format := protoOTLP
		if isJSON {
			format = protoOTLPJSON
		}
		b, _, err := decodeOTLP(t.Context(), conv, set, body, format, gzipped, l)
		if err != nil {
			if _, ok := err.(*decodeError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		raw := len(body)
		if gzipped {
			dec, err := gunzip(body, l.maxDecodedBytes, nil)
			if err != nil {
				t.Fatalf("accepted a body gunzip refuses: %v", err)
			}
			raw = len(dec)
		}
		if n := b.samplesCount() + len(b.exemplars); n > maxOTLPSamples(raw) {
			t.Fatalf("%d samples from %d bytes, over the bound of %d", n, raw, maxOTLPSamples(raw))
		}
		checkBatch(t, b, l)
	})
}
