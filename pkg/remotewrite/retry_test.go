package remotewrite

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
)

// TestQueue_Faults runs a receiver that misbehaves on its first requests and
// checks that everything arrives once, in order per series, or is dropped and
// counted, as the fault demands.
func TestQueue_Faults(t *testing.T) {
	const nSeries, nRecs = 10, 30
	var refused atomic.Int64 // 413 answers of the split case
	cases := []struct {
		name  string
		mod   func(*config.RemoteWriteConfig)
		tune  func(*Queue)
		fault func(n int, w http.ResponseWriter, r *http.Request) bool
		// check runs after the queue acked everything and stopped;
		// logs is what it logged.
		check func(t *testing.T, q *Queue, rc *receiver, logs string)
	}{
		{
			name: "503 then ok",
			fault: func(n int, w http.ResponseWriter, _ *http.Request) bool {
				if n <= 3 {
					http.Error(w, "try later", http.StatusServiceUnavailable)
					return true
				}
				return false
			},
			check: func(t *testing.T, q *Queue, rc *receiver, logs string) {
				checkInOrder(t, rc.store, nSeries, nRecs)
				if got := testutil.ToFloat64(q.metrics.samplesRetried); got == 0 {
					t.Error("samples_retried_total = 0, want retries counted")
				}
				if got := testutil.ToFloat64(q.metrics.samplesFailed); got != 0 {
					t.Errorf("samples_failed_total = %v, want 0", got)
				}
			},
		},
		{
			name: "receiver hangs until remote_timeout",
			mod:  func(c *config.RemoteWriteConfig) { c.RemoteTimeout = model.Duration(100 * time.Millisecond) },
			fault: func(n int, _ http.ResponseWriter, r *http.Request) bool {
				if n == 1 {
					// Read the body, so the server notices when the client
					// gives up and closes the connection.
					_, _ = io.Copy(io.Discard, r.Body)
					<-r.Context().Done()
					return true
				}
				return false
			},
			check: func(t *testing.T, q *Queue, rc *receiver, logs string) {
				checkInOrder(t, rc.store, nSeries, nRecs)
				if got := testutil.ToFloat64(q.metrics.samplesRetried); got == 0 {
					t.Error("samples_retried_total = 0, want the timed-out batch retried")
				}
			},
		},
		{
			name: "garbage instead of an HTTP response",
			fault: func(n int, w http.ResponseWriter, _ *http.Request) bool {
				if n != 1 {
					return false
				}
				conn, _, err := http.NewResponseController(w).Hijack()
				if err != nil {
					panic(err)
				}
				_, _ = conn.Write([]byte("\x00\x01garbage\r\n\r\n"))
				_ = conn.Close()
				return true
			},
			check: func(t *testing.T, q *Queue, rc *receiver, logs string) {
				checkInOrder(t, rc.store, nSeries, nRecs)
				if got := testutil.ToFloat64(q.metrics.samplesRetried); got == 0 {
					t.Error("samples_retried_total = 0, want the garbage answer retried")
				}
			},
		},
		{
			name: "garbage 200 body is fine",
			fault: func(n int, w http.ResponseWriter, r *http.Request) bool {
				_, _ = r.Body.Read(make([]byte, 1))
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write([]byte("\xff\xfe not protobuf, not json"))
				return true
			},
			check: func(t *testing.T, q *Queue, rc *receiver, logs string) {
				if got := testutil.ToFloat64(q.metrics.samplesRetried); got != 0 {
					t.Errorf("samples_retried_total = %v, want 0", got)
				}
				if got := testutil.ToFloat64(q.metrics.samplesTotal); got != nSeries*nRecs {
					t.Errorf("samples_total = %v, want %d", got, nSeries*nRecs)
				}
			},
		},
		{
			name: "413 splits the batch, nothing lost",
			// Halves refused again stop the splitting only under
			// the floor; this receiver's limit is far below the
			// real one.
			tune: func(q *Queue) { q.split413Floor = 100 },
			fault: func(n int, w http.ResponseWriter, r *http.Request) bool {
				// Refuse every request whose compressed body is over
				// 300 bytes: only small parts get through.
				body, _ := io.ReadAll(r.Body)
				if len(body) > 300 {
					refused.Add(1)
					http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
					return true
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
				return false
			},
			check: func(t *testing.T, q *Queue, rc *receiver, logs string) {
				checkInOrder(t, rc.store, nSeries, nRecs)
				if refused.Load() == 0 {
					t.Error("no request was over 300 bytes; the test does not split")
				}
				if got := testutil.ToFloat64(q.metrics.samplesFailed); got != 0 {
					t.Errorf("samples_failed_total = %v, want 0", got)
				}
			},
		},
		{
			name: "429 without retry_on_http_429 is dropped",
			fault: func(n int, w http.ResponseWriter, _ *http.Request) bool {
				if n == 1 {
					w.Header().Set("Retry-After", "1")
					http.Error(w, "slow down", http.StatusTooManyRequests)
					return true
				}
				return false
			},
			check: func(t *testing.T, q *Queue, rc *receiver, logs string) {
				if got := testutil.ToFloat64(q.metrics.samplesFailed); got == 0 {
					t.Error("samples_failed_total = 0, want the 429 batch dropped")
				}
			},
		},
	}
	// A 400 is not retried. Here the receiver refuses every request
	// holding series i="3". When its message names a problem of the data,
	// the batch is split until that series is alone, and only its samples
	// are dropped, counted by the reason the message names (Prometheus'
	// and AMP's texts); otherwise the batches holding it are dropped.
	for _, bad := range []struct {
		msg, reason string
		isolated    bool
	}{
		{"out of order sample", reasonOutOfOrder, true},
		{"duplicate sample for timestamp", reasonDuplicate, true},
		{"too old sample", reasonOutOfBounds, true},
		{"series has too many labels (actual: 75, limit: 70) series: 'up{a=\"1\"}'", reasonTooManyLabels, true},
		{"label value too long", reasonLabelTooLong, true},
		{"something else", reasonRejected, false},
	} {
		cases = append(cases, struct {
			name  string
			mod   func(*config.RemoteWriteConfig)
			tune  func(*Queue)
			fault func(n int, w http.ResponseWriter, r *http.Request) bool
			check func(t *testing.T, q *Queue, rc *receiver, logs string)
		}{
			name:  "400 " + bad.msg,
			fault: refuseSeries("3", http.StatusBadRequest, bad.msg),
			check: func(t *testing.T, q *Queue, rc *receiver, logs string) {
				failed := testutil.ToFloat64(q.metrics.samplesFailed)
				if failed == 0 {
					t.Fatal("samples_failed_total = 0, want the rejected samples counted")
				}
				if got := testutil.ToFloat64(q.metrics.samplesDropped.WithLabelValues(bad.reason)); got != failed {
					t.Errorf("samples_dropped_total{reason=%q} = %v, want %v", bad.reason, got, failed)
				}
				if got := testutil.ToFloat64(q.metrics.samplesRetried); got != 0 {
					t.Errorf("samples_retried_total = %v, want 0 (a 400 is not retried)", got)
				}
				if got, want := float64(rc.store.count()), nSeries*nRecs-failed; got != want {
					t.Errorf("receiver stored %v samples, want %v", got, want)
				}
				if !strings.Contains(logs, "reason="+bad.reason) || !strings.Contains(logs, strings.Split(bad.msg, " (")[0]) {
					t.Errorf("the reason and the receiver's message are not logged: %s", logs)
				}
				if !bad.isolated {
					return
				}
				if failed != nRecs {
					t.Errorf("%v samples dropped, want only the %d of the refused series", failed, nRecs)
				}
				for s := range nSeries {
					if got := len(rc.store.get(key("__name__", "m", "i", strconv.Itoa(s)))); s != 3 && got != nRecs {
						t.Errorf("series %d: %d samples arrived, want %d", s, got, nRecs)
					}
				}
				if !strings.Contains(logs, `i=\"3\"`) {
					t.Errorf("the refused series is not logged: %s", logs)
				}
			},
		})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, tc.fault)
			log, end := floatLog(nSeries, nRecs)
			var logs syncBuffer
			r := startQueueWith(t, Options{
				Config: testConfig(t, rc.srv.URL, tc.mod),
				Log:    log,
				Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			}, tc.tune)
			waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
			if err := r.stop(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
			tc.check(t, r.q, rc, logs.String())
		})
	}
}

func TestQueue_RetryAfter429(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) bool {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return true
		}
		return false
	})
	log, end := floatLog(5, 1)
	r := startQueue(t, Options{
		Config: testConfig(t, rc.srv.URL, func(c *config.RemoteWriteConfig) {
			c.QueueConfig.RetryOnRateLimit = true
			c.QueueConfig.MaxSamplesPerSend = 5 // one full batch
			c.QueueConfig.MaxBackoff = model.Duration(5 * time.Second)
		}),
		Log: log,
	})
	waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
	times := rc.requestTimes()
	if len(times) != 2 {
		t.Fatalf("got %d requests, want 2", len(times))
	}
	// Min backoff is 1ms: only Retry-After explains a 1s gap.
	if gap := times[1].Sub(times[0]); gap < 900*time.Millisecond {
		t.Errorf("retry came %v after the 429, want about Retry-After: 1s", gap)
	}
	if got := testutil.ToFloat64(r.q.metrics.samplesRetried); got != 5 {
		t.Errorf("samples_retried_total = %v, want 5", got)
	}
	checkInOrder(t, rc.store, 5, 1)
}

// TestQueue_AckedAfterDelivery holds the receiver's answer and checks that
// Acked does not pass a sample before it is delivered.
func TestQueue_AckedAfterDelivery(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 100)
	rc := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) bool {
		entered <- struct{}{}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return false
	})
	log, _ := floatLog(3, 0) // the series record only
	start := fakeStart(1)
	r := startQueue(t, Options{Config: testConfig(t, rc.srv.URL, nil), Log: log, Start: start})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // runs before the queue is stopped, should the test fail early
	waitFor(t, "series record read", func() bool { return r.q.Acked() == start })

	end := log.append(samplesRec(sampleAt(1, 1), sampleAt(2, 1), sampleAt(3, 1)))
	<-entered
	if got := r.q.Acked(); got != start {
		t.Fatalf("Acked = %+v while the batch is in flight, want %+v", got, start)
	}
	unblock()
	waitFor(t, "acked after delivery", func() bool { return r.q.Acked() == end })
	if got := rc.store.count(); got != 3 {
		t.Errorf("receiver got %d samples, want 3", got)
	}
}

// TestQueue_Backpressure fills tiny shards while the receiver is stuck: the
// reader must block, not drop, and everything arrives once it answers.
func TestQueue_Backpressure(t *testing.T) {
	const nSeries, nRecs = 4, 50
	release := make(chan struct{})
	rc := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) bool {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return false
	})
	log, end := floatLog(nSeries, nRecs)
	r := startQueue(t, Options{
		Config: testConfig(t, rc.srv.URL, func(c *config.RemoteWriteConfig) {
			c.QueueConfig.MaxSamplesPerSend = 5
			c.QueueConfig.Capacity = 10
		}),
		Log: log,
	})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // runs before the queue is stopped, should the test fail early
	// One batch in flight and a full ring: 15 samples at most, the
	// reader is stuck long before the end.
	waitFor(t, "ring full", func() bool { return r.q.shards[0].pending() == 15 })
	if got := r.q.Acked(); got == end {
		t.Fatal("acked everything while the receiver is stuck")
	}
	unblock()
	waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	checkInOrder(t, rc.store, nSeries, nRecs)
	for _, reason := range []string{reasonDroppedSeries, reasonUnknownSeries, reasonTooOld, reasonRejected} {
		if got := testutil.ToFloat64(r.q.metrics.samplesDropped.WithLabelValues(reason)); got != 0 {
			t.Errorf("samples_dropped_total{reason=%q} = %v, want 0", reason, got)
		}
	}
}

// TestQueue_ShutdownFlush stops a queue whose samples wait for a batch that
// would take an hour to fill: Run must send them before returning.
func TestQueue_ShutdownFlush(t *testing.T) {
	rc := newReceiver(t, nil)
	log, end := floatLog(10, 3)
	r := startQueue(t, Options{
		Config: testConfig(t, rc.srv.URL, func(c *config.RemoteWriteConfig) {
			c.QueueConfig.BatchSendDeadline = model.Duration(time.Hour)
			c.QueueConfig.MaxSamplesPerSend = 1000
			c.QueueConfig.MinShards = 2
		}),
		Log: log,
	})
	waitFor(t, "all queued", func() bool {
		p := 0
		for _, s := range r.q.shards {
			p += s.pending()
		}
		return p == 30
	})
	if rc.requestCount() != 0 {
		t.Fatal("sent before the batch deadline or a full batch")
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	checkInOrder(t, rc.store, 10, 3)
	if got := r.q.Acked(); got != end {
		t.Errorf("Acked = %+v after flush, want %+v", got, end)
	}
}

// TestQueue_ShutdownDeadline stops a queue whose receiver always fails: Run
// must give up at the flush deadline and leave everything unacknowledged.
func TestQueue_ShutdownDeadline(t *testing.T) {
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) bool {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return true
	})
	log, _ := floatLog(10, 3)
	start := fakeStart(1) // after the series record
	r := startQueue(t, Options{
		Config:        testConfig(t, rc.srv.URL, nil),
		Log:           log,
		FlushDeadline: 50 * time.Millisecond,
	})
	waitFor(t, "retrying", func() bool { return rc.requestCount() >= 2 })
	begin := time.Now()
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took < 50*time.Millisecond {
		t.Errorf("Run returned after %v, before the flush deadline", took)
	}
	if got := r.q.Acked(); got.Compare(start) > 0 {
		t.Errorf("Acked = %+v, want at most %+v: nothing was delivered", got, start)
	}
	if got := testutil.ToFloat64(r.q.metrics.samplesFailed); got != 0 {
		t.Errorf("samples_failed_total = %v, want 0: unsent is not failed", got)
	}
}

func TestQueue_StartSkipsEarlierSamples(t *testing.T) {
	rc := newReceiver(t, nil)
	log, end := floatLog(2, 4) // records: series, then 4 sample records
	r := startQueue(t, Options{Config: testConfig(t, rc.srv.URL, nil), Log: log, Start: fakeStart(3)})
	waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	// Records 3 and 4 (values 2 and 3) only; series replayed from before Start.
	for s := range 2 {
		got := rc.store.get(key("__name__", "m", "i", strconv.Itoa(s)))
		if len(got) != 2 || got[0].v != 2 || got[1].v != 3 {
			t.Errorf("series %d: got %+v, want values 2, 3", s, got)
		}
	}
}

func sampleAt(ref int, v float64) record.RefSample {
	return record.RefSample{Ref: chunks.HeadSeriesRef(ref), T: nowMs(), V: v}
}

// syncBuffer is a bytes.Buffer safe for concurrent use, for logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
