package exposition

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

const (
	textContentType = "text/plain; version=0.0.4; charset=utf-8"
	omContentType   = "application/openmetrics-text; version=1.0.0; charset=utf-8"
)

// textContentTypes are the media types the text comparisons run under.
var textContentTypes = []string{textContentType, omContentType}

// prometheusParser is what textparse.New would return for b: the parser
// ours must match entry for entry.
func prometheusParser(t testing.TB, b []byte, contentType string, opts textparse.ParserOptions) textparse.Parser {
	t.Helper()
	p, err := textparse.New(b, contentType, labels.NewSymbolTable(), opts)
	if p == nil {
		t.Fatalf("textparse.New(%q): %v", contentType, err)
	}
	return p
}

// parseMasked is parseAll with StartTimestamp called only on the series
// whose index (mod 64) has its bit set in stMask, as the scrape loop asks
// only for samples it keeps; each call's answer is part of the entry.
func parseMasked(p textparse.Parser, stMask uint64) (out []entry, err error) {
	for i := 0; ; i++ {
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
		case textparse.EntrySeries:
			k, ts, v := p.Series()
			e.key = bytes.Clone(k)
			var l labels.Labels
			p.Labels(&l)
			var b strings.Builder
			fmt.Fprintf(&b, "series %s %s %x", l, tsText(ts), math.Float64bits(v))
			if stMask&(1<<(i%64)) != 0 {
				fmt.Fprintf(&b, " st=%d", p.StartTimestamp())
			}
			var ex exemplar.Exemplar
			for p.Exemplar(&ex) {
				fmt.Fprintf(&b, " ex{%s %x %v %d}", ex.Labels, math.Float64bits(ex.Value), ex.HasTs, ex.Ts)
				ex = exemplar.Exemplar{}
			}
			e.text = b.String()
		default:
			e.text = fmt.Sprintf("entry %d", et)
		}
		out = append(out, e)
	}
}

// compareText parses b of media type contentType with Prometheus' parser
// and with ours and fails at the first difference: entries, series keys,
// start timestamps where asked, and the error that ends them, to the
// letter. It returns our parser, run to its end.
func compareText(t testing.TB, b []byte, contentType string, opts textparse.ParserOptions, stMask uint64) textparse.Parser {
	t.Helper()
	if contentType == omContentType && stMask != 0 {
		// Prometheus' OpenMetrics parser spins forever in the look-ahead
		// of StartTimestamp on some malformed expositions; ours answers 0
		// (TestOpenMetricsStartTimestampMalformed). Start timestamps of an
		// exposition that fails to parse are never kept: compare them only
		// where it parses. Where it panics, ours must not, and answers 0
		// (TestOpenMetricsStartTimestampOutOfRange).
		if _, err := parseMasked(prometheusParser(t, bytes.Clone(b), contentType, opts), 0); err != nil {
			stMask = 0
		} else if panics(func() { parseMasked(prometheusParser(t, exact(b), contentType, opts), stMask) }) {
			var ps Parsers
			p, _ := ps.New(bytes.Clone(b), contentType, labels.NewSymbolTable(), opts)
			if p != nil {
				parseMasked(p, stMask)
			}
			stMask = 0
		}
	}
	// Prometheus' text parser may append a newline to its input: each
	// parser gets its own copy.
	want, werr := parseMasked(prometheusParser(t, exact(b), contentType, opts), stMask)
	var ps Parsers
	p, err := ps.New(bytes.Clone(b), contentType, labels.NewSymbolTable(), opts)
	if p == nil {
		t.Fatalf("New(%q): %v", contentType, err)
	}
	got, gerr := parseMasked(p, stMask)
	for i := range max(len(want), len(got)) {
		if i >= len(want) || i >= len(got) || want[i].text != got[i].text || !bytes.Equal(want[i].key, got[i].key) {
			var w, g entry
			if i < len(want) {
				w = want[i]
			}
			if i < len(got) {
				g = got[i]
			}
			t.Fatalf("%s %+v: entry %d:\nPrometheus: %s key %q\nours:       %s key %q", contentType, opts, i, w.text, w.key, g.text, g.key)
		}
	}
	if fmt.Sprint(werr) != fmt.Sprint(gerr) {
		t.Fatalf("%s %+v: after %d entries, error:\nPrometheus: %v\nours:       %v", contentType, opts, len(got), werr, gerr)
	}
	return p
}

// exact returns a copy of b whose capacity is its length: Prometheus'
// OpenMetrics parser may read past the length of its input up to the
// capacity, where ours (and a copy of the same length) stops.
func exact(b []byte) []byte {
	c := bytes.Clone(b)
	return c[:len(c):len(c)]
}

// panics says whether f panics.
func panics(f func()) (p bool) {
	defer func() { p = recover() != nil }()
	f()
	return false
}

// encodeText renders the families client_golang's registry gathers in the
// text format of contentType, as its handler serves them (with _created
// lines in OpenMetrics if created).
func encodeText(t testing.TB, reg prometheus.Gatherer, contentType string, created bool) []byte {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var (
		buf  bytes.Buffer
		opts []expfmt.EncoderOption
	)
	if created {
		opts = append(opts, expfmt.WithCreatedLines())
	}
	enc := expfmt.NewEncoder(&buf, expfmt.Format(contentType), opts...)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	if c, ok := enc.(expfmt.Closer); ok {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// textSeeds are the expositions the text comparisons start from, by name:
// the files in testdata and what client_golang serves for the registry of
// registerKinds (every kind of metric, exemplars), in both text formats,
// with and without _created lines, encoded and as promhttp's handler
// serves OpenMetrics over HTTP.
func textSeeds(t testing.TB) map[string][]byte {
	t.Helper()
	seeds := map[string][]byte{}
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		seeds[filepath.Base(f)] = b
	}
	reg := prometheus.NewRegistry()
	registerKinds(t, reg)
	seeds["client_golang.prom"] = encodeText(t, reg, textContentType, false)
	seeds["client_golang.om"] = encodeText(t, reg, omContentType, false)
	seeds["client_golang_created.om"] = encodeText(t, reg, omContentType, true)
	seeds["promhttp.om"] = serveOpenMetrics(t, reg, false)
	seeds["promhttp_created.om"] = serveOpenMetrics(t, reg, true)
	return seeds
}

// seedContentType is the media type a seed is parsed as: OpenMetrics for
// names ending in .om or .om.txt.
func seedContentType(name string) string {
	if strings.HasSuffix(name, ".om") || strings.HasSuffix(name, ".om.txt") {
		return omContentType
	}
	return textContentType
}

// registerKinds registers on reg one of each kind of
// metric with exemplars, and enough counters without _created lines to
// make a look-ahead per sample show.
func registerKinds(t testing.TB, reg *prometheus.Registry) {
	t.Helper()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "requests_total", Help: "Requests."}, []string{"path", "code"})
	c.WithLabelValues("/a", "200").Add(3)
	c.WithLabelValues("/b", "").Add(1)
	c.WithLabelValues("/ü", "500").(prometheus.ExemplarAdder).AddWithExemplar(2, prometheus.Labels{"trace_id": "abc"})
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "queue_length", Help: "Queue \"length\"\nwith a newline\\."}, []string{"queue"})
	g.WithLabelValues("q1").Set(-1.5)
	g.WithLabelValues("q2").Set(math.NaN())
	g.WithLabelValues("q\"3\"\n").Set(math.Inf(-1))
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "latency_seconds", Help: "Latency.", Buckets: []float64{0.1, 1, 10}}, []string{"handler"})
	h.WithLabelValues("/x").Observe(0.5)
	h.WithLabelValues("/y").(prometheus.ExemplarObserver).ObserveWithExemplar(5, prometheus.Labels{"trace_id": "def", "span": "1"})
	s := prometheus.NewSummaryVec(prometheus.SummaryOpts{Name: "rpc_seconds", Help: "RPC.", Objectives: map[float64]float64{0.5: 0.05, 0.99: 0.001}}, []string{"service"})
	s.WithLabelValues("a").Observe(1)
	s.WithLabelValues("b").Observe(2)
	u := prometheus.NewUntypedFunc(prometheus.UntypedOpts{Name: "untyped_thing", Help: ""}, func() float64 { return 42 })
	many := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "many_total", Help: "Many."}, []string{"i"})
	for i := range 50 {
		many.WithLabelValues(fmt.Sprint(i)).Add(float64(i))
	}
	reg.MustRegister(c, g, h, s, u, many)
}

func TestTextParsersMatchPrometheus(t *testing.T) {
	for name, b := range textSeeds(t) {
		t.Run(name, func(t *testing.T) {
			for _, mask := range []uint64{0, ^uint64(0), 0x5555555555555555} {
				compareText(t, b, seedContentType(name), textparse.ParserOptions{}, mask)
			}
		})
	}
}

// TestOpenMetricsStartTimestampLookahead checks that the start timestamps
// of counters without _created lines cost no look-ahead: Prometheus'
// parser allocates a lexer for each, so its allocations grow with the
// series; ours must not.
func TestOpenMetricsStartTimestampLookahead(t *testing.T) {
	allocs := func(n int) float64 {
		reg := prometheus.NewRegistry()
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total", Help: "C."}, []string{"i"})
		for i := range n {
			c.WithLabelValues(fmt.Sprint(i)).Inc()
		}
		reg.MustRegister(c)
		body := encodeText(t, reg, omContentType, false)
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
					p.StartTimestamp()
				}
			}
		})
	}
	small, large := allocs(10), allocs(1000)
	t.Logf("allocations per parse: %v at 10 counters, %v at 1000", small, large)
	if large > small+5 {
		t.Errorf("allocations per parse grow with the counters: %v at 10, %v at 1000", small, large)
	}
}

// TestOpenMetricsStartTimestampMalformed checks that a malformed exemplar
// after a counter, on which Prometheus' look-ahead spins forever, fails the
// parse with Prometheus' error instead of hanging.
func TestOpenMetricsStartTimestampMalformed(t *testing.T) {
	b := []byte("# TYPE a counter\na_total 1\na_total 2 # {d=x\"} 5.0\na_created 1\n# EOF\n")
	want, werr := parseMasked(prometheusParser(t, b, omContentType, textparse.ParserOptions{}), 0)
	var ps Parsers
	p, _ := ps.New(b, omContentType, labels.NewSymbolTable(), textparse.ParserOptions{})
	got, gerr := parseMasked(p, ^uint64(0))
	if werr == nil || fmt.Sprint(werr) != fmt.Sprint(gerr) || len(got) != len(want) {
		t.Fatalf("got %d entries and %v, want %d and %v", len(got), gerr, len(want), werr)
	}
	if !strings.HasSuffix(got[1].text, " st=0") {
		t.Errorf("start timestamp: %s", got[1].text)
	}
}

// TestOpenMetricsStartTimestampOutOfRange checks that expositions on which
// Prometheus' StartTimestamp slices out of its input and panics (a family
// name longer than the rest of the exposition, a quoted name after a
// label) give start timestamps of 0 instead, through our parser and
// through Prometheus' wrapped in createdLookahead, and otherwise the same
// entries.
func TestOpenMetricsStartTimestampOutOfRange(t *testing.T) {
	for _, in := range []string{
		"# TYPE aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa counter\nb 1\n# EOF\n",
		"# TYPE aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa counter\nb 1\n{\"x\"} 1\n# EOF\n",
		"# TYPE a counter\n{x=\"1\",\"a_total\"} 1\n# EOF\n",
	} {
		b := []byte(in)
		for _, opts := range []textparse.ParserOptions{{}, {ConvertClassicHistogramsToNHCB: true}} {
			if !panics(func() { parseMasked(prometheusParser(t, exact(b), omContentType, opts), ^uint64(0)) }) {
				t.Errorf("%+v: Prometheus' parser does not panic on %q: the guard is not needed", opts, in)
			}
			want, werr := parseMasked(prometheusParser(t, exact(b), omContentType, opts), 0)
			var ps Parsers
			p, _ := ps.New(exact(b), omContentType, labels.NewSymbolTable(), opts)
			got, gerr := parseMasked(p, ^uint64(0))
			if fmt.Sprint(werr) != fmt.Sprint(gerr) || len(got) != len(want) {
				t.Fatalf("%+v: %q: got %d entries and %v, want %d and %v", opts, in, len(got), gerr, len(want), werr)
			}
			for i := range got {
				if w := want[i].text; got[i].text != w && got[i].text != w+" st=0" {
					t.Errorf("%+v: %q: entry %d: got %s, want %s with st=0", opts, in, i, got[i].text, w)
				}
			}
		}
		var c createdLookahead
		body, st := exact(b), labels.NewSymbolTable()
		c.reset(textparse.NewOpenMetricsParser(body, st), body, st)
		if _, err := parseMasked(&c, ^uint64(0)); err != nil {
			t.Errorf("%q: createdLookahead: %v", in, err)
		}
	}
}

// TestTextParserFastPath checks that the fast path takes the text
// expositions of client_golang and node_exporter to the end, and hands
// the rest of an exposition to Prometheus' parser from the first line it
// does not take.
func TestTextParserFastPath(t *testing.T) {
	seeds := textSeeds(t)
	for _, name := range []string{"client_golang.prom", "node_exporter.txt", "kube_state_metrics.txt"} {
		b, ok := seeds[name]
		if !ok {
			t.Fatalf("no seed %s", name)
		}
		p := compareText(t, b, textContentType, textparse.ParserOptions{}, 0)
		if fb := p.(*textParser).fb; fb != nil {
			t.Errorf("%s: the fast path gave up", name)
		}
	}
	for _, tc := range []struct {
		name, in string
	}{
		{"comment", "# HELP a A.\n# TYPE a counter\na 1\n# a comment\na{x=\"1\"} 2\n"},
		{"space in labels", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{ le=\"2\"} 1\n"},
		{"tab", "# TYPE s summary\ns{quantile=\"0.50\"} 1\ns{quantile=\"1\"}\t2\n"},
		{"no TYPE", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nother{le=\"1\"} 1\nother{le=\"2\",} 1\n"},
		{"bad value", "a 1\nb 1x\n"},
		{"no final newline", "a 1\nb 2"},
		{"NUL", "a 1\n\x00b 2\n"},
	} {
		p := compareText(t, []byte(tc.in), textContentType, textparse.ParserOptions{}, 0)
		if p.(*textParser).fb == nil {
			t.Errorf("%s: the fast path took %q", tc.name, tc.in)
		}
	}
}

// maxFuzzSeed is the length a fuzz seed is cut to.
const maxFuzzSeed = 4 << 10

func FuzzTextParser(f *testing.F) {
	for name, b := range textSeeds(f) {
		// The whole files run in TestTextParsersMatchPrometheus; the
		// fuzzer mutates their first lines, which keeps each run short
		// (Prometheus' OpenMetrics look-ahead is quadratic in a family).
		if len(b) > maxFuzzSeed {
			b = b[:bytes.LastIndexByte(b[:maxFuzzSeed], '\n')+1]
		}
		ct := uint8(0)
		if seedContentType(name) == omContentType {
			ct = 1
		}
		f.Add(b, ct, ^uint64(0))
	}
	f.Fuzz(func(t *testing.T, b []byte, ct uint8, stMask uint64) {
		if len(b) > 4*maxFuzzSeed {
			return
		}
		compareText(t, b, textContentTypes[int(ct)%len(textContentTypes)], textparse.ParserOptions{}, stMask)
	})
}

// TestParseValue checks parseValue's fast paths for integers and decimals
// against strconv.ParseFloat, bit for bit, and that it leaves the rest to
// it.
func TestParseValue(t *testing.T) {
	in := []string{"0", "-0", "0.0", "-0.0", "1.0", "00.10", "1.", ".5", "-.5", "+1.5", "1.5e3",
		"123456789012345", "1234567890123456", "12345678901234.5", "-12345678901234.5", "1234567890123.45",
		"0.000000000000001", "0.1", "0.2", "0.3", "3.1622776601683795", "9007199254740993", "1..5", "1.5.", "-", "NaN", "Inf"}
	r := rand.New(rand.NewPCG(15, 15))
	for range 20000 {
		digits := 1 + r.IntN(15)
		d := strconv.FormatUint(r.Uint64N(uint64(math.Pow10(digits))), 10)
		if cut := r.IntN(len(d) + 1); cut > 0 && cut < len(d) {
			d = d[:cut] + "." + d[cut:]
		}
		if r.IntN(2) == 0 {
			d = "-" + d
		}
		in = append(in, d)
	}
	for _, s := range in {
		want, err := strconv.ParseFloat(s, 64)
		got, ok := parseValue([]byte(s))
		if ok != (err == nil) || ok && math.Float64bits(got) != math.Float64bits(want) && !math.IsNaN(want) {
			t.Errorf("parseValue(%q) = %v, %v; strconv: %v, %v", s, got, ok, want, err)
		}
	}
}
