package scrape

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"google.golang.org/protobuf/proto"

	"github.com/rwagent/rwagent/bench/loadgen"
	"github.com/rwagent/rwagent/pkg/wal"
)

const (
	ctText  = "text/plain; version=0.0.4; charset=utf-8"
	ctOM    = "application/openmetrics-text; version=1.0.0; charset=utf-8"
	ctProto = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)

// testTarget is the target the unit tests scrape.
var testTargetLabels = []labels.Label{{Name: "instance", Value: "host:9100"}, {Name: "job", Value: "node"}}

func testOptions() *appendOptions {
	return &appendOptions{
		targetLabels:    testTargetLabels,
		honorTimestamps: true,
		validation:      model.UTF8Validation,
		maxSchema:       maxSchemaFor(0),
	}
}

func newTestAppender(opts *appendOptions, s Storage) *appender {
	return newAppender(opts, s, newSeriesCache(), newScrapeMetrics(nil), newParserPool(1))
}

// step runs one scrape iteration the way loop.scrapeOnce does, without HTTP:
// append, finish, report, log, release.
func step(a *appender, s Storage, body, contentType string, t int64) (appendResult, error) {
	a.recs.Reset()
	var (
		res appendResult
		err error
	)
	if body != "" || contentType != "" {
		res, err = a.append([]byte(body), contentType, t, t)
	} else {
		err = errors.New("test: scrape failed")
	}
	a.cache.finish(err == nil, t, a.recs)
	up := 0.0
	if err == nil {
		up = 1
	}
	a.report(t, &[numReportSeries]float64{reportUp: up, reportSamplesScraped: float64(res.total)})
	lerr := s.Log(a.recs)
	a.logged(lerr == nil)
	if len(a.cache.released) > 0 {
		s.Release(a.cache.released)
	}
	return res, err
}

func TestAppend_TargetLabels(t *testing.T) {
	cases := []struct {
		name   string
		honor  bool
		mrc    []*relabel.Config
		body   string
		want   []string // labels of the series named "m", as a string
		wantOK bool
	}{
		{
			name:   "target labels added",
			body:   "m{a=\"1\"} 1\n",
			want:   []string{`{__name__="m", a="1", instance="host:9100", job="node"}`},
			wantOK: true,
		},
		{
			name:   "conflict renamed to exported_",
			body:   "m{job=\"app\"} 1\n",
			want:   []string{`{__name__="m", exported_job="app", instance="host:9100", job="node"}`},
			wantOK: true,
		},
		{
			name:   "conflict chain of exported_",
			body:   "m{job=\"app\",exported_job=\"x\"} 1\n",
			want:   []string{`{__name__="m", exported_exported_job="app", exported_job="x", instance="host:9100", job="node"}`},
			wantOK: true,
		},
		{
			name:   "honor_labels keeps exposed",
			honor:  true,
			body:   "m{job=\"app\"} 1\n",
			want:   []string{`{__name__="m", instance="host:9100", job="app"}`},
			wantOK: true,
		},
		{
			name: "metric relabel drop",
			mrc: []*relabel.Config{{
				SourceLabels: model.LabelNames{"a"}, Regex: relabel.MustNewRegexp("drop"), Action: relabel.Drop,
				Separator: ";", NameValidationScheme: model.UTF8Validation,
			}},
			body:   "m{a=\"drop\"} 1\nm{a=\"keep\"} 2\n",
			want:   []string{`{__name__="m", a="keep", instance="host:9100", job="node"}`},
			wantOK: true,
		},
		{
			name:   "route label exposed is removed",
			honor:  true,
			body:   "m{__rwagent_remote_write_names__=\"amp\",a=\"1\"} 1\n",
			want:   []string{`{__name__="m", a="1", instance="host:9100", job="node"}`},
			wantOK: true,
		},
		{
			name: "route label made by relabeling is removed",
			mrc: []*relabel.Config{{
				SourceLabels: model.LabelNames{"a"}, Regex: relabel.MustNewRegexp("(.*)"), TargetLabel: wal.RouteLabel,
				Replacement: "amp", Action: relabel.Replace, Separator: ";", NameValidationScheme: model.UTF8Validation,
			}},
			body:   "m{a=\"1\"} 1\n",
			want:   []string{`{__name__="m", a="1", instance="host:9100", job="node"}`},
			wantOK: true,
		},
		{
			name: "relabel removing the name fails the scrape",
			mrc: []*relabel.Config{{
				Regex: relabel.MustNewRegexp("__name__"), Action: relabel.LabelDrop,
				Separator: ";", NameValidationScheme: model.UTF8Validation,
			}},
			body: "m 1\n",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMemStorage()
			opts := testOptions()
			opts.honorLabels, opts.metricRelabel = tc.honor, tc.mrc
			a := newTestAppender(opts, s)
			_, err := step(a, s, tc.body, ctText, 1000)
			if (err == nil) != tc.wantOK {
				t.Fatalf("append error = %v, want ok=%v", err, tc.wantOK)
			}
			var got []string
			for _, ref := range s.find("__name__", "m") {
				got = append(got, s.series[ref].String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("series = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAppend_LabelLimits(t *testing.T) {
	cases := []struct {
		name                  string
		labelLimit, nameLimit int
		valueLimit            int
		body                  string
		wantErr               string
	}{
		{name: "label_limit", labelLimit: 3, body: "m{a=\"1\",b=\"2\"} 1\n", wantErr: "label_limit 3"},
		{name: "label_limit not reached", labelLimit: 4, body: "m{a=\"1\"} 1\n"},
		{name: "label_name_length_limit", nameLimit: 5, body: "m{abcdef=\"1\"} 1\n", wantErr: "label_name_length_limit 5"},
		{name: "label_value_length_limit", valueLimit: 3, body: "m{a=\"1234\"} 1\n", wantErr: "label_value_length_limit 3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMemStorage()
			opts := testOptions()
			opts.labelLimit, opts.labelNameLengthLimit, opts.labelValueLengthLimit = tc.labelLimit, tc.nameLimit, tc.valueLimit
			a := newTestAppender(opts, s)
			_, err := step(a, s, tc.body, ctText, 1000)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("append: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrLabelLimit) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want ErrLabelLimit mentioning %q", err, tc.wantErr)
			}
			if len(s.find("__name__", "m")) != 0 {
				t.Error("series of a failed scrape were logged")
			}
			if v, _ := s.last("__name__", "up"); v != 0 {
				t.Errorf("up = %v, want 0", v)
			}
		})
	}
}

func TestAppend_Timestamps(t *testing.T) {
	for _, honor := range []bool{true, false} {
		t.Run(map[bool]string{true: "honor", false: "ignore"}[honor], func(t *testing.T) {
			s := newMemStorage()
			opts := testOptions()
			opts.honorTimestamps = honor
			a := newTestAppender(opts, s)
			for i, ts := range []int64{10_000, 20_000, 30_000} {
				if _, err := step(a, s, "m 1 5000\n", ctText, ts); err != nil {
					t.Fatalf("scrape %d: %v", i, err)
				}
			}
			got := s.floats(t, "__name__", "m")
			if honor {
				// The repeated timestamp is logged once, and the series stays cached.
				if len(got) != 1 || got[0].T != 5000 {
					t.Fatalf("samples = %v, want one at 5000", got)
				}
				if len(s.released) != 0 {
					t.Errorf("released %v while the series is exposed", s.released)
				}
				// Gone: no stale marker for a series with its own timestamps.
				if _, err := step(a, s, "other 1\n", ctText, 40_000); err != nil {
					t.Fatal(err)
				}
				if s.staleAll("__name__", "m") {
					t.Error("stale marker written for a series with explicit timestamps")
				}
				return
			}
			if len(got) != 3 || got[2].T != 30_000 {
				t.Fatalf("samples = %v, want three at scrape times", got)
			}
		})
	}
}

func TestAppend_Duplicates(t *testing.T) {
	s := newMemStorage()
	a := newTestAppender(testOptions(), s)
	b, err := os.ReadFile(filepath.Join("testdata", "dup_series.prom"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := step(a, s, string(b), ctText, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if res.duplicates != 1 || res.total != 2 {
		t.Errorf("result = %+v, want 2 samples of which 1 duplicate", res)
	}
	if got := s.floats(t, "__name__", "metric"); len(got) != 1 || got[0].V != 1 {
		t.Errorf("samples = %v, want the first only", got)
	}
}

func TestAppend_SampleLimit(t *testing.T) {
	s := newMemStorage()
	opts := testOptions()
	opts.sampleLimit = 2
	a := newTestAppender(opts, s)
	if _, err := step(a, s, "a 1\nb 1\n", ctText, 1000); err != nil {
		t.Fatal(err)
	}
	res, err := step(a, s, "a 1\nb 1\nc 1\nd 1\n", ctText, 2000)
	if !errors.Is(err, ErrSampleLimit) {
		t.Fatalf("error = %v, want ErrSampleLimit", err)
	}
	if res.total != 4 {
		t.Errorf("total = %d, want 4 (parsing goes on to count)", res.total)
	}
	if len(s.find("__name__", "c")) != 0 {
		t.Error("series of a rolled back scrape were logged")
	}
	if !s.staleAll("__name__", "a") || !s.staleAll("__name__", "b") {
		t.Error("series of the last good scrape not staled")
	}
	if v, _ := s.last("__name__", "up"); v != 0 {
		t.Errorf("up = %v, want 0", v)
	}
	if a.cache.series() != 2 {
		t.Errorf("cache holds %d series, want 2 (rolled back ones forgotten)", a.cache.series())
	}
}

func TestAppend_LogFailureRetriesSeries(t *testing.T) {
	s := newMemStorage()
	a := newTestAppender(testOptions(), s)
	s.setFail(errTestLog)
	if _, err := step(a, s, "a 1\n", ctText, 1000); err != nil {
		t.Fatal(err)
	}
	s.setFail(nil)
	if _, err := step(a, s, "a 2\n", ctText, 2000); err != nil {
		t.Fatal(err)
	}
	if s.orphans != 0 {
		t.Fatalf("%d samples logged for series whose record was lost", s.orphans)
	}
	if got := s.floats(t, "__name__", "a"); len(got) != 1 || got[0].V != 2 {
		t.Errorf("a samples = %v, want [2]", got)
	}
	if _, ok := s.last("__name__", "up"); !ok {
		t.Error("up series not logged after recovery")
	}
}

func TestAppend_Malformed(t *testing.T) {
	cases := []struct {
		file, contentType, wantErr string
	}{
		{"bad_unclosed_labels.prom", ctText, "parse exposition"},
		{"bad_value.prom", ctText, "parse exposition"},
		{"bad_utf8_label.prom", ctText, "parse exposition"},
		{"bad_om_no_eof.om", ctOM, "parse exposition"},
		{"bad_proto.pb", ctProto, "parse exposition"},
		{"good.prom", "application/json", "unusable Content-Type"},
		{"good.prom", "", "unusable Content-Type"},
	}
	for _, tc := range cases {
		t.Run(tc.file+" "+tc.contentType, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			s := newMemStorage()
			a := newTestAppender(testOptions(), s)
			_, err = step(a, s, string(b), tc.contentType, 1000)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
			for ref, ls := range s.series {
				if !strings.HasPrefix(ls.Get("__name__"), "scrape_") && ls.Get("__name__") != "up" {
					t.Errorf("series %v (ref %d) of a failed scrape logged", ls, ref)
				}
			}
		})
	}
}

// TestAppend_DuplicateLabelNames: a series with a label name twice fails
// the scrape, as Prometheus' storage refuses it ("label name is not
// unique"), rather than going out with the label twice.
func TestAppend_DuplicateLabelNames(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var pb bytes.Buffer
	enc := expfmt.NewEncoder(&pb, expfmt.NewFormat(expfmt.TypeProtoDelim))
	for _, mf := range []*dto.MetricFamily{
		{Name: proto.String("test"), Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{{
			Label: []*dto.LabelPair{{Name: proto.String("a"), Value: proto.String("1")}, {Name: proto.String("a"), Value: proto.String("1")}},
			Gauge: &dto.Gauge{Value: proto.Float64(1)},
		}}},
		{Name: proto.String("ok"), Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(1)}}}},
	} {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name, contentType string
		body              []byte
	}{
		{"text", ctText, read("dup_label_names.prom")},
		{"OpenMetrics", ctOM, read("dup_label_names.om")},
		{"protobuf", ctProto, pb.Bytes()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newMemStorage()
			a := newTestAppender(testOptions(), s)
			for i := range 2 { // not cached: the second scrape fails too
				_, err := step(a, s, string(tc.body), tc.contentType, int64(1000*(i+1)))
				if !errors.Is(err, ErrDuplicateLabelNames) || !strings.Contains(err.Error(), `"a"`) {
					t.Fatalf("scrape %d: error = %v, want ErrDuplicateLabelNames naming label a", i, err)
				}
				if failureReason(err) != failDuplicateNames {
					t.Errorf("failure reason = %q, want %q", failureReason(err), failDuplicateNames)
				}
			}
			if refs := s.find("__name__", "test"); len(refs) != 0 {
				t.Errorf("series with a duplicate label name logged: %v", s.series[refs[0]])
			}
			if refs := s.find("__name__", "ok"); len(refs) != 0 {
				t.Error("other series of the failed scrape logged")
			}
			if v, _ := s.last("__name__", "up"); v != 0 {
				t.Errorf("up = %v, want 0", v)
			}
		})
	}
}

func TestAppend_GoodExpositions(t *testing.T) {
	cases := []struct {
		file, contentType string
		wantTotal         int
		wantExemplars     int
	}{
		{"good.prom", ctText, 13, 0},
		{"good.om", ctOM, 7, 2},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			s := newMemStorage()
			a := newTestAppender(testOptions(), s)
			res, err := step(a, s, string(b), tc.contentType, 1_800_000_000_000)
			if err != nil {
				t.Fatal(err)
			}
			if res.total != tc.wantTotal || res.added != tc.wantTotal || res.seriesAdded != tc.wantTotal {
				t.Errorf("result = %+v, want %d samples, all new", res, tc.wantTotal)
			}
			n := 0
			for _, xs := range s.exs {
				n += len(xs)
			}
			if n != tc.wantExemplars {
				t.Errorf("%d exemplars, want %d", n, tc.wantExemplars)
			}
			if v, _ := s.last("__name__", "temperature_celsius", "job", "node"); v != 21.5 {
				t.Errorf("temperature_celsius = %v, want 21.5", v)
			}
			for _, ref := range s.find("__name__", "temperature_celsius") {
				if m := s.meta[ref]; m.Help != "Temperature." && tc.file == "good.prom" {
					t.Errorf("metadata = %+v, want the HELP text", m)
				}
			}
			// Exemplars repeat unchanged: not logged again.
			if _, err := step(a, s, string(b), tc.contentType, 1_800_000_001_000); err != nil {
				t.Fatal(err)
			}
			m := 0
			for _, xs := range s.exs {
				m += len(xs)
			}
			if want := tc.wantExemplars; tc.file == "good.om" {
				want++ // the bucket exemplar has no timestamp: it takes each scrape's
				if m != want {
					t.Errorf("%d exemplars after a repeat, want %d", m, want)
				}
			}
		})
	}
}

func TestMaxSchemaFor(t *testing.T) {
	cases := []struct {
		factor float64
		want   int32
	}{{0, 8}, {1, 8}, {1.00271, 8}, {1.1, 2}, {2, 0}, {4, -1}, {65536, -4}, {1e300, -4}}
	for _, tc := range cases {
		if got := maxSchemaFor(tc.factor); got != tc.want {
			t.Errorf("maxSchemaFor(%v) = %d, want %d", tc.factor, got, tc.want)
		}
	}
}

func TestInFamily(t *testing.T) {
	cases := []struct {
		name, family string
		typ          model.MetricType
		want         bool
	}{
		{"x_total", "x", model.MetricTypeCounter, true},
		{"x_total", "x_total", model.MetricTypeCounter, true},
		{"x", "x_total", model.MetricTypeCounter, true},
		{"x_bucket", "x", model.MetricTypeHistogram, true},
		{"x_bucket", "x", model.MetricTypeSummary, false},
		{"x_count", "x", model.MetricTypeSummary, true},
		{"x_gsum", "x", model.MetricTypeGaugeHistogram, true},
		{"xy", "x", model.MetricTypeGauge, false},
		{"y", "x", model.MetricTypeGauge, false},
		{"x", "x", model.MetricTypeGauge, true},
	}
	for _, tc := range cases {
		if got := inFamily(tc.name, tc.family, tc.typ); got != tc.want {
			t.Errorf("inFamily(%q, %q, %s) = %v, want %v", tc.name, tc.family, tc.typ, got, tc.want)
		}
	}
}

// FuzzAppend feeds arbitrary bytes through the append path in every format,
// twice (miss then hit path), and checks nothing panics and every logged
// sample has its series.
func FuzzAppend(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		for kind := range uint8(3) {
			f.Add(b, kind)
		}
	}
	f.Add(renderExposition(f, 3, formatProto), uint8(2))
	contentTypes := []string{ctText, ctOM, ctProto}
	f.Fuzz(func(t *testing.T, b []byte, kind uint8) {
		s := newMemStorage()
		opts := testOptions()
		opts.sampleLimit = 1000
		opts.bucketLimit = 10
		opts.parser.KeepClassicOnClassicAndNativeHistograms = kind&4 != 0
		opts.parser.ConvertClassicHistogramsToNHCB = kind&8 != 0
		a := newTestAppender(opts, s)
		ct := contentTypes[int(kind)%len(contentTypes)]
		for i := range int64(2) {
			_, _ = step(a, s, string(b), ct, 1_000_000+i*1000)
			checkIndexes(t, a.cache)
		}
		if s.orphans != 0 {
			t.Fatalf("%d samples without a series record", s.orphans)
		}
		for ref, xs := range s.samples {
			for _, x := range xs {
				if x.Ref != ref {
					t.Fatalf("sample %+v filed under ref %d", x, ref)
				}
			}
		}
	})
}

func TestAppend_ExtraScrapeMetrics(t *testing.T) {
	s := newMemStorage()
	opts := testOptions()
	opts.extraMetrics = true
	a := newTestAppender(opts, s)
	if _, err := step(a, s, "a 1\n", ctText, 1000); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"up", "scrape_timeout_seconds", "scrape_sample_limit", "scrape_body_size_bytes"} {
		if refs := s.find("__name__", name, "job", "node"); len(refs) != 1 {
			t.Errorf("%s: %d series, want 1", name, len(refs))
		}
	}
	// Switched off: the extra series are staled and released.
	b := newAppender(testOptions(), s, a.cache, newScrapeMetrics(nil), newParserPool(1))
	if _, err := step(b, s, "a 1\n", ctText, 2000); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"scrape_timeout_seconds", "scrape_sample_limit", "scrape_body_size_bytes"} {
		if !s.staleAll("__name__", name) {
			t.Errorf("%s not staled once extra_scrape_metrics is off", name)
		}
		if ref := s.find("__name__", name)[0]; !s.released[ref] {
			t.Errorf("%s not released", name)
		}
	}
	if s.staleAll("__name__", "up") {
		t.Error("up staled")
	}
}

// TestAppend_StartTimestamps: with the option, an OpenMetrics counter's
// _created line becomes the start timestamp of its sample in the WAL, and
// Prometheus' parser skips the _created series. Without it, no start
// timestamp and the _created series is an ordinary one.
func TestAppend_StartTimestamps(t *testing.T) {
	const body = "# TYPE req counter\nreq_total 5\nreq_created 1700000000.5\n# TYPE temp gauge\ntemp 20\n# EOF\n"
	for _, tc := range []struct {
		on     bool
		wantST int64
	}{{true, 1_700_000_000_500}, {false, 0}} {
		t.Run(fmt.Sprintf("on=%v", tc.on), func(t *testing.T) {
			s := newMemStorage()
			opts := testOptions()
			opts.startTimestamps = tc.on
			a := newTestAppender(opts, s)
			if _, err := step(a, s, body, ctOM, 1_700_000_100_000); err != nil {
				t.Fatal(err)
			}
			got := s.floats(t, "__name__", "req_total")
			if len(got) != 1 || got[0].ST != tc.wantST {
				t.Errorf("req_total = %+v, want one sample with ST %d", got, tc.wantST)
			}
			if got := s.floats(t, "__name__", "temp"); len(got) != 1 || got[0].ST != 0 {
				t.Errorf("temp = %+v, want one sample without ST", got)
			}
			if got, want := len(s.floats(t, "__name__", "req_created")), map[bool]int{true: 0, false: 1}[tc.on]; got != want {
				t.Errorf("req_created: %d samples, want %d", got, want)
			}
		})
	}
}

// knownKeySeeds are pairs of expositions for FuzzKnownKey: a series key
// the fast path read and then the same key in lines it does or does not
// take, keys Prometheus' parser read (which KnownKey must not answer for),
// and series in another order.
var knownKeySeeds = [][2]string{
	{"a{b=\"c\"} 1\nd 2\n", "a{b=\"c\"} 3\nd 4\n"},
	{"a{b=\"c\"} 1\n", "a{b=\"d\"} 1\n"},
	{"a{b=\"c\"} 1\nd 2\n", "d 4\na{b=\"c\"} 3\n"},
	{"a{b=\"c\"} 1\n", "a{b=\"c\"}  3\n"},
	{"a{b=\"c\"} 1\n", "a{b=\"c\"} x\n"},
	{"a{b=\"c\"} 1\n", "a{b=\"c\"}\n"},
	{"a{b=\"c\",} 1\na{b=\"d\"} 2\n", "a{b=\"c\",} 1\na{b=\"d\"} 2\n"},
	{"# comment\na{b=\"c\"} 1\n", "a{b=\"c\"} 1\n# comment\na{b=\"c\"} 2\n"},
	{"a{b=\"c\"} 1\na{b=\"c\"} 2\n", "a{b=\"c\"} 1 1000\na{b=\"c\"} 2\n"},
	{"# TYPE a counter\na_total{b=\"c\"} 1\na_created{b=\"c\"} 5\n# EOF\n", "# TYPE a counter\na_total{b=\"c\"} 2\na_created{b=\"c\"} 5\n# EOF\n"},
	{"a{b=\"c\"} 1 # {t=\"1\"} 2 3\n# EOF\n", "a{b=\"c\"} 1 # {t=\"2\"} 2 4\n# EOF\n"},
}

// TestAppend_KnownKeys: on a scrape of known series every series line's
// key is answered by the cache, not scanned; a key that Prometheus'
// parser read is not.
func TestAppend_KnownKeys(t *testing.T) {
	body, n := loadgen.NewTarget(1000, 1).Scrape()
	for _, tc := range []struct {
		name string
		body string
		want int
	}{
		{"loadgen", string(body), n},
		{"after a fallback", "a{b=\"c\"} 1\na{b=\"d\",} 2\na{b=\"e\"} 3\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newMemStorage()
			a := newTestAppender(testOptions(), s)
			answered := 0
			a.knownKey = func(line []byte) int {
				k := a.cache.knownKey(line)
				if k > 0 {
					answered++
				}
				return k
			}
			for i := range int64(2) {
				answered = 0
				if _, err := step(a, s, tc.body, ctText, 1_000_000+i*1000); err != nil {
					t.Fatal(err)
				}
			}
			if answered != tc.want {
				t.Errorf("the second scrape had %d keys answered, want %d", answered, tc.want)
			}
		})
	}
}

// FuzzKnownKey scrapes two expositions in turns through two appenders, one
// whose parsers ask the cache for known keys (the scrape loop's) and one
// whose parsers scan every key, and checks that both log the same.
func FuzzKnownKey(f *testing.F) {
	for _, s := range knownKeySeeds {
		for kind := range uint8(2) {
			f.Add([]byte(s[0]), []byte(s[1]), kind)
		}
	}
	for _, file := range []string{"good.prom", "good.om"} {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			f.Fatal(err)
		}
		kind := uint8(0)
		if strings.HasSuffix(file, ".om") {
			kind = 1
		}
		lines := strings.SplitAfter(string(b), "\n")
		slices.Reverse(lines[:len(lines)-2]) // # EOF stays last
		f.Add(b, []byte(strings.Join(lines, "")), kind)
		f.Add(b, b, kind|2)
	}
	f.Fuzz(func(t *testing.T, b1, b2 []byte, kind uint8) {
		if len(b1)+len(b2) > 16<<10 {
			return
		}
		ct := []string{ctText, ctOM}[kind&1]
		opts := testOptions()
		opts.startTimestamps = kind&2 != 0
		known, scan := newMemStorage(), newMemStorage()
		a := newTestAppender(opts, known)
		b := newTestAppender(opts, scan)
		b.knownKey = nil
		for i, body := range [][]byte{b1, b1, b2, b2, b1} {
			ts := int64(1_000_000 + i*1000)
			resA, errA := step(a, known, string(body), ct, ts)
			resB, errB := step(b, scan, string(body), ct, ts)
			if resA != resB || fmt.Sprint(errA) != fmt.Sprint(errB) {
				t.Fatalf("scrape %d: %+v, %v with known keys; %+v, %v scanning", i, resA, errA, resB, errB)
			}
		}
		for _, m := range []struct {
			name   string
			ka, kb any
		}{
			{"series", known.series, scan.series},
			{"samples", known.samples, scan.samples},
			{"histograms", known.hists, scan.hists},
			{"float histograms", known.fhists, scan.fhists},
			{"exemplars", known.exs, scan.exs},
			{"metadata", known.meta, scan.meta},
			{"released", known.released, scan.released},
		} {
			if ga, gb := fmt.Sprint(m.ka), fmt.Sprint(m.kb); ga != gb {
				t.Fatalf("%s differ:\nwith known keys %s\nscanning        %s", m.name, ga, gb)
			}
		}
	})
}
