package remotewrite

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/wal"
)

// TestQueue_RealWAL sends from the real WAL across several segments, stops,
// truncates at Acked, restarts the agent (new refs for the same series, as a
// scrape after a restart makes) and checks the second queue, started at the
// first one's Acked, sends exactly what is new.
func TestQueue_RealWAL(t *testing.T) {
	const nSeries = 40
	dir := t.TempDir()
	rc := newReceiver(t, nil)
	base := nowMs() - 120_000
	cfg := testConfig(t, rc.srv.URL, func(c *config.RemoteWriteConfig) {
		c.SendNativeHistograms = true
		c.QueueConfig.MinShards = 2
	})

	// logRun logs a Series record for fresh refs, then batches samples
	// [from, to) of every series and one histogram series.
	logRun := func(w *wal.WAL, from, to int) {
		t.Helper()
		var recs wal.Records
		refs := make([]chunks.HeadSeriesRef, nSeries)
		for s := range refs {
			refs[s] = w.NewRef()
			recs.Series = append(recs.Series, record.RefSeries{Ref: refs[s], Labels: labels.FromStrings("__name__", "m", "i", fmt.Sprint(s))})
		}
		href := w.NewRef()
		recs.Series = append(recs.Series, record.RefSeries{Ref: href, Labels: labels.FromStrings("__name__", "h")})
		if err := w.Log(&recs); err != nil {
			t.Fatal(err)
		}
		for i := from; i < to; i++ {
			recs.Reset()
			for _, ref := range refs {
				recs.Samples = append(recs.Samples, record.RefSample{Ref: ref, T: base + int64(i)*1000, V: float64(i)})
			}
			recs.Histograms = append(recs.Histograms, record.RefHistogramSample{Ref: href, T: base + int64(i)*1000, H: testHistogram(i)})
			if err := w.Log(&recs); err != nil {
				t.Fatal(err)
			}
		}
	}
	open := func() *wal.WAL {
		t.Helper()
		w, err := wal.Open(wal.Options{Dir: dir, SegmentSize: 32 << 10, Fsync: wal.FsyncNever}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	// runToEnd runs a queue from start over a closed WAL: Run returns by
	// itself once everything is delivered.
	runToEnd := func(w *wal.WAL, start wal.Position) wal.Position {
		t.Helper()
		q, err := New(t.Context(), Options{Config: cfg, Log: WALLog(w), Start: start})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := q.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			t.Fatal("Run did not return when the WAL was closed and everything was sent")
		}
		return q.Acked()
	}

	w := open()
	logRun(w, 0, 100)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	acked := runToEnd(w, wal.Position{})
	if acked.Segment == 0 {
		t.Fatalf("Acked = %v: the test wants several segments", acked)
	}
	checkRealWAL(t, rc.store, nSeries, 0, 100)

	w = open()
	if err := w.Truncate(acked); err != nil {
		t.Fatal(err)
	}
	logRun(w, 100, 130)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	acked2 := runToEnd(w, acked)
	if acked2.Compare(acked) <= 0 {
		t.Errorf("second Acked %v is not after the first %v", acked2, acked)
	}
	checkRealWAL(t, rc.store, nSeries, 0, 130)
}

// checkRealWAL checks that samples [0, to) of every series and the histogram
// series arrived exactly once, in order.
func checkRealWAL(t *testing.T, st *testStore, nSeries, from, to int) {
	t.Helper()
	if got, want := st.count(), (to-from)*(nSeries+1); got != want {
		t.Errorf("receiver holds %d points, want %d", got, want)
	}
	checkInOrder(t, st, nSeries, to-from)
	hs := st.get(key("__name__", "h"))
	for i, p := range hs {
		if p.h == nil || !p.h.Equals(testHistogram(from+i)) {
			t.Errorf("histogram %d = %v, want %v", i, p.h, testHistogram(from+i))
			break
		}
	}
}

// TestQueue_LagBytes tails a real WAL while the receiver fails: the lag in
// bytes is the record not delivered; once the receiver recovers and all is acked
// it is zero.
func TestQueue_LagBytes(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
		if failing.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	w, err := wal.Open(wal.Options{Dir: t.TempDir(), Fsync: wal.FsyncNever}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// The Series record is acked once read; the samples are the lag.
	var recs wal.Records
	ref := w.NewRef()
	recs.Series = append(recs.Series, record.RefSeries{Ref: ref, Labels: labels.FromStrings("__name__", "m")})
	if err := w.Log(&recs); err != nil {
		t.Fatal(err)
	}
	seriesBytes, err := w.BytesAfter(wal.Position{})
	if err != nil {
		t.Fatal(err)
	}
	recs.Reset()
	for i := range 100 {
		recs.Samples = append(recs.Samples, record.RefSample{Ref: ref, T: nowMs() + int64(i), V: float64(i)})
	}
	if err := w.Log(&recs); err != nil {
		t.Fatal(err)
	}
	all, err := w.BytesAfter(wal.Position{})
	if err != nil {
		t.Fatal(err)
	}
	logged := all - seriesBytes
	reg := prometheus.NewRegistry()
	r := startQueue(t, Options{Config: testConfig(t, rc.srv.URL, nil), Log: WALLog(w), Registerer: reg})
	lag := func() float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "rwagent_remote_write_lag_bytes" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("rwagent_remote_write_lag_bytes not registered")
		return 0
	}
	waitFor(t, "a failed attempt", func() bool { return rc.requestCount() > 0 })
	if got := lag(); got != float64(logged) {
		t.Errorf("lag while failing = %v bytes, want %d (the samples record)", got, logged)
	}
	failing.Store(false)
	waitFor(t, "lag zero", func() bool { return lag() == 0 })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

// TestQueue_ForgetsReleasedSeries: series the WAL releases (churn) are
// forgotten by the queue once their last samples are queued, and those
// samples still arrive.
func TestQueue_ForgetsReleasedSeries(t *testing.T) {
	rc := newReceiver(t, nil)
	w, err := wal.Open(wal.Options{Dir: t.TempDir(), Fsync: wal.FsyncNever}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := nowMs() - 60_000
	logGen := func(gen, n int) []chunks.HeadSeriesRef {
		var recs wal.Records
		refs := make([]chunks.HeadSeriesRef, n)
		for i := range refs {
			refs[i] = w.NewRef()
			recs.Series = append(recs.Series, record.RefSeries{Ref: refs[i], Labels: labels.FromStrings("__name__", "churn", "gen", fmt.Sprint(gen), "i", fmt.Sprint(i))})
			recs.Samples = append(recs.Samples, record.RefSample{Ref: refs[i], T: base + int64(gen), V: float64(gen)})
		}
		if err := w.Log(&recs); err != nil {
			t.Fatal(err)
		}
		return refs
	}
	const gens, perGen = 5, 3000 // more than a page of refs per generation
	for gen := range gens {
		refs := logGen(gen, perGen)
		if gen < gens-1 {
			w.Release(refs)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// A second queue on another receiver runs alongside, on the same
	// series, each with its own pair table.
	rc2 := newReceiver(t, nil)
	q, err := New(t.Context(), Options{Config: testConfig(t, rc.srv.URL, nil), Log: WALLog(w)})
	if err != nil {
		t.Fatal(err)
	}
	q2, err := New(t.Context(), Options{Name: "second", Config: testConfig(t, rc2.srv.URL, nil), Log: WALLog(w)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- q2.Run(ctx) }()
	if err := q.Run(ctx); err != nil || ctx.Err() != nil {
		t.Fatalf("run: %v, %v", err, ctx.Err())
	}
	if err := <-errc; err != nil || ctx.Err() != nil {
		t.Fatalf("run the second queue: %v, %v", err, ctx.Err())
	}
	if n := q.series.len(); n != perGen {
		t.Errorf("the queue holds %d series after the churn, want the last generation's %d", n, perGen)
	}
	if pages := len(q.series.pages); pages > perGen>>pageBits+2 {
		t.Errorf("the queue holds %d pages of series for %d live ones", pages, perGen)
	}
	for r, rc := range []*receiver{rc, rc2} {
		if got := rc.store.count(); got != gens*perGen {
			t.Errorf("receiver %d got %d samples, want %d", r, got, gens*perGen)
		}
		// Each series arrived under its own labels, also those forgotten
		// while their samples were queued.
		for gen := range gens {
			for _, i := range []int{0, perGen / 2, perGen - 1} {
				ls := labels.FromStrings("__name__", "churn", "gen", fmt.Sprint(gen), "i", fmt.Sprint(i)).String()
				if got := rc.store.get(ls); len(got) != 1 {
					t.Errorf("receiver %d got %d samples of %s, want 1", r, len(got), ls)
				}
			}
		}
	}
	for i, q := range []*Queue{q, q2} {
		if n := pairsHeld(q.series.pairs, `gen`); n != 0 {
			t.Errorf("queue %d: the pair table holds %d pairs of the queue's series after Run", i, n)
		}
	}
}
