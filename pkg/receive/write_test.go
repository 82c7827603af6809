package receive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

func TestRemoteWrite_StoresFloatsHistogramsExemplars(t *testing.T) {
	ts := newTestServer(t, Options{})
	t0 := base()
	resp, body := ts.post(t, ts.url("/api/v1/remote_write"), rw1Type, bodyOf(encode(t, testRequest(t0))))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("remote write: %s %q, want 200", resp.Status, body)
	}
	checkDate(t, resp)
	ctx := context.Background()

	// Floats: the newest sample within the lookback window wins.
	vec, err := ts.Query(ctx, `up{instance="a:9100"}`, time.UnixMilli(t0+15_000))
	if err != nil {
		t.Fatal(err)
	}
	if len(vec) != 1 || vec[0].F != 0 || vec[0].T != t0+15_000 {
		t.Fatalf("up{instance=a} = %v, want 0 @ t0+15s", vec)
	}
	vec, err = ts.Query(ctx, `sum(up)`, time.UnixMilli(t0))
	if err != nil {
		t.Fatal(err)
	}
	if len(vec) != 1 || vec[0].F != 2 {
		t.Fatalf("sum(up) at t0 = %v, want 2", vec)
	}

	// Native histogram.
	vec, err = ts.Query(ctx, `rpc_latency_seconds`, time.UnixMilli(t0))
	if err != nil {
		t.Fatal(err)
	}
	if len(vec) != 1 || vec[0].H == nil {
		t.Fatalf("rpc_latency_seconds = %v, want one histogram", vec)
	}
	if h := vec[0].H; h.Count != 5 || h.Sum != 12.5 || h.ZeroCount != 1 {
		t.Errorf("histogram = %s, want count 5, sum 12.5, zero count 1", h)
	}

	// Series and labels.
	got, err := ts.Series(ctx, `{job="node"}`)
	if err != nil {
		t.Fatal(err)
	}
	want := []labels.Labels{
		labels.FromStrings("__name__", "up", "instance", "a:9100", "job", "node"),
		labels.FromStrings("__name__", "up", "instance", "b:9100", "job", "node"),
	}
	if len(got) != len(want) {
		t.Fatalf("series = %v, want %v", got, want)
	}
	for i := range want {
		if !labels.Equal(got[i], want[i]) {
			t.Errorf("series[%d] = %s, want %s", i, got[i], want[i])
		}
	}

	// Exemplar.
	ex, err := ts.Exemplars(ctx, `http_requests_total`)
	if err != nil {
		t.Fatal(err)
	}
	if len(ex) != 1 || len(ex[0].Exemplars) != 1 {
		t.Fatalf("exemplars = %v, want one", ex)
	}
	if e := ex[0].Exemplars[0]; e.Labels.Get("trace_id") != "abc123" || e.Value != 0.25 || e.Ts != t0 {
		t.Errorf("exemplar = %v, want trace_id=abc123 0.25 @ t0", e)
	}

	// Counted.
	for _, c := range []struct {
		typ  string
		want float64
	}{{sampleFloat, 4}, {sampleHistogram, 1}, {sampleExemplar, 1}} {
		if got := testutil.ToFloat64(ts.metrics.samples.WithLabelValues(c.typ, resultAccepted)); got != c.want {
			t.Errorf("accepted %s = %v, want %v", c.typ, got, c.want)
		}
	}
	if got := testutil.ToFloat64(ts.metrics.requests.WithLabelValues(routeRemoteWrite, "200")); got != 1 {
		t.Errorf("requests{remote_write,200} = %v, want 1", got)
	}
}

func TestRemoteWrite_V2(t *testing.T) {
	ts := newTestServer(t, Options{})
	t0 := base()
	st := writev2.NewSymbolTable()
	refs := st.SymbolizeLabels(labels.FromStrings("__name__", "rw2_metric", "job", "v2"), nil)
	req := &writev2.Request{
		Timeseries: []writev2.TimeSeries{{
			LabelsRefs: refs,
			Samples:    []writev2.Sample{{Value: 7, Timestamp: t0}},
			Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE},
		}},
	}
	req.Symbols = st.Symbols()
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	resp, body := ts.post(t, ts.url("/api/v1/remote_write"), "application/x-protobuf;proto=io.prometheus.write.v2.Request", bodyOf(snappy.Encode(nil, raw)))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("remote write 2.0: %s %q, want 200", resp.Status, body)
	}
	if got := resp.Header.Get("X-Prometheus-Remote-Write-Samples-Written"); got != "1" {
		t.Errorf("X-Prometheus-Remote-Write-Samples-Written = %q, want 1", got)
	}
	vec, err := ts.Query(context.Background(), `rw2_metric`, time.UnixMilli(t0))
	if err != nil {
		t.Fatal(err)
	}
	if len(vec) != 1 || vec[0].F != 7 {
		t.Fatalf("rw2_metric = %v, want 7", vec)
	}
}

// TestRemoteWrite_OutOfOrderStored: a sender that retries or replays sends
// samples older than ones already stored; they must be kept.
func TestRemoteWrite_OutOfOrderStored(t *testing.T) {
	ts := newTestServer(t, Options{})
	t0 := base()
	series := func(tsMs int64, v float64) *prompb.WriteRequest {
		return &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  []prompb.Label{{Name: "__name__", Value: "late"}},
			Samples: []prompb.Sample{{Value: v, Timestamp: tsMs}},
		}}}
	}
	for _, req := range []*prompb.WriteRequest{
		series(t0, 3),
		series(t0-time.Hour.Milliseconds(), 2),    // an hour late
		series(t0-26*time.Hour.Milliseconds(), 1), // a day and more late
	} {
		if resp, body := ts.post(t, ts.url("/api/v1/remote_write"), rw1Type, bodyOf(encode(t, req))); resp.StatusCode != http.StatusOK {
			t.Fatalf("remote write: %s %q, want 200", resp.Status, body)
		}
	}
	vec, err := ts.Query(context.Background(), `count_over_time(late[2d])`, time.UnixMilli(t0))
	if err != nil {
		t.Fatal(err)
	}
	if len(vec) != 1 || vec[0].F != 3 {
		t.Fatalf("count_over_time(late[2d]) = %v, want 3", vec)
	}
}

func TestRemoteWrite_Verify(t *testing.T) {
	plain := errors.New("The security token included in the request is invalid.")
	for _, c := range []struct {
		name     string
		err      error
		wantCode int
		wantType string
		wantMsg  string
	}{
		{"plain error", plain, http.StatusForbidden, "AccessDeniedException", plain.Error()},
		{"signature", Reject(http.StatusForbidden, "InvalidSignatureException", "Signature expired"), http.StatusForbidden, "InvalidSignatureException", "Signature expired"},
		{"missing auth", Reject(http.StatusForbidden, "MissingAuthenticationTokenException", "Missing Authentication Token"), http.StatusForbidden, "MissingAuthenticationTokenException", "Missing Authentication Token"},
		{"throttled", Reject(http.StatusTooManyRequests, "ThrottlingException", "Rate exceeded"), http.StatusTooManyRequests, "ThrottlingException", "Rate exceeded"},
		{"wrapped", errorsJoin(Reject(http.StatusServiceUnavailable, "ServiceUnavailableException", "try later")), http.StatusServiceUnavailable, "ServiceUnavailableException", "try later"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sent := encode(t, testRequest(base()))
			var seen []byte
			ts := newTestServer(t, Options{Verify: func(r *http.Request, body []byte) error {
				seen = bytes.Clone(body)
				return c.err
			}})
			resp, body := ts.post(t, ts.url("/api/v1/remote_write"), rw1Type, bodyOf(sent))
			if resp.StatusCode != c.wantCode {
				t.Fatalf("status = %s, want %d", resp.Status, c.wantCode)
			}
			if got := resp.Header.Get("x-amzn-ErrorType"); got != c.wantType {
				t.Errorf("x-amzn-ErrorType = %q, want %q", got, c.wantType)
			}
			checkDate(t, resp)
			if a := decodeAWS(t, resp, body); !strings.Contains(a.Message, c.wantMsg) {
				t.Errorf("message = %q, want %q", a.Message, c.wantMsg)
			}
			if !bytes.Equal(seen, sent) {
				t.Errorf("Verify saw %d bytes, want the %d raw bytes sent", len(seen), len(sent))
			}
			if n := countSeries(t, ts.Server, `{__name__=~".+"}`); n != 0 {
				t.Errorf("%d series stored after a refused write, want 0", n)
			}
			if got := testutil.ToFloat64(ts.metrics.samples.WithLabelValues(sampleFloat, resultAccepted)); got != 0 {
				t.Errorf("accepted floats = %v, want 0", got)
			}
		})
	}
}

func errorsJoin(err error) error { return errors.Join(errors.New("verify"), err) }

func TestRemoteWrite_BodyTooLarge(t *testing.T) {
	ts := newTestServer(t, Options{MaxBodyBytes: 64})
	big := bytes.Repeat([]byte{'x'}, 65)
	for _, c := range []struct {
		name string
		body io.Reader
	}{
		{"content-length", bytes.NewReader(big)},
		{"chunked", io.MultiReader(bytes.NewReader(big))}, // unknown length
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := ts.post(t, ts.url("/api/v1/remote_write"), rw1Type, c.body)
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("status = %s %q, want 413", resp.Status, body)
			}
			checkDate(t, resp)
			decodeAWS(t, resp, body)
		})
	}
	// At the limit is fine (and then fails to decode: it is not snappy).
	resp, body := ts.post(t, ts.url("/api/v1/remote_write"), rw1Type, bytes.NewReader(big[:64]))
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("64-byte garbage: %s %q, want 400", resp.Status, body)
	}
}

func TestRemoteWrite_UnknownWorkspace(t *testing.T) {
	ts := newTestServer(t, Options{WorkspaceID: "ws-1234"})
	for _, path := range []string{"/workspaces/ws-other/api/v1/remote_write", "/workspaces/ws-other/api/v1/query?query=up"} {
		method := http.MethodGet
		var body io.Reader
		if strings.HasSuffix(path, "remote_write") {
			method, body = http.MethodPost, bodyOf(encode(t, testRequest(base())))
		}
		req, err := http.NewRequest(method, ts.http.URL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		resp, b := ts.do(t, req)
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s %s: %s, want 404", method, path, resp.Status)
		}
		if got := resp.Header.Get("x-amzn-ErrorType"); got != "ResourceNotFoundException" {
			t.Errorf("x-amzn-ErrorType = %q, want ResourceNotFoundException", got)
		}
		checkDate(t, resp)
		if a := decodeAWS(t, resp, b); a.ResourceID != "ws-other" || a.ResourceType != "Workspace" || a.Message == "" {
			t.Errorf("answer = %+v, want message, resourceId ws-other, resourceType Workspace", a)
		}
	}
	if n := countSeries(t, ts.Server, `{__name__=~".+"}`); n != 0 {
		t.Errorf("%d series stored by a write to another workspace, want 0", n)
	}
}

func TestRemoteWrite_BadRequests(t *testing.T) {
	ts := newTestServer(t, Options{})
	for _, c := range []struct {
		name, ct, enc string
		body          []byte
		want          int
	}{
		{"not snappy", rw1Type, "snappy", []byte("not snappy at all"), http.StatusBadRequest},
		{"not protobuf", rw1Type, "snappy", snappy.Encode(nil, []byte{0xff, 0xff, 0xff}), http.StatusBadRequest},
		{"gzip", rw1Type, "gzip", encode(t, testRequest(base())), http.StatusUnsupportedMediaType},
		{"json", "application/json", "snappy", encode(t, testRequest(base())), http.StatusUnsupportedMediaType},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, ts.url("/api/v1/remote_write"), bodyOf(c.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", c.ct)
			req.Header.Set("Content-Encoding", c.enc)
			resp, b := ts.do(t, req)
			if resp.StatusCode != c.want {
				t.Fatalf("status = %s %q, want %d", resp.Status, b, c.want)
			}
			if got := resp.Header.Get("x-amzn-ErrorType"); c.want == http.StatusBadRequest && got != "ValidationException" {
				t.Errorf("x-amzn-ErrorType = %q, want ValidationException", got)
			}
			checkDate(t, resp)
		})
	}
	if got := testutil.ToFloat64(ts.metrics.requests.WithLabelValues(routeRemoteWrite, "400")); got != 2 {
		t.Errorf("requests{remote_write,400} = %v, want 2", got)
	}
}

// TestRemoteWrite_OutOfBoundsRejected: a sample too far in the future is
// refused with 400 and nothing of its request is stored. Prometheus' handler
// refuses the future sample before our appender sees it, so only the rolled
// back one is counted.
func TestRemoteWrite_OutOfBoundsRejected(t *testing.T) {
	ts := newTestServer(t, Options{})
	future := time.Now().Add(time.Hour).UnixMilli()
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: []prompb.Label{{Name: "__name__", Value: "ok"}}, Samples: []prompb.Sample{{Value: 1, Timestamp: base()}}},
		{Labels: []prompb.Label{{Name: "__name__", Value: "future"}}, Samples: []prompb.Sample{{Value: 1, Timestamp: future}}},
	}}
	resp, body := ts.post(t, ts.url("/api/v1/remote_write"), rw1Type, bodyOf(encode(t, req)))
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status = %s %q, want 400", resp.Status, body)
	}
	if got := resp.Header.Get("x-amzn-ErrorType"); got != "ValidationException" {
		t.Errorf("x-amzn-ErrorType = %q, want ValidationException", got)
	}
	if got := testutil.ToFloat64(ts.metrics.samples.WithLabelValues(sampleFloat, resultRejected)); got != 1 {
		t.Errorf("rejected floats = %v, want 1", got)
	}
	if got := testutil.ToFloat64(ts.metrics.samples.WithLabelValues(sampleFloat, resultAccepted)); got != 0 {
		t.Errorf("accepted floats = %v, want 0", got)
	}
	vec, err := ts.Query(context.Background(), `ok`, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(vec) != 0 {
		t.Errorf("ok = %v, want nothing stored", vec)
	}
}
