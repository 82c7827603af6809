package exposition

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

// serveOpenMetrics returns what promhttp's handler for reg serves a
// scraper that asks for OpenMetrics, with _created lines if created.
func serveOpenMetrics(t testing.TB, reg prometheus.Gatherer, created bool) []byte {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		EnableOpenMetrics:                   true,
		EnableOpenMetricsTextCreatedSamples: created,
	}))
	defer srv.Close()
	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); !bytes.HasPrefix([]byte(ct), []byte(openMetricsMediaType)) {
		t.Fatalf("promhttp served %q, not OpenMetrics", ct)
	}
	return b
}

// omOptions are the parser options the scrape loop passes (and
// OpenMetricsSkipSTSeries, which textparse.New honours for OpenMetrics),
// in every combination: bit i of the index sets option i. The conversion
// of classic histograms with OpenMetricsSkipSTSeries is left out: the
// scrape loop never asks for it, and there Prometheus' parser looks ahead
// for start timestamps on its own, where a malformed exemplar makes it loop
// forever (TestOpenMetricsStartTimestampMalformed), which no comparison
// survives.
func omOptions(i uint8) textparse.ParserOptions {
	o := textparse.ParserOptions{
		IgnoreNativeHistograms:                  i&1 != 0,
		KeepClassicOnClassicAndNativeHistograms: i&2 != 0,
		OpenMetricsSkipSTSeries:                 i&4 != 0,
		ConvertClassicHistogramsToNHCB:          i&8 != 0,
	}
	if o.ConvertClassicHistogramsToNHCB {
		o.OpenMetricsSkipSTSeries = false
	}
	return o
}

const omOptionCombinations = 16

// stMasks are the patterns of StartTimestamp calls the comparisons use:
// none (start timestamps off), every series (all endpoints 2.0, all
// samples kept), and every other one (some samples dropped).
var stMasks = []uint64{0, ^uint64(0), 0x5555555555555555}

func TestOpenMetricsParsersMatchPrometheus(t *testing.T) {
	for name, b := range textSeeds(t) {
		if seedContentType(name) != omContentType {
			continue
		}
		t.Run(name, func(t *testing.T) {
			for o := range uint8(omOptionCombinations) {
				for _, mask := range stMasks {
					compareText(t, b, omContentType, omOptions(o), mask)
				}
			}
		})
	}
}

// omFallbackCases are expositions the OpenMetrics fast path gives up on,
// at the line the name says.
var omFallbackCases = []struct {
	name, in string
}{
	{"quoted name", "# TYPE a counter\na_total 1\na_created 5\na_total{x=\"1\"} 2\n{\"a.b\"} 1\n# EOF\n"},
	{"quoted name in look-ahead", "# TYPE a counter\na_total 1\n{\"a_created\"} 5\n# EOF\n"},
	{"start timestamp cached across a TYPE", "# TYPE a counter\na_total 1\na_created 5\n# TYPE a counter\na_total 2\n{\"a_total\",x=\"1\"} 2\n# EOF\n"},
	{"trailing comma", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\",} 2\nh_created 7\n# EOF\n"},
	{"blank line", "# TYPE a counter\na_total 1\n\na_created 1\n# EOF\n"},
	{"comment", "# TYPE a gauge\na 1\n# a comment\n# EOF\n"},
	{"no EOF", "# TYPE a gauge\na 1\n"},
	{"data after EOF", "# TYPE a gauge\na 1\n# EOF\na 2\n"},
	{"newline after EOF", "a 1\n# EOF\n\n"},
	{"no final newline", "a 1\na 2"},
	{"bad value", "a 1\nb 1x\n# EOF\n"},
	{"bad type", "# TYPE a counters\na_total 1\n# EOF\n"},
	{"bad unit", "# TYPE a gauge\n# UNIT a seconds\na 1\n# EOF\n"},
	{"NaN timestamp", "a 1 NaN\n# EOF\n"},
	{"two timestamps", "a 1 2 3\n# EOF\n"},
	{"bad exemplar", "# TYPE a counter\na_total 1\na_total 2 # {d=x\"} 5.0\na_created 1\n# EOF\n"},
	{"exemplar on a later line", "# TYPE a counter\na_total 1\na_total{b=\"1\"} 2 # {d=\"x\"} 5.0 1 2\na_created 1\n# EOF\n"},
	{"space before value", "a  1\n# EOF\n"},
	{"NUL", "a 1\n\x00b 2\n# EOF\n"},
	// Families without _created lines are not read ahead: the fast path
	// gives up only at the line, and the fallback gets the start-timestamp
	// state of the samples before it.
	{"quoted name, no _created", "# TYPE a counter\na_total 1\na_total{x=\"1\"} 2\n{\"a.b\"} 1\n# TYPE b counter\nb_total 1\nb_created 3\n# EOF\n"},
	{"blank line, no _created", "# TYPE a counter\na_total 1\n\na_total{x=\"1\"} 2\n# EOF\n"},
	{"space before value, no _created", "# TYPE a counter\na_total 1\na_total{x=\"1\"}  2\n# TYPE b counter\nb_total 1\nb_created 3\n# EOF\n"},
	{"no final newline, no _created", "# TYPE a counter\na_total 1\na_total{x=\"2\"} 2"},
	{"summary without _created, then bad line", "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 2\ns_count 3\ns_count{x=\"1\"} 4 5 6\n# EOF\n"},
	{"long family name at the end", "# TYPE aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa counter\nb 1\n{\"x\"} 1\n# EOF\n"},
}

// TestOpenMetricsParserFastPath checks that the fast path takes the
// OpenMetrics of client_golang, Java's simpleclient and a
// kube-state-metrics-like exporter to the end, and hands the rest of an
// exposition to Prometheus' parser, with the same start-timestamp state,
// from the first line it does not take.
func TestOpenMetricsParserFastPath(t *testing.T) {
	seeds := textSeeds(t)
	for _, name := range []string{
		"client_golang.om", "client_golang_created.om", "promhttp.om", "promhttp_created.om",
		"java_simpleclient.om.txt", "kube_state_metrics.om.txt", "edge_cases.om.txt",
		"created_mixed.om.txt", "good.om.txt",
	} {
		b, ok := seeds[name]
		if !ok {
			t.Fatalf("no seed %s", name)
		}
		for _, mask := range stMasks {
			for _, skip := range []bool{false, true} {
				p := compareText(t, b, omContentType, textparse.ParserOptions{OpenMetricsSkipSTSeries: skip}, mask)
				if p.(*omParser).fb != nil {
					t.Errorf("%s, start timestamps %x, skip %v: the fast path gave up", name, mask, skip)
				}
			}
		}
	}
	for _, tc := range omFallbackCases {
		for _, mask := range stMasks {
			p := compareText(t, []byte(tc.in), omContentType, textparse.ParserOptions{}, mask)
			if p.(*omParser).fb == nil {
				t.Errorf("%s: the fast path took %q", tc.name, tc.in)
			}
		}
	}
}

// TestOpenMetricsParserAllocations checks that the fast path allocates
// nothing per sample, start timestamps included: the allocations of a
// parse do not grow with the series.
func TestOpenMetricsParserAllocations(t *testing.T) {
	allocs := func(n int, created bool) float64 {
		body := benchOpenMetrics(t, n, created)
		var ps Parsers
		st := labels.NewSymbolTable()
		return testing.AllocsPerRun(5, func() {
			p, _ := ps.New(body, omContentType, st, textparse.ParserOptions{})
			for {
				e, err := p.Next()
				if err != nil {
					break
				}
				if e == textparse.EntrySeries {
					p.Series()
					p.StartTimestamp()
				}
			}
		})
	}
	for _, created := range []bool{false, true} {
		small, large := allocs(1, created), allocs(20, created)
		if large > small {
			t.Errorf("_created lines %v: allocations per parse grow with the series: %v, then %v at 20 times the series", created, small, large)
		}
	}
}

// benchOpenMetrics is what promhttp serves for a registry of n×100
// counter series, n×100 gauges and n×10 histograms of 10 buckets, in
// families of 100 series (10 histograms), with _created lines if created.
func benchOpenMetrics(t testing.TB, n int, created bool) []byte {
	t.Helper()
	reg := prometheus.NewRegistry()
	for f := range n {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: fmt.Sprintf("app_requests_%d_total", f), Help: "Requests."}, []string{"handler", "code"})
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: fmt.Sprintf("app_queue_length_%d", f), Help: "Queue length."}, []string{"queue", "shard"})
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: fmt.Sprintf("app_latency_%d_seconds", f), Help: "Latency.", Buckets: prometheus.DefBuckets[:10]}, []string{"handler"})
		for i := range 100 {
			c.WithLabelValues(fmt.Sprintf("/api/v1/resource/%d", i), "200").Add(float64(i))
			g.WithLabelValues(fmt.Sprintf("queue-%d", i), fmt.Sprint(i%4)).Set(math.Sqrt(float64(i)))
		}
		for i := range 10 {
			h.WithLabelValues(fmt.Sprintf("/api/v1/resource/%d", i)).Observe(float64(i) / 10)
		}
		reg.MustRegister(c, g, h)
	}
	return serveOpenMetrics(t, reg, created)
}

func FuzzOpenMetricsParser(f *testing.F) {
	for name, b := range textSeeds(f) {
		if seedContentType(name) != omContentType {
			continue
		}
		if len(b) > maxFuzzSeed {
			b = append(b[:bytes.LastIndexByte(b[:maxFuzzSeed], '\n')+1], "# EOF\n"...)
		}
		f.Add(b, uint8(0), ^uint64(0))
		f.Add(b, uint8(4), uint64(0x5555555555555555))
	}
	for _, tc := range omFallbackCases {
		f.Add([]byte(tc.in), uint8(0), ^uint64(0))
	}
	f.Fuzz(func(t *testing.T, b []byte, opts uint8, stMask uint64) {
		if len(b) > 4*maxFuzzSeed {
			return
		}
		compareText(t, b, omContentType, omOptions(opts%omOptionCombinations), stMask)
	})
}

// TestOpenMetricsTestdata checks that every OpenMetrics file in testdata
// parses without error in Prometheus' parser: they are well-formed seeds.
func TestOpenMetricsTestdata(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.om.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseMasked(prometheusParser(t, b, omContentType, textparse.ParserOptions{}), 0); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestOpenMetricsContentTypes checks which media types our OpenMetrics
// parser serves: OpenMetrics of any version textparse reads as 1.0, with
// no option that changes the series; and that the others get textparse's
// parser with textparse's error.
func TestOpenMetricsContentTypes(t *testing.T) {
	body := []byte("# TYPE a counter\na_total 1\n# EOF\n")
	for _, tc := range []struct {
		contentType string
		opts        textparse.ParserOptions
		ours        bool
	}{
		{omContentType, textparse.ParserOptions{}, true},
		{"application/openmetrics-text; version=0.0.1; charset=utf-8", textparse.ParserOptions{}, true},
		{"application/openmetrics-text", textparse.ParserOptions{OpenMetricsSkipSTSeries: true, IgnoreNativeHistograms: true}, true},
		{"application/openmetrics-text; version=2.0.0", textparse.ParserOptions{}, false},
		{"application/openmetrics-text; version=2.0.0", textparse.ParserOptions{FallbackContentType: "application/openmetrics-text"}, false},
		{"application/openmetrics-text; version=1.0.0; charset", textparse.ParserOptions{FallbackContentType: "application/openmetrics-text"}, false},
		{omContentType, textparse.ParserOptions{ConvertClassicHistogramsToNHCB: true}, false},
		{omContentType, textparse.ParserOptions{EnableTypeAndUnitLabels: true}, false},
	} {
		var ps Parsers
		p, err := ps.New(body, tc.contentType, labels.NewSymbolTable(), tc.opts)
		_, wantErr := textparse.New(body, tc.contentType, labels.NewSymbolTable(), tc.opts)
		if fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Errorf("%q %+v: error %v, want %v", tc.contentType, tc.opts, err, wantErr)
		}
		if _, ours := p.(*omParser); ours != tc.ours {
			t.Errorf("%q %+v: our parser: %v, want %v", tc.contentType, tc.opts, ours, tc.ours)
		}
	}
}

// TestOpenMetricsExemplarBeforeFallback checks that an exemplar already
// returned is not returned again when a StartTimestamp after it hands the
// exposition to Prometheus' parser, as Prometheus' returns it once.
func TestOpenMetricsExemplarBeforeFallback(t *testing.T) {
	b := []byte("# TYPE a counter\na_total 1 # {t=\"x\"} 1\n{\"a_created\"} 5\n# EOF\n")
	run := func(p textparse.Parser) (out []string) {
		for {
			e, err := p.Next()
			if err != nil {
				return append(out, fmt.Sprint(err))
			}
			if e != textparse.EntrySeries {
				continue
			}
			var ex exemplar.Exemplar
			first := p.Exemplar(&ex)
			st := p.StartTimestamp()
			again := p.Exemplar(&ex)
			out = append(out, fmt.Sprintf("%v %s st=%d %v", first, ex.Labels, st, again))
		}
	}
	want := run(prometheusParser(t, exact(b), omContentType, textparse.ParserOptions{}))
	var ps Parsers
	p, _ := ps.New(exact(b), omContentType, labels.NewSymbolTable(), textparse.ParserOptions{})
	got := run(p)
	if p.(*omParser).fb == nil {
		t.Error("the fast path took the quoted name")
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
