package remotewrite

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/bench/loadgen"
	rwconfig "github.com/rwagent/rwagent/pkg/config"
)

// wireWorkload is what the shards of one queue get to send from the large
// load-benchmark workload (bench/RESULTS.md): each shard's samples, in the
// order it queues them.
type wireWorkload struct {
	shards  [][]sample
	samples int // float samples and native histograms
}

// wirePhases is how many batch phases batches cuts a workload at.
const wirePhases = 4

// batches calls f with each batch the shards cut from wl with
// maxPerSend samples per send, starting phase quarters of a batch into the
// stream (the first batch is that much shorter). With samples flowing
// faster than batch_send_deadline, a shard sends full batches, but where
// they start in a scrape is a matter of timing: a request that holds one
// target's families together shares more strings than one cut through
// them, so a figure for one phase can be luck.
func (wl *wireWorkload) batches(maxPerSend, phase int, f func(batch []sample)) {
	for _, stream := range wl.shards {
		first := maxPerSend * phase / wirePhases
		for i := 0; i < len(stream); {
			n := maxPerSend
			if i == 0 && first > 0 {
				n = first
			}
			n = min(n, len(stream)-i)
			f(stream[i : i+n : i+n])
			i += n
		}
	}
}

// wireShape describes a wireWorkload: the loadgen targets, the scrapes
// and the queue's shards.
type wireShape struct {
	targets, series, natives int
	scrapes                  int
	shards                   int
	// distinct makes the targets' per-instance label values (pod, uid,
	// node, device, mountpoint) differ between targets, as they do
	// between real exporters: loadgen's targets differ only in instance,
	// so a request spanning two of them shares strings no real one would.
	distinct bool
}

// largeWire is the large workload (50 targets × 10,000 series and 10
// native histograms @ 15 s, scraped in protobuf), three scrapes of each
// target, and one shard (the load run needs no more).
var largeWire = wireShape{targets: 50, series: 10_000, natives: 10, scrapes: 3, shards: 1}

var (
	wireMu  sync.Mutex
	wireWLs = map[wireShape]*wireWorkload{}
)

// largeWireWorkload returns largeWire's workload.
func largeWireWorkload(tb testing.TB) *wireWorkload { return wireWorkloadOf(tb, largeWire) }

// wireWorkloadOf builds sh's workload once per test binary; the large one
// takes ten seconds and a few hundred MiB.
func wireWorkloadOf(tb testing.TB, sh wireShape) *wireWorkload {
	tb.Helper()
	wireMu.Lock()
	defer wireMu.Unlock()
	if wl := wireWLs[sh]; wl != nil {
		return wl
	}
	wl, err := buildWireWorkload(sh)
	if err != nil {
		tb.Fatal(err)
	}
	wireWLs[sh] = wl
	return wl
}

// buildWireWorkload scrapes sh.targets loadgen targets sh.scrapes times in
// the protobuf format, as rwagent does with scrape_native_histograms, and
// queues the samples the way the reader and the shards do: series get refs
// in the order first seen (the scrape's series cache), labels are the
// exposition's plus job and instance, each series carries its family's
// metadata (metadata_config.send, the default), the targets' scrapes are
// spread over the interval and logged one record per scrape (floats, then
// histograms), and samples go to shard ref % shards. Timestamps are those
// of the scrapes. The
// targets' seeds are the Generator's. Report series (up, scrape_*) are
// left out: the load run does not count them either, and they are 5 in
// 10,000.
func buildWireWorkload(sh wireShape) (*wireWorkload, error) {
	const (
		interval = 15_000
		base     = int64(1_764_000_000_000) // 2025-11-24, ms
	)
	st := newSeriesTable(testPairs, labels.EmptyLabels(), nil)
	fams := newFamilies()
	type target struct {
		t        *loadgen.Target
		instance string
		refs     map[string]chunks.HeadSeriesRef
		offset   int64
		digits   *strings.Replacer // the target's own hex digits, for distinct
	}
	targets := make([]target, sh.targets)
	for j := range targets {
		targets[j] = target{
			t:        loadgen.NewProtoTarget(sh.series, sh.natives, uint64(j+1)*0x9e3779b97f4a7c15),
			instance: fmt.Sprintf("127.0.0.1:%d", 32768+(j*7919)%28000),
			refs:     map[string]chunks.HeadSeriesRef{},
			offset:   int64(j) * interval / int64(sh.targets),
			digits:   hexPermutation(uint64(j + 1)),
		}
	}
	var (
		next    chunks.HeadSeriesRef
		wl      = &wireWorkload{shards: make([][]sample, sh.shards)}
		lset    labels.Labels
		b       labels.Builder
		symbols = labels.NewSymbolTable()
	)
	for s := range sh.scrapes {
		for j := range targets {
			tg := &targets[j]
			ts := base + int64(s)*interval + tg.offset + int64((s*31+j)%7) // a scrape starts a few ms late
			body, _, err := tg.t.ScrapeProto()
			if err != nil {
				return nil, err
			}
			p, err := textparse.New(body, loadgen.ProtobufContentType, symbols, textparse.ParserOptions{})
			if err != nil {
				return nil, err
			}
			var (
				typ        model.MetricType
				help, unit string
				rec        [2][]refSample // floats, then histograms: two WAL records
			)
			for {
				e, err := p.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return nil, fmt.Errorf("parse target %d: %w", j, err)
				}
				var key []byte
				smp := sample{t: ts}
				switch e {
				case textparse.EntryType:
					_, typ = p.Type()
					continue
				case textparse.EntryHelp:
					_, h := p.Help()
					help, unit = string(h), ""
					continue
				case textparse.EntryUnit:
					_, u := p.Unit()
					unit = string(u)
					continue
				case textparse.EntrySeries:
					key, _, smp.v = p.Series()
				case textparse.EntryHistogram:
					var (
						h  *histogram.Histogram
						fh *histogram.FloatHistogram
					)
					key, _, h, fh = p.Histogram()
					if h != nil {
						smp.x = h.Copy()
					} else {
						smp.x = fh.Copy()
					}
				default:
					continue
				}
				ref, ok := tg.refs[string(key)]
				if !ok {
					next++
					ref = next
					tg.refs[string(key)] = ref
					p.Labels(&lset)
					b.Reset(lset)
					b.Set("job", "bench")
					b.Set("instance", tg.instance)
					if sh.distinct {
						for _, n := range [...]string{"pod", "uid", "node", "device", "mountpoint"} {
							if v := lset.Get(n); v != "" {
								b.Set(n, tg.digits.Replace(v))
							}
						}
					}
					st.store([]record.RefSeries{{Ref: ref, Labels: b.Labels()}})
					fams.update(st, []record.RefMetadata{{Ref: ref, Type: uint8(record.GetMetricType(typ)), Help: help, Unit: unit}})
				}
				smp.series, _ = st.get(ref)
				k := 0
				if smp.x != nil {
					k = 1
				}
				rec[k] = append(rec[k], refSample{ref, smp})
			}
			for _, r := range rec {
				for _, rs := range r {
					i := int(rs.ref) % sh.shards
					wl.shards[i] = append(wl.shards[i], rs.s)
					wl.samples++
				}
			}
		}
	}
	return wl, nil
}

// hexPermutation replaces each hex digit by another, differently for each
// seed: strings keep their length and shape but differ between seeds.
func hexPermutation(seed uint64) *strings.Replacer {
	const digits = "0123456789abcdef"
	perm := []byte(digits)
	for i := len(perm) - 1; i > 0; i-- {
		seed = seed*6364136223846793005 + 1442695040888963407
		k := int(seed>>33) % (i + 1)
		perm[i], perm[k] = perm[k], perm[i]
	}
	var pairs []string
	for i := range digits {
		pairs = append(pairs, digits[i:i+1], string(perm[i]))
	}
	return strings.NewReplacer(pairs...)
}

type refSample struct {
	ref chunks.HeadSeriesRef
	s   sample
}

// BenchmarkWire encodes the large workload as 1.0 and 2.0, each in
// batches of its default max_samples_per_send (2.0 also in Prometheus'
// 2,000), as the shards do (the
// encoder a shard owns: protobuf, then snappy), and reports the request
// bodies' bytes per sample as sent (wire-B/sample: the mean over the batch
// phases, and the best and worst phase), before snappy (raw-B/sample), and
// the encoding CPU per sample. The loadgen workload is the load run's;
// distinct makes the targets' label values differ (see wireShape.distinct),
// so that no figure rests on strings requests of real targets would not
// share.
func BenchmarkWire(b *testing.B) {
	for _, distinct := range []bool{false, true} {
		name := "loadgen"
		if distinct {
			name = "distinct"
		}
		b.Run(name, func(b *testing.B) {
			e1 := encoder{pairs: testPairs}
			e2 := encoderV2{pairs: testPairs}
			for _, p := range []struct {
				name       string
				maxPerSend int
				encode     func([]sample) (body, raw []byte, err error)
			}{
				{"1.0", config.DefaultQueueConfig.MaxSamplesPerSend, func(batch []sample) ([]byte, []byte, error) {
					body, _, err := e1.encode(batch)
					return body, e1.pb, err
				}},
				{"2.0", rwconfig.DefaultMaxSamplesPerSendV2, func(batch []sample) ([]byte, []byte, error) {
					r, err := e2.encode(batch)
					return r.body, e2.pb, err
				}},
				{"2.0-batch2000", config.DefaultQueueConfig.MaxSamplesPerSend, func(batch []sample) ([]byte, []byte, error) {
					r, err := e2.encode(batch)
					return r.body, e2.pb, err
				}},
			} {
				b.Run(p.name, func(b *testing.B) {
					sh := largeWire
					sh.distinct = distinct
					wl := wireWorkloadOf(b, sh)
					runtime.GC()
					var wire, raw [wirePhases]int
					b.ReportAllocs()
					for b.Loop() {
						for phase := range wirePhases {
							wire[phase], raw[phase] = 0, 0
							wl.batches(p.maxPerSend, phase, func(batch []sample) {
								body, pb, err := p.encode(batch)
								if err != nil {
									b.Fatal(err)
								}
								wire[phase] += len(body)
								raw[phase] += len(pb)
							})
						}
					}
					n := float64(wl.samples)
					b.ReportMetric(float64(sum(wire[:]))/wirePhases/n, "wire-B/sample")
					b.ReportMetric(float64(slices.Min(wire[:]))/n, "best-wire-B/sample")
					b.ReportMetric(float64(slices.Max(wire[:]))/n, "worst-wire-B/sample")
					b.ReportMetric(float64(sum(raw[:]))/wirePhases/n, "raw-B/sample")
					b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/wirePhases/n, "ns/sample")
					b.ReportMetric(0, "ns/op")
				})
			}
		})
	}
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}
