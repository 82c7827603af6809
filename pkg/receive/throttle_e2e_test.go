package receive

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/remotewrite"
	"github.com/rwagent/rwagent/pkg/wal"
)

// TestThrottle_AgentHoldsAndDeliversOnce runs rwagent's remote-write queue,
// over its real WAL, against a workspace whose ingestion throttle is
// exhausted: the queue's requests are answered 429 ThrottlingException while
// the workspace clock stands still, and once it moves (the bucket refills)
// every sample arrives, none twice. A 429 stores nothing, so the TSDB's
// accepted count equals the samples logged exactly when each was stored
// once (the TSDB itself would silently keep one of two identical samples).
func TestThrottle_AgentHoldsAndDeliversOnce(t *testing.T) {
	const nSeries, nSamples = 20, 50
	clock := newStepClock()
	ts := newTestServer(t, Options{Now: clock.Now, Limits: Limits{IngestionRate: 100, IngestionBurst: 200}})

	w, t0 := logHeld(t, nSeries, nSamples)
	q, err := remotewrite.New(t.Context(), remotewrite.Options{Config: queueConfig(t, ts), Log: remotewrite.WALLog(w)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()

	throttled := func() float64 {
		return testutil.ToFloat64(ts.metrics.requests.WithLabelValues(routeRemoteWrite, "429"))
	}
	// The clock stands still: the first 200 samples pass, then the queue
	// holds its batches and retries them.
	deadline := time.Now().Add(30 * time.Second)
	for throttled() < 10 {
		if time.Now().After(deadline) {
			t.Fatalf("no throttling seen: %v answers 429", throttled())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := storedSamples(t, ts.Server, "held"); got >= nSeries*nSamples {
		t.Fatalf("all %d samples stored while throttled", got)
	}

	// Lift the throttle: 2s of refill (200 samples) every few milliseconds.
	for lifted := false; !lifted; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			lifted = true
		case <-ctx.Done():
			t.Fatalf("queue still sending after a minute; %d samples stored", storedSamples(t, ts.Server, "held"))
		case <-time.After(5 * time.Millisecond):
			clock.Advance(2 * time.Second)
		}
	}

	if got := storedSamples(t, ts.Server, "held"); got != nSeries*nSamples {
		t.Errorf("stored %d samples, want all %d", got, nSeries*nSamples)
	}
	if got := testutil.ToFloat64(ts.metrics.samples.WithLabelValues(sampleFloat, resultAccepted)); got != nSeries*nSamples {
		t.Errorf("TSDB accepted %v samples, want %d: each exactly once", got, nSeries*nSamples)
	}
	for i := range nSeries {
		sel := fmt.Sprintf(`sum_over_time(held{i="%d"}[1h])`, i)
		vec, err := ts.Query(context.Background(), sel, time.UnixMilli(t0+nSamples*1000))
		if err != nil {
			t.Fatal(err)
		}
		if want := float64(nSamples * (nSamples - 1) / 2); len(vec) != 1 || vec[0].F != want {
			t.Errorf("%s = %v, want %v", sel, vec, want)
		}
	}
	if got := throttled(); got < 10 {
		t.Errorf("%v answers 429, want the throttle to have held the queue", got)
	}
}

// logHeld logs nSeries series "held" of nSamples samples each, values 0 to
// nSamples-1 a second apart, to a new WAL, closes it and returns it with the
// first sample's time.
func logHeld(t *testing.T, nSeries, nSamples int) (*wal.WAL, int64) {
	t.Helper()
	w, err := wal.Open(wal.Options{Dir: t.TempDir(), Fsync: wal.FsyncNever}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := base() - int64(nSamples)*1000
	var recs wal.Records
	refs := make([]chunks.HeadSeriesRef, nSeries)
	for i := range refs {
		refs[i] = w.NewRef()
		recs.Series = append(recs.Series, record.RefSeries{Ref: refs[i], Labels: labels.FromStrings("__name__", "held", "i", fmt.Sprint(i))})
	}
	if err := w.Log(&recs); err != nil {
		t.Fatal(err)
	}
	for j := range nSamples {
		recs.Reset()
		for _, ref := range refs {
			recs.Samples = append(recs.Samples, record.RefSample{Ref: ref, T: t0 + int64(j)*1000, V: float64(j)})
		}
		if err := w.Log(&recs); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil { // Run returns once a closed WAL is sent
		t.Fatal(err)
	}
	return w, t0
}

// queueConfig is a remote_write block for ts with fast retries.
func queueConfig(t *testing.T, ts *testServer) *config.RemoteWriteConfig {
	t.Helper()
	u, err := url.Parse(ts.url("/api/v1/remote_write"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.DefaultRemoteWriteConfig
	cfg.URL = &config_util.URL{URL: u}
	cfg.Name = "ampemu"
	cfg.RemoteTimeout = model.Duration(5 * time.Second)
	cfg.QueueConfig.BatchSendDeadline = model.Duration(5 * time.Millisecond)
	cfg.QueueConfig.MinBackoff = model.Duration(time.Millisecond)
	cfg.QueueConfig.MaxBackoff = model.Duration(20 * time.Millisecond)
	cfg.QueueConfig.MaxSamplesPerSend = 100
	cfg.QueueConfig.RetryOnRateLimit = true
	return &cfg
}

// TestHAPair_OneReplicaStored runs two of rwagent's remote-write queues as an
// HA pair, external labels cluster=prod and __replica__=a or b, sending the
// same samples to one workspace: each sample is stored once, from one
// replica, under series that keep cluster and lose __replica__.
func TestHAPair_OneReplicaStored(t *testing.T) {
	const nSeries, nSamples = 10, 30
	ts := newTestServer(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	errs := make(chan error, 2)
	for _, replica := range []string{"a", "b"} {
		w, _ := logHeld(t, nSeries, nSamples)
		q, err := remotewrite.New(t.Context(), remotewrite.Options{
			Config:         queueConfig(t, ts),
			Log:            remotewrite.WALLog(w),
			ExternalLabels: labels.FromStrings("__replica__", replica, "cluster", "prod"),
		})
		if err != nil {
			t.Fatal(err)
		}
		go func() { errs <- q.Run(ctx) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("Run: %v", err)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("queues did not finish within a minute")
	}

	got, err := ts.Series(context.Background(), "held")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != nSeries {
		t.Fatalf("%d series stored, want %d: %v", len(got), nSeries, got)
	}
	for _, ls := range got {
		if ls.Has("__replica__") || ls.Get("cluster") != "prod" {
			t.Errorf("series %s: want cluster=prod and no __replica__", ls)
		}
	}
	elected := ts.ha.electedFor("prod")
	if elected != "a" && elected != "b" {
		t.Fatalf("elected replica %q, want a or b", elected)
	}
	if got := testutil.ToFloat64(ts.metrics.samples.WithLabelValues(sampleFloat, resultAccepted)); got != nSeries*nSamples {
		t.Errorf("TSDB accepted %v samples, want %d: one replica's, once", got, nSeries*nSamples)
	}
	if got := testutil.ToFloat64(ts.metrics.deduplicated); got != nSeries*nSamples {
		t.Errorf("deduplicated %v samples, want the other replica's %d", got, nSeries*nSamples)
	}
}
