package gateway

import (
	"bytes"
	"errors"
	"testing"
	"time"

	otlptranslator "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// otlpGauge is an ExportMetricsServiceRequest of one gauge named m whose
// data_points are points.
func otlpGauge(points []byte) []byte {
	return field(0x0a, field(0x12, field(0x12, append(field(0x0a, []byte("m")), field(0x2a, points)...))))
}

// TestOTLPHostileMemory: OTLP requests whose decoding would hold far more
// than their bytes are refused 413 before pdata unmarshals them, or
// while the translator turns them into series. Unmarshalled, 4 million
// empty data points (8 MB gzipped to a few KiB) take pdata 530 MiB, and
// at the 80 MiB decoded bound ten times that.
func TestOTLPHostileMemory(t *testing.T) {
	jsonPoints := `{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","gauge":{"dataPoints":[{}` +
		string(bytes.Repeat([]byte(`,{}`), 3_000_000)) + `]}}]}]}]}`
	// One exponential histogram of 6 million buckets of count 1 (a byte
	// each): 48 MB charged to unmarshal, 96 more to translate.
	expHist := otlpRequest(func(ms pmetric.MetricSlice) {
		m := ms.AppendEmpty()
		m.SetName("latency")
		e := m.SetEmptyExponentialHistogram()
		e.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		p := e.DataPoints().AppendEmpty()
		p.SetTimestamp(pcommon.NewTimestampFromTime(time.Now()))
		p.SetScale(0)
		counts := make([]uint64, 6_000_000)
		for i := range counts {
			counts[i] = 1
		}
		p.Positive().BucketCounts().FromRaw(counts)
		p.SetCount(uint64(len(counts)))
	})
	for _, c := range []struct {
		name   string
		format protocol
		raw    []byte
	}{
		{"protobuf data points", protoOTLP, otlpGauge(bytes.Repeat([]byte{0x0a, 0x00}, 4_000_000))},
		{"protobuf attributes", protoOTLP, otlpGauge(field(0x0a, bytes.Repeat([]byte{0x3a, 0x00}, 2_000_000)))},
		{"json data points", protoOTLPJSON, []byte(jsonPoints)},
		{"exponential histogram buckets", protoOTLP, protoBody(expHist)},
		{"json exponential histogram buckets", protoOTLPJSON, []byte(`{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"m","exponentialHistogram":{"aggregationTemporality":2,"dataPoints":[{"timeUnixNano":"1","count":"3000000","positive":{"bucketCounts":[1` +
			string(bytes.Repeat([]byte(`,1`), 3_000_000-1)) + `]}}]}}]}]}]}`)},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := limits{maxDecodedBytes: 80 << 20, tenantLabel: "tenant", tenant: "t"}
			body := gzipBody(c.raw)
			conv := otlptranslator.NewPrometheusConverter(nil)
			var err error
			got := allocatedBytes(func() { _, _, err = decodeOTLP(t.Context(), conv, otlpSettings(), body, c.format, true, l) })
			de, ok := errors.AsType[*decodeError](err)
			if !ok || de.status != 413 || de.reason != reasonDecodeTooLarge {
				t.Fatalf("got %v, want a 413 %s", err, reasonDecodeTooLarge)
			}
			t.Logf("%d bytes decoded: %d MiB allocated: %s", len(c.raw), got>>20, de.msg)
			// The decoded body, gzip's buffers, and what the bound lets the
			// decoding hold, its slices grown step by step.
			if max := uint64(2*len(c.raw) + 3*maxDecodeCost); got > max {
				t.Errorf("%d bytes allocated, want at most %d", got, max)
			}
		})
	}
}

// TestOTLPTranslationBound: a request small to unmarshal that translates
// into many series (a histogram of 200,000 explicit buckets, a _bucket
// series each) is refused 413 while it translates: at the gateway's
// series bound, or at the bookkeeping bound when that is lower.
func TestOTLPTranslationBound(t *testing.T) {
	hist := otlpRequest(func(ms pmetric.MetricSlice) {
		m := ms.AppendEmpty()
		m.SetName("latency")
		h := m.SetEmptyHistogram()
		h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		p := h.DataPoints().AppendEmpty()
		p.SetTimestamp(pcommon.NewTimestampFromTime(time.Now()))
		const n = 200_000
		bounds := make([]float64, n-1)
		for i := range bounds {
			bounds[i] = float64(i)
		}
		p.ExplicitBounds().FromRaw(bounds)
		p.BucketCounts().FromRaw(make([]uint64, n))
	})
	body := protoBody(hist)
	for _, c := range []struct {
		name     string
		maxCost  int
		reason   string
		maxAlloc uint64
	}{
		{"series bound", 0, reasonTooManySeries, 256 << 20},
		{"bookkeeping bound", 8 << 20, reasonDecodeTooLarge, 64 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := limits{maxDecodedBytes: 80 << 20, tenantLabel: "tenant", tenant: "t", maxDecodeCost: c.maxCost}
			conv := otlptranslator.NewPrometheusConverter(nil)
			var err error
			got := allocatedBytes(func() { _, _, err = decodeOTLP(t.Context(), conv, otlpSettings(), body, protoOTLP, false, l) })
			de, ok := errors.AsType[*decodeError](err)
			if !ok || de.status != 413 || de.reason != c.reason {
				t.Fatalf("got %v, want a 413 %s", err, c.reason)
			}
			t.Logf("%d bytes: %d MiB allocated: %s", len(body), got>>20, de.msg)
			if got > c.maxAlloc {
				t.Errorf("%d bytes allocated, want at most %d", got, c.maxAlloc)
			}
		})
	}
}
