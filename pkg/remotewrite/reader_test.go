package remotewrite

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/wal"
)

// enqueueFixture is a Queue that is never Run, with n series known, and one
// Samples record of one sample per series.
func enqueueFixture(tb testing.TB, shards, n int) (*Queue, []record.RefSample) {
	tb.Helper()
	u := "http://127.0.0.1:1/api/v1/write"
	cfg := testConfig(tb, u, func(c *config.RemoteWriteConfig) {
		c.QueueConfig.MinShards = shards
		c.QueueConfig.MaxSamplesPerSend = 2000
		c.QueueConfig.Capacity = 10000
	})
	q, err := New(context.Background(), Options{Config: cfg, Log: newFakeLog(), ExternalLabels: labels.FromStrings("cluster", "c1")})
	if err != nil {
		tb.Fatal(err)
	}
	var series []record.RefSeries
	samples := make([]record.RefSample, n)
	for i := range n {
		ref := chunks.HeadSeriesRef(i + 1)
		series = append(series, record.RefSeries{Ref: ref, Labels: labels.FromStrings(
			"__name__", "node_cpu_seconds_total", "cpu", fmt.Sprint(i%64), "instance", fmt.Sprintf("10.0.%d.%d:9100", i/256, i%256), "job", "node")})
		samples[i] = record.RefSample{Ref: ref, T: 1_700_000_000_000, V: float64(i)}
	}
	q.series.store(series)
	return q, samples
}

// enqueueRecord queues one record as the reader does, then empties the
// shards as if everything had been sent.
func enqueueRecord(q *Queue, samples []record.RefSample, pos wal.Position) {
	ctx := context.Background()
	q.begin()
	for _, s := range samples {
		q.add(ctx, s.Ref, s.T, s.ST, s.V, nil)
	}
	if err := q.finish(ctx); err != nil {
		panic(err)
	}
	q.acks.end(pos)
	for _, s := range q.shards {
		s.mu.Lock()
		s.head, s.n = 0, 0
		s.mu.Unlock()
	}
}

// BenchmarkEnqueue measures the reader's per-sample work from a decoded WAL
// record to the shards' rings (series lookup, staging, push, acks).
func BenchmarkEnqueue(b *testing.B) {
	for _, shards := range []int{1, 8} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			q, samples := enqueueFixture(b, shards, 2000)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				enqueueRecord(q, samples, wal.Position{Offset: int64(i)})
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(samples)), "ns/sample")
		})
	}
}

// TestEnqueueAllocs locks in that queueing float samples allocates nothing
// in steady state.
func TestEnqueueAllocs(t *testing.T) {
	q, samples := enqueueFixture(t, 4, 2000)
	i := 0
	enqueueRecord(q, samples, wal.Position{Offset: 1})
	allocs := testing.AllocsPerRun(50, func() {
		i++
		enqueueRecord(q, samples, wal.Position{Offset: int64(i + 1)})
	})
	if allocs != 0 {
		t.Errorf("queueing a record of %d samples allocates %v times, want 0", len(samples), allocs)
	}
}
