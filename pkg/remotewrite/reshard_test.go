package remotewrite

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/wal"
)

func TestShardPlanner(t *testing.T) {
	// Steady: 1000 items/s in and out, 10 ms per 100-item batch.
	steady := shardInputs{inRate: 1000, outRate: 1000, busy: 0.1}
	cases := []struct {
		name    string
		cur     int
		in      []shardInputs // one per update; the last decides
		want    int
		desired float64
	}{
		{name: "nothing sent yet keeps the count", cur: 3, in: []shardInputs{{inRate: 1000}}, want: 3, desired: 3},
		{name: "within tolerance keeps the count", cur: 1, in: []shardInputs{steady}, want: 1, desired: 0.1},
		{
			name: "slow sends go up at once", cur: 1,
			in: []shardInputs{{inRate: 1000, outRate: 250, busy: 1}}, want: 4, desired: 4,
		},
		{
			name: "backlog adds 5% a second", cur: 1,
			in: []shardInputs{{inRate: 1000, outRate: 1000, busy: 2, delay: 20}}, want: 4, desired: 2 * 2,
		},
		{
			name: "capped by max_shards", cur: 2,
			in: []shardInputs{{inRate: 10000, outRate: 100, busy: 1}}, want: 8, desired: 100,
		},
		{
			name: "drops count against the input", cur: 1,
			in: []shardInputs{{inRate: 1000, outRate: 500, droppedRate: 500, busy: 2}}, want: 2, desired: 2,
		},
		{
			name: "a blocked reader means more input than read", cur: 2,
			in: []shardInputs{{inRate: 1000, outRate: 1000, busy: 2, blocked: 0.5}}, want: 4, desired: 4,
		},
		{
			name: "blocked fraction capped", cur: 1,
			in: []shardInputs{{inRate: 100, outRate: 100, busy: 0.25, blocked: 1}}, want: 3, desired: 2.5,
		},
		{
			name: "never down while the reader is blocked", cur: 6,
			in:   []shardInputs{{inRate: 1000, outRate: 1000, busy: 0.1, blocked: 0.1}, {inRate: 1000, outRate: 1000, busy: 0.1, blocked: 0.1}, {inRate: 1000, outRate: 1000, busy: 0.1, blocked: 0.1}},
			want: 6, desired: 0.1 / 0.9,
		},
		{name: "one update wanting fewer is not enough", cur: 6, in: []shardInputs{steady}, want: 6, desired: 0.1},
		{name: "two are not either", cur: 6, in: []shardInputs{steady, steady}, want: 6, desired: 0.1},
		{name: "three in a row go down", cur: 6, in: []shardInputs{steady, steady, steady}, want: 1, desired: 0.1},
		{
			name: "an update within tolerance restarts the count", cur: 6,
			in: []shardInputs{steady, steady, {inRate: 1000, outRate: 1000, busy: 5}, steady}, want: 6, desired: 0.1,
		},
		{
			name: "never down while far behind", cur: 6,
			in:   []shardInputs{{inRate: 1000, outRate: 1000, busy: 0.1, delay: 11}, {inRate: 1000, outRate: 1000, busy: 0.1, delay: 11}, {inRate: 1000, outRate: 1000, busy: 0.1, delay: 11}},
			want: 6, desired: 0.1 * 1.55,
		},
		{name: "idle keeps the count", cur: 6, in: []shardInputs{{}, {}, {}}, want: 6, desired: 6},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &shardPlanner{min: 1, max: 8}
			var desired float64
			n := tc.cur
			for _, in := range tc.in {
				desired, n = p.plan(tc.cur, in)
			}
			if n != tc.want {
				t.Errorf("shards = %d, want %d", n, tc.want)
			}
			if d := desired - tc.desired; d > 1e-9 || d < -1e-9 {
				t.Errorf("desired = %v, want %v", desired, tc.desired)
			}
		})
	}
}

func TestEWMARate(t *testing.T) {
	var e ewmaRate
	e.tick(time.Second)
	if e.r != 0 || e.init {
		t.Fatalf("rate after an empty tick = %v (init %v), want 0 and not started", e.r, e.init)
	}
	e.add(100)
	e.tick(10 * time.Second)
	if e.r != 10 {
		t.Fatalf("first rate = %v, want 10", e.r)
	}
	e.add(200)
	e.tick(10 * time.Second)
	if want := 10 + ewmaWeight*(20-10); e.r != want {
		t.Fatalf("second rate = %v, want %v", e.r, want)
	}
}

// handlerTransport serves requests with Prometheus' remote-write handler in
// process, after a delay the test sets: a receiver whose speed changes,
// without I/O, so it runs in a synctest bubble.
type handlerTransport struct {
	h     http.Handler
	delay atomic.Int64 // nanoseconds
}

func newHandlerTransport(st *testStore, types remoteapi.MessageTypes) *handlerTransport {
	return &handlerTransport{h: remote.NewWriteHandler(slog.New(slog.DiscardHandler), prometheus.NewRegistry(), st, types, false, false)}
}

func (h *handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if d := time.Duration(h.delay.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return nil, r.Context().Err()
		}
	}
	w := httptest.NewRecorder()
	h.h.ServeHTTP(w, r)
	resp := w.Result()
	resp.Request = r
	return resp, nil
}

// TestQueue_Reshard feeds 1000 samples/s to a receiver that first needs
// 100ms a request, then 1ms: the shards go up, then back down to
// min_shards, without oscillating; every sample arrives once, in order per
// series; Acked never goes back and ends at the end of the WAL.
func TestQueue_Reshard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const nSeries = 100
		st := newTestStore()
		tr := newHandlerTransport(st, remoteapi.MessageTypes{remoteapi.WriteV1MessageType})
		tr.delay.Store(int64(100 * time.Millisecond))
		log := newFakeLog()
		sr := fakeRecord{typ: record.Series}
		for s := range nSeries {
			sr.series = append(sr.series, rs(chunks.HeadSeriesRef(s+1), "__name__", "m", "i", fmt.Sprint(s)))
		}
		log.append(sr)
		q, err := New(t.Context(), Options{
			Config: testConfig(t, "http://127.0.0.1:1/write", func(c *config.RemoteWriteConfig) {
				c.QueueConfig.MinShards = 1
				c.QueueConfig.MaxShards = 8
				c.QueueConfig.MaxSamplesPerSend = 20
				c.QueueConfig.Capacity = 200
			}),
			Log:       log,
			Transport: tr,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- q.Run(ctx) }()

		stop := make(chan struct{})
		produced := make(chan int)
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					produced <- i
					return
				default:
				}
				rec := fakeRecord{typ: record.Samples}
				now := time.Now().UnixMilli()
				for s := range nSeries {
					rec.samples = append(rec.samples, record.RefSample{Ref: chunks.HeadSeriesRef(s + 1), T: now, V: float64(i)})
				}
				log.append(rec)
				time.Sleep(100 * time.Millisecond)
			}
		}()

		var (
			history []int // shard counts as they changed
			acked   wal.Position
		)
		watch := func(what string, limit time.Duration, cond func() bool) {
			t.Helper()
			deadline := time.Now().Add(limit)
			for !cond() {
				if time.Now().After(deadline) {
					t.Fatalf("%s: not within %v; shard counts %v", what, limit, history)
				}
				time.Sleep(time.Second)
				if n := int(q.numShards.Load()); len(history) == 0 || history[len(history)-1] != n {
					history = append(history, n)
				}
				if a := q.Acked(); a.Compare(acked) < 0 {
					t.Fatalf("Acked went back from %v to %v", acked, a)
				} else {
					acked = a
				}
			}
		}
		watch("shards up under a slow receiver", 5*time.Minute, func() bool { return q.numShards.Load() > 2 })
		// Let it settle and catch up, then make the receiver fast.
		watch("settled", 2*time.Minute, func() bool {
			return time.Since(time.Unix(0, q.rates.lastSend.Load())) < time.Second && q.metrics.highestEnqueued.get()-q.metrics.highestSent.get() < 1
		})
		tr.delay.Store(int64(time.Millisecond))
		watch("shards down under a fast receiver", 15*time.Minute, func() bool { return q.numShards.Load() == 1 })
		close(stop)
		nRecs := <-produced
		end := fakeStart(nRecs + 1) // the series record, then nRecs sample records
		watch("everything acked", time.Minute, func() bool { return q.Acked() == end })
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		checkInOrder(t, st, nSeries, nRecs)
		// Up, then down: one peak, no oscillation.
		peak := 0
		for i := 1; i < len(history); i++ {
			if history[i] > history[i-1] {
				if peak != i-1 {
					t.Errorf("shard counts %v went up again after going down", history)
					break
				}
				peak = i
			}
		}
		if history[peak] > 8 {
			t.Errorf("shard counts %v exceed max_shards 8", history)
		}
		if got := testutil.ToFloat64(q.metrics.shards); got != 1 {
			t.Errorf("prometheus_remote_storage_shards = %v, want 1", got)
		}
		t.Logf("shard counts %v over %d records", history, nRecs)
	})
}
