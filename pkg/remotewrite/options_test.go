package remotewrite

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	promsigv4 "github.com/prometheus/sigv4"

	"github.com/rwagent/rwagent/pkg/sigv4"
)

func TestNew_Errors(t *testing.T) {
	log := newFakeLog()
	cases := []struct {
		name string
		opts func(t *testing.T) Options
		want string
	}{
		{"no config", func(*testing.T) Options { return Options{Log: log} }, "config with a url is required"},
		{"no url", func(*testing.T) Options { return Options{Config: &config.RemoteWriteConfig{}, Log: log} }, "config with a url is required"},
		{"no log", func(t *testing.T) Options { return Options{Config: testConfig(t, "http://127.0.0.1:1/w", nil)} }, "log is required"},
		{
			name: "unknown protobuf_message",
			opts: func(t *testing.T) Options {
				return Options{Log: log, Config: testConfig(t, "http://127.0.0.1:1/w", func(c *config.RemoteWriteConfig) {
					c.ProtobufMessage = "io.prometheus.write.v3.Request"
				})}
			},
			want: `protobuf_message "io.prometheus.write.v3.Request" is not supported`,
		},
		{
			name: "sigv4 option we cannot honour",
			opts: func(t *testing.T) Options {
				return Options{Log: log, Config: testConfig(t, "http://127.0.0.1:1/w", func(c *config.RemoteWriteConfig) {
					c.SigV4Config = &promsigv4.SigV4Config{Region: "us-east-1", RoleARN: "arn:aws:iam::1:role/r", Tags: map[string]string{"team": "x"}}
				})}
			},
			want: "sigv4 is not honoured here",
		},
		{
			name: "signed without a transport",
			opts: func(t *testing.T) Options {
				return Options{Log: log, Config: testConfig(t, "http://127.0.0.1:1/w", nil), Signed: true}
			},
			want: "signed requests need the signing transport",
		},
		{
			name: "bad queue_config",
			opts: func(t *testing.T) Options {
				return Options{Log: log, Config: testConfig(t, "http://127.0.0.1:1/w", func(c *config.RemoteWriteConfig) {
					c.QueueConfig.MinShards = 0
				})}
			},
			want: "min_shards must be positive",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(t.Context(), tc.opts(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestQueue_Metrics runs two queues for one endpoint in sequence on one
// registry: each registers its metrics while it runs (URL redacted) and
// unregisters them when Run returns. A second queue for the same endpoint
// running at the same time is refused.
func TestQueue_Metrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	rc := newReceiver(t, nil)
	rawURL := strings.Replace(rc.srv.URL, "http://", "http://user:hunter2@", 1)
	for i := range 2 {
		log, end := floatLog(3, 2)
		r := startQueue(t, Options{Config: testConfig(t, rawURL, nil), Log: log, Registerer: reg})
		waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })

		q2, err := New(t.Context(), Options{Config: testConfig(t, rawURL, nil), Log: log, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		if err := q2.Run(t.Context()); err == nil {
			t.Errorf("round %d: a second queue with the same metrics ran", i)
		}

		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				var name, url string
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "remote_name":
						name = l.GetValue()
					case "url":
						url = l.GetValue()
					}
				}
				if name != "test" || strings.Contains(url, "hunter2") || !strings.Contains(url, "127.0.0.1") {
					t.Errorf("round %d: %s has remote_name=%q url=%q", i, mf.GetName(), name, url)
				}
				if m.GetCounter() != nil {
					found[mf.GetName()] += m.GetCounter().GetValue()
				} else {
					found[mf.GetName()] += m.GetGauge().GetValue()
				}
			}
		}
		// Prometheus' highest_timestamp_in_seconds has no per-queue
		// labels: the WAL exports it once, not each queue.
		if _, ok := found["prometheus_remote_storage_highest_timestamp_in_seconds"]; ok {
			t.Errorf("round %d: prometheus_remote_storage_highest_timestamp_in_seconds registered per queue", i)
		}
		for name, want := range map[string]float64{
			"prometheus_remote_storage_samples_total":                        6,
			"prometheus_remote_storage_samples_pending":                      0,
			"prometheus_remote_storage_shards":                               1,
			"prometheus_remote_storage_queue_highest_sent_timestamp_seconds": -1, // > 0
			"prometheus_remote_storage_bytes_total":                          -1,
			"prometheus_remote_storage_queue_highest_timestamp_seconds":      -1,
			"prometheus_remote_storage_enqueue_retries_total":                0,
			"prometheus_remote_storage_shards_desired":                       1,
			"prometheus_remote_storage_shards_min":                           1,
			"prometheus_remote_storage_shards_max":                           50,
			"rwagent_remote_write_lag_seconds":                               0,
			"prometheus_remote_storage_metadata_total":                       0,
			"prometheus_remote_storage_metadata_failed_total":                0,
			"prometheus_remote_storage_metadata_retried_total":               0,
			"prometheus_remote_storage_metadata_bytes_total":                 0,
		} {
			got, ok := found[name]
			switch {
			case !ok:
				t.Errorf("round %d: %s not registered", i, name)
			case want >= 0 && got != want:
				t.Errorf("round %d: %s = %v, want %v", i, name, got, want)
			case want < 0 && got <= 0:
				t.Errorf("round %d: %s = %v, want > 0", i, name, got)
			}
		}
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
		mfs, err = reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			t.Errorf("round %d: %s still registered after Run returned", i, mf.GetName())
		}
	}
}

// TestQueue_SigV4 signs with static keys from the sigv4 block and checks the
// receiver's verifier accepts every request.
func TestQueue_SigV4(t *testing.T) {
	v := &sigv4.Verifier{Region: "us-east-1", Service: "aps", Credentials: []sigv4.Credential{{AccessKeyID: "AKIDTEST", SecretAccessKey: "s3cr3t"}}}
	var (
		mu         sync.Mutex
		verifyErrs []error
	)
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) bool {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			panic(err)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := v.Verify(r, body); err != nil {
			mu.Lock()
			verifyErrs = append(verifyErrs, err)
			mu.Unlock()
			http.Error(w, err.Error(), http.StatusForbidden)
			return true
		}
		return false
	})
	log, end := floatLog(5, 3)
	cfg := testConfig(t, rc.srv.URL+"/workspaces/ws-1/api/v1/remote_write", func(c *config.RemoteWriteConfig) {
		c.RemoteTimeout = model.Duration(5e9)
	})
	r := startQueue(t, Options{
		Config:    cfg,
		Transport: signingTransport(t, cfg, sigv4.Config{Region: "us-east-1", AccessKey: "AKIDTEST", SecretKey: "s3cr3t"}),
		Signed:    true,
		Log:       log,
	})
	waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(verifyErrs) > 0 {
		t.Fatalf("receiver rejected signatures: %v", verifyErrs)
	}
	checkInOrder(t, rc.store, 5, 3)
	if h := rc.requestHeaders()[0].Get("Authorization"); !strings.HasPrefix(h, "AWS4-HMAC-SHA256 Credential=AKIDTEST/") {
		t.Errorf("Authorization = %q", h)
	}
}

// signingTransport is what cmd/rwagent builds for a signed endpoint:
// cfg's HTTP transport wrapped by the SigV4 signer of sc.
func signingTransport(t testing.TB, cfg *config.RemoteWriteConfig, sc sigv4.Config) http.RoundTripper {
	t.Helper()
	base, err := config_util.NewRoundTripperFromConfigWithContext(t.Context(), cfg.HTTPClientConfig, "remote_storage_write_client")
	if err != nil {
		t.Fatal(err)
	}
	sc.URL = cfg.URL.String()
	rt, err := sigv4.NewRoundTripper(t.Context(), sc, base, sigv4.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

// TestUnregisterMetrics runs a queue to its end twice on one registry: the
// second registers, a queue whose metrics are taken is refused by the
// metric's name, and once Run has returned nothing is left registered.
func TestUnregisterMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	rc := newReceiver(t, nil)
	for i := range 2 {
		log, end := floatLog(2, 1)
		r := startQueue(t, Options{Config: testConfig(t, rc.srv.URL, nil), Log: log, Registerer: reg})
		waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
		q2, err := New(t.Context(), Options{Config: testConfig(t, rc.srv.URL, nil), Log: log, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		if err := q2.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "register metric prometheus_remote_storage_") {
			t.Errorf("round %d: a second queue on the same metrics: Run = %v, want an error naming the metric", i, err)
		}
		if err := r.stop(t); err != nil {
			t.Fatalf("round %d: Run: %v", i, err)
		}
	}
	if mfs, err := reg.Gather(); err != nil || len(mfs) != 0 {
		t.Errorf("after Run returned: %d metric families registered (err %v), want 0", len(mfs), err)
	}
}
