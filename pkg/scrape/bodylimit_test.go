package scrape

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// endless yields zeros for ever, counting what it handed out.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	clear(p)
	e.n += int64(len(p))
	return len(p), nil
}

// shortReads yields r in reads of at most 1000 bytes, as a network does.
func shortReads(r io.Reader) io.Reader { return &stepReader{r: r, step: 1000} }

func TestReadBody(t *testing.T) {
	const limit = 100_000
	body := bytes.Repeat([]byte("m 1\n"), limit/4) // exactly limit bytes
	cases := []struct {
		name    string
		r       io.Reader
		hint    int
		pooled  int // capacity of the buffer handed in
		wantLen int
		wantErr error
		wantCap int // 0: anything up to limit+1
	}{
		{name: "at the limit", r: shortReads(bytes.NewReader(body)), wantLen: limit},
		{name: "one byte over", r: shortReads(io.MultiReader(bytes.NewReader(body), strings.NewReader("x"))), wantErr: ErrBodySizeLimit},
		{name: "endless", r: &endless{}, wantErr: ErrBodySizeLimit},
		{name: "hint of the size: one allocation", r: shortReads(bytes.NewReader(body[:5000])), hint: 5001, wantLen: 5000, wantCap: 32 << 10},
		{name: "hint over the limit is clipped", r: shortReads(bytes.NewReader(body)), hint: 10 * limit, wantLen: limit, wantCap: limit + 1},
		{name: "pooled buffer big enough is reused", r: bytes.NewReader(body[:50_000]), pooled: 60_000, wantLen: 50_000, wantCap: 60_000},
		{name: "longer than the hint: one buffer of the exact size", r: shortReads(bytes.NewReader(body)), hint: 5000, wantLen: limit, wantCap: limit},
		{name: "longer than the hint, over the limit", r: shortReads(io.MultiReader(bytes.NewReader(body), strings.NewReader("x"))), hint: 5000, wantErr: ErrBodySizeLimit},
		{name: "empty", r: strings.NewReader(""), wantLen: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var p bufferPool
			got, err := p.readBody(make([]byte, 7, max(tc.pooled, 7)), tc.r, limit, tc.hint)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error = %v, want %v", err, tc.wantErr)
			}
			if cap(got) > limit+1 && tc.pooled <= limit {
				t.Errorf("buffer grew to %d bytes, past limit+1 = %d", cap(got), limit+1)
			}
			if tc.wantCap != 0 && cap(got) != tc.wantCap {
				t.Errorf("cap = %d, want %d", cap(got), tc.wantCap)
			}
			if e, ok := tc.r.(*endless); ok && e.n > limit+bodyChunk {
				t.Errorf("read %d bytes of an endless body, want at most the limit and a chunk, %d", e.n, limit+bodyChunk)
			}
			if tc.wantErr != nil {
				return
			}
			if len(got) != tc.wantLen || !bytes.Equal(got, body[:tc.wantLen]) {
				t.Errorf("read %d bytes, want the %d of the body", len(got), tc.wantLen)
			}
		})
	}
}

func TestBufferPool_DropsOutsizedBodies(t *testing.T) {
	var p bufferPool
	big := make([]byte, 0, maxPooledBody+1)
	p.putBody(&big)
	small := make([]byte, 10, 1<<20)
	p.putBody(&small)
	// sync.Pool may drop anything, so only the absence of the big one is
	// certain: draw until empty.
	for range 10 {
		b := p.getBody()
		if cap(*b) > maxPooledBody {
			t.Fatalf("pool handed out a buffer of %d bytes, over maxPooledBody", cap(*b))
		}
		if len(*b) != 0 {
			t.Fatalf("pooled buffer has length %d, want 0", len(*b))
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use, for logs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// gzipOf compresses n zero bytes.
func gzipOf(t testing.TB, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, len(zero))
		if _, err := zw.Write(zero[:k]); err != nil {
			t.Fatal(err)
		}
		n -= k
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestManager_DefaultBodySizeLimit scrapes hostile targets with no
// body_size_limit in the config: the Manager's default cuts each one at the
// limit, fails the scrape (up=0), counts it and logs it with the target.
func TestManager_DefaultBodySizeLimit(t *testing.T) {
	const limit = 256 << 10
	bomb := gzipOf(t, 64<<20)   // 64 MiB of zeros in about 64 KiB
	var endlessMax atomic.Int64 // most bytes one scrape of the endless target took
	cases := []struct {
		name    string
		extra   string
		handler http.HandlerFunc
		wantUp  float64
	}{
		{
			name: "endless body",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain; version=0.0.4")
				line := bytes.Repeat([]byte("m 1\n"), 1024)
				var sent int64
				defer func() {
					for old := endlessMax.Load(); sent > old && !endlessMax.CompareAndSwap(old, sent); old = endlessMax.Load() {
					}
				}()
				for i := 0; i < 1<<16 && r.Context().Err() == nil; i++ { // at most 256 MiB
					n, err := w.Write(line)
					sent += int64(n)
					if err != nil {
						return
					}
				}
			},
		},
		{
			name: "gzip bomb",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain; version=0.0.4")
				w.Header().Set("Content-Encoding", "gzip")
				_, _ = w.Write(bomb)
			},
		},
		{
			name: "declared 1 GiB",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain; version=0.0.4")
				w.Header().Set("Content-Length", strconv.Itoa(1<<30))
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write(make([]byte, 64<<10)) // the rest never comes: the client must not wait for it
			},
		},
		{
			name:  "body_size_limit raises the default",
			extra: "    body_size_limit: 1MiB",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain; version=0.0.4")
				var b strings.Builder
				for i := 0; b.Len() < limit+limit/4; i++ {
					fmt.Fprintf(&b, "m{i=\"%d\"} 1\n", i)
				}
				_, _ = io.WriteString(w, b.String())
			},
			wantUp: 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := hostOf(newTestServer(t, tc.handler).URL)
			var logs lockedBuffer
			s := newMemStorage()
			h := startManagerOpts(t, loadScrapeConfigs(t, jobYAML("200ms", tc.extra)), ManagerOptions{
				Storage:       s,
				BodySizeLimit: limit,
				Logger:        slog.New(slog.NewTextHandler(&logs, nil)),
			})
			h.s = s
			h.setTargets("test", addr)
			h.waitUp(addr, tc.wantUp)
			if tc.wantUp == 1 {
				if v, _ := s.last("__name__", "scrape_samples_scraped"); v < limit/16 {
					t.Errorf("scrape_samples_scraped = %v, want the whole body", v)
				}
				return
			}
			err := h.target("test").LastError()
			if !errors.Is(err, ErrBodySizeLimit) {
				t.Fatalf("target error = %v, want ErrBodySizeLimit", err)
			}
			if !strings.Contains(err.Error(), strconv.Itoa(limit)) {
				t.Errorf("error %q does not name the limit", err)
			}
			failures := h.m.metrics.failures.WithLabelValues("test", failBodySizeLimit)
			waitFor(t, "failure counted", func() bool { return testutil.ToFloat64(failures) > 0 })
			if testutil.ToFloat64(h.m.metrics.bodySizeLimit) == 0 {
				t.Error("prometheus_target_scrapes_exceeded_body_size_limit_total not counted")
			}
			waitFor(t, "failure logged", func() bool {
				l := logs.String()
				return strings.Contains(l, "Scrape failed") && strings.Contains(l, "body_size_limit") && strings.Contains(l, addr)
			})
			if tc.name == "endless body" {
				// What the client read is at most the limit; the rest is
				// what the sockets buffered before the connection closed.
				waitFor(t, "endless target cut", func() bool { return endlessMax.Load() > 0 })
				if got := endlessMax.Load(); got > 32<<20 {
					t.Errorf("the endless target wrote %d bytes in one scrape, want it cut near the limit", got)
				}
			}
		})
	}
}

// FuzzReadBody: readBody returns the body exactly when it is within the
// limit and ErrBodySizeLimit when it is not, whatever the read sizes, the
// hint and the buffer handed in; the buffer never grows past limit+1.
func FuzzReadBody(f *testing.F) {
	f.Add([]byte("m 1\n"), uint16(1), uint16(100), uint16(0), uint16(7), uint32(0))
	f.Add([]byte("m 1\n"), uint16(30000), uint16(1000), uint16(200), uint16(4096), uint32(1<<20))
	f.Add(bytes.Repeat([]byte("abcdefgh"), 512), uint16(400), uint16(0), uint16(10), uint16(1000), uint32(2<<20))
	f.Add([]byte{}, uint16(0), uint16(0), uint16(0), uint16(0), uint32(0))
	f.Fuzz(func(t *testing.T, data []byte, rep, hint, pooled, step uint16, limit uint32) {
		if len(data)*int(rep) > 8<<20 {
			return // big enough to need chunks; no bigger, to keep runs fast
		}
		body := bytes.Repeat(data, int(rep))
		var r io.Reader = bytes.NewReader(body)
		if step > 0 {
			r = &stepReader{r: r, step: int(step)}
		}
		var p bufferPool
		got, err := p.readBody(make([]byte, 0, pooled), r, int64(limit), int(hint))
		if int64(len(body)) > int64(limit) {
			if !errors.Is(err, ErrBodySizeLimit) {
				t.Fatalf("%d bytes with limit %d: error %v, want ErrBodySizeLimit", len(body), limit, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%d bytes with limit %d: %v", len(body), limit, err)
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("read %d bytes, want the %d of the body", len(got), len(body))
		}
		if int64(cap(got)) > max(int64(limit)+1, int64(pooled)) {
			t.Fatalf("buffer of %d bytes for a limit of %d", cap(got), limit)
		}
	})
}

// stepReader yields r in reads of at most step bytes.
type stepReader struct {
	r    io.Reader
	step int
}

func (s *stepReader) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), s.step)]) }
