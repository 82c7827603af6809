package remotewrite

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
)

// scriptedTransport answers each request with answer(n), n counting from 0,
// and records when requests came. It does no I/O, so it runs in a synctest
// bubble.
type scriptedTransport struct {
	answer func(n int) (status int, retryAfter string)

	mu    sync.Mutex
	times []time.Time
}

func (s *scriptedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	_, _ = io.Copy(io.Discard, r.Body)
	_ = r.Body.Close()
	s.mu.Lock()
	n := len(s.times)
	s.times = append(s.times, time.Now())
	s.mu.Unlock()
	status, ra := s.answer(n)
	h := http.Header{}
	if ra != "" {
		h.Set("Retry-After", ra)
	}
	return &http.Response{
		StatusCode: status, Status: http.StatusText(status), Header: h,
		Body: io.NopCloser(strings.NewReader("")), Request: r,
	}, nil
}

func (s *scriptedTransport) gaps() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var gaps []time.Duration
	for i := 1; i < len(s.times); i++ {
		gaps = append(gaps, s.times[i].Sub(s.times[i-1]))
	}
	return gaps
}

// TestQueue_BackoffTiming checks the exact retry schedule: doubling from
// min_backoff, capped at max_backoff, and Retry-After taking precedence but
// capped at max_backoff too.
func TestQueue_BackoffTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &scriptedTransport{answer: func(n int) (int, string) {
			switch {
			case n < 3:
				return http.StatusServiceUnavailable, ""
			case n == 3:
				return http.StatusTooManyRequests, "2"
			case n == 4:
				return http.StatusTooManyRequests, "1"
			}
			return http.StatusOK, ""
		}}
		log, end := floatLog(5, 1)
		q, err := New(t.Context(), Options{
			Config: testConfig(t, "http://127.0.0.1:1/write", func(c *config.RemoteWriteConfig) {
				c.QueueConfig.MinBackoff = model.Duration(10 * time.Millisecond)
				c.QueueConfig.MaxBackoff = model.Duration(1500 * time.Millisecond)
				c.QueueConfig.RetryOnRateLimit = true
				c.QueueConfig.MaxSamplesPerSend = 5
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
		time.Sleep(time.Minute) // fake time: long after every retry
		synctest.Wait()
		if got := q.Acked(); got != end {
			t.Errorf("Acked = %v, want %v", got, end)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 1500 * time.Millisecond, time.Second}
		got := tr.gaps()
		if len(got) != len(want) {
			t.Fatalf("gaps between attempts = %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("gaps between attempts = %v, want %v", got, want)
				break
			}
		}
	})
}

// TestQueue_FlushDeadlineExact stops a queue whose receiver always fails:
// Run returns exactly the flush deadline after ctx is done, or the
// Handover's bound when one was given, with nothing acknowledged.
func TestQueue_FlushDeadlineExact(t *testing.T) {
	const deadline = 7 * time.Second
	for _, tc := range []struct {
		name     string
		handover time.Duration // <0: none
		want     time.Duration
	}{
		{"flush deadline", -1, deadline},
		{"handover", 2 * time.Second, 2 * time.Second},
		{"handover at once", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tr := &scriptedTransport{answer: func(int) (int, string) { return http.StatusInternalServerError, "" }}
				log, _ := floatLog(5, 2)
				q, err := New(t.Context(), Options{
					Config:        testConfig(t, "http://127.0.0.1:1/write", nil),
					Log:           log,
					Transport:     tr,
					FlushDeadline: deadline,
				})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan error)
				go func() { done <- q.Run(ctx) }()
				time.Sleep(time.Second)
				synctest.Wait()
				start := q.Acked()
				if start != fakeStart(1) {
					t.Fatalf("Acked = %v with nothing delivered, want the first sample record's start %v", start, fakeStart(1))
				}
				if tc.handover >= 0 {
					q.Handover(tc.handover)
				}
				begin := time.Now()
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if took := time.Since(begin); took != tc.want {
					t.Errorf("Run returned %v after ctx was done, want %v", took, tc.want)
				}
				if got := q.Acked(); got != start {
					t.Errorf("Acked moved from %v to %v with nothing delivered", start, got)
				}
			})
		})
	}
}

// TestQueue_RetryAfter checks that a 503, and a 429 with retry_on_http_429,
// wait exactly what Retry-After asks, in seconds or as an HTTP-date, and
// that a 429 without retry_on_http_429 drops the batch.
func TestQueue_RetryAfter(t *testing.T) {
	day := func(time.Time) (string, time.Duration) { return "86400", 5 * time.Second }
	cases := []struct {
		name       string
		status     int
		retry      bool
		maxBackoff time.Duration // zero: a minute, above every Retry-After below
		header     func(now time.Time) (value string, wait time.Duration)
		dropped    bool
	}{
		{name: "503 seconds", status: http.StatusServiceUnavailable, header: func(time.Time) (string, time.Duration) { return "3", 3 * time.Second }},
		{name: "503 http-date", status: http.StatusServiceUnavailable, header: httpDate(4 * time.Second)},
		{name: "429 seconds", status: http.StatusTooManyRequests, retry: true, header: func(time.Time) (string, time.Duration) { return "2", 2 * time.Second }},
		{name: "429 http-date", status: http.StatusTooManyRequests, retry: true, header: httpDate(5 * time.Second)},
		{name: "503 date in the past means min_backoff", status: http.StatusServiceUnavailable, header: httpDate(-time.Hour)},
		// A day is capped at max_backoff (Prometheus' 5s here): the
		// shard is back within max_backoff of the receiver's recovery.
		{name: "429 a day waits max_backoff", status: http.StatusTooManyRequests, retry: true, maxBackoff: 5 * time.Second, header: day},
		{name: "503 a day waits max_backoff", status: http.StatusServiceUnavailable, maxBackoff: 5 * time.Second, header: day},
		{name: "429 without retry_on_http_429 drops", status: http.StatusTooManyRequests, header: func(time.Time) (string, time.Duration) { return "2", 0 }, dropped: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var wait time.Duration
				tr := &scriptedTransport{answer: func(n int) (int, string) {
					if n > 0 {
						return http.StatusOK, ""
					}
					var v string
					v, wait = tc.header(time.Now())
					return tc.status, v
				}}
				log, end := floatLog(5, 1)
				q, err := New(t.Context(), Options{
					Config: testConfig(t, "http://127.0.0.1:1/write", func(c *config.RemoteWriteConfig) {
						c.QueueConfig.MinBackoff = model.Duration(10 * time.Millisecond)
						c.QueueConfig.MaxBackoff = model.Duration(time.Minute)
						if tc.maxBackoff > 0 {
							c.QueueConfig.MaxBackoff = model.Duration(tc.maxBackoff)
						}
						c.QueueConfig.RetryOnRateLimit = tc.retry
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
				time.Sleep(time.Minute)
				synctest.Wait()
				if got := q.Acked(); got != end {
					t.Errorf("Acked = %v, want %v", got, end)
				}
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				gaps := tr.gaps()
				if tc.dropped {
					if len(gaps) != 0 {
						t.Errorf("%d retries, want none", len(gaps))
					}
					if got := testutil.ToFloat64(q.metrics.samplesDropped.WithLabelValues(reasonRejected)); got != 5 {
						t.Errorf("samples_dropped_total{reason=rejected} = %v, want 5", got)
					}
					return
				}
				if wait <= 0 {
					wait = 10 * time.Millisecond
				}
				if len(gaps) != 1 || gaps[0] != wait {
					t.Errorf("gaps between attempts = %v, want [%v]", gaps, wait)
				}
			})
		})
	}
}

// httpDate answers Retry-After with the HTTP-date d after the whole second
// before now, and the wait that means.
func httpDate(d time.Duration) func(now time.Time) (string, time.Duration) {
	return func(now time.Time) (string, time.Duration) {
		at := now.Truncate(time.Second).Add(d)
		return at.UTC().Format(http.TimeFormat), at.Sub(now)
	}
}
