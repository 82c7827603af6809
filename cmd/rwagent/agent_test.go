package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/promql"
	"go.uber.org/goleak"

	"github.com/rwagent/rwagent/pkg/receive"
	"github.com/rwagent/rwagent/pkg/sigv4"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The discovery manager's updater and the SD refreshers stop
		// asynchronously after their context ends.
		goleak.IgnoreTopFunction("github.com/prometheus/prometheus/discovery.(*Manager).sender"),
	)
}

const (
	e2eAccessKey = "AKIDRWAGENTE2E000001"
	e2eSecret    = "e2e-secret-must-never-be-logged-0123456789"
	e2eToken     = "e2e-session-token-never-logged"
)

// app serves real client_golang exposition: every metric kind Prometheus
// users have, a native histogram and an exemplar.
func appRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "app_requests_total", Help: "Requests."}, []string{"code"})
	c.WithLabelValues("200").(prometheus.ExemplarAdder).AddWithExemplar(42, prometheus.Labels{"trace_id": "abc123"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "app_temperature_celsius", Help: "Temperature."})
	g.Set(21.5)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "app_latency_seconds", Help: "Latency.", Buckets: []float64{0.1, 0.5, 1}})
	h.Observe(0.2)
	h.Observe(0.7)
	s := prometheus.NewSummary(prometheus.SummaryOpts{Name: "app_size_bytes", Help: "Size.", Objectives: map[float64]float64{0.5: 0.05}})
	s.Observe(100)
	n := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "app_native_seconds", Help: "Native.", NativeHistogramBucketFactor: 1.1})
	n.Observe(0.3)
	n.Observe(0.4)
	n.Observe(3)
	reg.MustRegister(c, g, h, s, n)
	return reg
}

func serve(t *testing.T, reg *prometheus.Registry) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// logBuffer collects the agent's log lines for the secrets check.
type logBuffer struct {
	mu sync.Mutex
	sb strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.String()
}

// agentUnderTest is a running agent and its receiver.
type agentUnderTest struct {
	recv    *receive.Server
	recvURL string // the receiver's base URL, without the workspace path
	web     string
	cancel  context.CancelFunc
	done    chan error
	logs    *logBuffer
	stopped bool
}

func (a *agentUnderTest) stop(t *testing.T) {
	t.Helper()
	if a.stopped {
		return
	}
	a.stopped = true
	a.cancel()
	select {
	case err := <-a.done:
		if err != nil {
			t.Errorf("agent stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop within 30s")
	}
}

// query evaluates expr at the receiver's now and returns the vector.
func (a *agentUnderTest) query(t *testing.T, expr string) promql.Vector {
	t.Helper()
	v, err := a.recv.Query(context.Background(), expr, time.Now())
	if err != nil {
		t.Fatalf("query %s: %v", expr, err)
	}
	return v
}

// scalarIs is a condition for waitFor: expr yields exactly one sample
// equal to want. It logs what expr yields each time that changes, so a
// timeout shows the values seen on the way.
func (a *agentUnderTest) scalarIs(t *testing.T, expr string, want float64) func() bool {
	var last string
	return func() bool {
		v := a.query(t, expr)
		seen := fmt.Sprintf("%d results", len(v))
		if len(v) == 1 {
			seen = fmt.Sprint(v[0].F)
		}
		if seen != last {
			t.Logf("%s = %s", expr, seen)
			last = seen
		}
		return len(v) == 1 && v[0].F == want
	}
}

func startAgent(t *testing.T, cfgText string) *agentUnderTest {
	t.Helper()
	verifier := &sigv4.Verifier{
		Region: "us-east-1", Service: "aps",
		Credentials: []sigv4.Credential{{AccessKeyID: e2eAccessKey, SecretAccessKey: e2eSecret, SessionToken: e2eToken}},
	}
	return startAgentWith(t, cfgText, receive.Options{Verify: verifier.Verify})
}

// serveReceiver starts an ampemu receiver with ro, served on 127.0.0.1
// until the test ends, and returns it with its base URL.
func serveReceiver(t *testing.T, ro receive.Options) (*receive.Server, string) {
	t.Helper()
	recv, err := receive.New(ro)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { recv.Close() })
	rs := httptest.NewUnstartedServer(recv.Handler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rs.Listener = ln
	rs.Start()
	t.Cleanup(rs.Close)
	return recv, rs.URL
}

// startAgentWith starts a receiver with ro's Verify and Now (its Dir and
// WorkspaceID are set here) and an agent running cfgText, in which RECEIVER
// stands for the receiver's remote-write URL.
func startAgentWith(t *testing.T, cfgText string, ro receive.Options) *agentUnderTest {
	t.Helper()
	dir := t.TempDir()
	ro.Dir, ro.WorkspaceID = filepath.Join(dir, "amp"), "ws-e2e"
	recv, base := serveReceiver(t, ro)

	cfgText = strings.ReplaceAll(cfgText, "RECEIVER", base+"/workspaces/ws-e2e/api/v1/remote_write")
	cfgFile := filepath.Join(dir, "agent.yml")
	if err := os.WriteFile(cfgFile, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	return launch(t, &agentUnderTest{recv: recv, recvURL: base}, agentOptions{
		ConfigFile:    cfgFile,
		StoragePath:   filepath.Join(dir, "agent"),
		FlushDeadline: 5 * time.Second,
	})
}

// launch runs the agent in-process with o, on o.ListenAddr (default
// 127.0.0.1:0) and logging at
// debug level into a.logs, until a.stop or the end of the test.
func launch(t *testing.T, a *agentUnderTest, o agentOptions) *agentUnderTest {
	t.Helper()
	a.done = make(chan error, 1)
	a.logs = &logBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	listening := make(chan net.Addr, 1)
	if o.ListenAddr == "" {
		o.ListenAddr = "127.0.0.1:0"
	}
	o.Logger = slog.New(slog.NewTextHandler(a.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o.Listening = func(addr net.Addr) { listening <- addr }
	go func() { a.done <- runAgent(ctx, o) }()
	select {
	case addr := <-listening:
		a.web = "http://" + addr.String()
	case err := <-a.done:
		t.Fatalf("agent exited at start: %v", err)
	}
	t.Cleanup(func() { a.stop(t) })
	return a
}

// metric reads one series of the agent's own /metrics.
func (a *agentUnderTest) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	resp, err := http.Get(a.web + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		match := true
		for k, v := range labels {
			if !strings.Contains(line, k+`="`+v+`"`) {
				match = false
			}
		}
		if match {
			var f float64
			fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &f)
			return f
		}
	}
	return -1
}

func setAWSEnv(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", e2eAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", e2eSecret)
	t.Setenv("AWS_SESSION_TOKEN", e2eToken)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_REGION", "")
}

// TestEndToEnd: real client_golang exposition → rwagent (scrape, WAL,
// queues, SigV4 with env credentials incl. a session token) → ampemu's
// receiver (SigV4 check, Prometheus' remote-write handler, TSDB), asserted
// with PromQL.
func TestEndToEnd(t *testing.T) {
	setAWSEnv(t)
	app := serve(t, appRegistry(t))
	downReg := prometheus.NewRegistry()
	dg := prometheus.NewGauge(prometheus.GaugeOpts{Name: "short_lived_value", Help: "Goes away."})
	dg.Set(7)
	downReg.MustRegister(dg)
	down := serve(t, downReg)

	a := startAgent(t, strings.NewReplacer("APP", app.Listener.Addr().String(), "DOWN", down.Listener.Addr().String()).Replace(`
global:
  scrape_interval: 200ms
  scrape_timeout: 150ms
  external_labels:
    cluster: e2e
scrape_configs:
  - job_name: app
    scrape_native_histograms: true
    static_configs:
      - targets: [APP]
  - job_name: down
    static_configs:
      - targets: [DOWN]
remote_write:
  - url: RECEIVER
    name: amp
    send_exemplars: true
    send_native_histograms: true
    sigv4:
      region: us-east-1
    queue_config:
      batch_send_deadline: 100ms
      min_backoff: 10ms
      max_backoff: 100ms
  - url: RECEIVER
    name: wrongsecret
    sigv4:
      region: us-east-1
      access_key: `+e2eAccessKey+`
      secret_key: not-the-secret
    queue_config:
      batch_send_deadline: 100ms
      min_backoff: 10ms
      max_backoff: 100ms
`))
	appInst := app.Listener.Addr().String()
	sel := `{job="app", instance="` + appInst + `", cluster="e2e"}`
	waitFor(t, "up=1 for app", a.scalarIs(t, `up`+sel, 1))
	waitFor(t, "counter", a.scalarIs(t, `app_requests_total{code="200",job="app",cluster="e2e"}`, 42))
	waitFor(t, "gauge", a.scalarIs(t, `app_temperature_celsius`+sel, 21.5))
	waitFor(t, "classic histogram bucket", a.scalarIs(t, `app_latency_seconds_bucket{le="0.5",job="app"}`, 1))
	waitFor(t, "classic histogram count", a.scalarIs(t, `app_latency_seconds_count{job="app"}`, 2))
	waitFor(t, "summary quantile", a.scalarIs(t, `app_size_bytes{quantile="0.5",job="app"}`, 100))
	waitFor(t, "summary count", a.scalarIs(t, `app_size_bytes_count{job="app"}`, 1))
	waitFor(t, "native histogram", a.scalarIs(t, `histogram_count(app_native_seconds{job="app"})`, 3))
	waitFor(t, "native histogram sum", a.scalarIs(t, `histogram_sum(app_native_seconds{job="app"})`, 3.7))
	for _, name := range []string{"scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling", "scrape_series_added"} {
		waitFor(t, name, func() bool {
			v := a.query(t, name+sel)
			return len(v) == 1
		})
	}
	waitFor(t, "exemplar", func() bool {
		ex, err := a.recv.Exemplars(context.Background(), `app_requests_total{job="app"}`)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range ex {
			for _, e := range r.Exemplars {
				if e.Labels.Get("trace_id") == "abc123" && e.Value == 42 {
					return true
				}
			}
		}
		return false
	})

	// A target that stops: up=0, and its series end with a stale marker,
	// so PromQL stops returning them at once instead of for 5 minutes.
	waitFor(t, "down target up", a.scalarIs(t, `up{job="down"}`, 1))
	waitFor(t, "down target value", a.scalarIs(t, `short_lived_value{job="down",cluster="e2e"}`, 7))
	down.Close()
	waitFor(t, "down target up=0", a.scalarIs(t, `up{job="down"}`, 0))
	waitFor(t, "stale marker ends the series", func() bool {
		v := a.query(t, `short_lived_value{job="down"}`)
		return len(v) == 0
	})

	// The endpoint with the wrong secret: a 403 from a signed endpoint is
	// a configuration problem, not bad data, so the samples are held and
	// retried, never dropped; the good endpoint is unaffected.
	waitFor(t, "wrong secret retried", func() bool {
		r := a.metric(t, "prometheus_remote_storage_samples_retried_total", map[string]string{"remote_name": "wrongsecret"})
		return r > 0
	})
	if f := a.metric(t, "prometheus_remote_storage_samples_failed_total", map[string]string{"remote_name": "wrongsecret"}); f > 0 {
		t.Errorf("wrong secret dropped %v samples; a 403 from a signed endpoint must be retried", f)
	}
	if f := a.metric(t, "prometheus_remote_storage_samples_failed_total", map[string]string{"remote_name": "amp"}); f != 0 {
		t.Errorf("good endpoint failed %v samples", f)
	}
	if v := a.metric(t, "rwagent_offheap_mapped_bytes", nil); v < 0 {
		t.Error("rwagent_offheap_mapped_bytes is not exposed")
	}

	a.stop(t)
	logs := a.logs.String()
	for _, secret := range []string{e2eSecret, e2eToken, "not-the-secret"} {
		if strings.Contains(logs, secret) {
			t.Errorf("a secret appears in the agent's logs")
		}
	}
	if !strings.Contains(logs, "403") {
		t.Errorf("the 403 of the wrong-secret endpoint is not logged")
	}
}

// TestSignedScrape: a target behind SigV4 (an API Gateway, service
// execute-api) is scraped by the job with a sigv4 block, and refused to the
// job without one.
func TestSignedScrape(t *testing.T) {
	setAWSEnv(t)
	const key, secret = "AKIDSCRAPESIGNED0001", "scrape-secret-never-logged-0123456789"
	verifier := &sigv4.Verifier{Region: "eu-west-1", Service: "execute-api",
		Credentials: []sigv4.Credential{{AccessKeyID: key, SecretAccessKey: secret}}}
	exposition := promhttp.HandlerFor(appRegistry(t), promhttp.HandlerOpts{})
	var signed atomic.Int64
	target := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := verifier.Verify(r, nil); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		signed.Add(1)
		exposition.ServeHTTP(w, r)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target.Listener = ln
	target.Start()
	t.Cleanup(target.Close)

	a := startAgent(t, strings.NewReplacer("TARGET", ln.Addr().String()).Replace(`
global:
  scrape_interval: 200ms
  scrape_timeout: 150ms
scrape_configs:
  - job_name: signed
    static_configs:
      - targets: [TARGET]
    sigv4:
      region: eu-west-1
      access_key: `+key+`
      secret_key: `+secret+`
  - job_name: unsigned
    static_configs:
      - targets: [TARGET]
remote_write:
  - url: RECEIVER
    sigv4:
      region: us-east-1
    queue_config:
      batch_send_deadline: 100ms
`))
	waitFor(t, "signed job up", a.scalarIs(t, `up{job="signed"}`, 1))
	waitFor(t, "signed job's samples", a.scalarIs(t, `app_temperature_celsius{job="signed"}`, 21.5))
	waitFor(t, "unsigned job refused", a.scalarIs(t, `up{job="unsigned"}`, 0))
	if signed.Load() == 0 {
		t.Error("the target verified no signed scrape")
	}
	a.stop(t)
	if strings.Contains(a.logs.String(), secret) {
		t.Error("the scrape secret appears in the logs")
	}
}
