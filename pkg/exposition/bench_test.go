package exposition

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"

	"github.com/rwagent/rwagent/bench/loadgen"
)

// BenchmarkProtobufParser parses the load generator's protobuf exposition
// (node_exporter and kube-state-metrics shapes, classic histograms) as the
// scrape loop does on cache hits: Next and Series for every sample, no
// Labels. "prometheus" is textparse's parser, "rwagent" ours.
func BenchmarkProtobufParser(b *testing.B) {
	body, n, err := loadgen.NewTarget(10_000, 1).ScrapeProto()
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		new  func([]byte, *labels.SymbolTable) textparse.Parser
	}{
		{"prometheus", func(b []byte, st *labels.SymbolTable) textparse.Parser {
			return textparse.NewProtobufParser(b, false, false, false, false, st)
		}},
		{"rwagent", func() func([]byte, *labels.SymbolTable) textparse.Parser {
			var ps Parsers
			return func(b []byte, st *labels.SymbolTable) textparse.Parser {
				p, _ := ps.New(b, protoContentType, st, textparse.ParserOptions{})
				return p
			}
		}()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			st := labels.NewSymbolTable()
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				p := tc.new(body, st)
				got := 0
				for {
					e, err := p.Next()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					switch e {
					case textparse.EntrySeries:
						p.Series()
						got++
					case textparse.EntryHistogram:
						p.Histogram()
						got++
					}
				}
				if got != n {
					b.Fatalf("parsed %d samples, the target served %d", got, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
		})
	}
}

// BenchmarkTextParser parses text expositions as the scrape loop does on
// cache hits (Next and Series for every sample, no Labels): the load
// generator's (node_exporter and kube-state-metrics shapes, classic
// histograms) and node_exporter's own. "prometheus" is textparse's
// PromParser, "rwagent" ours.
func BenchmarkTextParser(b *testing.B) {
	loadgenBody, _ := loadgen.NewTarget(10_000, 1).Scrape()
	nodeExporter, err := os.ReadFile(filepath.Join("testdata", "node_exporter.txt"))
	if err != nil {
		b.Fatal(err)
	}
	for _, body := range []struct {
		name string
		b    []byte
	}{{"loadgen", loadgenBody}, {"node_exporter", nodeExporter}} {
		for _, tc := range []struct {
			name string
			new  func([]byte, *labels.SymbolTable) textparse.Parser
		}{
			{"prometheus", func(b []byte, st *labels.SymbolTable) textparse.Parser {
				return textparse.NewPromParser(b, st, false)
			}},
			{"rwagent", func() func([]byte, *labels.SymbolTable) textparse.Parser {
				var ps Parsers
				return func(b []byte, st *labels.SymbolTable) textparse.Parser {
					p, _ := ps.New(b, "text/plain; version=0.0.4; charset=utf-8", st, textparse.ParserOptions{})
					return p
				}
			}()},
		} {
			b.Run(body.name+"/"+tc.name, func(b *testing.B) {
				st := labels.NewSymbolTable()
				n := 0
				b.SetBytes(int64(len(body.b)))
				b.ReportAllocs()
				for b.Loop() {
					p := tc.new(body.b, st)
					n = 0
					for {
						e, err := p.Next()
						if errors.Is(err, io.EOF) {
							break
						}
						if err != nil {
							b.Fatal(err)
						}
						if e == textparse.EntrySeries {
							p.Series()
							n++
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
			})
		}
	}
}

// BenchmarkOpenMetricsParser parses OpenMetrics as the scrape loop does on
// cache hits (Next and Series for every sample, no Labels), with and
// without start timestamps (StartTimestamp for every sample, as when every
// remote_write endpoint is 2.0): what promhttp serves for 2,000 counters,
// 2,000 gauges and 200 histograms in families of 100 series, without and
// with _created lines, and the kube-state-metrics-like and Java
// simpleclient-like testdata.
// "prometheus" is textparse's OpenMetricsParser, "lookahead" it wrapped in
// createdLookahead (rwagent's parser before ours), "rwagent" ours.
func BenchmarkOpenMetricsParser(b *testing.B) {
	ksm, err := os.ReadFile(filepath.Join("testdata", "kube_state_metrics.om.txt"))
	if err != nil {
		b.Fatal(err)
	}
	java, err := os.ReadFile(filepath.Join("testdata", "java_simpleclient.om.txt"))
	if err != nil {
		b.Fatal(err)
	}
	for _, body := range []struct {
		name string
		b    []byte
	}{
		{"client_golang", benchOpenMetrics(b, 20, false)},
		{"client_golang_created", benchOpenMetrics(b, 20, true)},
		{"kube_state_metrics", ksm},
		{"java_simpleclient", java},
	} {
		for _, st := range []bool{false, true} {
			for _, tc := range []struct {
				name string
				new  func([]byte, *labels.SymbolTable) textparse.Parser
			}{
				{"prometheus", func(b []byte, st *labels.SymbolTable) textparse.Parser {
					return textparse.NewOpenMetricsParser(b, st)
				}},
				{"lookahead", func() func([]byte, *labels.SymbolTable) textparse.Parser {
					var c createdLookahead
					return func(b []byte, st *labels.SymbolTable) textparse.Parser {
						c.reset(textparse.NewOpenMetricsParser(b, st), b, st)
						return &c
					}
				}()},
				{"rwagent", func() func([]byte, *labels.SymbolTable) textparse.Parser {
					var ps Parsers
					return func(b []byte, st *labels.SymbolTable) textparse.Parser {
						p, _ := ps.New(b, "application/openmetrics-text; version=1.0.0; charset=utf-8", st, textparse.ParserOptions{})
						return p
					}
				}()},
			} {
				b.Run(fmt.Sprintf("%s/st=%v/%s", body.name, st, tc.name), func(b *testing.B) {
					syms := labels.NewSymbolTable()
					n := 0
					b.SetBytes(int64(len(body.b)))
					b.ReportAllocs()
					var before, after runtime.MemStats
					runtime.ReadMemStats(&before)
					for b.Loop() {
						p := tc.new(body.b, syms)
						n = 0
						for {
							e, err := p.Next()
							if errors.Is(err, io.EOF) {
								break
							}
							if err != nil {
								b.Fatal(err)
							}
							if e == textparse.EntrySeries {
								p.Series()
								if st {
									p.StartTimestamp()
								}
								n++
							}
						}
					}
					runtime.ReadMemStats(&after)
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
					b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N*n), "allocs/sample")
				})
			}
		}
	}
}
