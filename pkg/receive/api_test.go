package receive

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// seeded returns a test server holding testRequest(t0).
func seeded(t *testing.T) (*testServer, int64) {
	t.Helper()
	ts := newTestServer(t, Options{})
	t0 := base()
	if resp, body := ts.post(t, ts.url("/api/v1/remote_write"), rw1Type, bodyOf(encode(t, testRequest(t0)))); resp.StatusCode != http.StatusOK {
		t.Fatalf("remote write: %s %q", resp.Status, body)
	}
	return ts, t0
}

func secs(ms int64) string { return strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64) }

// get answers GET path?q, or POST path with q as a form when post is set.
func (ts *testServer) api(t *testing.T, post bool, path string, q url.Values) (*http.Response, []byte) {
	t.Helper()
	var req *http.Request
	var err error
	if post {
		req, err = http.NewRequest(http.MethodPost, ts.url(path), strings.NewReader(q.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	} else {
		req, err = http.NewRequest(http.MethodGet, ts.url(path)+"?"+q.Encode(), nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return ts.do(t, req)
}

type vectorData struct {
	ResultType string `json:"resultType"`
	Result     []struct {
		Metric    map[string]string `json:"metric"`
		Value     []any             `json:"value"`
		Histogram []any             `json:"histogram"`
	} `json:"result"`
}

func TestQueryAPI_Instant(t *testing.T) {
	ts, t0 := seeded(t)
	for _, post := range []bool{false, true} {
		t.Run("post="+strconv.FormatBool(post), func(t *testing.T) {
			resp, body := ts.api(t, post, "/api/v1/query", url.Values{"query": {`up{instance="a:9100"}`}, "time": {secs(t0 + 15_000)}})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("query: %s %q", resp.Status, body)
			}
			checkDate(t, resp)
			var d vectorData
			if a := decodeAPI(t, body, &d); a.Status != "success" {
				t.Fatalf("status = %q (%s), want success", a.Status, a.Error)
			}
			if d.ResultType != "vector" || len(d.Result) != 1 {
				t.Fatalf("data = %+v, want a vector of one sample", d)
			}
			r := d.Result[0]
			if r.Metric["instance"] != "a:9100" || r.Metric["__name__"] != "up" {
				t.Errorf("metric = %v", r.Metric)
			}
			if len(r.Value) != 2 || r.Value[0] != float64(t0+15_000)/1000 || r.Value[1] != "0" {
				t.Errorf("value = %v, want [%s, \"0\"]", r.Value, secs(t0+15_000))
			}
		})
	}
}

func TestQueryAPI_Histogram(t *testing.T) {
	ts, t0 := seeded(t)
	_, body := ts.api(t, false, "/api/v1/query", url.Values{"query": {`rpc_latency_seconds`}, "time": {secs(t0)}})
	var d vectorData
	decodeAPI(t, body, &d)
	if len(d.Result) != 1 || len(d.Result[0].Histogram) != 2 {
		t.Fatalf("data = %s, want one histogram sample", body)
	}
	h, ok := d.Result[0].Histogram[1].(map[string]any)
	if !ok || h["count"] != "5" || h["sum"] != "12.5" {
		t.Errorf("histogram = %v, want count \"5\", sum \"12.5\"", d.Result[0].Histogram[1])
	}
}

func TestQueryAPI_EmptyVectorIsArray(t *testing.T) {
	ts, t0 := seeded(t)
	_, body := ts.api(t, false, "/api/v1/query", url.Values{"query": {`nothing_here`}, "time": {secs(t0)}})
	if !strings.Contains(string(body), `"result":[]`) {
		t.Errorf("answer %s, want an empty result array", body)
	}
}

func TestQueryAPI_Range(t *testing.T) {
	ts, t0 := seeded(t)
	_, body := ts.api(t, false, "/api/v1/query_range", url.Values{
		"query": {`up{instance="a:9100"}`}, "start": {secs(t0)}, "end": {secs(t0 + 15_000)}, "step": {"15s"},
	})
	var d struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Values [][]any `json:"values"`
		} `json:"result"`
	}
	if a := decodeAPI(t, body, &d); a.Status != "success" {
		t.Fatalf("answer %s", body)
	}
	if d.ResultType != "matrix" || len(d.Result) != 1 || len(d.Result[0].Values) != 2 {
		t.Fatalf("data = %s, want a matrix of one series with two points", body)
	}
	if v := d.Result[0].Values; v[0][1] != "1" || v[1][1] != "0" {
		t.Errorf("values = %v, want 1 then 0", v)
	}
}

func TestQueryAPI_SeriesLabels(t *testing.T) {
	ts, _ := seeded(t)
	_, body := ts.api(t, false, "/api/v1/series", url.Values{"match[]": {`up`, `http_requests_total`}})
	var series []map[string]string
	if a := decodeAPI(t, body, &series); a.Status != "success" {
		t.Fatalf("series: %s", body)
	}
	if len(series) != 3 {
		t.Fatalf("series = %v, want 3", series)
	}
	_, body = ts.api(t, true, "/api/v1/labels", url.Values{"match[]": {`up`}})
	var names []string
	decodeAPI(t, body, &names)
	if strings.Join(names, ",") != "__name__,instance,job" {
		t.Errorf("labels = %v", names)
	}
	_, body = ts.api(t, false, "/api/v1/label/job/values", nil)
	var values []string
	decodeAPI(t, body, &values)
	if strings.Join(values, ",") != "api,node" {
		t.Errorf("job values = %v", values)
	}
}

func TestQueryAPI_Exemplars(t *testing.T) {
	ts, t0 := seeded(t)
	_, body := ts.api(t, false, "/api/v1/query_exemplars", url.Values{"query": {`http_requests_total`}, "start": {secs(t0 - 1000)}, "end": {secs(t0 + 1000)}})
	var d []struct {
		SeriesLabels map[string]string `json:"seriesLabels"`
		Exemplars    []struct {
			Labels    map[string]string `json:"labels"`
			Value     string            `json:"value"`
			Timestamp float64           `json:"timestamp"`
		} `json:"exemplars"`
	}
	if a := decodeAPI(t, body, &d); a.Status != "success" {
		t.Fatalf("answer %s", body)
	}
	if len(d) != 1 || len(d[0].Exemplars) != 1 {
		t.Fatalf("data = %s, want one exemplar", body)
	}
	if e := d[0].Exemplars[0]; e.Labels["trace_id"] != "abc123" || e.Value != "0.25" || e.Timestamp != float64(t0)/1000 {
		t.Errorf("exemplar = %+v", e)
	}
}

func TestQueryAPI_Errors(t *testing.T) {
	ts, t0 := seeded(t)
	for _, c := range []struct {
		name     string
		path     string
		q        url.Values
		wantCode int
		wantType string
	}{
		{"parse error", "/api/v1/query", url.Values{"query": {`sum(`}}, 400, "bad_data"},
		{"bad time", "/api/v1/query", url.Values{"query": {`up`}, "time": {"yesterday"}}, 400, "bad_data"},
		{"no step", "/api/v1/query_range", url.Values{"query": {`up`}, "start": {"1"}, "end": {"2"}}, 400, "bad_data"},
		{"end before start", "/api/v1/query_range", url.Values{"query": {`up`}, "start": {"2"}, "end": {"1"}, "step": {"1"}}, 400, "bad_data"},
		{"too many points", "/api/v1/query_range", url.Values{"query": {`up`}, "start": {"0"}, "end": {"100000"}, "step": {"1"}}, 400, "bad_data"},
		{"no match", "/api/v1/series", nil, 400, "bad_data"},
		{"bad match", "/api/v1/series", url.Values{"match[]": {`{`}}, 400, "bad_data"},
		{"execution", "/api/v1/query", url.Values{"query": {`up + on() http_requests_total`}, "time": {secs(t0)}}, 422, "execution"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := ts.api(t, false, c.path, c.q)
			if resp.StatusCode != c.wantCode {
				t.Fatalf("status = %s %q, want %d", resp.Status, body, c.wantCode)
			}
			if got := resp.Header.Get("x-amzn-ErrorType"); c.wantCode == http.StatusBadRequest && got != "ValidationException" {
				t.Errorf("x-amzn-ErrorType = %q, want ValidationException", got)
			}
			a := decodeAPI(t, body, nil)
			if a.Status != "error" || a.ErrorType != c.wantType || a.Error == "" {
				t.Errorf("answer = %+v, want error of type %s", a, c.wantType)
			}
		})
	}
}

func TestUnknownPath(t *testing.T) {
	ts := newTestServer(t, Options{})
	resp, body := ts.api(t, false, "/api/v1/nope", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status = %s, want 404", resp.Status)
	}
	checkDate(t, resp)
	decodeAWS(t, resp, body)
}

func TestClose(t *testing.T) {
	ts := newTestServer(t, Options{})
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ts.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	resp, body := ts.post(t, ts.url("/api/v1/remote_write"), rw1Type, bodyOf(encode(t, testRequest(base()))))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("write after Close: %s %q, want 503", resp.Status, body)
	}
	if _, err := ts.Query(context.Background(), "up", time.Now()); !errors.Is(err, ErrClosed) {
		t.Errorf("Query after Close: %v, want ErrClosed", err)
	}
	if _, err := ts.Series(context.Background(), "up"); !errors.Is(err, ErrClosed) {
		t.Errorf("Series after Close: %v, want ErrClosed", err)
	}
}

// TestUnregisterMetrics opens a server on one directory and registry twice:
// Close must unregister everything, including the TSDB's and the engine's.
func TestUnregisterMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	for i := range 2 {
		s, err := New(Options{Dir: dir, Registerer: reg})
		if err != nil {
			t.Fatalf("New #%d: %v", i, err)
		}
		n, err := testutil.GatherAndCount(reg)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("no metrics registered")
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var own, inner bool
		for _, mf := range mfs {
			own = own || mf.GetName() == "ampemu_requests_total" || mf.GetName() == "ampemu_remote_write_samples_total"
			inner = inner || strings.HasPrefix(mf.GetName(), "ampemu_prometheus_tsdb_")
			if !strings.HasPrefix(mf.GetName(), "ampemu_") {
				t.Errorf("metric %s has no ampemu_ prefix", mf.GetName())
			}
		}
		if !own || !inner {
			t.Errorf("own metrics %v, tsdb metrics %v; want both", own, inner)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
			t.Fatalf("after Close: %d metrics (%v), want 0", n, err)
		}
	}
}

func TestNilRegistererAndLogger(t *testing.T) {
	s, err := New(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.WorkspaceID(); got != DefaultWorkspaceID {
		t.Errorf("WorkspaceID = %q, want %q", got, DefaultWorkspaceID)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		opts Options
		want string // substring of the error; "" for valid
	}{
		{"minimal", Options{Dir: "/tmp/x"}, ""},
		{"no dir", Options{}, "Options.Dir"},
		{"slash in id", Options{Dir: "d", WorkspaceID: "ws/1"}, "Options.WorkspaceID"},
		{"long id", Options{Dir: "d", WorkspaceID: strings.Repeat("w", 65)}, "longer than 64"},
		{"negative size", Options{Dir: "d", MaxBodyBytes: -1}, "Options.MaxBodyBytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.opts.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Errorf("Validate: %v, want nil", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("Validate: %v, want an error naming %q", err, c.want)
			}
		})
	}
	if _, err := New(Options{}); err == nil {
		t.Error("New without Dir: nil error")
	}
}
