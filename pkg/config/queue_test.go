package config

import "testing"

// TestRetryOn429Default: retry_on_http_429 is true unless the file says
// false, for 1.0 and 2.0 alike; a queue_config without it or no
// queue_config at all gets the default.
func TestRetryOn429Default(t *testing.T) {
	c, err := Load([]byte(`
remote_write:
  - url: http://a/write
  - url: http://b/write
    queue_config:
      retry_on_http_429: false
  - url: http://c/write
    queue_config:
      retry_on_http_429: true
  - url: http://d/write
    protobuf_message: io.prometheus.write.v2.Request
    queue_config:
      max_shards: 3
  - url: http://e/write
    protobuf_message: io.prometheus.write.v2.Request
    queue_config:
      retry_on_http_429: false
`), lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false, true, true, false} {
		if got := c.Prometheus.RemoteWriteConfigs[i].QueueConfig.RetryOnRateLimit; got != want {
			t.Errorf("remote_write[%d] retry_on_http_429 = %v, want %v", i, got, want)
		}
	}
}
