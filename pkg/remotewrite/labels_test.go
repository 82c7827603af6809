package remotewrite

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb/record"
)

// TestEncodeMatchesGogo: the 1.0 encoder writes the bytes gogo's
// WriteRequest.Marshal writes for the same request, for every kind of item
// and the values gogo leaves out (zero value, -0, zero timestamp), NaNs and
// negative timestamps.
func TestEncodeMatchesGogo(t *testing.T) {
	st := newSeriesTable(testPairs, labels.FromStrings("cluster", "c1"), nil)
	long := strings.Repeat("v", 300) // a length of two varint bytes
	st.store([]record.RefSeries{
		{Ref: 1, Labels: labels.FromStrings("__name__", "a", "x", "1")},
		{Ref: 2, Labels: labels.FromStrings("__name__", "b", "long", long)},
		{Ref: 3, Labels: labels.FromStrings("__name__", "c", "ünïcode", "✓")},
	})
	a, _ := st.get(1)
	b, _ := st.get(2)
	c, _ := st.get(3)
	batch := []sample{
		{series: a, t: 1, v: 1},
		{series: a, t: 0, v: 0},
		{series: a, t: -5, v: math.Copysign(0, -1)},
		{series: b, t: 1_700_000_000_000, v: math.Float64frombits(value.StaleNaN)},
		{series: b, t: 1_700_000_000_001, v: math.Inf(-1)},
		{series: a, t: 3, v: 4},
		{series: c, t: 4, x: testHistogram(1)},
		{series: c, t: 5, x: testHistogram(2).ToFloat(nil)},
		{series: c, t: 6, v: 2, x: &exemplar{labels: []prompb.Label{{Name: "trace_id", Value: "t1"}}}},
		{series: c, t: 7, v: 3, x: &exemplar{}},
		{series: c, t: 8, v: 1e300},
	}
	// The same request built as prompb structs, one TimeSeries per run.
	var want prompb.WriteRequest
	for i := 0; i < len(batch); {
		s := &batch[i]
		ts := prompb.TimeSeries{Labels: protoLabels(t, s.series)}
		j := i
		for ; j < len(batch) && batch[j].series == s.series && kindOf(&batch[j]) == kindOf(s); j++ {
			x := &batch[j]
			switch h := x.x.(type) {
			case nil:
				ts.Samples = append(ts.Samples, prompb.Sample{Value: x.v, Timestamp: x.t})
			case *exemplar:
				ts.Exemplars = append(ts.Exemplars, prompb.Exemplar{Labels: h.labels, Value: x.v, Timestamp: x.t})
			case *histogram.Histogram:
				ts.Histograms = append(ts.Histograms, prompb.FromIntHistogram(x.t, h))
			case *histogram.FloatHistogram:
				ts.Histograms = append(ts.Histograms, prompb.FromFloatHistogram(x.t, h))
			}
		}
		want.Timeseries = append(want.Timeseries, ts)
		i = j
	}
	wantPB, err := want.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	e := encoder{pairs: testPairs}
	for round := range 2 { // the second round reuses every buffer
		body, _, err := e.encode(batch)
		if err != nil {
			t.Fatal(err)
		}
		got, err := snappy.Decode(nil, body)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, wantPB) {
			t.Fatalf("round %d: encoder wrote\n%x\ngogo writes\n%x", round, got, wantPB)
		}
	}
}

func TestLabelIter(t *testing.T) {
	// The table's builder leaves out a="", as Prometheus does.
	ls := labels.FromStrings("__name__", "up", "job", strings.Repeat("j", 200))
	st := newSeriesTable(testPairs, labels.EmptyLabels(), nil)
	defer st.close()
	st.store([]record.RefSeries{{Ref: 1, Labels: labels.FromStrings("__name__", "up", "a", "", "job", strings.Repeat("j", 200))}})
	s, _ := st.get(1)
	if got := labelsString(protoLabels(t, s)); got != ls.String() {
		t.Errorf("series labels %s, want %s", got, ls.String())
	}
	if name := s.metricName(testPairs); name != "up" {
		t.Errorf("metric name %q, want up", name)
	}
	if size, _ := s.size(); size != len(appendEncodedLabels(nil, ls)) {
		t.Errorf("series size %d, want the encoding's %d", size, len(appendEncodedLabels(nil, ls)))
	}
	// Empty values and names are left out of a label's encoding, as gogo
	// does.
	ls = labels.FromStrings("__name__", "up", "a", "", "job", strings.Repeat("j", 200))
	enc := string(appendEncodedLabels(nil, ls))
	got, ok := decodeLabels(enc)
	if !ok {
		t.Fatalf("decode %x failed", enc)
	}
	if s := labelsString(got); s != ls.String() {
		t.Errorf("decoded %s, want %s", s, ls.String())
	}
	for _, bad := range []string{"\x0b", "\x0a", "\x0a\x05ab", "\x0a\x02\x1a\x00", "\x0a\x03\x0a\x05a", "\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"} {
		if _, ok := decodeLabels(bad); ok {
			t.Errorf("decodeLabels(%x) succeeded", bad)
		}
	}
}

// FuzzLabelIter: any bytes decode without panicking, and whatever decodes
// encodes back to the same bytes when it is canonical.
func FuzzLabelIter(f *testing.F) {
	f.Add(string(appendEncodedLabels(nil, labels.FromStrings("__name__", "up", "job", "node"))))
	f.Add("\x0a\x00")
	f.Add("\x0a\x02\x12\x00")
	f.Fuzz(func(t *testing.T, enc string) {
		ls, ok := decodeLabels(enc)
		if !ok {
			return
		}
		b := labels.NewScratchBuilder(len(ls))
		canonical := true
		for i, l := range ls {
			if l.Name == "" || l.Value == "" || (i > 0 && ls[i-1].Name >= l.Name) {
				canonical = false
			}
			b.Add(l.Name, l.Value)
		}
		if !canonical {
			return
		}
		if again := string(appendEncodedLabels(nil, b.Labels())); again != enc && len(again) == len(enc) {
			t.Errorf("%x decodes to %v, which encodes to %x", enc, ls, again)
		}
	})
}

// appendEncodedLabels appends the labels of ls, each encoded as the pair
// table keeps it, to dst: the labels of a 1.0 TimeSeries.
func appendEncodedLabels(dst []byte, ls labels.Labels) []byte {
	ls.Range(func(l labels.Label) { dst = appendEncodedLabel(dst, l.Name, l.Value) })
	return dst
}

// decodeLabels returns encoded labels as prompb labels sharing enc's
// strings; false if enc is not a valid encoding.
func decodeLabels(enc string) ([]prompb.Label, bool) {
	var out []prompb.Label
	for enc != "" {
		name, value, rest, ok := decodeLabel(enc)
		if !ok {
			return out, false
		}
		out = append(out, prompb.Label{Name: name, Value: value})
		enc = rest
	}
	return out, true
}
