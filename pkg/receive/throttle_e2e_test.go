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

	w, err := wal.Open(wal.Options{Dir: t.TempDir(), Fsync: wal.FsyncNever}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t0 := base() - nSamples*1000
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
	q, err := remotewrite.New(t.Context(), remotewrite.Options{Config: &cfg, Log: remotewrite.WALLog(w)})
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
