package remotewrite

import (
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/config"
)

// TestQueue_EnqueueRetries checks prometheus_remote_storage_enqueue_retries_total,
// which the mixin's "Enqueue Retries" panel plots: it counts the reader waiting on a full shard while the receiver
// holds the first request, and nothing is lost for the wait.
func TestQueue_EnqueueRetries(t *testing.T) {
	const nSeries, nRecs = 10, 20
	release := make(chan struct{})
	rc := newReceiver(t, func(n int, _ http.ResponseWriter, r *http.Request) bool {
		if n == 1 {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		return false
	})
	log, _ := floatLog(nSeries, nRecs)
	cfg := testConfig(t, rc.srv.URL, func(c *config.RemoteWriteConfig) {
		c.QueueConfig.MinShards, c.QueueConfig.MaxShards = 1, 1
		c.QueueConfig.Capacity = 10
		c.QueueConfig.MaxSamplesPerSend = 10
	})
	r := startQueueWith(t, Options{Config: cfg, Log: log, Registerer: prometheus.NewRegistry()}, nil)
	waitFor(t, "the reader to wait on the full shard", func() bool {
		return testutil.ToFloat64(r.q.metrics.enqueueRetries) > 0
	})
	close(release)
	waitFor(t, "every sample delivered", func() bool { return rc.store.count() == nSeries*nRecs })
	checkInOrder(t, rc.store, nSeries, nRecs)
}
