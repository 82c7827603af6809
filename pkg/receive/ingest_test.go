package receive

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// stepClock is a clock the test moves by hand.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func newStepClock() *stepClock { return &stepClock{t: fixedNow} }

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// series builds a 1.0 series of name with extra label pairs and n samples
// of value v from t0 on, one a millisecond.
func series(name string, v float64, t0 int64, n int, pairs ...string) prompb.TimeSeries {
	ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: name}}}
	for i := 0; i+1 < len(pairs); i += 2 {
		ts.Labels = append(ts.Labels, prompb.Label{Name: pairs[i], Value: pairs[i+1]})
	}
	for i := range n {
		ts.Samples = append(ts.Samples, prompb.Sample{Value: v, Timestamp: t0 + int64(i)})
	}
	return ts
}

func (ts *testServer) write(t *testing.T, series ...prompb.TimeSeries) (*http.Response, []byte) {
	t.Helper()
	return ts.post(t, ts.url("/api/v1/remote_write"), rw1Type, bodyOf(encode(t, &prompb.WriteRequest{Timeseries: series})))
}

// storedSamples returns how many samples of the series matching sel are
// stored, over all time.
func storedSamples(t *testing.T, s *Server, sel string) int {
	t.Helper()
	vec, err := s.Query(context.Background(), fmt.Sprintf("sum(count_over_time(%s[1y]))", sel), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(vec) == 0 {
		return 0
	}
	return int(vec[0].F)
}

func wantAWSError(t *testing.T, resp *http.Response, body []byte, status int, code, msg string) {
	t.Helper()
	if resp.StatusCode != status || resp.Header.Get("x-amzn-ErrorType") != code {
		t.Fatalf("answer %s %s %q, want %d %s", resp.Status, resp.Header.Get("x-amzn-ErrorType"), body, status, code)
	}
	if a := decodeAWS(t, resp, body); a.Message != msg {
		t.Errorf("message %q, want %q", a.Message, msg)
	}
}

func TestRemoteWrite_Throttled(t *testing.T) {
	clock := newStepClock()
	ts := newTestServer(t, Options{Now: clock.Now, Limits: Limits{IngestionRate: 10, IngestionBurst: 20}})
	t0 := base()

	if resp, body := ts.write(t, series("thr", 1, t0, 15)); resp.StatusCode != http.StatusOK {
		t.Fatalf("first write: %s %q, want 200", resp.Status, body)
	}
	resp, body := ts.write(t, series("thr", 2, t0+100, 15))
	wantAWSError(t, resp, body, http.StatusTooManyRequests, "ThrottlingException",
		"ingestion rate limit (10) exceeded while adding 15 samples and 0 metadata")
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		t.Errorf("Retry-After %q: AMP documents none", ra)
	}
	if got := storedSamples(t, ts.Server, "thr"); got != 15 {
		t.Errorf("stored %d samples, want the first request's 15 only", got)
	}
	resp, body = ts.write(t, series("thr", 3, t0+200, 21))
	wantAWSError(t, resp, body, http.StatusTooManyRequests, "ThrottlingException",
		"ingestion burst size limit (20) exceeded while adding 21 samples and 0 metadata")

	clock.Advance(time.Second) // 5 + 10 tokens
	if resp, body := ts.write(t, series("thr", 2, t0+100, 15)); resp.StatusCode != http.StatusOK {
		t.Fatalf("write after refill: %s %q, want 200", resp.Status, body)
	}
	if got := storedSamples(t, ts.Server, "thr"); got != 30 {
		t.Errorf("stored %d samples, want 30", got)
	}
	if got := testutil.ToFloat64(ts.metrics.discarded.WithLabelValues(reasonRateLimited)); got != 36 {
		t.Errorf("discarded{rate_limited} = %v, want 36", got)
	}
}

func TestRemoteWrite_Limits(t *testing.T) {
	long := strings.Repeat("x", 9)
	for _, c := range []struct {
		name   string
		limits Limits
		bad    prompb.TimeSeries
		status int
		code   string
		msg    string
		reason string
	}{
		{
			name: "labels per series", limits: Limits{MaxLabelNamesPerSeries: 3},
			bad:    series("bad", 1, 0, 2, "a", "1", "b", "2", "c", "3"),
			status: 400, code: codeValidation, reason: reasonTooManyLabels,
			msg: `series has too many labels (actual: 4, limit: 3) series: '{__name__="bad", a="1", b="2", c="3"}'`,
		},
		{
			name: "label name length", limits: Limits{MaxLabelNameLength: 8},
			bad:    series("bad", 1, 0, 2, long, "v"),
			status: 400, code: codeValidation, reason: reasonLabelNameTooLong,
			msg: `label name too long: "xxxxxxxxx" metric "bad"`,
		},
		{
			name: "label value length", limits: Limits{MaxLabelValueLength: 8},
			bad:    series("bad", 1, 0, 2, "a", long),
			status: 400, code: codeValidation, reason: reasonLabelValueTooLong,
			msg: `label value too long: "xxxxxxxxx" metric "bad"`,
		},
		{
			name: "active series", limits: Limits{MaxActiveSeries: 1},
			bad:    series("bad", 1, 0, 2),
			status: 429, code: codeThrottling, reason: reasonSeriesLimit,
			msg: "per-user series limit of 1 exceeded, please contact administrator to raise it",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := newTestServer(t, Options{Limits: c.limits})
			t0 := base()
			c.bad.Samples[0].Timestamp, c.bad.Samples[1].Timestamp = t0, t0+1
			resp, body := ts.write(t, series("good", 1, t0, 3), c.bad)
			wantAWSError(t, resp, body, c.status, c.code, c.msg)
			if got := storedSamples(t, ts.Server, "good"); got != 3 {
				t.Errorf("good series: %d samples stored, want 3", got)
			}
			if got := countSeries(t, ts.Server, "bad"); got != 0 {
				t.Errorf("refused series stored (%d)", got)
			}
			if got := testutil.ToFloat64(ts.metrics.discarded.WithLabelValues(c.reason)); got != 2 {
				t.Errorf("discarded{%s} = %v, want 2", c.reason, got)
			}
			// The good series alone still passes: it is known, or valid.
			if resp, body := ts.write(t, series("good", 1, t0+10, 1)); resp.StatusCode != http.StatusOK {
				t.Errorf("good series again: %s %q", resp.Status, body)
			}
		})
	}
}

func TestDefaultLimitsAreAMPs(t *testing.T) {
	s := newTestServer(t, Options{}).opts.Limits
	if s != DefaultLimits {
		t.Errorf("zero Limits became %+v, want DefaultLimits %+v", s, DefaultLimits)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"ingestion rate", DefaultLimits.IngestionRate, 140_000.0},
		{"ingestion burst", DefaultLimits.IngestionBurst, 1_000_000},
		{"labels per series", DefaultLimits.MaxLabelNamesPerSeries, 70},
		{"active series", DefaultLimits.MaxActiveSeries, 10_000_000},
		{"HA clusters", DefaultLimits.MaxHAClusters, 500},
		{"failover", DefaultLimits.HAFailoverTimeout, 30 * time.Second},
		{"cluster label", DefaultLimits.HAClusterLabel, "cluster"},
		{"replica label", DefaultLimits.HAReplicaLabel, "__replica__"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestRemoteWrite_HADeduplication(t *testing.T) {
	clock := newStepClock()
	ts := newTestServer(t, Options{Now: clock.Now})
	t0 := base()
	// Replica a sends 1s, replica b sends 2s, at distinct times so that
	// both could be stored side by side if dedup failed.
	send := func(replica string, v float64, at int64) (*http.Response, []byte) {
		return ts.write(t,
			series("ha_up", v, at, 1, "cluster", "prod", "__replica__", replica, "job", "x"),
			series("ha_other", v, at, 1, "cluster", "prod", "__replica__", replica),
		)
	}
	wantStored := func(at int64, status int, replica string, v float64) {
		t.Helper()
		resp, body := send(replica, v, at)
		if resp.StatusCode != status {
			t.Fatalf("replica %s: %s %q, want %d", replica, resp.Status, body, status)
		}
		if status == http.StatusAccepted {
			want := "replicas did not match, rejecting sample: replica=" + replica + ", elected="
			if !strings.HasPrefix(string(body), want) {
				t.Errorf("202 body %q, want it to start %q", body, want)
			}
		}
	}
	wantStored(t0, 200, "a", 1)
	wantStored(t0+1000, 202, "b", 2)
	clock.Advance(29 * time.Second)
	wantStored(t0+2000, 202, "b", 2) // a sent 29s ago: still elected
	wantStored(t0+3000, 200, "a", 1) // a refreshes its election
	clock.Advance(29 * time.Second)
	wantStored(t0+4000, 202, "b", 2)
	clock.Advance(time.Second) // a silent for 30s: failover
	wantStored(t0+5000, 200, "b", 2)
	wantStored(t0+6000, 202, "a", 1)
	if got := ts.ha.electedFor("prod"); got != "b" {
		t.Errorf("elected %q, want b", got)
	}

	got, err := ts.Series(context.Background(), "ha_up")
	if err != nil {
		t.Fatal(err)
	}
	want := labels.FromStrings("__name__", "ha_up", "cluster", "prod", "job", "x")
	if len(got) != 1 || !labels.Equal(got[0], want) {
		t.Fatalf("series %v, want only %s (cluster kept, __replica__ dropped)", got, want)
	}
	// Stored: a at t0 and t0+3000 (value 1), b at t0+5000 (value 2).
	vec, err := ts.Query(context.Background(), "sum_over_time(ha_up[1h])", time.UnixMilli(t0+10_000))
	if err != nil {
		t.Fatal(err)
	}
	if len(vec) != 1 || vec[0].F != 4 {
		t.Errorf("sum of stored ha_up = %v, want 1+1+2 = 4", vec)
	}
	if got := testutil.ToFloat64(ts.metrics.deduplicated); got != 8 {
		t.Errorf("deduplicated samples = %v, want 4 requests × 2", got)
	}

	// Without both labels nothing is deduplicated or dropped.
	if resp, body := ts.write(t, series("ha_solo", 1, t0, 1, "__replica__", "z")); resp.StatusCode != 200 {
		t.Fatalf("replica without cluster: %s %q", resp.Status, body)
	}
	if got := countSeries(t, ts.Server, `ha_solo{__replica__="z"}`); got != 1 {
		t.Errorf("replica label without cluster: %d series kept it, want 1 (Cortex strips it only with a cluster)", got)
	}
}

func TestRemoteWrite_HADeduplicationV2(t *testing.T) {
	ts := newTestServer(t, Options{})
	t0 := base()
	send := func(replica string) *http.Response {
		st := writev2.NewSymbolTable()
		req := &writev2.Request{Timeseries: []writev2.TimeSeries{{
			LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "ha2", "__replica__", replica, "cluster", "c"), nil),
			Samples:    []writev2.Sample{{Value: 1, Timestamp: t0}},
		}}}
		req.Symbols = st.Symbols()
		raw, err := req.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		resp, _ := ts.post(t, ts.url("/api/v1/remote_write"), "application/x-protobuf;proto=io.prometheus.write.v2.Request", bodyOf(snappy.Encode(nil, raw)))
		return resp
	}
	if resp := send("a"); resp.StatusCode != 200 || resp.Header.Get("X-Prometheus-Remote-Write-Samples-Written") != "1" {
		t.Fatalf("replica a: %s, written %q", resp.Status, resp.Header.Get("X-Prometheus-Remote-Write-Samples-Written"))
	}
	if resp := send("b"); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("replica b: %s, want 202", resp.Status)
	}
	got, err := ts.Series(context.Background(), "ha2")
	if err != nil {
		t.Fatal(err)
	}
	if want := labels.FromStrings("__name__", "ha2", "cluster", "c"); len(got) != 1 || !labels.Equal(got[0], want) {
		t.Errorf("series %v, want %s", got, want)
	}
}

func TestRemoteWrite_TooManyHAClusters(t *testing.T) {
	ts := newTestServer(t, Options{Limits: Limits{MaxHAClusters: 1}})
	t0 := base()
	if resp, body := ts.write(t, series("hc", 1, t0, 1, "cluster", "one", "__replica__", "a")); resp.StatusCode != 200 {
		t.Fatalf("first cluster: %s %q", resp.Status, body)
	}
	resp, body := ts.write(t, series("hc", 1, t0, 1, "cluster", "two", "__replica__", "a"))
	wantAWSError(t, resp, body, 400, codeValidation, "too many HA clusters (limit: 1)")
}

func TestMetadataAPI(t *testing.T) {
	ts := newTestServer(t, Options{Limits: Limits{MaxMetadataMetrics: 2}})
	req := &prompb.WriteRequest{Metadata: []prompb.MetricMetadata{
		{MetricFamilyName: "http_requests_total", Type: prompb.MetricMetadata_COUNTER, Help: "Requests."},
		{MetricFamilyName: "rpc_seconds", Type: prompb.MetricMetadata_HISTOGRAM, Help: "RPC latency.", Unit: "seconds"},
		{MetricFamilyName: "third", Type: prompb.MetricMetadata_GAUGE, Help: "Over the limit."},
	}}
	if resp, body := ts.post(t, ts.url("/api/v1/remote_write"), rw1Type, bodyOf(encode(t, req))); resp.StatusCode != 200 {
		t.Fatalf("write metadata: %s %q", resp.Status, body)
	}
	type md = map[string][]metricMetadata
	for _, c := range []struct {
		query url.Values
		want  md
	}{
		{nil, md{
			"http_requests_total": {{Type: "counter", Help: "Requests."}},
			"rpc_seconds":         {{Type: "histogram", Help: "RPC latency.", Unit: "seconds"}},
		}},
		{url.Values{"metric": {"rpc_seconds"}}, md{"rpc_seconds": {{Type: "histogram", Help: "RPC latency.", Unit: "seconds"}}}},
		{url.Values{"limit": {"1"}}, md{"http_requests_total": {{Type: "counter", Help: "Requests."}}}},
		{url.Values{"metric": {"third"}}, md{}},
	} {
		resp, body := ts.api(t, false, "/api/v1/metadata", c.query)
		var got md
		if a := decodeAPI(t, body, &got); resp.StatusCode != 200 || a.Status != "success" {
			t.Fatalf("metadata %v: %s %q", c.query, resp.Status, body)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("metadata %v = %v, want %v", c.query, got, c.want)
		}
	}
	if got := testutil.ToFloat64(ts.metrics.metadataDropped); got != 1 {
		t.Errorf("metadata dropped = %v, want 1 (over MaxMetadataMetrics)", got)
	}
	resp, body := ts.api(t, false, "/api/v1/metadata", url.Values{"limit": {"many"}})
	if a := decodeAPI(t, body, nil); resp.StatusCode != 400 || a.ErrorType != "bad_data" {
		t.Errorf("bad limit: %s %q, want 400 bad_data", resp.Status, body)
	}
}

func TestRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	t0 := base()
	open := func() (*Server, *httptest.Server) {
		s, err := New(Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return s, httptest.NewServer(s.Handler())
	}
	s, h := open()
	ts := &testServer{Server: s, http: h}
	if resp, body := ts.write(t, series("kept", 7, t0, 3)); resp.StatusCode != 200 {
		t.Fatalf("write: %s %q", resp.Status, body)
	}
	h.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, h = open()
	defer func() {
		h.Close()
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}()
	if got := storedSamples(t, s, "kept"); got != 3 {
		t.Fatalf("after restart %d samples of kept, want 3", got)
	}
	ts = &testServer{Server: s, http: h}
	resp, body := ts.api(t, false, "/api/v1/query", url.Values{"query": {"kept"}, "time": {secs(t0 + 2)}})
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"7"`) {
		t.Errorf("query after restart: %s %s", resp.Status, body)
	}
}
