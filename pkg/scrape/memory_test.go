package scrape

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/rwagent/rwagent/bench/loadgen"
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
// (B/series: live heap after GC, with only the caches kept), for targets of
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
			var bytes float64
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
				runtime.KeepAlive(caches)
			}
			runtime.KeepAlive(bodies)
			b.ReportMetric(bytes, "B/series")
		})
	}
}
