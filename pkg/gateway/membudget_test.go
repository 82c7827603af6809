package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/rwagent/rwagent/pkg/config"
	"github.com/rwagent/rwagent/pkg/wal"
)

// TestReservation: a request's takes come from what it holds, else from
// the budget a reserveChunk at least (or exactly what fits), are refused
// 503 with Retry-After when the others hold the rest and 413 when the
// request alone needs more than the budget, refused takes reserve
// nothing, and release gives everything back.
func TestReservation(t *testing.T) {
	const size = 4 << 20
	type take struct {
		n      int64
		status int   // 0: taken
		held   int64 // the reservation's, after
	}
	for _, c := range []struct {
		name   string
		others int64 // reserved by other requests first
		takes  []take
	}{
		{"small takes share a chunk", 0, []take{{10, 0, reserveChunk}, {reserveChunk - 10, 0, reserveChunk}, {1, 0, 2 * reserveChunk}}},
		{"a large take, exactly", 0, []take{{3<<20 + 5, 0, 3<<20 + 5}, {reserveChunk - 5, 0, 4 << 20}}},
		{"the whole budget", 0, []take{{size, 0, size}, {1, 413, size}}},
		{"over the budget alone", 0, []take{{size + 1, 413, 0}, {1, 0, reserveChunk}}},
		{"others hold the rest", 3 << 20, []take{{reserveChunk, 0, reserveChunk}, {1, 503, reserveChunk}}},
		{"less than a chunk left: what fits", size - 100, []take{{60, 0, 60}, {40, 0, 100}, {1, 503, 100}}},
		{"refused, then smaller fits", 2 << 20, []take{{3 << 20, 503, 0}, {2 << 20, 0, 2 << 20}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b memBudget
			if c.others > 0 && !b.reserve(c.others, size) {
				t.Fatal("others' reservation refused")
			}
			r := newReservation(&b, size)
			for i, tk := range c.takes {
				err := r.take(tk.n)
				status := 0
				if de, ok := errors.AsType[*decodeError](err); ok {
					status = de.status
					if wantRetry := status == 503; (de.retryAfter > 0) != wantRetry || de.reason != map[int]string{503: reasonMemoryBudget, 413: reasonDecodeTooLarge}[status] {
						t.Errorf("take %d: %+v: wrong reason or Retry-After", i, de)
					}
				} else if err != nil {
					t.Fatalf("take %d: %v, not a *decodeError", i, err)
				}
				if status != tk.status || r.held != tk.held {
					t.Fatalf("take %d of %d: status %d, held %d; want %d, %d", i, tk.n, status, r.held, tk.status, tk.held)
				}
				if got := b.inUse(); got != c.others+r.held {
					t.Fatalf("take %d: budget in use %d, want %d", i, got, c.others+r.held)
				}
			}
			r.release()
			r.release() // twice is harmless
			if got := b.inUse(); got != c.others {
				t.Errorf("after release: %d in use, want the others' %d", got, c.others)
			}
		})
	}
	var nilRes *reservation // no budget: takes anything
	if err := nilRes.take(1 << 40); err != nil {
		t.Errorf("nil reservation: %v", err)
	}
	nilRes.release()
}

// TestReservationConcurrent: requests taking and giving back at once
// never hold more than the budget together, and leave it empty.
func TestReservationConcurrent(t *testing.T) {
	const size = 16 << 20
	var (
		b    memBudget
		wg   sync.WaitGroup
		over = make(chan int64, 1)
	)
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				r := newReservation(&b, size)
				for j := range 5 {
					if err := r.take(int64((g*7919 + i*104729 + j*31) % (3 << 20))); err != nil {
						break
					}
					if u := b.inUse(); u > size {
						select {
						case over <- u:
						default:
						}
					}
				}
				r.release()
			}
		})
	}
	wg.Wait()
	close(over)
	if u, ok := <-over; ok {
		t.Errorf("%d bytes in use, over the budget of %d", u, size)
	}
	if u := b.inUse(); u != 0 {
		t.Errorf("%d bytes still in use after every request ended", u)
	}
}

// TestReadBodyReserves: a body of known size is reserved whole before it
// is read; one of unknown size a chunk at a time as it arrives, never
// more than its bound and one byte; a body the budget cannot cover is
// refused before it is read past what was reserved.
func TestReadBodyReserves(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 3<<20+17)
	for _, c := range []struct {
		name       string
		size, lim  int64
		budget     int64
		wantWant   int64 // reserved for the body, after reading; 0: refused
		wantStatus int
	}{
		{"known size", int64(len(body)), 10 << 20, 64 << 20, int64(len(body)) + 1, 0},
		{"unknown size", -1, 10 << 20, 64 << 20, 4 << 20, 0},
		{"unknown size, bound near", -1, 3<<20 + 17, 64 << 20, 3<<20 + 18, 0},
		{"known size, over the budget", int64(len(body)), 10 << 20, 2 << 20, 0, 413},
		{"unknown size, others hold the rest", -1, 10 << 20, 2 << 20, 0, 503},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b memBudget
			others := int64(0)
			if c.wantStatus == 503 {
				others = 1 << 20
				b.reserve(others, c.budget)
			}
			r := newReservation(&b, c.budget)
			got, err := readBody(nil, iotest.HalfReader(bytes.NewReader(body)), c.size, c.lim, r)
			if c.wantStatus != 0 {
				de, ok := errors.AsType[*decodeError](err)
				if !ok || de.status != c.wantStatus {
					t.Fatalf("got %v, want a %d", err, c.wantStatus)
				}
				if int64(len(got)) > r.want {
					t.Errorf("read %d bytes, past the %d reserved", len(got), r.want)
				}
			} else {
				if err != nil || !bytes.Equal(got, body) {
					t.Fatalf("read %d bytes, %v", len(got), err)
				}
				if r.want != c.wantWant || r.held < r.want {
					t.Errorf("reserved %d for the body (%d held), want %d", r.want, r.held, c.wantWant)
				}
			}
			r.release()
			if b.inUse() != others {
				t.Errorf("%d in use after release, want %d", b.inUse(), others)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the handler's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// gatedStorage holds the first hold Logs until open is closed, telling
// entered first, so that those requests stay in flight holding their
// reservations. Later Logs pass.
type gatedStorage struct {
	Storage
	hold    atomic.Int32
	entered chan struct{}
	open    chan struct{}
}

func (s *gatedStorage) Log(r *wal.Records) error {
	if s.hold.Add(-1) >= 0 {
		s.entered <- struct{}{}
		<-s.open
	}
	return s.Storage.Log(r)
}

// postAsync sends a remote-write body from another goroutine (no
// t.Fatal there) and reports its status, or -1 if it could not be sent.
func (e *env) postAsync(key, contentType string, body []byte) <-chan int {
	done := make(chan int, 1)
	go func() {
		req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/api/v1/write", bytes.NewReader(body))
		if err != nil {
			done <- -1
			return
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Encoding", "snappy")
		req.Header.Set("Content-Type", contentType)
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			done <- -1
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	return done
}

// largeRequest is a 1.0 request of one series with n samples: some 13 n
// bytes decoded, 40 n of bookkeeping charged, so 93 n bytes reserved.
func largeRequest(name string, n int) []byte {
	s := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: name}}}
	for i := range n {
		s.Samples = append(s.Samples, prompb.Sample{Timestamp: 1700000000000 + int64(i), Value: float64(i)})
	}
	return v1(s)
}

// setMemory sets the size of the gateway's memory budget, below what
// Options may set (one request at the bounds), so that requests of a few
// MiB fill it.
func (e *env) setMemory(size int64) {
	st := *e.g.cur.Load()
	st.maxMemory = size
	e.g.cur.Store(&st)
}

// TestMemoryBudgetSharedByRequests: requests in flight share one budget.
// Two large requests held in the WAL write keep their reservations; a
// third, and hostile ones announcing large decoded bodies, are refused at
// once with 503, Retry-After and a message naming the cause, counted
// under their own reason and logged apart from the other refusals; once
// the two are written the budget is empty again and the same requests
// are taken.
func TestMemoryBudgetSharedByRequests(t *testing.T) {
	var (
		gs  *gatedStorage
		log syncBuffer
	)
	e := newEnv(t, Tenant{}, func(o *Options) {
		gs = &gatedStorage{Storage: o.Storage, entered: make(chan struct{}, 2), open: make(chan struct{})}
		gs.hold.Store(2)
		o.Storage = gs
		o.Logger = slog.New(slog.NewTextHandler(&log, nil))
	})
	// A refusal for its size first: rate-limited apart, it does not hide
	// those for memory.
	if resp, msg := e.post(keyA, ctV1, snappy.Encode(nil, hostileRequest(200_000, false))); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("too many series: %d %s", resp.StatusCode, msg)
	}
	const size = 16 << 20
	e.setMemory(size)
	big := func(i int) []byte { return largeRequest(fmt.Sprintf("big_%d", i), 40_000) } // some 5 MiB reserved
	// A snappy header announcing 6 MiB decoded, a body of a few bytes.
	hostile := append(appendUvarint(nil, 6<<20), 0x00)

	held := []<-chan int{e.postAsync(keyA, ctV1, big(0)), e.postAsync(keyA, ctV1, big(1))}
	for range held {
		select {
		case <-gs.entered:
		case <-time.After(30 * time.Second):
			t.Fatal("the large requests did not reach the WAL write")
		}
	}
	inUse := e.g.mem.inUse()
	t.Logf("two large requests in flight hold %.1f MiB of %d", float64(inUse)/(1<<20), size>>20)
	if inUse < 2*(4<<20) || inUse > size {
		t.Fatalf("%d bytes reserved by two large requests, want 8 MiB to %d", inUse, size)
	}
	// Less than one large request's worth left free, for the requests
	// that start now (those in flight keep what they hold).
	e.setMemory(inUse + inUse/4)
	for _, c := range []struct {
		name string
		body []byte
	}{{"a third large request", big(2)}, {"a body announcing 12 MiB decoded", hostile}} {
		resp, msg := e.post(keyA, ctV1, c.body)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !strings.Contains(msg, "decoding too much at once") {
			t.Errorf("%s: %d, Retry-After %q, %q; want 503, 1 and the cause", c.name, resp.StatusCode, resp.Header.Get("Retry-After"), msg)
		}
	}
	if v := testutil.ToFloat64(e.g.metrics.rejected.WithLabelValues("team-a", reasonMemoryBudget)); v != 2 {
		t.Errorf("rejected{reason=%q} = %v, want 2", reasonMemoryBudget, v)
	}
	if got := e.g.mem.inUse(); got != inUse {
		t.Errorf("the refused requests left %d bytes reserved, want the held %d", got, inUse)
	}
	for _, reason := range []string{reasonTooManySeries, reasonMemoryBudget} {
		if !strings.Contains(log.String(), "reason="+reason) {
			t.Errorf("no log line for %s:\n%s", reason, log.String())
		}
	}

	close(gs.open)
	for i, done := range held {
		if code := <-done; code != http.StatusNoContent {
			t.Errorf("large request %d: %d, want 204", i, code)
		}
	}
	if got := e.g.mem.inUse(); got != 0 {
		t.Errorf("%d bytes reserved after every request ended, want 0", got)
	}
	// The refused one is taken now; the hostile one fails for what it
	// is, not for memory.
	if resp, msg := e.post(keyA, ctV1, big(2)); resp.StatusCode != http.StatusNoContent {
		t.Errorf("the large request again, alone: %d %s", resp.StatusCode, msg)
	}
	if resp, msg := e.post(keyA, ctV1, hostile); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("the hostile body again, alone: %d %s, want 400 (not snappy)", resp.StatusCode, msg)
	}
	if got := e.g.mem.inUse(); got != 0 {
		t.Errorf("%d bytes reserved at the end, want 0", got)
	}
	if got := testutil.ToFloat64(e.g.metrics.memory); got != 0 {
		t.Errorf("rwagent_receive_memory_reserved_bytes %v at the end, want 0", got)
	}
}

// TestMemoryBudgetGivenBack: whatever path a request takes (written,
// refused for its size, its labels, its rate, an undecodable body, a body
// over max_request_bytes, OTLP plain, gzipped or untranslatable), it gives
// back all it reserved: after a mix of them, sent at once, the budget is
// empty.
func TestMemoryBudgetGivenBack(t *testing.T) {
	e := newEnv(t, Tenant{SamplesPerSecond: 1, Burst: 5}, func(o *Options) { o.MaxRequestBytes = 1 << 20 })
	otlpGood := protoBody(otlpRequest(func(ms pmetric.MetricSlice) { gauge(ms, "temp", time.Unix(1700000000, 0), 1) }))
	otlpDelta := protoBody(otlpRequest(func(ms pmetric.MetricSlice) {
		m := ms.AppendEmpty()
		m.SetName("delta")
		s := m.SetEmptySum()
		s.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
		s.DataPoints().AppendEmpty().SetDoubleValue(1)
	}))
	type req struct {
		name, key, ct, enc string
		otlp               bool
		body               []byte
		want               int
	}
	reqs := []req{
		{"1.0", keyA, ctV1, "snappy", false, v1(ts([]string{"__name__", "up"}, 1, 1)), 204},
		{"2.0", keyA, ctV2, "snappy", false, snappy.Encode(nil, hostileRequest(10, true)), 204},
		{"large", keyA, ctV1, "snappy", false, largeRequest("large", 20_000), 204},
		{"over the burst", keyB, ctV1, "snappy", false, v1(ts([]string{"__name__", "up"}, 1, 1, 2, 3, 4, 5, 6)), 413},
		{"rate limited after the first", keyB, ctV1, "snappy", false, v1(ts([]string{"__name__", "up"}, 1, 1, 2, 3)), 429},
		{"too many series", keyA, ctV1, "snappy", false, snappy.Encode(nil, hostileRequest(200_000, false)), 413},
		{"decoded too large", keyA, ctV1, "snappy", false, append(appendUvarint(nil, 64<<20), 0), 413},
		{"not snappy", keyA, ctV1, "snappy", false, []byte("not snappy at all"), 400},
		{"no metric name", keyA, ctV1, "snappy", false, v1(ts([]string{"job", "x"}, 1, 1)), 400},
		{"body over max_request_bytes", keyA, ctV1, "snappy", false, bytes.Repeat([]byte{1}, 2<<20), 413},
		{"unknown key", "nope", ctV1, "snappy", false, v1(ts([]string{"__name__", "up"}, 1, 1)), 403},
		{"OTLP", keyA, ctOTLP, "", true, otlpGood, 200},
		{"OTLP gzipped", keyA, ctOTLP, "gzip", true, gzipBody(otlpGood), 200},
		{"OTLP delta", keyA, ctOTLP, "gzip", true, gzipBody(otlpDelta), 400},
		{"OTLP not gzip", keyA, ctOTLP, "gzip", true, otlpGood, 400},
	}
	var wg sync.WaitGroup
	errs := make(chan string, 4*len(reqs))
	for range 4 {
		for _, r := range reqs {
			wg.Go(func() {
				path, auth := "/api/v1/write", "Authorization"
				if r.otlp {
					path = "/v1/metrics"
				}
				hr, err := http.NewRequest(http.MethodPost, e.srv.URL+path, bytes.NewReader(r.body))
				if err != nil {
					errs <- err.Error()
					return
				}
				hr.Header.Set(auth, "Bearer "+r.key)
				hr.Header.Set("Content-Type", r.ct)
				if r.enc != "" {
					hr.Header.Set("Content-Encoding", r.enc)
				}
				resp, err := e.srv.Client().Do(hr)
				if err != nil {
					errs <- fmt.Sprintf("%s: %v", r.name, err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != r.want && !(r.want == 429 && resp.StatusCode == 204) {
					errs <- fmt.Sprintf("%s: %d, want %d", r.name, resp.StatusCode, r.want)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := e.g.mem.inUse(); got != 0 {
		t.Errorf("%d bytes reserved after every request ended, want 0", got)
	}
}

// TestReloadMemoryInFlight: a reload takes a new max_memory_in_flight for
// the requests that start after it, and refuses, by name and changing
// nothing, one smaller than a request at the new max_request_bytes may
// need.
func TestReloadMemoryInFlight(t *testing.T) {
	e := newEnv(t, Tenant{}, nil)
	if got := e.g.cur.Load().maxMemory; got != config.DefaultMaxMemoryInFlight {
		t.Fatalf("budget %d by default, want %d", got, config.DefaultMaxMemoryInFlight)
	}
	opts := e.opts
	opts.MaxMemoryInFlight = 300 << 20
	if err := e.g.Reload(opts); err != nil {
		t.Fatal(err)
	}
	if got := e.g.cur.Load().maxMemory; got != 300<<20 {
		t.Errorf("budget %d after the reload, want %d", got, 300<<20)
	}
	opts.MaxRequestBytes = 32 << 20 // one request: 32 + 256 + 128 MiB
	err := e.g.Reload(opts)
	if err == nil || !strings.Contains(err.Error(), "max_memory_in_flight 314572800 bytes is less than one request may need at max_request_bytes 33554432") {
		t.Errorf("reload to a budget under one request: %v, want it refused by name", err)
	}
	if st := e.g.cur.Load(); st.maxMemory != 300<<20 || st.maxRequestBytes != DefaultMaxRequestBytes {
		t.Errorf("a refused reload changed the state: budget %d, max_request_bytes %d", st.maxMemory, st.maxRequestBytes)
	}
	if resp, msg := e.post(keyA, ctV1, v1(ts([]string{"__name__", "up"}, 1, 1))); resp.StatusCode != http.StatusNoContent {
		t.Errorf("a request after the reloads: %d %s", resp.StatusCode, msg)
	}
}
