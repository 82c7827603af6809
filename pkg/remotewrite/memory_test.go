package remotewrite

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/bench/loadgen"
)

// loadSeries returns the series of targets loadgen targets of perTarget
// series each, as the scrape side logs them: the exposition's labels plus
// job and instance. With unique, the values that name a pod, a device or a
// mount point get the target's number, so no two targets share them (50
// clusters rather than 50 nodes of one); otherwise the targets differ only
// in instance, as in the large load run.
func loadSeries(tb testing.TB, targets, perTarget int, unique bool) []record.RefSeries {
	tb.Helper()
	var out []record.RefSeries
	b := labels.NewBuilder(labels.EmptyLabels())
	var ls labels.Labels
	for k := range targets {
		body, _ := loadgen.NewTarget(perTarget, uint64(k+1)).Scrape()
		p, err := textparse.New(body, "text/plain", labels.NewSymbolTable(), textparse.ParserOptions{})
		if err != nil {
			tb.Fatal(err)
		}
		instance := fmt.Sprintf("10.0.%d.%d:9100", k/250, k%250)
		for {
			et, err := p.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				tb.Fatal(err)
			}
			if et != textparse.EntrySeries {
				continue
			}
			p.Labels(&ls)
			b.Reset(ls)
			b.Set("job", "node")
			b.Set("instance", instance)
			if unique {
				for _, n := range []string{"pod", "uid", "device", "mountpoint"} {
					if v := b.Get(n); v != "" {
						b.Set(n, fmt.Sprintf("%s-%d", v, k))
					}
				}
			}
			out = append(out, record.RefSeries{Ref: refOf(len(out)), Labels: b.Labels()})
		}
	}
	return out
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkSeriesTableMemory measures what the send side's series table
// keeps per series (B/series: live heap after GC, the input label sets
// excluded; offheap-B/series: the pair table's index, off the Go heap once
// large), for loadgen's node_exporter and kube-state-metrics shapes at
// 100k and 500k series. "shared" has targets that differ only in instance,
// like the large load run; "unique" makes pod, uid, device and mount point
// values unique per target. Run with -benchtime 1x.
func BenchmarkSeriesTableMemory(b *testing.B) {
	for _, n := range []int{100_000, 500_000} {
		for _, unique := range []bool{false, true} {
			name := "shared"
			if unique {
				name = "unique"
			}
			b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
				rs := loadSeries(b, n/10_000, 10_000, unique)
				var bytes, off float64
				for b.Loop() {
					before := heapInUse()
					t := newSeriesTable(testPairs, labels.EmptyLabels(), nil)
					// In records of one scrape's new series, as the WAL holds them.
					for i := 0; i < len(rs); i += 10_000 {
						t.store(rs[i:min(i+10_000, len(rs))])
					}
					t.buf, t.ids = nil, nil
					after := heapInUse()
					bytes = float64(after-before) / float64(len(rs))
					off = float64(t.pairs.index.OffHeap()) / float64(len(rs))
					held := t.pairs.len()
					t.close()
					b.ReportMetric(float64(held-t.pairs.len())/float64(len(rs)), "pairs/series")
				}
				runtime.KeepAlive(rs)
				b.ReportMetric(bytes, "B/series")
				b.ReportMetric(off, "offheap-B/series")
				b.ReportMetric(float64(labelBytes(rs))/float64(len(rs)), "label-B/series")
			})
		}
	}
}

// labelBytes is the size of the label names and values of rs.
func labelBytes(rs []record.RefSeries) int {
	n := 0
	for _, s := range rs {
		s.Labels.Range(func(l labels.Label) { n += len(l.Name) + len(l.Value) })
	}
	return n
}

// BenchmarkEncodeTable encodes remote-write 1.0 batches of 2,000 float
// samples over a table of 500k loadgen series, each batch the next 2,000
// series in ref order (as a scrape's record queues them), so the labels
// come from all over the heap rather than from a few cache lines.
func BenchmarkEncodeTable(b *testing.B) {
	rs := loadSeries(b, 50, 10_000, false)
	t := newSeriesTable(testPairs, labels.EmptyLabels(), nil)
	defer t.close()
	t.store(rs)
	all := make([]sample, len(rs))
	for i := range rs {
		s, _ := t.get(rs[i].Ref)
		all[i] = sample{series: s, t: 1_700_000_000_000 + int64(i), v: float64(i) * 1.5}
	}
	const n = 2000
	for _, proto := range []string{"1.0", "2.0"} {
		b.Run(proto, func(b *testing.B) {
			e1 := encoder{pairs: testPairs}
			e2 := encoderV2{pairs: testPairs}
			off := 0
			var size int
			for b.Loop() {
				batch := all[off : off+n]
				if off += n; off+n > len(all) {
					off = 0
				}
				if proto == "1.0" {
					body, _, err := e1.encode(batch)
					if err != nil {
						b.Fatal(err)
					}
					size = len(body)
				} else {
					r, err := e2.encode(batch)
					if err != nil {
						b.Fatal(err)
					}
					size = len(r.body)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/sample")
			b.ReportMetric(float64(size)/float64(n), "bytes/sample")
		})
	}
}
