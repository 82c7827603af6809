package scrape

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"

	"github.com/rwagent/rwagent/bench/loadgen"
	"github.com/rwagent/rwagent/pkg/wal"
)

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkCacheMemory measures what the series caches keep per series
// (B/series: live heap after GC, with only the caches kept;
// offheap-B/series: the pages written off the Go heap), for targets of
// 10,000 series of loadgen's node_exporter and kube-state-metrics shapes,
// each scraped three times as in steady state: 10 targets (100k series)
// and 50 (500k, the large load run). Run with -benchtime 1x.
func BenchmarkCacheMemory(b *testing.B) {
	const perTarget = 10_000
	for _, targets := range []int{10, 50} {
		b.Run(fmt.Sprint(targets*perTarget), func(b *testing.B) {
			bodies := make([][]byte, targets)
			for k := range bodies {
				body, _ := loadgen.NewTarget(perTarget, uint64(k+1)).Scrape()
				bodies[k] = append([]byte(nil), body...)
			}
			var bytes, off float64
			for b.Loop() {
				before := heapInUse()
				caches := make([]*seriesCache, targets)
				series := 0
				for k := range caches {
					a := newTestAppender(testOptions(), &nopStorage{})
					for i := range 3 {
						appendOnce(b, a, bodies[k], ctText, int64(1_000_000+i*15_000))
					}
					caches[k] = a.cache
					series += a.cache.series()
				}
				after := heapInUse()
				bytes = float64(after-before) / float64(series)
				off = 0
				for _, c := range caches {
					off += float64(c.offHeap()) / float64(series)
					c.close()
				}
			}
			runtime.KeepAlive(bodies)
			b.ReportMetric(bytes, "B/series")
			b.ReportMetric(off, "offheap-B/series")
		})
	}
}

// BenchmarkCachePeak measures what 500k series in the series caches cost at
// their peak with the agent's GOGC of 50, scraped in steady state: 50
// targets of 10,000 series, scraped in turn (as their loops would, sharing
// one records buffer as the loops share a pool), twice to warm up and then
// four times measured. It reports the most the heap goal
// (/gc/heap/goal:bytes, what the heap may grow to before the next
// collection) rose in the measured scrapes above its level with only the
// bodies live, per series (heap-peak-B/series), and that plus the bytes
// held off the Go heap (peak-B/series): what the caches add to the
// process's RSS at worst. Run with -benchtime 1x.
func BenchmarkCachePeak(b *testing.B) {
	const targets, perTarget = 50, 10_000
	bodies := make([][]byte, targets)
	for k := range bodies {
		body, _ := loadgen.NewTarget(perTarget, uint64(k+1)).Scrape()
		bodies[k] = append([]byte(nil), body...)
	}
	defer debug.SetGCPercent(debug.SetGCPercent(50))
	sample := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	goal := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	var heapPeak, peak float64
	for b.Loop() {
		heapInUse()
		base := goal()
		apps := make([]*appender, targets)
		recs := new(wal.Records)
		for k := range apps {
			apps[k] = newTestAppender(testOptions(), &nopStorage{})
			apps[k].recs = recs
		}
		var maxGoal, series uint64
		for i := range 6 {
			if i == 2 {
				heapInUse() // the first scrapes' garbage gone
			}
			for k, a := range apps {
				appendOnce(b, a, bodies[k], ctText, int64(1_000_000+i*15_000))
				if i >= 2 {
					maxGoal = max(maxGoal, goal())
				}
			}
		}
		for _, a := range apps {
			series += uint64(a.cache.series())
		}
		heapPeak = float64(maxGoal-base) / float64(series)
		peak = heapPeak
		for _, a := range apps {
			peak += float64(a.cache.offHeap()) / float64(series)
			a.cache.close()
		}
	}
	runtime.KeepAlive(bodies)
	b.ReportMetric(heapPeak, "heap-peak-B/series")
	b.ReportMetric(peak, "peak-B/series")
}
