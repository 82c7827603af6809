package exposition

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const protoContentType = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"

// parserOptions are the option sets the fast path serves.
var parserOptions = []textparse.ParserOptions{
	{},
	{IgnoreNativeHistograms: true},
	{KeepClassicOnClassicAndNativeHistograms: true},
}

// entry is one parsed entry rendered as text, so that two parsers' output
// can be compared (value bits, not values, so NaN compares).
type entry struct {
	key  []byte // series key; compared for consistency, not equality
	text string
}

// parseAll runs p to the end and renders every entry the way the scrape
// loop reads it. err is the error that ended it, if not io.EOF; n the
// entries before it.
func parseAll(p textparse.Parser) (out []entry, err error) {
	for {
		et, err := p.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		var e entry
		switch et {
		case textparse.EntryHelp:
			n, h := p.Help()
			e.text = fmt.Sprintf("help %q %q", n, h)
		case textparse.EntryType:
			n, t := p.Type()
			e.text = fmt.Sprintf("type %q %s", n, t)
		case textparse.EntryUnit:
			n, u := p.Unit()
			e.text = fmt.Sprintf("unit %q %q", n, u)
		case textparse.EntryComment:
			e.text = fmt.Sprintf("comment %q", p.Comment())
		case textparse.EntryHistogram:
			k, ts, h, fh := p.Histogram()
			e.key = bytes.Clone(k)
			e.text = fmt.Sprintf("histogram %s %s %v %v", seriesText(p), tsText(ts), h, fh)
		case textparse.EntrySeries:
			k, ts, v := p.Series()
			e.key = bytes.Clone(k)
			e.text = fmt.Sprintf("series %s %s %x", seriesText(p), tsText(ts), math.Float64bits(v))
		default:
			e.text = fmt.Sprintf("entry %d", et)
		}
		out = append(out, e)
	}
}

// seriesText renders the labels, start timestamp and exemplars of the
// current series.
func seriesText(p textparse.Parser) string {
	var l labels.Labels
	p.Labels(&l)
	var b strings.Builder
	fmt.Fprintf(&b, "%s st=%d", l, p.StartTimestamp())
	var ex exemplar.Exemplar
	for p.Exemplar(&ex) {
		fmt.Fprintf(&b, " ex{%s %x %v %d}", ex.Labels, math.Float64bits(ex.Value), ex.HasTs, ex.Ts)
		ex = exemplar.Exemplar{}
	}
	return b.String()
}

func tsText(ts *int64) string {
	if ts == nil {
		return "-"
	}
	return fmt.Sprint(*ts)
}

// compareParsers parses b with textparse's protobuf parser and with ours
// and reports the first difference: entries, and where an error ends them.
// It also checks that our keys identify series: equal keys, equal labels.
func compareParsers(t testing.TB, b []byte, opts textparse.ParserOptions) (fast bool) {
	t.Helper()
	want, werr := parseAll(textparse.NewProtobufParser(b, opts.IgnoreNativeHistograms, opts.KeepClassicOnClassicAndNativeHistograms, false, false, labels.NewSymbolTable()))
	p, err := New(b, protoContentType, labels.NewSymbolTable(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	got, gerr := parseAll(p)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("options %+v: error: Prometheus %v, ours %v", opts, werr, gerr)
	}
	for i := range max(len(want), len(got)) {
		if i >= len(want) || i >= len(got) || want[i].text != got[i].text {
			var w, g string
			if i < len(want) {
				w = want[i].text
			}
			if i < len(got) {
				g = got[i].text
			}
			t.Fatalf("options %+v: entry %d:\nPrometheus: %s\nours:       %s", opts, i, w, g)
		}
	}
	series := map[string]string{}
	for _, e := range got {
		if e.key == nil {
			continue
		}
		labelsText, _, _ := strings.Cut(e.text, " st=")
		if prev, ok := series[string(e.key)]; ok && prev != labelsText {
			t.Fatalf("one key for two series: %s and %s", prev, labelsText)
		}
		series[string(e.key)] = labelsText
	}
	return p.(*protobufParser).fb == nil
}

// delimited encodes families as a scrape target serves them.
func delimited(t testing.TB, mfs ...*dto.MetricFamily) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, mf := range mfs {
		if _, err := protodelim.MarshalTo(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// gathered is what a client_golang registry serves with one of each kind of
// metric, exemplars and start timestamps included.
func gathered(t testing.TB) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "requests_total", Help: "Requests."}, []string{"path", "code"})
	c.WithLabelValues("/a", "200").Add(3)
	c.WithLabelValues("/b", "").Add(1)
	c.WithLabelValues("/ü", "500").(prometheus.ExemplarAdder).AddWithExemplar(2, prometheus.Labels{"trace_id": "abc"})
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "queue_length", Help: "Queue \"length\"\nwith a newline."}, []string{"queue"})
	g.WithLabelValues("q1").Set(-1.5)
	g.WithLabelValues("q2").Set(math.NaN())
	g.WithLabelValues("q3").Set(0)
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "latency_seconds", Help: "Latency.", Buckets: []float64{0.1, 1, 10}}, []string{"handler"})
	h.WithLabelValues("/x").Observe(0.5)
	h.WithLabelValues("/y").(prometheus.ExemplarObserver).ObserveWithExemplar(5, prometheus.Labels{"trace_id": "def", "span": "1"})
	nh := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "native_seconds", Help: "Native.", NativeHistogramBucketFactor: 1.1, Buckets: []float64{1, 2}})
	nh.Observe(1.5)
	nh.Observe(0.01)
	onlyNative := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "only_native_seconds", Help: "Native only.", NativeHistogramBucketFactor: 1.1, Buckets: []float64{}})
	onlyNative.Observe(3)
	s := prometheus.NewSummaryVec(prometheus.SummaryOpts{Name: "rpc_seconds", Help: "RPC.", Objectives: map[float64]float64{0.5: 0.05, 0.99: 0.001}}, []string{"service"})
	s.WithLabelValues("a").Observe(1)
	s.WithLabelValues("b").Observe(2)
	s0 := prometheus.NewSummary(prometheus.SummaryOpts{Name: "plain_summary", Help: "No quantiles."})
	s0.Observe(4)
	u := prometheus.NewUntypedFunc(prometheus.UntypedOpts{Name: "untyped_thing", Help: ""}, func() float64 { return 42 })
	reg.MustRegister(c, g, h, nh, onlyNative, s, s0, u)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// crafted are families client_golang does not produce: units, timestamps,
// gauge histograms, a histogram without +Inf, buckets after +Inf, float
// counts, an exemplar without timestamp, and empty families.
func crafted() []*dto.MetricFamily {
	lp := func(kv ...string) []*dto.LabelPair {
		var out []*dto.LabelPair
		for i := 0; i < len(kv); i += 2 {
			out = append(out, &dto.LabelPair{Name: proto.String(kv[i]), Value: proto.String(kv[i+1])})
		}
		return out
	}
	ts := timestamppb.New(time.Unix(1700000000, 123456789))
	return []*dto.MetricFamily{
		{Name: proto.String("empty_family"), Type: dto.MetricType_GAUGE.Enum()},
		{Name: proto.String("temperature_celsius"), Help: proto.String("T."), Unit: proto.String("celsius"), Type: dto.MetricType_GAUGE.Enum(),
			Metric: []*dto.Metric{{Label: lp("room", "a"), Gauge: &dto.Gauge{Value: proto.Float64(21.5)}, TimestampMs: proto.Int64(1700000000123)}}},
		{Name: proto.String("queue_bytes"), Type: dto.MetricType_GAUGE_HISTOGRAM.Enum(), Metric: []*dto.Metric{{
			Label: lp("z", "1", "a", "2"),
			Histogram: &dto.Histogram{SampleCountFloat: proto.Float64(7.5), SampleSum: proto.Float64(100),
				Bucket: []*dto.Bucket{{CumulativeCountFloat: proto.Float64(2.5), UpperBound: proto.Float64(10),
					Exemplar: &dto.Exemplar{Label: lp("id", "x"), Value: proto.Float64(3)}}, {CumulativeCountFloat: proto.Float64(7.5), UpperBound: proto.Float64(100)}}},
		}}},
		{Name: proto.String("after_inf"), Type: dto.MetricType_HISTOGRAM.Enum(), Metric: []*dto.Metric{{
			Histogram: &dto.Histogram{SampleCount: proto.Uint64(3), SampleSum: proto.Float64(1), CreatedTimestamp: ts,
				Bucket: []*dto.Bucket{{CumulativeCount: proto.Uint64(1), UpperBound: proto.Float64(math.Inf(+1))}, {CumulativeCount: proto.Uint64(3), UpperBound: proto.Float64(5)}}},
		}, {
			Label:     lp("no", "buckets"),
			Histogram: &dto.Histogram{SampleCount: proto.Uint64(3), SampleSum: proto.Float64(-0.0)},
		}}},
		{Name: proto.String("events_total"), Type: dto.MetricType_COUNTER.Enum(), Metric: []*dto.Metric{{
			Label:   lp("kind", "a"),
			Counter: &dto.Counter{Value: proto.Float64(1), CreatedTimestamp: ts, Exemplar: &dto.Exemplar{Label: lp("b", "2", "a", "1"), Value: proto.Float64(0.5)}},
		}, {
			Label:   lp("kind", "b"),
			Counter: &dto.Counter{Value: proto.Float64(math.Inf(+1)), Exemplar: &dto.Exemplar{Value: proto.Float64(1), Timestamp: ts}},
		}}},
		{Name: proto.String("unknown_value"), Type: dto.MetricType_UNTYPED.Enum(), Metric: []*dto.Metric{{Untyped: &dto.Untyped{Value: proto.Float64(-0.0)}}}},
		{Name: proto.String("quantiles"), Type: dto.MetricType_SUMMARY.Enum(), Metric: []*dto.Metric{{
			Label: lp("le", "oops"),
			Summary: &dto.Summary{SampleCount: proto.Uint64(10), SampleSum: proto.Float64(3), CreatedTimestamp: ts,
				Quantile: []*dto.Quantile{{Quantile: proto.Float64(0.5), Value: proto.Float64(0.25)}, {Quantile: proto.Float64(1), Value: proto.Float64(0.9)}}},
		}}},
		// Value message does not match the type: left to Prometheus.
		{Name: proto.String("mismatch"), Type: dto.MetricType_COUNTER.Enum(), Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(1)}}}},
		{Name: proto.String("dotted.name"), Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{{Label: lp("label.with.dots", "v"), Gauge: &dto.Gauge{Value: proto.Float64(1)}}}},
	}
}

func TestProtobufParserMatchesPrometheus(t *testing.T) {
	mfs := append(gathered(t), crafted()...)
	for _, opts := range parserOptions {
		// Each family alone, then all of them in one exposition.
		for _, mf := range mfs {
			compareParsers(t, delimited(t, mf), opts)
		}
		compareParsers(t, delimited(t, mfs...), opts)
	}
}

// TestProtobufParserFastPath checks which families the fast path takes:
// the plain kinds yes, native histograms and odd messages no.
func TestProtobufParserFastPath(t *testing.T) {
	fast := map[string]bool{}
	for _, mf := range append(gathered(t), crafted()...) {
		fast[mf.GetName()] = compareParsersFamily(t, mf)
	}
	for name, want := range map[string]bool{
		"requests_total": true, "queue_length": true, "latency_seconds": true, "rpc_seconds": true,
		"plain_summary": true, "untyped_thing": true, "temperature_celsius": true, "queue_bytes": true,
		"after_inf": true, "events_total": true, "empty_family": true, "quantiles": true, "dotted.name": true,
		"native_seconds": false, "only_native_seconds": false, "mismatch": false,
	} {
		if fast[name] != want {
			t.Errorf("%s: fast path %v, want %v", name, fast[name], want)
		}
	}
}

// compareParsersFamily compares the parsers on mf alone and says whether
// the fast path took it.
func compareParsersFamily(t *testing.T, mf *dto.MetricFamily) bool {
	b := delimited(t, mf)
	p := newProtobufParser(b, nil, textparse.ParserOptions{})
	if _, err := p.Next(); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("%s: %v", mf.GetName(), err)
	}
	compareParsers(t, b, textparse.ParserOptions{})
	return p.fb == nil
}

// TestProtobufParserKeysStable checks that a series keeps its key from one
// scrape to the next while its value changes, which is what makes the scrape
// cache hit.
func TestProtobufParserKeysStable(t *testing.T) {
	keys := func(v float64) map[string]string {
		reg := prometheus.NewRegistry()
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "g", Help: "G."}, []string{"a"})
		g.WithLabelValues("x").Set(v)
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h", Help: "H.", Buckets: []float64{1}})
		h.Observe(v)
		reg.MustRegister(g, h)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		entries, err := parseAll(newProtobufParser(delimited(t, mfs...), nil, textparse.ParserOptions{}))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, e := range entries {
			if e.key != nil {
				l, _, _ := strings.Cut(strings.TrimPrefix(e.text, "series "), " st=")
				out[l] = string(e.key)
			}
		}
		return out
	}
	a, b := keys(1), keys(2)
	if len(a) != 5 { // g, h_count, h_sum, h_bucket{le="1"}, h_bucket{le="+Inf"}
		t.Fatalf("got %d series, want 5: %v", len(a), a)
	}
	for l, k := range a {
		if b[l] != k {
			t.Errorf("%s: key changed with the value", l)
		}
	}
}

// TestNewContentTypes checks which parser New picks.
func TestNewContentTypes(t *testing.T) {
	for _, tc := range []struct {
		contentType string
		opts        textparse.ParserOptions
		fast        bool
	}{
		{protoContentType, textparse.ParserOptions{}, true},
		{"application/vnd.google.protobuf", textparse.ParserOptions{IgnoreNativeHistograms: true}, true},
		{protoContentType, textparse.ParserOptions{ConvertClassicHistogramsToNHCB: true}, false},
		{protoContentType, textparse.ParserOptions{EnableTypeAndUnitLabels: true}, false},
		{"application/vnd.google.protobuf; broken=", textparse.ParserOptions{FallbackContentType: "text/plain"}, false},
		{"text/plain; version=0.0.4", textparse.ParserOptions{}, false},
	} {
		p, _ := New(nil, tc.contentType, nil, tc.opts)
		if _, fast := p.(*protobufParser); fast != tc.fast {
			t.Errorf("%q %+v: fast parser %v, want %v", tc.contentType, tc.opts, fast, tc.fast)
		}
	}
}

func FuzzProtobufParser(f *testing.F) {
	mfs := append(gathered(f), crafted()...)
	f.Add(delimited(f, mfs...), uint8(0))
	for i, mf := range mfs {
		f.Add(delimited(f, mf), uint8(i%len(parserOptions)))
	}
	f.Add([]byte{0x05, 0x0a}, uint8(0))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, o uint8) {
		compareParsers(t, b, parserOptions[int(o)%len(parserOptions)])
	})
}
