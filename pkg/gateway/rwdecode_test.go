package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/wal"
)

// FuzzDecodeDifferential holds the decoder to the reference decoders
// (prompb's and writev2's Unmarshal, then the checks): on the same bytes
// both refuse with the same status, reason and message, or both accept
// the same series, samples, histograms, exemplars and metadata. Each
// input is decoded three times: without a cache, with a cache that has
// not seen it, and again once the cache has (every series then taken
// from the cache by its key).
func FuzzDecodeDifferential(f *testing.F) {
	for _, raw := range diffSeeds() {
		f.Add(raw, false)
		f.Add(raw, true)
		for _, cut := range []int{1, len(raw) / 2, len(raw) - 1} {
			if cut > 0 && cut < len(raw) {
				f.Add(raw[:cut], false)
				f.Add(raw[:cut], true)
			}
		}
	}
	// The gateway's own bounds of a request (budget.go) are off: the
	// reference decoders have none. TestDecodeCostBound tests them.
	l := limits{maxDecodedBytes: 1 << 20, maxSeries: 100, tenantLabel: "tenant", tenant: "t", route: "a,b", maxRequestSeries: 1 << 30, maxDecodeCost: 1 << 40}
	w := openWAL(f)
	var d decoder
	f.Fuzz(func(t *testing.T, raw []byte, isV2 bool) {
		ref := refDecodeV1
		if isV2 {
			ref = refDecodeV2
		}
		want, wantErr := ref(raw, l)
		c := newSeriesCache(w, time.Hour)
		for _, pass := range []string{"no cache", "cache cold", "cache warm"} {
			var cache *seriesCache
			if pass != "no cache" {
				cache = c
			}
			got, err := decodeWith(&d, raw, isV2, l, cache)
			compareDecodes(t, pass, want, wantErr, got, err)
			if err == nil && cache != nil {
				cache.gate.RLock()
				res := cache.resolve(got, &wal.Records{}, time.Now())
				cache.done(res, true)
				cache.gate.RUnlock()
			}
			d.release()
		}
	})
}

// TestDecodeAllocs: a request of series new to the cache allocates only
// for their label sets, one per series, not per label, symbol or sample
// as decoding into prompb did.
func TestDecodeAllocs(t *testing.T) {
	l := limits{maxDecodedBytes: 1 << 20, tenantLabel: "tenant", tenant: "t"}
	for _, isV2 := range []bool{false, true} {
		raw := benchRequest(t, 100, isV2)
		var d decoder
		allocs := testing.AllocsPerRun(20, func() {
			if _, err := decodeWith(&d, raw, isV2, l, nil); err != nil {
				t.Fatal(err)
			}
			d.release()
		})
		// The label set of each series, and no more than a few per
		// request; where label sets do not copy their strings, those too.
		max := 100.0 + 10
		if !labelsCopy {
			max += 100 * 8
		}
		if allocs > max {
			t.Errorf("v2=%t: %.0f allocations decoding 100 series, want at most %.0f", isV2, allocs, max)
		}
	}
}

// TestDecodeCachedSeries: a series decoded again after resolve has its
// labels from the cache, the same as built, for its tenant only, and a
// request of known series allocates nothing.
func TestDecodeCachedSeries(t *testing.T) {
	l := limits{maxDecodedBytes: 1 << 20, tenantLabel: "tenant", tenant: "t"}
	w := openWAL(t)
	for _, isV2 := range []bool{false, true} {
		c := newSeriesCache(w, time.Hour)
		raw := benchRequest(t, 100, isV2)
		var d decoder
		first, err := decodeWith(&d, raw, isV2, l, c)
		if err != nil {
			t.Fatal(err)
		}
		want := append([]labels.Labels(nil), first.series...)
		for i, h := range first.hints {
			if h != nil {
				t.Fatalf("v2=%t: series %d cached before it was received", isV2, i)
			}
		}
		c.gate.RLock()
		c.done(c.resolve(first, &wal.Records{}, time.Now()), true)
		c.gate.RUnlock()
		d.release()

		again, err := decodeWith(&d, raw, isV2, l, c)
		if err != nil {
			t.Fatal(err)
		}
		for i, h := range again.hints {
			if h == nil {
				t.Fatalf("v2=%t: series %d not found by its key the second time", isV2, i)
			}
			if !labels.Equal(again.series[i], want[i]) {
				t.Fatalf("v2=%t: series %d is %s from the cache, %s when built", isV2, i, again.series[i], want[i])
			}
		}
		// Another tenant sending the same bytes is not the same series.
		other, err := decodeWith(&d, raw, isV2, limits{maxDecodedBytes: 1 << 20, tenantLabel: "tenant", tenant: "u"}, c)
		if err != nil {
			t.Fatal(err)
		}
		if other.hints[0] != nil || other.series[0].Get("tenant") != "u" {
			t.Fatalf("v2=%t: tenant u's series taken from tenant t's: %s", isV2, other.series[0])
		}
		d.release()

		// A known series allocates nothing per sample.
		allocs := testing.AllocsPerRun(20, func() {
			if _, err := decodeWith(&d, raw, isV2, l, c); err != nil {
				t.Fatal(err)
			}
			d.release()
		})
		if allocs > 0 {
			t.Errorf("v2=%t: %.0f allocations decoding 100 known series, want 0", isV2, allocs)
		}
	}
}

// TestDecodeHintForgotten: a series the cache forgot between a request's
// decode and its resolve gets a new entry, not the forgotten one's ref.
func TestDecodeHintForgotten(t *testing.T) {
	l := limits{maxDecodedBytes: 1 << 20}
	w := openWAL(t)
	c := newSeriesCache(w, time.Minute)
	raw := benchRequest(t, 1, false)
	var d decoder
	now := time.Now()
	b, err := d.decodeV1(raw, l, c)
	if err != nil {
		t.Fatal(err)
	}
	c.done(c.resolve(b, &wal.Records{}, now), true)
	d.release()
	b, err = d.decodeV1(raw, l, c)
	if err != nil {
		t.Fatal(err)
	}
	old := b.hints[0]
	if old == nil {
		t.Fatal("series not found by key")
	}
	if n := c.gc(now.Add(time.Hour)); n != 0 {
		t.Fatalf("%d series left after gc", n)
	}
	recs := &wal.Records{}
	c.resolve(b, recs, now.Add(time.Hour))
	if len(recs.Series) != 1 || recs.Series[0].Ref == old.ref {
		t.Fatalf("series records %v after the series of ref %d was forgotten: want one, with a new ref", recs.Series, old.ref)
	}
	d.release()
	// The key is learnt again by the next request, for the new entry.
	b, err = d.decodeV1(raw, l, c)
	if err != nil {
		t.Fatal(err)
	}
	c.resolve(b, &wal.Records{}, now.Add(time.Hour))
	d.release()
	if b, err = d.decodeV1(raw, l, c); err != nil {
		t.Fatal(err)
	}
	if h := b.hints[0]; h == nil || h == old || h.ref != recs.Series[0].Ref {
		t.Fatalf("series found by key as %+v, want the entry of ref %d", h, recs.Series[0].Ref)
	}
}

// openWAL opens a WAL in a temporary directory, closed at the end of tb.
func openWAL(tb testing.TB) *wal.WAL {
	w, err := wal.Open(wal.Options{Dir: tb.TempDir(), Fsync: wal.FsyncNever}, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { w.Close() })
	return w
}

// benchRequest is an uncompressed request of n series of one sample
// each, shaped as Prometheus sends them, of 2.0 if isV2.
func benchRequest(tb testing.TB, n int, isV2 bool) []byte {
	return benchRequestFrom(tb, n, 0, isV2)
}

// benchRequestFrom is benchRequest with the series numbered from first on.
func benchRequestFrom(tb testing.TB, n, first int, isV2 bool) []byte {
	v1Req := prompb.WriteRequest{}
	st := writev2.NewSymbolTable()
	v2Req := writev2.Request{}
	for i := range n {
		p := []string{"__name__", fmt.Sprintf("metric_%d", i%50), "instance", "host-1:9100", "job", "node", "series", fmt.Sprint(first + i)}
		ts := prompb.TimeSeries{Samples: []prompb.Sample{{Timestamp: 1700000000000, Value: float64(i)}}}
		for j := 0; j < len(p); j += 2 {
			ts.Labels = append(ts.Labels, prompb.Label{Name: p[j], Value: p[j+1]})
		}
		v1Req.Timeseries = append(v1Req.Timeseries, ts)
		v2Req.Timeseries = append(v2Req.Timeseries, writev2.TimeSeries{
			LabelsRefs: st.SymbolizeLabels(labels.FromStrings(p...), nil),
			Samples:    []writev2.Sample{{Timestamp: 1700000000000, Value: float64(i)}},
			Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, HelpRef: st.Symbolize("help of " + p[1])},
		})
	}
	v2Req.Symbols = st.Symbols()
	var raw []byte
	var err error
	if isV2 {
		raw, err = v2Req.Marshal()
	} else {
		raw, err = v1Req.Marshal()
	}
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// diffSeeds are uncompressed requests of either version with every kind
// of content: labels, samples, histograms of both kinds, exemplars,
// metadata, and refusals of each check.
func diffSeeds() [][]byte {
	unsnappy := func(b []byte) []byte {
		raw, err := snappy.Decode(nil, b)
		if err != nil {
			panic(err)
		}
		return raw
	}
	marshal := func(m interface{ Marshal() ([]byte, error) }) []byte {
		raw, err := m.Marshal()
		if err != nil {
			panic(err)
		}
		return raw
	}
	hist := prompb.Histogram{Count: &prompb.Histogram_CountInt{CountInt: 1}, ZeroCount: &prompb.Histogram_ZeroCountInt{}, Schema: 0, PositiveSpans: []prompb.BucketSpan{{Offset: 0, Length: 1}}, PositiveDeltas: []int64{1}, Timestamp: 7}
	fhist := prompb.Histogram{Count: &prompb.Histogram_CountFloat{CountFloat: 2}, ZeroCount: &prompb.Histogram_ZeroCountFloat{}, Sum: 1.5, PositiveSpans: []prompb.BucketSpan{{Offset: 0, Length: 1}}, PositiveCounts: []float64{2}, Timestamp: 8}
	badHist := prompb.Histogram{Count: &prompb.Histogram_CountInt{CountInt: 5}, PositiveSpans: []prompb.BucketSpan{{Offset: 0, Length: 1}}, PositiveDeltas: []int64{1}}
	v1Full := prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{
			{Labels: []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "a"}}, Samples: []prompb.Sample{{Value: 1, Timestamp: 1}, {Value: math.NaN(), Timestamp: 2}},
				Exemplars: []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "abc"}, {Name: "a", Value: "b"}}, Value: 1, Timestamp: 1}}},
			{Labels: []prompb.Label{{Name: "__name__", Value: "h"}}, Histograms: []prompb.Histogram{hist, fhist}},
			{Labels: []prompb.Label{{Name: "__name__", Value: "e"}, {Name: "x", Value: ""}}, Samples: []prompb.Sample{{Value: 3}}},
		},
		Metadata: []prompb.MetricMetadata{{MetricFamilyName: "up", Help: "h", Type: prompb.MetricMetadata_GAUGE}},
	}
	v1Bad := []prompb.TimeSeries{
		{Labels: []prompb.Label{{Name: "__name__", Value: "h"}}, Samples: []prompb.Sample{{Value: 1}}, Histograms: []prompb.Histogram{hist}},
		{Labels: []prompb.Label{{Name: "__name__", Value: "h"}}, Histograms: []prompb.Histogram{badHist}},
		{Labels: []prompb.Label{{Name: "b", Value: "1"}, {Name: "a", Value: "1"}}},
		{Labels: []prompb.Label{{Name: "__name__", Value: "m"}}, Exemplars: []prompb.Exemplar{{Labels: []prompb.Label{{Name: "x", Value: string([]byte{0xff})}}}}},
	}
	seeds := [][]byte{marshal(&v1Full)}
	for i := range v1Bad {
		// Each refusal after a good series, and two refusals in one
		// request: the first is the one reported.
		good := v1Full.Timeseries[0]
		seeds = append(seeds, marshal(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{good, v1Bad[i], v1Bad[(i+1)%len(v1Bad)]}}))
	}
	st := writev2.NewSymbolTable()
	v2Full := writev2.Request{Timeseries: []writev2.TimeSeries{
		{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "up", "job", "a"), nil), Samples: []writev2.Sample{{Value: 1, Timestamp: 2, StartTimestamp: 1}},
			Exemplars: []writev2.Exemplar{{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("trace_id", "abc"), nil), Value: 1, Timestamp: 2}},
			Metadata:  writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: st.Symbolize("Help."), UnitRef: st.Symbolize("seconds")}},
		{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "h"), nil), Histograms: []writev2.Histogram{writev2.FromIntHistogram(6, 7, hist.ToIntHistogram()), writev2.FromFloatHistogram(6, 8, fhist.ToFloatHistogram())}},
		{LabelsRefs: []uint32{1, 2, 3}},
		{LabelsRefs: []uint32{1, 200}},
		{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "m"), nil), Metadata: writev2.Metadata{HelpRef: 300}},
		{LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "m"), nil), Exemplars: []writev2.Exemplar{{LabelsRefs: []uint32{1}}}},
	}}
	v2Full.Symbols = st.Symbols()
	for n := 1; n <= len(v2Full.Timeseries); n++ {
		r := writev2.Request{Symbols: v2Full.Symbols, Timeseries: v2Full.Timeseries[:n]}
		seeds = append(seeds, marshal(&r))
	}
	return append(seeds,
		unsnappy(v1(ts([]string{"__name__", "up", "job", "node"}, 1000, 1, 2))),
		unsnappy(v1(ts([]string{wal.RouteLabel, "a", "__name__", "m"}, 1, 1))),
		unsnappy(v2req([]string{"__name__", "a_total", "x", "1"}, []string{"__name__", "b_total"})),
		[]byte{0x0a, 0x80}, []byte{0x08}, []byte{0x0b, 0x0c}, []byte{0x0c}, []byte{0x00},
	)
}

// compareDecodes fails t unless the decoder's outcome (got, err) is the
// reference's (want, wantErr).
func compareDecodes(t *testing.T, pass string, want *batch, wantErr error, got *batch, err error) {
	t.Helper()
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("%s: error %v, the reference's %v", pass, err, wantErr)
	}
	if err != nil {
		de, ok := err.(*decodeError)
		if !ok {
			t.Fatalf("%s: error of type %T: %v", pass, err, err)
		}
		if wde := wantErr.(*decodeError); *de != *wde {
			t.Fatalf("%s: error %d %s %q, the reference's %d %s %q", pass, de.status, de.reason, de.msg, wde.status, wde.reason, wde.msg)
		}
		return
	}
	if len(got.series) != len(want.series) {
		t.Fatalf("%s: %d series, the reference %d", pass, len(got.series), len(want.series))
	}
	for i := range want.series {
		if !labels.Equal(got.series[i], want.series[i]) {
			t.Fatalf("%s: series %d is %s, the reference's %s", pass, i, got.series[i], want.series[i])
		}
	}
	same := func(what string, a, b any) {
		if sa, sb := fmt.Sprintf("%#v", a), fmt.Sprintf("%#v", b); sa != sb {
			t.Fatalf("%s: %s\n%s\nthe reference's\n%s", pass, what, sa, sb)
		}
	}
	if len(got.samples) != len(want.samples) {
		t.Fatalf("%s: %d samples, the reference %d", pass, len(got.samples), len(want.samples))
	}
	for i, s := range want.samples {
		g := got.samples[i]
		if g.Ref != s.Ref || g.T != s.T || g.ST != s.ST || math.Float64bits(g.V) != math.Float64bits(s.V) {
			t.Fatalf("%s: sample %d is %+v, the reference's %+v", pass, i, g, s)
		}
	}
	same("histograms", deref(got.histograms, func(h record.RefHistogramSample) any { return []any{h.Ref, h.ST, h.T, *h.H} }), deref(want.histograms, func(h record.RefHistogramSample) any { return []any{h.Ref, h.ST, h.T, *h.H} }))
	same("float histograms", deref(got.floatHistograms, func(h record.RefFloatHistogramSample) any { return []any{h.Ref, h.ST, h.T, *h.FH} }), deref(want.floatHistograms, func(h record.RefFloatHistogramSample) any { return []any{h.Ref, h.ST, h.T, *h.FH} }))
	same("exemplars", deref(got.exemplars, func(e record.RefExemplar) any { return []any{e.Ref, e.T, math.Float64bits(e.V), e.Labels.String()} }), deref(want.exemplars, func(e record.RefExemplar) any { return []any{e.Ref, e.T, math.Float64bits(e.V), e.Labels.String()} }))
	id := func(m record.RefMetadata) any { return m }
	same("metadata", deref(got.metadata, id), deref(want.metadata, id))
}

// deref maps s with f, for comparing what pointers point to.
func deref[T any](s []T, f func(T) any) []any {
	out := make([]any, 0, len(s))
	for _, v := range s {
		out = append(out, f(v))
	}
	return out
}

// TestDecodeKeysBounded: the keys a request's series are looked up by
// are built a block at a time, and only their hashes kept, only for
// series new to the cache, so a request of known series keeps none and a
// request refused at its first series builds one block's worth, however
// many series it has.
func TestDecodeKeysBounded(t *testing.T) {
	l := limits{maxDecodedBytes: 64 << 20, tenantLabel: "tenant", tenant: "t"}
	w := openWAL(t)
	c := newSeriesCache(w, time.Hour)
	raw := benchRequest(t, 2000, false)
	var d decoder
	b, err := d.decodeV1(raw, l, c)
	if err != nil {
		t.Fatal(err)
	}
	c.done(c.resolve(b, &wal.Records{}, time.Now()), true)
	d.release()
	if b, err = d.decodeV1(raw, l, c); err != nil {
		t.Fatal(err)
	}
	for i, k := range b.keys {
		if k != (keyHash{}) {
			t.Fatalf("series %d of 2,000 known series keeps its key's hash", i)
		}
	}
	oneBlock := cap(d.blockKeys)
	d.release()

	// 100,000 series without a metric name, each with a label of 20
	// bytes: refused at the first.
	var req prompb.WriteRequest
	for range 100000 {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: []prompb.Label{{Name: "a", Value: "bbbbbbbbbbbbbbbbbbbb"}}})
	}
	bad, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var d2 decoder
	if _, err := d2.decodeV1(bad, l, c); err == nil || !strings.Contains(err.Error(), "has no metric name") {
		t.Fatalf("error %v, want no metric name", err)
	}
	if n := cap(d2.blockKeys); n > 2*oneBlock {
		t.Errorf("%d bytes of keys built for a request refused at its first series, want at most %d (a block's)", n, 2*oneBlock)
	}
}

// TestDecoderPoolBound: a decoder keeps its buffers for the next request
// unless they hold more than maxPooledBytes, counting those that grow
// with the number of series, not only the body's.
func TestDecoderPoolBound(t *testing.T) {
	// The request's own bounds raised, to reach the pool's.
	l := limits{maxDecodedBytes: 64 << 20, tenantLabel: "tenant", tenant: "t", maxRequestSeries: 400_000, maxDecodeCost: 1 << 30}
	var d decoder
	if _, err := d.decodeV1(benchRequest(t, 2000, false), l, nil); err != nil {
		t.Fatal(err)
	}
	d.release()
	if cap(d.series) == 0 || cap(d.b.samples) == 0 {
		t.Fatal("the buffers of a request of 2,000 series were not kept")
	}

	// 400,000 series of a sample each: a small body, many series.
	var req prompb.WriteRequest
	for range 400000 {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Samples: []prompb.Sample{{Value: 1}}})
	}
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > maxPooledBytes/4 {
		t.Fatalf("the body is %d bytes: the test needs one well under the bound", len(raw))
	}
	if _, err := d.decodeV1(raw, l, nil); err == nil {
		t.Fatal("series without labels accepted")
	}
	if n := d.bufferBytes(); n <= maxPooledBytes {
		t.Fatalf("decoding 400,000 series grew the buffers to %d bytes only", n)
	}
	d.release()
	if cap(d.series) != 0 || cap(d.b.samples) != 0 {
		t.Errorf("a decoder holding more than %d bytes kept its buffers for the pool", maxPooledBytes)
	}
}

// TestDecodedLabelsOwnTheirBytes: the labels the decoder builds, and the
// cache keeps, are copies, not the request's bytes, which the next
// request overwrites.
func TestDecodedLabelsOwnTheirBytes(t *testing.T) {
	l := limits{maxDecodedBytes: 1 << 20, tenantLabel: "tenant", tenant: "t"}
	for _, isV2 := range []bool{false, true} {
		c := newSeriesCache(openWAL(t), time.Hour)
		raw := benchRequest(t, 10, isV2)
		buf := slices.Clone(raw)
		var d decoder
		b, err := decodeWith(&d, buf, isV2, l, c)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{}
		for _, ls := range b.series {
			want[ls.String()] = true
		}
		c.done(c.resolve(b, &wal.Records{}, time.Now()), true)
		d.release()
		for i := range buf {
			buf[i] = 'x'
		}
		if len(c.byHash) != len(want) {
			t.Fatalf("v2=%t: %d series cached, want %d", isV2, len(c.byHash), len(want))
		}
		for _, e := range c.byHash {
			if !want[e.labels.String()] {
				t.Fatalf("v2=%t: a cached series is %s once the request's bytes are overwritten", isV2, e.labels)
			}
		}
		again, err := decodeWith(&d, raw, isV2, l, c)
		if err != nil || again.hints[0] == nil || !want[again.series[0].String()] {
			t.Fatalf("v2=%t: the cache's series is %v (err %v)", isV2, again.series, err)
		}
	}
}

// TestGCWhileReceiving: requests finding their series by key while gc
// forgets and releases them never log a sample for a released ref, and
// every sample follows its series record.
func TestGCWhileReceiving(t *testing.T) {
	e := newEnv(t, Tenant{}, func(o *Options) { o.SeriesIdle = time.Minute })
	var series [][]string
	for j := range 20 {
		series = append(series, []string{"__name__", "m", "n", fmt.Sprint(j)})
	}
	bodies := map[string][]byte{ctV1: nil, ctV2: v2req(series...)}
	var v1Series []prompb.TimeSeries
	for _, p := range series {
		v1Series = append(v1Series, ts(p, 1, 1))
	}
	bodies[ctV1] = v1(v1Series...)
	done := make(chan struct{})
	var gcs sync.WaitGroup
	gcs.Go(func() {
		for range 100000 { // until the senders are done, bounded
			select {
			case <-done:
				return
			default:
			}
			e.g.series.gc(e.now.Add(time.Hour)) // every series idle: all forgotten
			runtime.Gosched()
		}
	})
	var wg sync.WaitGroup
	for i := range 4 {
		ct := ctV1
		if i%2 == 1 {
			ct = ctV2
		}
		wg.Go(func() {
			for range 30 {
				req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/v1/write", bytes.NewReader(bodies[ct]))
				req.Header.Set("Authorization", "Bearer "+keyA)
				req.Header.Set("Content-Encoding", "snappy")
				req.Header.Set("Content-Type", ct)
				resp, err := e.srv.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 204 {
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	close(done)
	gcs.Wait()

	if err := e.wal.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := e.wal.NewReader(wal.Position{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	logged := map[chunks.HeadSeriesRef]bool{}
	released := map[chunks.HeadSeriesRef]bool{}
	samples := 0
	var rel []chunks.HeadSeriesRef
	for {
		err := r.Next(t.Context())
		if errors.Is(err, wal.ErrClosed) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range r.Series() {
			logged[s.Ref] = true
		}
		for _, s := range r.Samples() {
			if !logged[s.Ref] || released[s.Ref] {
				t.Fatalf("sample of ref %d: series logged %t, released %t", s.Ref, logged[s.Ref], released[s.Ref])
			}
			samples++
		}
		rel = r.Released(rel[:0])
		for _, ref := range rel {
			released[ref] = true
		}
	}
	if samples != 4*30*20 {
		t.Errorf("%d samples logged, want %d", samples, 4*30*20)
	}
}

// TestDecodeSeriesTwoKeys: a series sent with and without the tenant
// label (which the gateway sets) has two keys, both found to its one
// entry, and gc forgets both.
func TestDecodeSeriesTwoKeys(t *testing.T) {
	l := limits{maxDecodedBytes: 1 << 20, tenantLabel: "tenant", tenant: "t"}
	c := newSeriesCache(openWAL(t), time.Minute)
	request := func(pairs ...string) []byte {
		ts := prompb.TimeSeries{Samples: []prompb.Sample{{Timestamp: 1, Value: 1}}}
		for i := 0; i < len(pairs); i += 2 {
			ts.Labels = append(ts.Labels, prompb.Label{Name: pairs[i], Value: pairs[i+1]})
		}
		raw, err := (&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{ts}}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	plain := request("__name__", "up", "job", "a")
	tagged := request("__name__", "up", "job", "a", "tenant", "x")
	now := time.Now()
	var d decoder
	var refs []chunks.HeadSeriesRef
	for _, raw := range [][]byte{plain, tagged, plain, tagged} {
		b, err := d.decodeV1(raw, l, c)
		if err != nil {
			t.Fatal(err)
		}
		recs := &wal.Records{}
		c.done(c.resolve(b, recs, now), true)
		refs = append(refs, recs.Samples[0].Ref)
		d.release()
	}
	for i, r := range refs {
		if r != refs[0] {
			t.Fatalf("request %d logged ref %d, want %d: one series, one ref", i, r, refs[0])
		}
	}
	if len(c.byKey) != 2 {
		t.Fatalf("%d keys cached, want 2 (one per form)", len(c.byKey))
	}
	for _, raw := range [][]byte{plain, tagged} {
		b, err := d.decodeV1(raw, l, c)
		if err != nil {
			t.Fatal(err)
		}
		if b.hints[0] == nil || b.hints[0].ref != refs[0] {
			t.Fatalf("series not found by its key: hint %+v", b.hints[0])
		}
		d.release()
	}
	if n := c.gc(now.Add(time.Hour)); n != 0 || len(c.byKey) != 0 {
		t.Fatalf("after gc: %d series and %d keys left, want none", n, len(c.byKey))
	}
}

// TestDecodeSeriesWireForms: a 1.0 series whose label fields are adjacent
// is keyed by their bytes as sent, one whose fields a sample splits by its
// labels, and each form decodes to the same series and ref; a series sent
// in many forms keeps at most maxKeys keys.
func TestDecodeSeriesWireForms(t *testing.T) {
	l := limits{maxDecodedBytes: 1 << 20}
	c := newSeriesCache(openWAL(t), time.Minute)
	field := func(n byte, b []byte) []byte { return append([]byte{n<<3 | 2, byte(len(b))}, b...) }
	label := func(name, value string, extra ...byte) []byte {
		return append(append(field(1, []byte(name)), field(2, []byte(value))...), extra...)
	}
	sample := append([]byte{0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f}, 0x10, 1) // value 1, timestamp 1
	request := func(parts ...[]byte) []byte {
		var ts []byte
		for _, p := range parts {
			ts = append(ts, p...)
		}
		return field(1, ts)
	}
	adjacent := request(field(1, label("__name__", "up")), field(1, label("job", "a")), field(2, sample))
	split := request(field(1, label("__name__", "up")), field(2, sample), field(1, label("job", "a")))
	forms := [][]byte{adjacent, split}
	for n := range 6 { // an unknown field of the label, varied
		forms = append(forms, request(field(1, label("__name__", "up", 3<<3, byte(n))), field(1, label("job", "a")), field(2, sample)))
	}
	now := time.Now()
	var d decoder
	var ref chunks.HeadSeriesRef
	for i, raw := range forms {
		b, err := d.decodeV1(raw, l, c)
		if err != nil {
			t.Fatalf("form %d: %v", i, err)
		}
		if got := b.series[0].String(); got != `{__name__="up", job="a"}` {
			t.Fatalf("form %d: series %s", i, got)
		}
		if ws := d.series[0]; (i == 1) != (ws.wire.to == ws.wire.from) {
			t.Fatalf("form %d: wire span %+v: want one only when the labels are adjacent", i, ws.wire)
		}
		recs := &wal.Records{}
		c.done(c.resolve(b, recs, now), true)
		d.release()
		if i == 0 {
			ref = recs.Samples[0].Ref
		} else if recs.Samples[0].Ref != ref {
			t.Fatalf("form %d: ref %d, want %d", i, recs.Samples[0].Ref, ref)
		}
	}
	if len(c.byKey) != maxKeys {
		t.Fatalf("%d keys for one series sent in %d forms, want %d", len(c.byKey), len(forms), maxKeys)
	}
	for i, raw := range forms[:maxKeys] {
		b, err := d.decodeV1(raw, l, c)
		if err != nil {
			t.Fatal(err)
		}
		if h := b.hints[0]; h == nil || h.ref != ref {
			t.Fatalf("form %d not found by its key", i)
		}
		d.release()
	}
}
