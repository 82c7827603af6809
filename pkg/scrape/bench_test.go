package scrape

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/prometheus/tsdb/chunks"

	"github.com/rwagent/rwagent/bench/loadgen"
	"github.com/rwagent/rwagent/pkg/wal"
)

type expositionFormat int

const (
	formatText expositionFormat = iota
	formatProto
	formatOM        // OpenMetrics as client_golang serves it: no _created lines
	formatOMCreated // OpenMetrics with a _created line after each counter
)

func (f expositionFormat) String() string {
	return [...]string{"text", "protobuf", "openmetrics", "openmetrics_created"}[f]
}

func (f expositionFormat) contentType() string {
	return [...]string{ctText, ctProto, ctOM, ctOM}[f]
}

// renderExposition renders n series (half counters, half gauges, in families
// of 100 with two labels) in format f, as client_golang serves them.
func renderExposition(tb testing.TB, n int, f expositionFormat) []byte {
	tb.Helper()
	return renderExpositionKinds(tb, n, f, false)
}

// renderExpositionKinds is renderExposition with only gauges if gauges.
func renderExpositionKinds(tb testing.TB, n int, f expositionFormat, gauges bool) []byte {
	tb.Helper()
	reg := prometheus.NewRegistry()
	for fam := 0; fam*100 < n; fam++ {
		size := min(100, n-fam*100)
		if fam%2 == 0 && !gauges {
			c := prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: fmt.Sprintf("bench_requests_%d_total", fam), Help: "Requests.",
			}, []string{"path", "code"})
			for i := range size {
				c.WithLabelValues(fmt.Sprintf("/api/v1/item/%d", i), "200").Add(float64(i))
			}
			reg.MustRegister(c)
		} else {
			g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
				Name: fmt.Sprintf("bench_queue_length_%d", fam), Help: "Queue length.",
			}, []string{"queue", "shard"})
			for i := range size {
				g.WithLabelValues(fmt.Sprintf("queue-%d", i), "0").Set(float64(i) * 1.5)
			}
			reg.MustRegister(g)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	var enc expfmt.Encoder
	switch f {
	case formatProto:
		enc = expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeProtoDelim))
	case formatOM:
		enc = expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeOpenMetrics))
	case formatOMCreated:
		enc = expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeOpenMetrics), expfmt.WithCreatedLines())
	default:
		enc = expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	}
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			tb.Fatal(err)
		}
	}
	if closer, ok := enc.(expfmt.Closer); ok {
		if err := closer.Close(); err != nil { // # EOF
			tb.Fatal(err)
		}
	}
	return buf.Bytes()
}

// nopStorage discards everything: the benchmarks measure the scrape side.
type nopStorage struct{ next chunks.HeadSeriesRef }

func (s *nopStorage) NewRef() chunks.HeadSeriesRef { s.next++; return s.next }
func (*nopStorage) Log(*wal.Records) error         { return nil }
func (*nopStorage) Release([]chunks.HeadSeriesRef) {}

// appendOnce runs the per-scrape work after the HTTP fetch: parse, cache
// lookups, records, staleness pass and synthetic series.
func appendOnce(tb testing.TB, a *appender, body []byte, ct string, t int64) {
	a.recs.Reset()
	res, err := a.append(body, ct, t, t)
	if err != nil {
		tb.Fatal(err)
	}
	a.cache.finish(true, t, a.recs)
	a.report(t, &[numReportSeries]float64{reportUp: 1, reportSamplesScraped: float64(res.total)})
	a.logged(a.storage.Log(a.recs) == nil)
	a.storage.Release(a.cache.released)
}

func BenchmarkScrapeAppend(b *testing.B) {
	for _, f := range []expositionFormat{formatText, formatProto} {
		for _, n := range []int{1_000, 10_000} {
			b.Run(fmt.Sprintf("%s/%d", f, n), func(b *testing.B) {
				body := renderExposition(b, n, f)
				a := newTestAppender(testOptions(), &nopStorage{})
				t := int64(1_000_000)
				appendOnce(b, a, body, f.contentType(), t) // fill the cache
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					t += 1000
					appendOnce(b, a, body, f.contentType(), t)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
			})
		}
	}
}

// BenchmarkScrapeAppendLoadgen is BenchmarkScrapeAppend on the load
// generator's text exposition (node_exporter and kube-state-metrics shapes:
// long label sets, 150 bytes a series key on average), the targets of
// bench/RESULTS.md's text workloads.
func BenchmarkScrapeAppendLoadgen(b *testing.B) {
	body, n := loadgen.NewTarget(10_000, 1).Scrape()
	body = bytes.Clone(body) // valid until the next Scrape
	a := newTestAppender(testOptions(), &nopStorage{})
	t := int64(1_000_000)
	appendOnce(b, a, body, ctText, t) // fill the cache
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		t += 1000
		appendOnce(b, a, body, ctText, t)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
}

// BenchmarkScrapeAppendResolve is BenchmarkScrapeAppend/*/10000 with the
// cache's texts forgotten before every scrape, so that every sample's
// labels are built, relabelled, checked and hashed again, and its series
// found by its labels: what a scrape would cost if the scrape side kept no
// key per raw text and produced every series' labels on every scrape (as a
// WAL of samples with their labels would need; bench/RESULTS.md).
func BenchmarkScrapeAppendResolve(b *testing.B) {
	for _, f := range []expositionFormat{formatText, formatProto} {
		b.Run(fmt.Sprintf("%s/10000", f), func(b *testing.B) {
			const n = 10_000
			body := renderExposition(b, n, f)
			a := newTestAppender(testOptions(), &nopStorage{})
			t := int64(1_000_000)
			appendOnce(b, a, body, f.contentType(), t) // fill the cache
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				t += 1000
				a.cache.resetKeys()
				appendOnce(b, a, body, f.contentType(), t)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
		})
	}
}

// BenchmarkScrapeAppendStartTimestamps is BenchmarkScrapeAppend with start
// timestamps parsed, as when every remote_write endpoint speaks 2.0, for
// the text formats (families of 100 series, half of them counters).
func BenchmarkScrapeAppendStartTimestamps(b *testing.B) {
	for _, f := range []expositionFormat{formatText, formatOM, formatOMCreated} {
		for _, st := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/st=%v", f, st), func(b *testing.B) {
				const n = 10_000
				body := renderExposition(b, n, f)
				opts := testOptions()
				opts.startTimestamps = st
				a := newTestAppender(opts, &nopStorage{})
				t := int64(1_000_000)
				appendOnce(b, a, body, f.contentType(), t) // fill the cache
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					t += 1000
					appendOnce(b, a, body, f.contentType(), t)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
			})
		}
	}
}

// maxAllocsPerScrape bounds the allocations of one steady-state scrape (all
// cache hits) after the fetch: the media type (the parsers' buffers are
// reused). They do not grow with the number of series.
var maxAllocsPerScrape = map[expositionFormat]float64{formatText: 4, formatProto: 4}

func TestAppendAllocs(t *testing.T) {
	cases := []struct {
		name   string
		format expositionFormat
		gauges bool
	}{
		{name: "text", format: formatText},
		{name: "protobuf gauges", format: formatProto, gauges: true},
		// client_golang puts a start timestamp on every counter, which
		// Prometheus' protobuf parser allocated for every sample.
		{name: "protobuf counters and gauges", format: formatProto},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, n := range []int{1_000, 10_000} {
				body := renderExpositionKinds(t, n, tc.format, tc.gauges)
				a := newTestAppender(testOptions(), &nopStorage{})
				ts := int64(1_000_000)
				for range 2 { // fill the cache, then grow every buffer
					ts += 1000
					appendOnce(t, a, body, tc.format.contentType(), ts)
				}
				allocs := testing.AllocsPerRun(5, func() {
					ts += 1000
					appendOnce(t, a, body, tc.format.contentType(), ts)
				})
				limit := maxAllocsPerScrape[tc.format]
				t.Logf("%d series: %v allocations per scrape (limit %v)", n, allocs, limit)
				if allocs > limit {
					t.Errorf("%d series: %v allocations per scrape, want at most %v", n, allocs, limit)
				}
			}
		})
	}
}

// BenchmarkScrapeToWAL is parse → WAL append: the scrape side of the
// per-sample path including the record encoding and the write into a real
// WAL segment (fsync never, so the disk's sync speed is not measured).
func BenchmarkScrapeToWAL(b *testing.B) {
	for _, f := range []expositionFormat{formatText, formatProto} {
		for _, n := range []int{1_000, 10_000} {
			b.Run(fmt.Sprintf("%s/%d", f, n), func(b *testing.B) {
				body := renderExposition(b, n, f)
				w, err := wal.Open(wal.Options{Dir: b.TempDir(), Fsync: wal.FsyncNever}, nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer w.Close()
				a := newTestAppender(testOptions(), w)
				t := int64(1_000_000)
				appendOnce(b, a, body, f.contentType(), t) // fill the cache
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					t += 1000
					appendOnce(b, a, body, f.contentType(), t)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
			})
		}
	}
}
