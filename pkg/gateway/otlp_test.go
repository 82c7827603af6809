package gateway

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/record"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwagent/rwagent/pkg/wal"
)

// TestOTLPExporter pushes a counter, a gauge and a histogram with the OTel
// Go SDK's OTLP/HTTP exporter (gzip, protobuf, an API key header) to the
// gateway, and reads back from the WAL the series Prometheus' translator
// makes of them: suffixed names, job and instance from the resource,
// target_info with the other resource attributes, the tenant label.
func TestOTLPExporter(t *testing.T) {
	e := newEnv(t, Tenant{}, nil)
	ctx := t.Context()
	exp, err := otlpmetrichttp.New(ctx,
		otlpmetrichttp.WithEndpointURL(e.srv.URL+"/v1/metrics"),
		otlpmetrichttp.WithHeaders(map[string]string{"Authorization": "Bearer " + keyA}),
		otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression),
		otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: false}),
	)
	if err != nil {
		t.Fatal(err)
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", "checkout"),
		attribute.String("service.instance.id", "pod-1"),
		attribute.String("deployment.environment", "test"),
	)
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))))
	meter := mp.Meter("shop")
	orders, _ := meter.Int64Counter("orders", metric.WithDescription("Orders placed."))
	orders.Add(ctx, 3, metric.WithAttributes(attribute.String("region", "eu")))
	temp, _ := meter.Float64Gauge("room.temperature", metric.WithUnit("Cel"))
	temp.Record(ctx, 21.5)
	lat, _ := meter.Float64Histogram("http.latency", metric.WithUnit("s"))
	lat.Record(ctx, 0.3)
	lat.Record(ctx, 7)
	if err := mp.ForceFlush(ctx); err != nil {
		t.Fatalf("export: %v", err)
	}
	if err := mp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	got := e.contents()
	values := map[string]float64{} // by series, the last value
	for _, s := range got.samples {
		i := strings.Index(s, "} ")
		var ts int64
		var v float64
		if _, err := fmt.Sscanf(s[i+2:], "%d %g", &ts, &v); err != nil {
			t.Fatalf("sample %q: %v", s, err)
		}
		values[s[:i+1]] = v
	}
	series := func(name string, more ...string) string {
		return labels.FromStrings(append([]string{"__name__", name, "instance", "pod-1", "job", "checkout", "tenant", "team-a"}, more...)...).String()
	}
	for s, want := range map[string]float64{
		series("orders_total", "region", "eu"):                  3,
		series("room_temperature_celsius"):                      21.5,
		series("http_latency_seconds_count"):                    2,
		series("http_latency_seconds_sum"):                      7.3,
		series("http_latency_seconds_bucket", "le", "0"):        0, // the SDK's default bounds: 0, 5, 10, 25, ...
		series("http_latency_seconds_bucket", "le", "5"):        1,
		series("http_latency_seconds_bucket", "le", "10"):       2,
		series("http_latency_seconds_bucket", "le", "+Inf"):     2,
		series("target_info", "deployment_environment", "test"): 1,
	} {
		if v, ok := values[s]; !ok {
			t.Errorf("no series %s in the WAL", s)
		} else if v != want {
			t.Errorf("%s = %g, want %g", s, v, want)
		}
	}
	if t.Failed() {
		t.Logf("WAL: %q", slices.Sorted(maps.Keys(values)))
	}
	var counterMeta bool
	for _, m := range got.metadata {
		if ls := got.series[m.Ref]; ls.Get(labels.MetricName) == "orders_total" {
			counterMeta = m.Help == "Orders placed." && record.MetricType(m.Type) == record.Counter
		}
	}
	if !counterMeta {
		t.Errorf("orders_total logged without its counter metadata: %v", got.metadata)
	}
	// ForceFlush and Shutdown export once each.
	if n, ok := testutil.CollectAndCount(e.g.metrics.requests), testutil.ToFloat64(e.g.metrics.requests.WithLabelValues("team-a", "otlp_protobuf", "200")); n != 1 || ok < 1 {
		t.Errorf("requests: %d label sets, %v answered 200; want every request answered 200", n, ok)
	}
}

// otlpRequest builds an ExportMetricsServiceRequest with one resource
// (service.name svc, and the attribute pairs in res) and the metrics add
// adds to its scope. The translator adds target_info only when res has
// attributes.
func otlpRequest(add func(pmetric.MetricSlice), res ...string) pmetricotlp.ExportRequest {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "svc")
	for i := 0; i+1 < len(res); i += 2 {
		rm.Resource().Attributes().PutStr(res[i], res[i+1])
	}
	add(rm.ScopeMetrics().AppendEmpty().Metrics())
	return pmetricotlp.NewExportRequestFromMetrics(md)
}

// gauge adds a gauge name with a point of value v at ts for each attrs.
func gauge(ms pmetric.MetricSlice, name string, ts time.Time, v float64, attrs ...map[string]string) {
	m := ms.AppendEmpty()
	m.SetName(name)
	g := m.SetEmptyGauge()
	if len(attrs) == 0 {
		attrs = []map[string]string{nil}
	}
	for _, a := range attrs {
		p := g.DataPoints().AppendEmpty()
		p.SetTimestamp(pcommon.NewTimestampFromTime(ts))
		p.SetDoubleValue(v)
		for k, v := range a {
			p.Attributes().PutStr(k, v)
		}
	}
}

func protoBody(req pmetricotlp.ExportRequest) []byte {
	b, err := req.MarshalProto()
	if err != nil {
		panic(err)
	}
	return b
}

func gzipBody(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

const (
	ctOTLP     = "application/x-protobuf"
	ctOTLPJSON = "application/json"
)

// postOTLP sends body to /v1/metrics with the key (X-API-Key), content
// type and encoding given, and returns the response with its body read.
func (e *env) postOTLP(key, contentType, encoding string, body []byte) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/metrics", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	req.Header.Set("Content-Type", contentType)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// statusMessage reads the message of the google.rpc.Status an OTLP error
// answer carries, in the answer's content type.
func statusMessage(t *testing.T, resp *http.Response, body []byte) string {
	t.Helper()
	if resp.Header.Get("Content-Type") == ctOTLPJSON {
		var s struct{ Message string }
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatalf("error answer %q is not a JSON Status: %v", body, err)
		}
		return s.Message
	}
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			t.Fatalf("error answer %q is not a protobuf Status", body)
		}
		body = body[n:]
		if num == 2 && typ == protowire.BytesType {
			s, n := protowire.ConsumeString(body)
			if n < 0 {
				t.Fatalf("bad Status.message")
			}
			return s
		}
		n = protowire.ConsumeFieldValue(num, typ, body)
		if n < 0 {
			t.Fatalf("error answer is not a protobuf Status")
		}
		body = body[n:]
	}
	return ""
}

func TestOTLPJSON(t *testing.T) {
	e := newEnv(t, Tenant{}, nil)
	req := otlpRequest(func(ms pmetric.MetricSlice) { gauge(ms, "up", time.UnixMilli(1000), 1) }, "env", "prod")
	body, err := req.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	resp, out := e.postOTLP(keyB, ctOTLPJSON, "", body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ctOTLPJSON {
		t.Fatalf("answer %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), out)
	}
	er := pmetricotlp.NewExportResponse()
	if err := er.UnmarshalJSON(out); err != nil {
		t.Fatalf("answer %q is not an ExportMetricsServiceResponse: %v", out, err)
	}
	if ps := er.PartialSuccess(); ps.RejectedDataPoints() != 0 || ps.ErrorMessage() != "" {
		t.Errorf("partial_success %d %q on a clean request", ps.RejectedDataPoints(), ps.ErrorMessage())
	}
	want := []string{
		`{__name__="target_info", env="prod", job="svc", tenant="team-b"} 1000 1`,
		`{__name__="up", job="svc", tenant="team-b"} 1000 1`,
	}
	if got := e.contents().samples; !slices.Equal(slices.Sorted(slices.Values(got)), want) {
		t.Errorf("WAL samples %q, want %q", got, want)
	}
}

// TestOTLPWarnings: what the translator drops with a warning (a metric
// without points) is named in partial_success, and the rest is written.
func TestOTLPWarnings(t *testing.T) {
	e := newEnv(t, Tenant{}, nil)
	req := otlpRequest(func(ms pmetric.MetricSlice) {
		gauge(ms, "up", time.UnixMilli(1000), 1)
		m := ms.AppendEmpty()
		m.SetName("hollow")
		m.SetEmptyGauge()
	})
	resp, out := e.postOTLP(keyA, ctOTLP, "", protoBody(req))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ctOTLP {
		t.Fatalf("answer %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), out)
	}
	er := pmetricotlp.NewExportResponse()
	if err := er.UnmarshalProto(out); err != nil {
		t.Fatal(err)
	}
	if ps := er.PartialSuccess(); ps.RejectedDataPoints() != 0 || !strings.Contains(ps.ErrorMessage(), "hollow") {
		t.Errorf("partial_success %d %q, want 0 and the dropped metric named", ps.RejectedDataPoints(), ps.ErrorMessage())
	}
	if v := testutil.ToFloat64(e.g.metrics.otlpWarnings.WithLabelValues("team-a")); v != 1 {
		t.Errorf("warnings counted %v, want 1", v)
	}
	if got := e.contents().samples; len(got) != 1 {
		t.Errorf("WAL samples %q, want up", got)
	}
}

func TestOTLPRefused(t *testing.T) {
	now := time.Now()
	good := protoBody(otlpRequest(func(ms pmetric.MetricSlice) { gauge(ms, "up", now, 1) }))
	two := protoBody(otlpRequest(func(ms pmetric.MetricSlice) {
		gauge(ms, "a", now, 1)
		gauge(ms, "b", now, 1)
	}))
	three := protoBody(otlpRequest(func(ms pmetric.MetricSlice) {
		gauge(ms, "a", now, 1)
		gauge(ms, "b", now, 1)
		gauge(ms, "c", now, 1)
	}))
	delta := protoBody(otlpRequest(func(ms pmetric.MetricSlice) {
		gauge(ms, "up", now, 1)
		m := ms.AppendEmpty()
		m.SetName("hits")
		s := m.SetEmptySum()
		s.SetIsMonotonic(true)
		s.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
		p := s.DataPoints().AppendEmpty()
		p.SetTimestamp(pcommon.NewTimestampFromTime(now))
		p.SetIntValue(1)
	}))
	manyAttrs := map[string]string{}
	for i := range maxLabels - 2 { // with the name, job and tenant: 71
		manyAttrs[fmt.Sprintf("a%02d", i)] = "v"
	}
	// target_info every 2.5 min between 1970 and now: millions of samples
	// from a request of a hundred bytes.
	spread := protoBody(otlpRequest(func(ms pmetric.MetricSlice) {
		gauge(ms, "old", time.Unix(0, 1), 1)
		gauge(ms, "new", now, 1)
	}, "env", "prod"))
	for _, c := range []struct {
		name       string
		key        string
		ct, enc    string
		body       []byte
		status     int
		reason     string
		msg        string
		retryAfter bool
		full       bool
		twice      bool  // send it once first (rate limit)
		maxBody    int64 // MaxRequestBytes; zero: 1 KiB
	}{
		{name: "no key", body: good, status: 401, reason: reasonUnauthorized, msg: "no API key"},
		{name: "unknown key", key: "guess", body: good, status: 403, reason: reasonForbidden, msg: "API key not accepted"},
		{name: "content type", key: keyA, ct: "text/plain", body: good, status: 415, reason: reasonUnsupported, msg: "application/json"},
		{name: "encoding", key: keyA, enc: "zstd", body: good, status: 415, reason: reasonUnsupported, msg: `"zstd" is not supported: send gzip or none`},
		{name: "not protobuf", key: keyA, body: []byte{0xff, 0xff, 0xff}, status: 400, reason: reasonMalformed, msg: "decode ExportMetricsServiceRequest"},
		{name: "not json", key: keyA, ct: ctOTLPJSON, body: []byte(`{"resourceMetrics": 7`), status: 400, reason: reasonMalformed, msg: "decode ExportMetricsServiceRequest"},
		{name: "not gzip", key: keyA, enc: "gzip", body: good, status: 400, reason: reasonMalformed, msg: "not gzip"},
		{name: "delta", key: keyA, body: delta, status: 400, reason: reasonUntranslatable, msg: `invalid temporality and type combination for metric "hits"`},
		{name: "labels", key: keyA, body: protoBody(otlpRequest(func(ms pmetric.MetricSlice) { gauge(ms, "m", now, 1, manyAttrs) })), status: 400, reason: reasonTooManyLabels, msg: "71 labels, over the limit of 70"},
		{name: "body size", key: keyA, body: make([]byte, 2<<10), status: 413, reason: reasonBodyTooLarge, msg: "max_request_bytes (1024 bytes)"},
		{name: "route label", key: keyA, body: protoBody(otlpRequest(func(ms pmetric.MetricSlice) { gauge(ms, "m", now, 1, map[string]string{wal.RouteLabel: "x"}) })), status: 400, reason: reasonInvalidLabels, msg: wal.RouteLabel + ` of series "m" is reserved`},
		{name: "gzip bomb", key: keyA, enc: "gzip", body: gzipBody(make([]byte, 64<<20)), maxBody: 1 << 20, status: 413, reason: reasonDecodedTooBig, msg: "decompressed body is over the limit of 33554432 bytes"},
		{name: "target_info spread", key: keyA, body: spread, status: 413, reason: reasonTooManySamples, msg: "more than 16"},
		{name: "series per request", key: keyB, body: three, status: 413, reason: reasonTooManySeries, msg: "more than max_series_per_request 2"},
		{name: "rate", key: keyB, body: two, twice: true, status: 429, reason: reasonRateLimited, msg: "over the tenant's limit", retryAfter: true},
		{name: "wal full", key: keyA, body: good, full: true, status: 429, reason: reasonWALFull, msg: "the WAL is full", retryAfter: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, Tenant{SamplesPerSecond: 1, Burst: 3, MaxSeriesPerRequest: 2}, func(o *Options) { o.MaxRequestBytes = cmp.Or(c.maxBody, 1<<10) })
			e.full = c.full
			if c.ct == "" {
				c.ct = ctOTLP
			}
			if c.twice {
				if resp, out := e.postOTLP(c.key, c.ct, c.enc, c.body); resp.StatusCode != 200 {
					t.Fatalf("first request: %d %q", resp.StatusCode, out)
				}
			}
			resp, out := e.postOTLP(c.key, c.ct, c.enc, c.body)
			wantCT := ctOTLP
			if c.ct == ctOTLPJSON {
				wantCT = ctOTLPJSON
			}
			if ct := resp.Header.Get("Content-Type"); ct != wantCT {
				t.Errorf("answer's Content-Type %q, want %q", ct, wantCT)
			}
			if msg := statusMessage(t, resp, out); resp.StatusCode != c.status || !strings.Contains(msg, c.msg) {
				t.Errorf("answer %d %q, want %d with %q", resp.StatusCode, msg, c.status, c.msg)
			}
			if got := resp.Header.Get("Retry-After"); (got != "") != c.retryAfter {
				t.Errorf("Retry-After %q", got)
			}
			tenant := map[string]string{keyA: "team-a", keyB: "team-b"}[c.key]
			if v := testutil.ToFloat64(e.g.metrics.rejected.WithLabelValues(tenant, c.reason)); v != 1 {
				t.Errorf("rejected{tenant=%q,reason=%q} = %v, want 1", tenant, c.reason, v)
			}
			want := 0
			if c.twice {
				want = 2 // the first request's
			}
			if got := e.contents(); len(got.samples) != want {
				t.Errorf("written despite the refusal: samples %q", got.samples)
			}
		})
	}
}

func TestOTLPWALErrorIs503(t *testing.T) {
	e := newEnv(t, Tenant{}, nil)
	if err := e.wal.Close(); err != nil {
		t.Fatal(err)
	}
	resp, out := e.postOTLP(keyA, ctOTLP, "", protoBody(otlpRequest(func(ms pmetric.MetricSlice) { gauge(ms, "up", time.Now(), 1) })))
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(statusMessage(t, resp, out), "nothing acknowledged") {
		t.Fatalf("answer %d %q, want 503", resp.StatusCode, out)
	}
}
