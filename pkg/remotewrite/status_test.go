package remotewrite

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/sigv4"
)

// refuseSeries returns a receiver fault that answers code with msg to every
// 1.0 request holding a series whose label i is i, and lets the others
// through.
func refuseSeries(i string, code int, msg string) func(n int, w http.ResponseWriter, r *http.Request) bool {
	return func(_ int, w http.ResponseWriter, r *http.Request) bool {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if holdsSeries(body, i) {
			http.Error(w, msg, code)
			return true
		}
		return false
	}
}

// holdsSeries reports whether body, a snappy-compressed 1.0 request, holds
// a series whose label i is i.
func holdsSeries(body []byte, i string) bool {
	pb, err := snappy.Decode(nil, body)
	if err != nil {
		return false
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(pb); err != nil {
		return false
	}
	for _, ts := range req.Timeseries {
		for _, l := range ts.Labels {
			if l.Name == "i" && l.Value == i {
				return true
			}
		}
	}
	return false
}

// TestQueue_400Isolation sends one batch of 64 series to receivers that
// answer 400: a refused series is isolated in a bounded number of requests
// and only its samples are dropped; a refusal without a data reason drops
// the batch in one request, as Prometheus does.
func TestQueue_400Isolation(t *testing.T) {
	const nSeries = 64
	for _, tc := range []struct {
		name        string
		fault       func(n int, w http.ResponseWriter, r *http.Request) bool
		reason      string
		dropped     int
		maxRequests int
		wantLog     []string
	}{
		{
			name:    "one series refused",
			fault:   refuseSeries("3", http.StatusBadRequest, "out of order sample"),
			reason:  reasonOutOfOrder,
			dropped: 1,
			// The first request, then both halves at each of
			// log2(64) levels.
			maxRequests: 1 + 2*6,
			wantLog:     []string{"refused a series", `i=\"3\"`, "out of order sample"},
		},
		{
			name: "every series refused for its data",
			fault: func(_ int, w http.ResponseWriter, _ *http.Request) bool {
				http.Error(w, "out of order sample", http.StatusBadRequest)
				return true
			},
			reason:      reasonOutOfOrder,
			dropped:     nSeries,
			maxRequests: 1 + isolateBudget(nSeries),
			wantLog:     []string{"out of order sample"},
		},
		{
			name: "every request refused without a reason",
			fault: func(_ int, w http.ResponseWriter, _ *http.Request) bool {
				http.Error(w, "Bad request", http.StatusBadRequest)
				return true
			},
			reason:      reasonRejected,
			dropped:     nSeries,
			maxRequests: 1,
			wantLog:     []string{"Bad request"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, tc.fault)
			log, end := floatLog(nSeries, 1)
			var logs syncBuffer
			r := startQueue(t, Options{
				Config: testConfig(t, rc.srv.URL, func(c *config.RemoteWriteConfig) {
					c.QueueConfig.MaxSamplesPerSend = nSeries // one full batch
					c.QueueConfig.BatchSendDeadline = model.Duration(time.Hour)
				}),
				Log:    log,
				Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			})
			waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			if got := rc.requestCount(); got > tc.maxRequests {
				t.Errorf("%d requests, want at most %d", got, tc.maxRequests)
			}
			if got := testutil.ToFloat64(r.q.metrics.samplesDropped.WithLabelValues(tc.reason)); got != float64(tc.dropped) {
				t.Errorf("samples_dropped_total{reason=%q} = %v, want %d", tc.reason, got, tc.dropped)
			}
			if got := rc.store.count(); got != nSeries-tc.dropped {
				t.Errorf("receiver stored %d samples, want %d", got, nSeries-tc.dropped)
			}
			for _, w := range tc.wantLog {
				if !strings.Contains(logs.String(), w) {
					t.Errorf("log lacks %q: %s", w, logs.String())
				}
			}
		})
	}
}

// TestQueue_413RefusesEverything: a receiver that answers 413 to every
// request gets a handful of requests per batch, not 2N-1, and the batch is
// counted dropped as request_too_large. A small batch is not split at all;
// a large one is halved until a half under the floor is refused, and the
// rest is dropped unsent.
func TestQueue_413RefusesEverything(t *testing.T) {
	const n = 1000
	for _, tc := range []struct {
		name        string
		floor       int
		maxRequests int
	}{
		{"small batch", split413Floor, 1},
		// The 1,000-sample body is about 5 KB: halved to 2.5 KB, then
		// 1.3 KB, refused under the floor.
		{"large batch", 1500, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sizes []int
			var mu sync.Mutex
			rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) bool {
				body, _ := io.ReadAll(r.Body)
				mu.Lock()
				sizes = append(sizes, len(body))
				mu.Unlock()
				http.Error(w, "Payload too large", http.StatusRequestEntityTooLarge)
				return true
			})
			log, end := floatLog(n, 1)
			r := startQueueWith(t, Options{
				Config: testConfig(t, rc.srv.URL, func(c *config.RemoteWriteConfig) {
					c.QueueConfig.MaxSamplesPerSend = n // one full batch
					c.QueueConfig.BatchSendDeadline = model.Duration(time.Hour)
				}),
				Log: log,
			}, func(q *Queue) { q.split413Floor = tc.floor })
			waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(sizes) > tc.maxRequests {
				t.Errorf("%d requests of %v bytes, want at most %d (2N-1 = %d before)", len(sizes), sizes, tc.maxRequests, 2*n-1)
			}
			if sizes[0] < 2*tc.floor && tc.floor < split413Floor {
				t.Errorf("the batch is %d bytes, too small to test splitting above a %d floor", sizes[0], tc.floor)
			}
			if got := testutil.ToFloat64(r.q.metrics.samplesDropped.WithLabelValues(reasonTooLarge)); got != n {
				t.Errorf("samples_dropped_total{reason=%q} = %v, want %d", reasonTooLarge, got, n)
			}
		})
	}
}

// signedEnv gives the AWS default chain static credentials with a session
// token from the environment, and no files to read.
func signedEnv(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-key")
	t.Setenv("AWS_SESSION_TOKEN", "s3ssion-t0ken")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// TestQueue_AuthStatuses: on a SigV4-signed endpoint, 401, 403 and 404 mean
// a role or a workspace not ready yet: the batch is held and retried,
// logged as an error, and arrives once the receiver accepts it. Unsigned,
// they drop the batch, as Prometheus does and the remote-write
// specification asks.
func TestQueue_AuthStatuses(t *testing.T) {
	signedEnv(t)
	for _, code := range []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound} {
		for _, signed := range []bool{true, false} {
			t.Run(fmt.Sprintf("%d signed=%v", code, signed), func(t *testing.T) {
				rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) bool {
					if n <= 3 {
						http.Error(w, http.StatusText(code), code)
						return true
					}
					return false
				})
				log, end := floatLog(5, 2)
				var logs syncBuffer
				opts := Options{
					Config: testConfig(t, rc.srv.URL, nil),
					Log:    log,
					Logger: slog.New(slog.NewTextHandler(&logs, nil)),
				}
				if signed {
					opts.Transport, opts.Signed = signingTransport(t, opts.Config, sigv4.Config{Region: "us-east-1"}), true
				}
				r := startQueue(t, opts)
				waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
				if err := r.stop(t); err != nil {
					t.Fatal(err)
				}
				failed := testutil.ToFloat64(r.q.metrics.samplesFailed)
				if !signed {
					if failed == 0 || testutil.ToFloat64(r.q.metrics.samplesDropped.WithLabelValues(reasonRejected)) != failed {
						t.Errorf("samples_failed_total = %v, want the refused batches dropped as rejected", failed)
					}
					if got := testutil.ToFloat64(r.q.metrics.samplesRetried); got != 0 {
						t.Errorf("samples_retried_total = %v, want 0", got)
					}
					return
				}
				if failed != 0 {
					t.Errorf("samples_failed_total = %v, want 0", failed)
				}
				checkInOrder(t, rc.store, 5, 2)
				if got := testutil.ToFloat64(r.q.metrics.samplesRetried); got == 0 {
					t.Error("samples_retried_total = 0, want retries counted")
				}
				if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "configuration problem") {
					t.Errorf("the refusal is not logged as an error: %s", logs.String())
				}
			})
		}
	}
}

// TestQueue_Redirects: a receiver that redirects to another host never
// sends the batch there: the other host sees no request, so no signature,
// session token or configured header. Whatever the status, the batch is
// held and retried (logged with the Location), and arrives once the
// receiver stops redirecting. A 307 or 308 on the same host is followed.
func TestQueue_Redirects(t *testing.T) {
	signedEnv(t)
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		t.Errorf("the other host got %s %s with headers %v", r.Method, r.URL, r.Header)
	}))
	t.Cleanup(other.Close)
	for _, tc := range []struct {
		code     int
		sameHost bool
		follow   bool
	}{
		{http.StatusMovedPermanently, false, true},
		{http.StatusFound, false, true},
		{http.StatusSeeOther, false, true},
		{http.StatusTemporaryRedirect, false, true},
		{http.StatusPermanentRedirect, false, true},
		{http.StatusSeeOther, true, true},          // would turn the POST into a GET
		{http.StatusTemporaryRedirect, true, true}, // followed
		{http.StatusTemporaryRedirect, true, false},
	} {
		t.Run(fmt.Sprintf("%d same_host=%v follow_redirects=%v", tc.code, tc.sameHost, tc.follow), func(t *testing.T) {
			var rc *receiver
			rc = newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) bool {
				if r.URL.Path == "/moved" {
					return false // the same host's new place
				}
				to := other.URL + "/write"
				if tc.sameHost {
					to = rc.srv.URL + "/moved"
				}
				if n <= 2 || (tc.sameHost && tc.code == http.StatusTemporaryRedirect && tc.follow) {
					http.Redirect(w, r, to, tc.code)
					return true
				}
				return false
			})
			log, end := floatLog(5, 2)
			var logs syncBuffer
			cfg := testConfig(t, rc.srv.URL+"/write", func(c *config.RemoteWriteConfig) {
				c.Headers = map[string]string{"X-Tenant-Secret": "h3ader-value"}
				c.HTTPClientConfig.FollowRedirects = tc.follow
			})
			r := startQueue(t, Options{
				Config:    cfg,
				Transport: signingTransport(t, cfg, sigv4.Config{Region: "us-east-1"}),
				Signed:    true,
				Log:       log,
				Logger:    slog.New(slog.NewTextHandler(&logs, nil)),
			})
			waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			checkInOrder(t, rc.store, 5, 2)
			if got := testutil.ToFloat64(r.q.metrics.samplesFailed); got != 0 {
				t.Errorf("samples_failed_total = %v, want 0", got)
			}
			if tc.sameHost && tc.code == http.StatusTemporaryRedirect && tc.follow {
				return // followed: nothing to log
			}
			want := other.URL + "/write"
			if tc.sameHost {
				want = rc.srv.URL + "/moved"
			}
			if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), want) {
				t.Errorf("the refused redirect is not logged as an error naming %s: %s", want, logs.String())
			}
			for _, secret := range []string{"s3cr3t-key", "s3ssion-t0ken"} {
				if strings.Contains(logs.String(), secret) {
					t.Errorf("log holds a secret: %s", logs.String())
				}
			}
		})
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the other host got %d requests", n)
	}
}

// TestQueue_TimeWindow: what the receiver would refuse for its timestamp is
// dropped before sending and counted by reason, so it cannot make the
// receiver refuse a whole batch of good samples.
func TestQueue_TimeWindow(t *testing.T) {
	const amp = "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write"
	now := nowMs()
	year, ahead := now-365*24*3600*1000, now+20*60*1000
	for _, tc := range []struct {
		name        string
		url         string
		limits      Limits // what cmd/rwagent gives an AMP URL
		ageLimit    time.Duration
		old, future float64 // dropped before sending
		refused     float64 // refused by the receiver, out_of_bounds
	}{
		// AMP refuses samples older than an hour, and Cortex more than
		// 10 minutes ahead.
		{"AMP defaults", amp, AMPLimits(), 0, 1, 1, 0},
		{"AMP with a longer sample_age_limit", amp, AMPLimits(), 2 * 365 * 24 * time.Hour, 0, 1, 0},
		// Sent: Prometheus' receiver refuses the sample 20 minutes
		// ahead with 400 ("out of bounds"), and only that series is
		// dropped.
		{"not AMP: no limits", "http://127.0.0.1:1/write", Limits{}, 0, 0, 0, 1},
		{"not AMP with sample_age_limit", "http://127.0.0.1:1/write", Limits{}, time.Hour, 1, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newTestStore()
			log := newFakeLog()
			end := log.append(
				seriesRec(rs(1, "__name__", "old"), rs(2, "__name__", "future"), rs(3, "__name__", "now")),
				samplesRec(record.RefSample{Ref: 1, T: year, V: 1}, record.RefSample{Ref: 2, T: ahead, V: 2}, record.RefSample{Ref: 3, T: now, V: 3}),
			)
			r := startQueue(t, Options{
				Config: testConfig(t, tc.url, func(c *config.RemoteWriteConfig) {
					c.QueueConfig.SampleAgeLimit = model.Duration(tc.ageLimit)
				}),
				Log:       log,
				Transport: newHandlerTransport(st, remoteapi.MessageTypes{remoteapi.WriteV1MessageType}),
				Limits:    tc.limits,
			})
			waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				reason string
				want   float64
			}{{reasonTooOld, tc.old}, {reasonTooNew, tc.future}, {reasonOutOfBounds, tc.refused}} {
				if got := testutil.ToFloat64(r.q.metrics.samplesDropped.WithLabelValues(c.reason)); got != c.want {
					t.Errorf("samples_dropped_total{reason=%q} = %v, want %v", c.reason, got, c.want)
				}
			}
			if got, want := st.count(), 3-int(tc.old+tc.future+tc.refused); got != want {
				t.Errorf("receiver stored %d samples, want %d", got, want)
			}
			if got := st.get(key("__name__", "now")); len(got) != 1 {
				t.Errorf("the current sample did not arrive: %v", got)
			}
		})
	}
}

// TestQueue_AgesWhileRetrying: a batch held by a receiver that is down
// until its samples are past sample_age_limit is dropped at the next
// attempt as too_old, not sent.
func TestQueue_AgesWhileRetrying(t *testing.T) {
	const limit = 300 * time.Millisecond
	begin := time.Now()
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
		if time.Since(begin) < 2*limit {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	log := newFakeLog()
	end := log.append(seriesRec(rs(1, "__name__", "up")), samplesRec(record.RefSample{Ref: 1, T: nowMs(), V: 1}))
	r := startQueue(t, Options{
		Config: testConfig(t, rc.srv.URL, func(c *config.RemoteWriteConfig) {
			c.QueueConfig.SampleAgeLimit = model.Duration(limit)
		}),
		Log: log,
	})
	waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(r.q.metrics.samplesDropped.WithLabelValues(reasonTooOld)); got != 1 {
		t.Errorf("samples_dropped_total{reason=too_old} = %v, want 1", got)
	}
	if got := rc.store.count(); got != 0 {
		t.Errorf("receiver stored %d samples, want 0", got)
	}
}

// TestQueue_DroppedAtZero: samples_dropped_total (and the histograms_ and
// exemplars_ counters) exist at zero for every reason from the start.
func TestQueue_DroppedAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	rc := newReceiver(t, nil)
	log, end := floatLog(2, 1)
	r := startQueue(t, Options{Config: testConfig(t, rc.srv.URL, nil), Log: log, Registerer: reg})
	waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"wal_corrupt", "too_old", "too_far_in_future", "rejected", "out_of_order", "request_too_large", "wal_full", "dropped_series"}
	for _, name := range []string{"samples", "histograms", "exemplars"} {
		found := map[string]bool{}
		for _, mf := range mfs {
			if mf.GetName() != "prometheus_remote_storage_"+name+"_dropped_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" && m.GetCounter().GetValue() == 0 {
						found[l.GetValue()] = true
					}
				}
			}
		}
		for _, reason := range append(want, allDropReasons()...) {
			if !found[reason] {
				t.Errorf("prometheus_remote_storage_%s_dropped_total{reason=%q} is not at 0", name, reason)
			}
		}
	}
}
