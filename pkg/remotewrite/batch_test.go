package remotewrite

import (
	"fmt"
	"strings"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
)

// decode undoes encode.
func decode(t testing.TB, body []byte) *prompb.WriteRequest {
	t.Helper()
	pb, err := snappy.Decode(nil, body)
	if err != nil {
		t.Fatalf("snappy: %v", err)
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(pb); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return &req
}

func TestEncode(t *testing.T) {
	st := newSeriesTable(testPairs, labels.EmptyLabels(), nil)
	st.store([]record.RefSeries{
		{Ref: 1, Labels: labels.FromStrings("__name__", "a", "x", "1")},
		{Ref: 2, Labels: labels.FromStrings("__name__", "b")},
	})
	a, _ := st.get(1)
	b, _ := st.get(2)
	h := testHistogram(1)
	fh := testHistogram(2).ToFloat(nil)
	batch := []sample{
		{series: a, t: 1, v: 1},
		{series: a, t: 2, v: 2}, // merges with the previous one
		{series: b, t: 1, v: 3},
		{series: a, t: 3, v: 4}, // a again, after b: a new TimeSeries keeps order
		{series: a, t: 4, x: h},
		{series: b, t: 5, x: fh},
		{series: a, t: 3, v: 9, x: &exemplar{labels: []prompb.Label{{Name: "trace_id", Value: "t1"}}}},
	}
	e := encoder{pairs: testPairs}
	for round := range 2 { // the second round reuses every buffer
		body, highest, err := e.encode(batch)
		if err != nil {
			t.Fatal(err)
		}
		if highest != 5 {
			t.Errorf("round %d: highest = %d, want 5", round, highest)
		}
		req := decode(t, body)
		if len(req.Timeseries) != 6 {
			t.Fatalf("round %d: got %d time series, want 6: %v", round, len(req.Timeseries), req)
		}
		ts := req.Timeseries
		if got := labelsString(ts[0].Labels); got != `{__name__="a", x="1"}` {
			t.Errorf("labels = %s", got)
		}
		if len(ts[0].Samples) != 2 || ts[0].Samples[1].Value != 2 || ts[0].Samples[1].Timestamp != 2 {
			t.Errorf("first series samples = %v", ts[0].Samples)
		}
		if len(ts[2].Samples) != 1 || ts[2].Samples[0].Value != 4 {
			t.Errorf("third series samples = %v", ts[2].Samples)
		}
		if got := ts[3].Histograms[0].ToIntHistogram(); !got.Equals(h) {
			t.Errorf("histogram = %v, want %v", got, h)
		}
		if got := ts[4].Histograms[0].ToFloatHistogram(); !got.Equals(fh) {
			t.Errorf("float histogram = %v, want %v", got, fh)
		}
		if ex := ts[5].Exemplars; len(ex) != 1 || ex[0].Value != 9 || ex[0].Labels[0].Value != "t1" {
			t.Errorf("exemplars = %v", ex)
		}
	}
}

func labelsString(ls []prompb.Label) string {
	b := labels.NewScratchBuilder(len(ls))
	for _, l := range ls {
		b.Add(l.Name, l.Value)
	}
	return b.Labels().String()
}

// benchBatch returns n float samples over n distinct series with labels like
// a node_exporter scrape's, plus external labels.
func benchBatch(n int) []sample {
	st := newSeriesTable(testPairs, labels.FromStrings("cluster", "prod-eu-west-1", "replica", "a"), nil)
	batch := make([]sample, n)
	for i := range n {
		ref := record.RefSeries{Ref: refOf(i), Labels: labels.FromStrings(
			"__name__", "node_cpu_seconds_total",
			"cpu", fmt.Sprint(i%64),
			"instance", fmt.Sprintf("ip-10-0-%d-%d.eu-west-1.compute.internal:9100", i/256%256, i%256),
			"job", "node-exporter",
			"mode", []string{"idle", "user", "system", "iowait"}[i%4],
		)}
		st.store([]record.RefSeries{ref})
		s, _ := st.get(ref.Ref)
		batch[i] = sample{series: s, t: 1_700_000_000_000 + int64(i), v: float64(i) * 1.5}
	}
	return batch
}

// withMetadata gives the series of batch family metadata, as the reader does
// from the WAL's Metadata records: all share one counter family.
func withMetadata(batch []sample) []sample {
	st := newSeriesTable(testPairs, labels.EmptyLabels(), nil)
	f := newFamilies()
	for i := range batch {
		s := batch[i].series
		st.put(refOf(i), s)
		f.update(st, []record.RefMetadata{{Ref: refOf(i), Type: uint8(record.Counter), Help: "Seconds the CPUs spent in each mode.", Unit: "seconds"}})
	}
	return batch
}

// BenchmarkEncodeBatch encodes (protobuf, snappy) a batch of float samples
// as remote-write 1.0 and 2.0; bytes/sample is the compressed wire size.
func BenchmarkEncodeBatch(b *testing.B) {
	e1 := encoder{pairs: testPairs}
	e2 := encoderV2{pairs: testPairs}
	protos := []struct {
		name   string
		encode func([]sample) ([]byte, error)
	}{
		{"1.0", func(batch []sample) ([]byte, error) { body, _, err := e1.encode(batch); return body, err }},
		{"2.0", func(batch []sample) ([]byte, error) { r, err := e2.encode(batch); return r.body, err }},
		{"2.0+metadata", func(batch []sample) ([]byte, error) { r, err := e2.encode(batch); return r.body, err }},
	}
	for _, p := range protos {
		for _, n := range []int{500, 2000} {
			b.Run(fmt.Sprintf("%s/%d", p.name, n), func(b *testing.B) {
				batch := benchBatch(n)
				if strings.HasSuffix(p.name, "+metadata") {
					batch = withMetadata(batch)
				}
				if _, err := p.encode(batch); err != nil { // warm the buffers
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				var size int
				for b.Loop() {
					body, err := p.encode(batch)
					if err != nil {
						b.Fatal(err)
					}
					size = len(body)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/sample")
				b.ReportMetric(float64(size)/float64(n), "bytes/sample")
			})
		}
	}
}

// TestEncodeAllocs locks in that steady-state encoding allocates nothing
// for float samples and float histograms. Integer histograms cost one
// allocation each inside gogo's generated prompb marshaller (a scratch
// buffer for packed zigzag deltas), none in ours.
func TestEncodeAllocs(t *testing.T) {
	cases := []struct {
		name      string
		mix       func(batch []sample)
		maxAllocs float64
	}{
		{name: "floats", mix: func([]sample) {}},
		{
			name: "float histograms",
			mix: func(batch []sample) {
				for i := 0; i < len(batch); i += 10 {
					batch[i].x = testHistogram(i).ToFloat(nil)
				}
			},
		},
		{
			name: "integer histograms",
			mix: func(batch []sample) {
				for i := 0; i < len(batch); i += 10 {
					batch[i].x = testHistogram(i)
				}
			},
			maxAllocs: 200, // one per histogram, in prompb
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			batch := benchBatch(2000)
			tc.mix(batch)
			e := encoder{pairs: testPairs}
			if _, _, err := e.encode(batch); err != nil {
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(20, func() {
				if _, _, err := e.encode(batch); err != nil {
					t.Fatal(err)
				}
			})
			if allocs > tc.maxAllocs {
				t.Errorf("encode allocates %v times per batch of %d, want at most %v", allocs, len(batch), tc.maxAllocs)
			}
		})
	}
}

func refOf(i int) chunks.HeadSeriesRef { return chunks.HeadSeriesRef(i + 1) }
