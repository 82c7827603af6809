package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
	"go.uber.org/goleak"

	"github.com/rwagent/rwagent/pkg/wal"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	keyA = "key-of-team-a"
	keyB = "key-of-team-b"
)

// env is a gateway on a real WAL behind an httptest server.
type env struct {
	t    *testing.T
	wal  *wal.WAL
	g    *Gateway
	opts Options // as given to New
	srv  *httptest.Server
	reg  *prometheus.Registry
	full bool
	now  time.Time
	mu   sync.Mutex // now, full
}

// newEnv starts a gateway with tenants team-a (keyA, no limits) and
// team-b (keyB, limits from b).
func newEnv(t *testing.T, b Tenant, mod func(*Options)) *env {
	t.Helper()
	w, err := wal.Open(wal.Options{Dir: t.TempDir(), SegmentSize: 1 << 20, Fsync: wal.FsyncAlways}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, wal: w, reg: prometheus.NewRegistry(), now: time.Unix(1700000000, 0)}
	b.Name = "team-b"
	opts := Options{
		Keys: []Key{
			{Digest: sha256.Sum256([]byte(keyA)), Tenant: &Tenant{Name: "team-a"}},
			{Digest: sha256.Sum256([]byte(keyB)), Tenant: &b},
		},
		TenantLabel: "tenant",
		Storage:     w,
		Registerer:  e.reg,
		Full: func() bool {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.full
		},
		Now: func() time.Time {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.now
		},
	}
	if mod != nil {
		mod(&opts)
	}
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.g, e.opts = g, opts
	e.srv = httptest.NewServer(g.Handler())
	t.Cleanup(func() {
		e.srv.Close()
		g.Close()
		_ = w.Close() // closed already by tests that read the WAL
	})
	return e
}

// post sends body (compressed here unless raw) with the key and content
// type given, and returns the response with its body read.
func (e *env) post(key, contentType string, body []byte) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/api/v1/write", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", contentType)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

const (
	ctV1 = "application/x-protobuf;proto=prometheus.WriteRequest"
	ctV2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
)

// v1 encodes and compresses a 1.0 request of series, each with one
// sample per value.
func v1(series ...prompb.TimeSeries) []byte {
	req := prompb.WriteRequest{Timeseries: series}
	raw, err := req.Marshal()
	if err != nil {
		panic(err)
	}
	return snappy.Encode(nil, raw)
}

func ts(pairs []string, ts int64, vals ...float64) prompb.TimeSeries {
	s := prompb.TimeSeries{}
	for i := 0; i+1 < len(pairs); i += 2 {
		s.Labels = append(s.Labels, prompb.Label{Name: pairs[i], Value: pairs[i+1]})
	}
	for i, v := range vals {
		s.Samples = append(s.Samples, prompb.Sample{Timestamp: ts + int64(i), Value: v})
	}
	return s
}

// written is what the WAL holds: series by ref and samples in order.
type written struct {
	series    map[chunks.HeadSeriesRef]labels.Labels
	seriesRec int // series entries logged, repeats included
	samples   []string
	metadata  []record.RefMetadata
	released  []chunks.HeadSeriesRef
}

// contents closes the WAL and reads all of it. Every sample must follow
// the series record of its ref.
func (e *env) contents() written {
	e.t.Helper()
	if err := e.wal.Close(); err != nil && !errors.Is(err, wal.ErrClosed) {
		e.t.Fatal(err)
	}
	r, err := e.wal.NewReader(wal.Position{})
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Close()
	out := written{series: map[chunks.HeadSeriesRef]labels.Labels{}}
	for {
		err := r.Next(context.Background())
		if errors.Is(err, wal.ErrClosed) {
			return out
		}
		if err != nil {
			e.t.Fatal(err)
		}
		for _, s := range r.Series() {
			out.series[s.Ref] = s.Labels
			out.seriesRec++
		}
		for _, s := range r.Samples() {
			ls, ok := out.series[s.Ref]
			if !ok {
				e.t.Fatalf("sample of ref %d before its series record", s.Ref)
			}
			out.samples = append(out.samples, fmt.Sprintf("%s %d %g", ls, s.T, s.V))
		}
		out.metadata = append(out.metadata, r.Metadata()...)
		out.released = r.Released(out.released)
	}
}

func TestWriteV1(t *testing.T) {
	e := newEnv(t, Tenant{}, nil)
	body := v1(
		ts([]string{"__name__", "up", "job", "node"}, 1000, 1),
		ts([]string{"__name__", "temp", "tenant", "someone-else"}, 1000, 20.5, 21),
	)
	resp, msg := e.post(keyA, ctV1, body)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d: %s", resp.StatusCode, msg)
	}
	if h := resp.Header.Get("X-Prometheus-Remote-Write-Samples-Written"); h != "" {
		t.Errorf("1.0 answer has the 2.0 header: %q", h)
	}
	// The same series again: no second series record.
	if resp, msg := e.post(keyA, ctV1, v1(ts([]string{"__name__", "up", "job", "node"}, 2000, 0))); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d: %s", resp.StatusCode, msg)
	}
	got := e.contents()
	want := []string{
		`{__name__="up", job="node", tenant="team-a"} 1000 1`,
		`{__name__="temp", tenant="team-a"} 1000 20.5`,
		`{__name__="temp", tenant="team-a"} 1001 21`,
		`{__name__="up", job="node", tenant="team-a"} 2000 0`,
	}
	if strings.Join(got.samples, "\n") != strings.Join(want, "\n") {
		t.Errorf("WAL samples:\n%s\nwant:\n%s", strings.Join(got.samples, "\n"), strings.Join(want, "\n"))
	}
	if got.seriesRec != 2 {
		t.Errorf("%d series records, want 2 (one per series)", got.seriesRec)
	}
	if v := testutil.ToFloat64(e.g.metrics.samples.WithLabelValues("team-a", "float")); v != 4 {
		t.Errorf("rwagent_receive_samples_total = %v, want 4", v)
	}
	if v := testutil.ToFloat64(e.g.metrics.requests.WithLabelValues("team-a", "remote_write_1.0", "204")); v != 2 {
		t.Errorf("rwagent_receive_requests_total = %v, want 2", v)
	}
}

func v2req(series ...[]string) []byte {
	st := writev2.NewSymbolTable()
	req := writev2.Request{}
	for i, pairs := range series {
		ls := labels.FromStrings(pairs...)
		req.Timeseries = append(req.Timeseries, writev2.TimeSeries{
			LabelsRefs: st.SymbolizeLabels(ls, nil),
			Samples:    []writev2.Sample{{Value: float64(i), Timestamp: 5000, StartTimestamp: 4000}},
			Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: st.Symbolize("help of " + ls.Get("__name__"))},
		})
	}
	req.Symbols = st.Symbols()
	raw, err := req.Marshal()
	if err != nil {
		panic(err)
	}
	return snappy.Encode(nil, raw)
}

func TestWriteV2(t *testing.T) {
	e := newEnv(t, Tenant{}, nil)
	resp, msg := e.post(keyA, ctV2, v2req([]string{"__name__", "a_total", "x", "1"}, []string{"__name__", "b_total"}))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d: %s", resp.StatusCode, msg)
	}
	for h, want := range map[string]string{"Samples": "2", "Histograms": "0", "Exemplars": "0"} {
		if got := resp.Header.Get("X-Prometheus-Remote-Write-" + h + "-Written"); got != want {
			t.Errorf("%s written header %q, want %q", h, got, want)
		}
	}
	got := e.contents()
	want := []string{`{__name__="a_total", tenant="team-a", x="1"} 5000 0`, `{__name__="b_total", tenant="team-a"} 5000 1`}
	if strings.Join(got.samples, "\n") != strings.Join(want, "\n") {
		t.Errorf("WAL samples:\n%s\nwant:\n%s", strings.Join(got.samples, "\n"), strings.Join(want, "\n"))
	}
	if len(got.metadata) != 2 || got.metadata[0].Help != "help of a_total" {
		t.Errorf("metadata %+v, want the two series' help", got.metadata)
	}
}

func TestTenantLabelNone(t *testing.T) {
	e := newEnv(t, Tenant{}, func(o *Options) { o.TenantLabel = "" })
	if resp, msg := e.post(keyA, ctV1, v1(ts([]string{"__name__", "up", "tenant", "own"}, 1, 1))); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d: %s", resp.StatusCode, msg)
	}
	if got := e.contents().samples; len(got) != 1 || got[0] != `{__name__="up", tenant="own"} 1 1` {
		t.Errorf("WAL samples %q", got)
	}
}

// snappyBomb is a snappy block whose header claims decoded bytes.
func snappyBomb(decoded int) []byte {
	var b []byte
	for v := uint64(decoded); ; v >>= 7 {
		if v < 0x80 {
			b = append(b, byte(v))
			break
		}
		b = append(b, byte(v)|0x80)
	}
	return append(b, 0, 0, 0, 0)
}

func TestRefused(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	manyLabels := []string{"__name__", "m"}
	for i := range maxLabels - 1 { // 70 with the name; the tenant label makes 71
		manyLabels = append(manyLabels, fmt.Sprintf("l%02d", i), "v")
	}
	good := v1(ts([]string{"__name__", "up"}, 1, 1))
	for _, c := range []struct {
		name       string
		key        string
		ct         string
		body       []byte
		full       bool
		status     int
		reason     string
		msg        string
		retryAfter bool
	}{
		{name: "no key", body: good, status: 401, reason: reasonUnauthorized, msg: "no API key"},
		{name: "unknown key", key: "guess", body: good, status: 403, reason: reasonForbidden, msg: "API key not accepted"},
		{name: "content type", key: keyA, ct: "application/json", body: good, status: 415, reason: reasonUnsupported, msg: "application/x-protobuf"},
		{name: "proto", key: keyA, ct: "application/x-protobuf;proto=foo", body: good, status: 415, reason: reasonUnsupported, msg: `proto "foo"`},
		{name: "body size", key: keyA, body: make([]byte, 2<<10), status: 413, reason: reasonBodyTooLarge, msg: "max_request_bytes (1024 bytes)"},
		{name: "snappy bomb", key: keyA, body: snappyBomb(1 << 30), status: 413, reason: reasonDecodedTooBig, msg: "decompressed body of 1073741824 bytes is over the limit of 33554432 bytes"},
		{name: "not snappy", key: keyA, body: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, status: 400, reason: reasonMalformed, msg: "not snappy"},
		{name: "not protobuf", key: keyA, body: snappy.Encode(nil, []byte{0xff, 0xff, 0xff}), status: 400, reason: reasonMalformed, msg: "decode prometheus.WriteRequest"},
		{name: "labels", key: keyA, body: v1(ts(manyLabels, 1, 1)), status: 400, reason: reasonTooManyLabels, msg: "71 labels, over the limit of 70"},
		{name: "name length", key: keyA, body: v1(ts([]string{"__name__", "m", long(1025), "v"}, 1, 1)), status: 400, reason: reasonLabelTooLong, msg: "1025 bytes, over the limit of 1024"},
		{name: "value length", key: keyA, body: v1(ts([]string{"__name__", "m", "a", long(2049)}, 1, 1)), status: 400, reason: reasonLabelTooLong, msg: "2049 bytes, over the limit of 2048"},
		{name: "utf-8", key: keyA, body: v1(ts([]string{"__name__", "m", "a", "\xff"}, 1, 1)), status: 400, reason: reasonInvalidLabels, msg: "not valid UTF-8"},
		{name: "unsorted", key: keyA, body: v1(ts([]string{"__name__", "m", "b", "1", "a", "2"}, 1, 1)), status: 400, reason: reasonInvalidLabels, msg: "not sorted"},
		{name: "duplicate", key: keyA, body: v1(ts([]string{"__name__", "m", "a", "1", "a", "2"}, 1, 1)), status: 400, reason: reasonInvalidLabels, msg: `label "a" twice`},
		{name: "no name", key: keyA, body: v1(ts([]string{"a", "1"}, 1, 1)), status: 400, reason: reasonInvalidLabels, msg: "no metric name"},
		// The second series is bad: nothing of the first is written either.
		{name: "one bad series", key: keyA, body: v1(ts([]string{"__name__", "ok"}, 1, 1), ts([]string{"__name__", ""}, 1, 1)), status: 400, reason: reasonInvalidLabels, msg: "no metric name"},
		{name: "series per request", key: keyB, body: v1(ts([]string{"__name__", "a"}, 1, 1), ts([]string{"__name__", "b"}, 1, 1), ts([]string{"__name__", "c"}, 1, 1)), status: 413, reason: reasonTooManySeries, msg: "3 series in the request, over max_series_per_request 2"},
		{name: "burst", key: keyB, body: v1(ts([]string{"__name__", "a"}, 1, 1, 2, 3, 4, 5, 6)), status: 413, reason: reasonBurstExceeded, msg: "6 samples in one request, over the tenant's burst of 5"},
		{name: "wal full", key: keyA, body: good, full: true, status: 429, reason: reasonWALFull, msg: "the WAL is full", retryAfter: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, Tenant{SamplesPerSecond: 1, Burst: 5, MaxSeriesPerRequest: 2}, func(o *Options) { o.MaxRequestBytes = 1 << 10 })
			e.full = c.full
			ct := c.ct
			if ct == "" {
				ct = ctV1
			}
			resp, msg := e.post(c.key, ct, c.body)
			if resp.StatusCode != c.status || !strings.Contains(msg, c.msg) {
				t.Errorf("answer %d %q, want %d with %q", resp.StatusCode, msg, c.status, c.msg)
			}
			if got := resp.Header.Get("Retry-After"); (got != "") != c.retryAfter {
				t.Errorf("Retry-After %q", got)
			}
			tenant := map[string]string{keyA: "team-a", keyB: "team-b"}[c.key]
			if v := testutil.ToFloat64(e.g.metrics.rejected.WithLabelValues(tenant, c.reason)); v != 1 {
				t.Errorf("rejected{tenant=%q,reason=%q} = %v, want 1", tenant, c.reason, v)
			}
			if got := e.contents(); len(got.samples) != 0 || got.seriesRec != 0 {
				t.Errorf("written despite the refusal: %d series, samples %q", got.seriesRec, got.samples)
			}
		})
	}
}

func TestXAPIKey(t *testing.T) {
	e := newEnv(t, Tenant{}, nil)
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/v1/push", bytes.NewReader(v1(ts([]string{"__name__", "up"}, 1, 1))))
	req.Header.Set("X-API-Key", keyB)
	req.Header.Set("Content-Encoding", "snappy")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := e.contents().samples; len(got) != 1 || got[0] != `{__name__="up", tenant="team-b"} 1 1` {
		t.Errorf("WAL samples %q", got)
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, Tenant{SamplesPerSecond: 2, Burst: 4}, nil)
	send := func(n int) *http.Response {
		vals := make([]float64, n)
		resp, msg := e.post(keyB, ctV1, v1(ts([]string{"__name__", "up"}, e.now.UnixMilli(), vals...)))
		if resp.StatusCode != 204 && resp.StatusCode != 429 {
			t.Fatalf("status %d: %s", resp.StatusCode, msg)
		}
		return resp
	}
	if r := send(4); r.StatusCode != 204 {
		t.Fatalf("burst refused: %d", r.StatusCode)
	}
	r := send(3)
	if r.StatusCode != 429 || r.Header.Get("Retry-After") != "2" {
		t.Fatalf("over the limit: status %d, Retry-After %q; want 429, 2 (3 samples at 2/s)", r.StatusCode, r.Header.Get("Retry-After"))
	}
	e.mu.Lock()
	e.now = e.now.Add(1500 * time.Millisecond)
	e.mu.Unlock()
	if r := send(3); r.StatusCode != 204 {
		t.Fatalf("after refilling: %d", r.StatusCode)
	}
	// team-a has no limit.
	if resp, _ := e.post(keyA, ctV1, v1(ts([]string{"__name__", "up"}, 1, make([]float64, 100)...))); resp.StatusCode != 204 {
		t.Fatalf("unlimited tenant: %d", resp.StatusCode)
	}
	got := e.contents()
	if len(got.samples) != 107 {
		t.Errorf("%d samples written, want 107 (the refused 3 not among them)", len(got.samples))
	}
	if v := testutil.ToFloat64(e.g.metrics.rejectedSamples.WithLabelValues("team-b", reasonRateLimited)); v != 3 {
		t.Errorf("rejected samples %v, want 3", v)
	}
}

func TestWALErrorIs503(t *testing.T) {
	e := newEnv(t, Tenant{}, nil)
	if err := e.wal.Close(); err != nil {
		t.Fatal(err)
	}
	resp, msg := e.post(keyA, ctV1, v1(ts([]string{"__name__", "up"}, 1, 1)))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d %q, want 503", resp.StatusCode, msg)
	}
	if v := testutil.ToFloat64(e.g.metrics.rejectedSamples.WithLabelValues("team-a", reasonWALError)); v != 1 {
		t.Errorf("rejected samples %v, want 1", v)
	}
}

func TestSeriesReleasedWhenIdle(t *testing.T) {
	e := newEnv(t, Tenant{}, func(o *Options) { o.SeriesIdle = time.Minute })
	body := v1(ts([]string{"__name__", "up"}, 1, 1))
	if resp, _ := e.post(keyA, ctV1, body); resp.StatusCode != 204 {
		t.Fatal(resp.StatusCode)
	}
	if n := e.g.series.gc(e.now.Add(time.Minute)); n != 1 {
		t.Fatalf("%d series cached after idle time exactly, want 1", n)
	}
	if n := e.g.series.gc(e.now.Add(time.Minute + time.Second)); n != 0 {
		t.Fatalf("%d series cached after idle, want 0", n)
	}
	if resp, _ := e.post(keyA, ctV1, body); resp.StatusCode != 204 {
		t.Fatal(resp.StatusCode)
	}
	got := e.contents()
	if got.seriesRec != 2 || len(got.released) != 1 || len(got.samples) != 2 {
		t.Errorf("series records %d, released %v, samples %q; want 2, one, 2", got.seriesRec, got.released, got.samples)
	}
}

// Concurrent requests with the same new series: each sample follows a
// series record of its ref (contents checks that), whatever order the
// requests finish in.
func TestConcurrentNewSeries(t *testing.T) {
	e := newEnv(t, Tenant{}, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				body := v1(ts([]string{"__name__", "m", "n", fmt.Sprint(j)}, int64(i), 1))
				req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/v1/write", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+keyA)
				if resp, err := e.srv.Client().Do(req); err == nil {
					resp.Body.Close()
					if resp.StatusCode != 204 {
						t.Errorf("status %d", resp.StatusCode)
					}
				}
			}
		})
	}
	wg.Wait()
	got := e.contents()
	if len(got.samples) != 160 || len(got.series) != 20 {
		t.Errorf("%d samples of %d series, want 160 of 20", len(got.samples), len(got.series))
	}
}

func TestUnregisterMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		g, err := New(Options{Keys: []Key{{Tenant: &Tenant{Name: "a"}}}, Storage: nopStorage{}, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		g.Close()
	}
	if mfs, err := reg.Gather(); err != nil || len(mfs) != 0 {
		t.Errorf("after Close: %d metric families registered (err %v), want 0", len(mfs), err)
	}
}

// TestNew_RegisterFails checks that a registry already holding another
// collector under one of the gateway's names refuses New by the metric's
// name (it panicked), leaving nothing of the gateway registered.
func TestNew_RegisterFails(t *testing.T) {
	reg := prometheus.NewRegistry()
	blocker := prometheus.NewGauge(prometheus.GaugeOpts{Name: "rwagent_receive_series_cached", Help: "another"})
	reg.MustRegister(blocker)
	_, err := New(Options{Keys: []Key{{Tenant: &Tenant{Name: "a"}}}, Storage: nopStorage{}, Registerer: reg})
	if err == nil || !strings.Contains(err.Error(), "rwagent_receive_series_cached") {
		t.Fatalf("New = %v, want an error naming rwagent_receive_series_cached", err)
	}
	reg.Unregister(blocker)
	if mfs, err := reg.Gather(); err != nil || len(mfs) != 0 {
		t.Errorf("after a refused New: %d metric families registered (err %v), want 0", len(mfs), err)
	}
}

func TestRunStops(t *testing.T) {
	g, err := New(Options{Addr: "127.0.0.1:0", Keys: []Key{{Tenant: &Tenant{Name: "a"}}}, Storage: nopStorage{}})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := g.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	resp, err := http.Post("http://"+addr.String()+"/api/v1/write", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("status %d, want 401", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	g.Close()
}

type nopStorage struct{}

func (nopStorage) NewRef() chunks.HeadSeriesRef        { return 1 }
func (nopStorage) Log(*wal.Records) error              { return nil }
func (nopStorage) Release(refs []chunks.HeadSeriesRef) {}

// blockingStorage holds every Log until release is closed.
type blockingStorage struct {
	nopStorage
	logging chan struct{}
	release chan struct{}
}

func (s *blockingStorage) Log(*wal.Records) error {
	s.logging <- struct{}{}
	<-s.release
	return nil
}

// With MaxInFlight 1 a second request waits for the first to finish
// before its body is read: requests in flight, and their memory, are
// bounded.
func TestMaxInFlight(t *testing.T) {
	st := &blockingStorage{logging: make(chan struct{}, 2), release: make(chan struct{})}
	g, err := New(Options{Keys: []Key{{Digest: sha256.Sum256([]byte(keyA)), Tenant: &Tenant{Name: "a"}}}, Storage: st, MaxInFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	srv := httptest.NewServer(g.Handler())
	defer srv.Close()
	codes := make(chan int, 2)
	send := func() {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/write", bytes.NewReader(v1(ts([]string{"__name__", "up"}, 1, 1))))
		req.Header.Set("Authorization", "Bearer "+keyA)
		resp, err := srv.Client().Do(req)
		if err != nil {
			codes <- 0
			return
		}
		resp.Body.Close()
		codes <- resp.StatusCode
	}
	go send()
	<-st.logging // the first holds the only turn
	go send()
	select {
	case <-st.logging:
		t.Fatal("a second request reached the WAL while the first held the only turn")
	case <-time.After(200 * time.Millisecond):
	}
	close(st.release)
	<-st.logging // the second gets its turn once the first is done
	for range 2 {
		if c := <-codes; c != http.StatusNoContent {
			t.Errorf("status %d", c)
		}
	}
}

// TestRoute: a tenant with remote_write_names has its route on every
// series record it writes, one without has none, and the route label does
// not count towards AMP's label limit (it is never sent).
func TestRoute(t *testing.T) {
	e := newEnv(t, Tenant{RemoteWriteNames: []string{"y", "x", "y"}}, nil)
	most := []string{"__name__", "m"}
	for i := range maxLabels - 2 { // 69 with the name, 70 with the tenant label
		most = append(most, fmt.Sprintf("l%02d", i), "v")
	}
	for _, c := range []struct {
		key, ct string
		body    []byte
	}{
		{keyA, ctV1, v1(ts([]string{"__name__", "up"}, 1, 1))},
		{keyB, ctV1, v1(ts([]string{"__name__", "up"}, 2, 2))},
		{keyB, ctV1, v1(ts(most, 3, 3))},
		{keyB, ctV2, v2req([]string{"__name__", "v2_total"})},
	} {
		if resp, msg := e.post(c.key, c.ct, c.body); resp.StatusCode/100 != 2 {
			t.Fatalf("status %d: %s", resp.StatusCode, msg)
		}
	}
	got := e.contents()
	routes := map[string]string{}
	for _, ls := range got.series {
		routes[ls.Get("__name__")+"/"+ls.Get("tenant")] = ls.Get(wal.RouteLabel)
	}
	want := map[string]string{"up/team-a": "", "up/team-b": "x,y", "m/team-b": "x,y", "v2_total/team-b": "x,y"}
	if fmt.Sprint(routes) != fmt.Sprint(want) {
		t.Errorf("routes by series %v, want %v", routes, want)
	}
}

// TestRouteLabelRefused: a sender cannot forge a route; a request with the
// route label is refused whole, for remote write 1.0 and 2.0 alike.
func TestRouteLabelRefused(t *testing.T) {
	for _, c := range []struct {
		name, ct string
		body     []byte
	}{
		{"1.0", ctV1, v1(ts([]string{"__name__", "ok"}, 1, 1), ts([]string{wal.RouteLabel, "x", "__name__", "m"}, 1, 1))},
		{"2.0", ctV2, v2req([]string{"__name__", "ok"}, []string{"__name__", "m", wal.RouteLabel, "x"})},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, Tenant{}, nil)
			resp, msg := e.post(keyA, c.ct, c.body)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(msg, wal.RouteLabel+" of series \"m\" is reserved") {
				t.Errorf("answer %d %q, want 400 naming %s", resp.StatusCode, msg, wal.RouteLabel)
			}
			if got := e.contents(); len(got.samples) != 0 || got.seriesRec != 0 {
				t.Errorf("written despite the refusal: %d series, samples %q", got.seriesRec, got.samples)
			}
		})
	}
}

// TestEmptyLabelValue: a label with an empty value is no label, to
// Prometheus and to the queues, which never send it: the gateway drops
// it, with or without a tenant label, and it does not count towards the
// label limit.
func TestEmptyLabelValue(t *testing.T) {
	pairs := []string{"__name__", "m", "a", ""}
	for i := range maxLabels - 1 { // 70 with the name, 71 with a
		pairs = append(pairs, fmt.Sprintf("l%02d", i), "v")
	}
	for _, tl := range []string{"", "tenant"} {
		t.Run("tenant_label="+tl, func(t *testing.T) {
			e := newEnv(t, Tenant{}, func(o *Options) { o.TenantLabel = tl })
			if tl != "" {
				pairs = slices.Delete(slices.Clone(pairs), len(pairs)-2, len(pairs)) // room for the tenant label
			}
			if resp, msg := e.post(keyA, ctV1, v1(ts(pairs, 1, 1))); resp.StatusCode != http.StatusNoContent {
				t.Fatalf("status %d: %s", resp.StatusCode, msg)
			}
			for _, ls := range e.contents().series {
				if ls.Has("a") || ls.Len() != maxLabels {
					t.Errorf("logged %d labels, a=%q: want %d without a", ls.Len(), ls.Get("a"), maxLabels)
				}
			}
		})
	}
}
