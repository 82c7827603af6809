package gateway

import (
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
)

// FuzzDecode feeds the request decoders arbitrary bytes, as a body (snappy)
// and as the decoded message of either version: they must not panic, and
// what they accept must keep their promises (refs index the series, every
// series named, sorted, unique, within AMP's limits, tenant set).
func FuzzDecode(f *testing.F) {
	for _, b := range [][]byte{
		v1(ts([]string{"__name__", "up", "job", "node"}, 1000, 1, 2)),
		v1(ts([]string{"__name__", "m", "b", "1", "a", "2"}, 1, 1)),
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

	l := limits{maxDecodedBytes: 1 << 20, maxSeries: 100, tenantLabel: "tenant", tenant: "t"}
	f.Fuzz(func(t *testing.T, data []byte, isV2 bool) {
		if raw, err := decompress(data, l.maxDecodedBytes); err == nil {
			check(t, raw, isV2, l)
		}
		check(t, data, isV2, l)
	})
}

func check(t *testing.T, raw []byte, isV2 bool, l limits) {
	decode := decodeV1
	if isV2 {
		decode = decodeV2
	}
	b, err := decode(raw, l)
	if err != nil {
		if _, ok := err.(*decodeError); !ok {
			t.Fatalf("error of type %T: %v", err, err)
		}
		return
	}
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
