package receive

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/prompb"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fixedNow is the emulator clock of the tests: Date headers must show it.
var fixedNow = time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)

// testServer is a Server behind an httptest server on 127.0.0.1.
type testServer struct {
	*Server
	http *httptest.Server
	reg  *prometheus.Registry
}

func newTestServer(t *testing.T, opts Options) *testServer {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Now == nil {
		opts.Now = func() time.Time { return fixedNow }
	}
	reg := prometheus.NewRegistry()
	if opts.Registerer == nil {
		opts.Registerer = reg
	}
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(s.Handler()) // listens on 127.0.0.1
	t.Cleanup(func() {
		srv.Close()
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &testServer{Server: s, http: srv, reg: reg}
}

func (ts *testServer) url(path string) string {
	return ts.URL(ts.http.URL) + path
}

// post sends a remote-write request with body and content type ct and returns
// the answer with its body read.
func (ts *testServer) post(t *testing.T, url, ct string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	return ts.do(t, req)
}

func (ts *testServer) do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := ts.http.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	return resp, b
}

const rw1Type = "application/x-protobuf"

// encode marshals and snappy-compresses a remote-write 1.0 request.
func encode(t *testing.T, wr *prompb.WriteRequest) []byte {
	t.Helper()
	raw, err := wr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

// base is the timestamp of the test samples: real time, since Prometheus'
// write handler refuses samples more than 10m ahead of time.Now.
func base() int64 {
	return time.Now().Add(-time.Minute).UnixMilli()
}

func testHistogram() *histogram.Histogram {
	return &histogram.Histogram{
		Schema:          0,
		Count:           5,
		Sum:             12.5,
		ZeroThreshold:   0.001,
		ZeroCount:       1,
		PositiveSpans:   []histogram.Span{{Offset: 0, Length: 2}},
		PositiveBuckets: []int64{1, 2}, // deltas: 1, 3
	}
}

// testRequest has two float series of `up`, a counter with an exemplar and a
// native histogram, all at t0 (and t0+15s for up).
func testRequest(t0 int64) *prompb.WriteRequest {
	return &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{
			Labels:  []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "instance", Value: "a:9100"}, {Name: "job", Value: "node"}},
			Samples: []prompb.Sample{{Value: 1, Timestamp: t0}, {Value: 0, Timestamp: t0 + 15_000}},
		},
		{
			Labels:  []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "instance", Value: "b:9100"}, {Name: "job", Value: "node"}},
			Samples: []prompb.Sample{{Value: 1, Timestamp: t0}},
		},
		{
			Labels:    []prompb.Label{{Name: "__name__", Value: "http_requests_total"}, {Name: "job", Value: "api"}},
			Samples:   []prompb.Sample{{Value: 42, Timestamp: t0}},
			Exemplars: []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "abc123"}}, Value: 0.25, Timestamp: t0}},
		},
		{
			Labels:     []prompb.Label{{Name: "__name__", Value: "rpc_latency_seconds"}, {Name: "job", Value: "api"}},
			Histograms: []prompb.Histogram{prompb.FromIntHistogram(t0, testHistogram())},
		},
	}}
}

// apiAnswer is Prometheus' JSON API envelope as a client decodes it.
type apiAnswer struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

func decodeAPI(t *testing.T, body []byte, data any) apiAnswer {
	t.Helper()
	var a apiAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("decode answer %q: %v", body, err)
	}
	if data != nil && a.Status == "success" {
		if err := json.Unmarshal(a.Data, data); err != nil {
			t.Fatalf("decode data %s: %v", a.Data, err)
		}
	}
	return a
}

// awsAnswer is the JSON body of an AWS error.
type awsAnswer struct {
	Message      string `json:"message"`
	ResourceID   string `json:"resourceId"`
	ResourceType string `json:"resourceType"`
}

func decodeAWS(t *testing.T, resp *http.Response, body []byte) awsAnswer {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var a awsAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("decode AWS error %q: %v", body, err)
	}
	return a
}

func checkDate(t *testing.T, resp *http.Response) {
	t.Helper()
	if got, want := resp.Header.Get("Date"), fixedNow.Format(http.TimeFormat); got != want {
		t.Errorf("Date = %q, want %q", got, want)
	}
	if resp.Header.Get("x-amzn-RequestId") == "" {
		t.Error("no x-amzn-RequestId header")
	}
}

// mustSeries returns the number of series matching sel.
func countSeries(t *testing.T, s *Server, sel string) int {
	t.Helper()
	ls, err := s.Series(context.Background(), sel)
	if err != nil {
		t.Fatalf("Series(%s): %v", sel, err)
	}
	return len(ls)
}

func bodyOf(b []byte) io.Reader { return bytes.NewReader(b) }
