package config

import (
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	promconfig "github.com/prometheus/prometheus/config"
	"gopkg.in/yaml.v3"
)

// DefaultMaxSamplesPerSendV2 is queue_config.max_samples_per_send for a
// remote_write with protobuf_message io.prometheus.write.v2.Request that
// does not set it; 1.0 keeps Prometheus' 2,000.
//
// A 2.0 request names each string once in its symbols table, so the more
// of a target's series it holds, the fewer strings it repeats: on the
// large load-benchmark workload (10,000-series targets) a request of
// 10,000 samples is 16 % smaller per sample than one of 2,000
// (remotewrite.BenchmarkWire with s2's plain snappy encoder: 22.57 ->
// 19.02 B/sample, the mean over where batches start in a scrape), while
// 20,000 gains under 2 % more. The request is then about 180 KiB compressed
// and 660 KiB before, far below receivers' limits (AMP's 1 MB,
// Prometheus' 32 MiB decoded), and five times fewer requests cost less
// CPU. The costs: a shard holds five times as many samples in its batch
// and encoder (the live heap grew by 7 MiB with one shard on that
// workload), and below 2,000 samples/s per shard a batch waits for
// batch_send_deadline instead of filling: latency stays below
// batch_send_deadline plus the send, but gets there more often (10
// targets x 1,000 series @ 5 s: p50 6 ms -> 2.1 s, p99 2.1 s -> 4.8 s).
const DefaultMaxSamplesPerSendV2 = 10_000

// DefaultRetryOnHTTP429 is queue_config.retry_on_http_429 when a
// remote_write does not set it. Prometheus (3.16 too) defaults to false and
// drops a batch answered with 429; rwagent retries it, as vmagent does: a
// 429 is AMP throttling (its ingestion rate and burst quotas), the data is
// fine and goes through once the rate falls. Retries wait with backoff, and
// the receiver's Retry-After, at most max_backoff. Writing
// retry_on_http_429: false keeps Prometheus' behaviour.
const DefaultRetryOnHTTP429 = true

// applyQueueDefaults sets the queue_config defaults that depend on whether
// a field is written, which Prometheus' structs cannot tell, for each
// remote_write whose queue_config in doc (the remote_write section's
// sequence node, in pc's order) does not name it:
//   - max_samples_per_send: DefaultMaxSamplesPerSendV2 for 2.0;
//   - retry_on_http_429: true (DefaultRetryOnHTTP429).
func applyQueueDefaults(pc *promconfig.Config, doc *yaml.Node) {
	for i, rw := range pc.RemoteWriteConfigs {
		var qc *yaml.Node
		if doc != nil && i < len(doc.Content) {
			qc = mappingValue(doc.Content[i], "queue_config")
		}
		if rw.ProtobufMessage == remoteapi.WriteV2MessageType && mappingValue(qc, "max_samples_per_send") == nil {
			rw.QueueConfig.MaxSamplesPerSend = DefaultMaxSamplesPerSendV2
		}
		if mappingValue(qc, "retry_on_http_429") == nil {
			rw.QueueConfig.RetryOnRateLimit = DefaultRetryOnHTTP429
		}
	}
}
