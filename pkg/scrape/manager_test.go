package scrape

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/scrape"

	"github.com/rwagent/rwagent/bench/loadgen"
	"github.com/rwagent/rwagent/pkg/offheap"
)

// exporter is a client_golang registry with one metric of each kind, served
// over HTTP like any instrumented program.
type exporter struct {
	reg     *prometheus.Registry
	gauge   prometheus.Gauge
	handler http.Handler
}

func newExporter(t testing.TB) *exporter {
	t.Helper()
	reg := prometheus.NewRegistry()
	counter := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "test_requests_total", Help: "Requests handled."}, []string{"code"})
	counter.WithLabelValues("200").(prometheus.ExemplarAdder).AddWithExemplar(3, prometheus.Labels{"trace_id": "abc"})
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_temperature_celsius", Help: "Temperature."})
	gauge.Set(21.5)
	hist := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "test_latency_seconds", Help: "Latency.", Buckets: []float64{0.1, 1}})
	hist.Observe(0.05)
	hist.(prometheus.ExemplarObserver).ObserveWithExemplar(0.5, prometheus.Labels{"trace_id": "def"})
	hist.Observe(2)
	summary := prometheus.NewSummary(prometheus.SummaryOpts{Name: "test_size_bytes", Help: "Sizes.", Objectives: map[float64]float64{0.5: 0.05, 0.9: 0.01}})
	for i := range 10 {
		summary.Observe(float64(i))
	}
	native := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "test_native_seconds", Help: "Native.", NativeHistogramBucketFactor: 1.1})
	for _, v := range []float64{0.01, 0.2, 0.2, 3} {
		native.Observe(v)
	}
	reg.MustRegister(counter, gauge, hist, summary, native)
	return &exporter{
		reg:     reg,
		gauge:   gauge,
		handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}),
	}
}

// harness runs a Manager against a recording storage.
type harness struct {
	t      testing.TB
	m      *Manager
	s      *memStorage
	reg    *prometheus.Registry
	tsets  chan map[string][]*targetgroup.Group
	cancel context.CancelFunc
	errc   chan error
}

func startManager(t testing.TB, cfgs []*config.ScrapeConfig) *harness {
	t.Helper()
	s := newMemStorage()
	h := startManagerWith(t, cfgs, s)
	h.s = s
	return h
}

// startManagerWith runs a Manager writing to storage; h.s is not set.
func startManagerWith(t testing.TB, cfgs []*config.ScrapeConfig, storage Storage) *harness {
	t.Helper()
	return startManagerOpts(t, cfgs, ManagerOptions{Storage: storage})
}

// startManagerOpts runs a Manager with opts and a registry of its own.
func startManagerOpts(t testing.TB, cfgs []*config.ScrapeConfig, opts ManagerOptions) *harness {
	t.Helper()
	h := &harness{t: t, reg: prometheus.NewRegistry(), tsets: make(chan map[string][]*targetgroup.Group), errc: make(chan error, 1)}
	opts.Registerer = h.reg
	m, err := NewManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.ApplyConfig(cfgs); err != nil {
		t.Fatal(err)
	}
	h.m = m
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.errc <- m.Run(ctx, h.tsets) }()
	t.Cleanup(h.stop)
	return h
}

// stop cancels Run and waits for it; safe to call twice.
func (h *harness) stop() {
	h.cancel()
	if h.errc == nil {
		return
	}
	if err := <-h.errc; err != nil {
		h.t.Errorf("Run: %v", err)
	}
	h.errc = nil
}

func (h *harness) setTargets(job string, addrs ...string) {
	g := &targetgroup.Group{Source: "test", Labels: model.LabelSet{"env": "test"}}
	for _, a := range addrs {
		g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(a)})
	}
	h.tsets <- map[string][]*targetgroup.Group{job: {g}}
}

func (h *harness) target(job string) *scrape.Target {
	h.t.Helper()
	var ts []*scrape.Target
	waitFor(h.t, "active target", func() bool {
		ts = h.m.ActiveTargets()[job]
		return len(ts) == 1
	})
	return ts[0]
}

func (h *harness) waitUp(instance string, want float64) {
	h.t.Helper()
	waitFor(h.t, fmt.Sprintf("up=%v for %s", want, instance), func() bool {
		v, ok := h.s.last("__name__", "up", "instance", instance)
		return ok && v == want
	})
}

func jobYAML(interval, extra string) string {
	return fmt.Sprintf(`
scrape_configs:
  - job_name: test
    scrape_interval: %s
    scrape_timeout: %s
%s
`, interval, interval, extra)
}

func hostOf(url string) string { return strings.TrimPrefix(url, "http://") }

func TestManager_EndToEnd(t *testing.T) {
	ex := newExporter(t)
	srv := newTestServer(t, ex.handler)
	host := hostOf(srv.URL)
	h := startManager(t, loadScrapeConfigs(t, jobYAML("100ms", `    scrape_protocols: [PrometheusProto]
    scrape_native_histograms: true`)))
	if h.m.Ready() {
		t.Error("Ready before the first target set")
	}
	h.setTargets("test", host)
	h.waitUp(host, 1)
	if !h.m.Ready() {
		t.Error("not Ready after the first target set")
	}
	s := h.s

	sel := []string{"job", "test", "instance", host, "env", "test"}
	checks := []struct {
		kv   []string
		want float64
	}{
		{[]string{"__name__", "test_requests_total", "code", "200"}, 3},
		{[]string{"__name__", "test_temperature_celsius"}, 21.5},
		{[]string{"__name__", "test_latency_seconds_bucket", "le", "0.1"}, 1},
		{[]string{"__name__", "test_latency_seconds_bucket", "le", "+Inf"}, 3},
		{[]string{"__name__", "test_latency_seconds_count"}, 3},
		{[]string{"__name__", "test_size_bytes_count"}, 10},
		{[]string{"__name__", "test_size_bytes", "quantile", "0.5"}, 4},
		{[]string{"__name__", "up"}, 1},
	}
	for _, c := range checks {
		if v, ok := s.last(append(c.kv, sel...)...); !ok || v != c.want {
			t.Errorf("%v = %v (found %v), want %v", c.kv, v, ok, c.want)
		}
	}
	for _, name := range []string{"scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling", "scrape_series_added"} {
		if _, ok := s.last(append([]string{"__name__", name}, sel...)...); !ok {
			t.Errorf("synthetic series %s missing", name)
		}
	}
	if v, _ := s.last("__name__", "scrape_samples_scraped"); v < 10 {
		t.Errorf("scrape_samples_scraped = %v, want all samples", v)
	}
	hs := s.histograms("__name__", "test_native_seconds")
	if len(hs) == 0 || hs[0].Count != 4 || hs[0].Schema != 3 {
		t.Errorf("native histogram samples = %v, want count 4 at schema 3", hs)
	}
	if ex := s.exemplars("__name__", "test_requests_total"); len(ex) != 1 || ex[0].Labels.Get("trace_id") != "abc" || ex[0].V != 3 {
		t.Errorf("counter exemplars = %v, want one with trace_id=abc", ex)
	}
	if ex := s.exemplars("__name__", "test_latency_seconds_bucket", "le", "1.0"); len(ex) != 1 || ex[0].Labels.Get("trace_id") != "def" {
		t.Errorf("bucket exemplars = %v, want one with trace_id=def", ex)
	}
	s.mu.Lock()
	for _, ref := range s.findLocked("__name__", "test_requests_total") {
		if m := s.meta[ref]; m.Help != "Requests handled." || m.Type != 1 {
			t.Errorf("counter metadata = %+v", m)
		}
	}
	if s.orphans != 0 {
		t.Errorf("%d samples without series records", s.orphans)
	}
	s.mu.Unlock()
	if n := testutil.ToFloat64(h.m.metrics.poolTargets.WithLabelValues("test")); n != 1 {
		t.Errorf("prometheus_target_scrape_pool_targets = %v, want 1", n)
	}
	// The mixin's Overview "Target Sync" panel reads its _sum.
	if n := testutil.CollectAndCount(h.m.metrics.syncLength, "prometheus_target_sync_length_seconds"); n != 1 {
		t.Errorf("prometheus_target_sync_length_seconds has %d series, want 1 (job test)", n)
	}

	// A metric goes away: its series gets a stale marker, the rest does not.
	ex.reg.Unregister(ex.gauge)
	waitFor(t, "stale marker for the removed gauge", func() bool { return s.staleAll("__name__", "test_temperature_celsius") })
	if s.staleAll("__name__", "test_requests_total") {
		t.Error("counter staled while exposed")
	}

	// The target goes down: up=0 and every scraped series is staled.
	srv.Close()
	h.waitUp(host, 0)
	for _, name := range []string{"test_requests_total", "test_latency_seconds_bucket", "test_size_bytes", "test_native_seconds"} {
		if !s.staleAll("__name__", name) {
			t.Errorf("%s not staled after the target went down", name)
		}
	}
	if err := h.target("test").LastError(); err == nil || !strings.Contains(err.Error(), "get metrics") {
		t.Errorf("target error = %v, want a connection error", err)
	}

	// The target leaves discovery: its synthetic series are staled and every
	// ref released.
	h.tsets <- map[string][]*targetgroup.Group{}
	waitFor(t, "stale up", func() bool { return s.staleAll("__name__", "up") })
	waitFor(t, "released refs", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.released) == len(s.series)
	})
	for _, name := range []string{"scrape_duration_seconds", "scrape_series_added"} {
		if !s.staleAll("__name__", name) {
			t.Errorf("%s not staled after the target left", name)
		}
	}
	h.stop()
	if n, err := testutil.GatherAndCount(h.reg); err != nil || n != 0 {
		t.Errorf("%d metrics still registered after Run returned (%v)", n, err)
	}
}

func TestManager_ShutdownWritesNoStaleMarkers(t *testing.T) {
	ex := newExporter(t)
	srv := newTestServer(t, ex.handler)
	h := startManager(t, loadScrapeConfigs(t, jobYAML("100ms", "")))
	h.setTargets("test", hostOf(srv.URL))
	h.waitUp(hostOf(srv.URL), 1)
	h.stop()
	if n := h.s.staleCount(); n != 0 {
		t.Errorf("%d stale markers written on shutdown, want 0", n)
	}
}

func TestManager_ScrapeProtocols(t *testing.T) {
	cases := []struct {
		protocol        config.ScrapeProtocol
		wantContentType string
		wantExemplars   bool
		wantNative      bool
	}{
		{config.PrometheusProto, "application/vnd.google.protobuf", true, true},
		{config.OpenMetricsText1_0_0, "application/openmetrics-text; version=1.0.0", true, false},
		{config.OpenMetricsText0_0_1, "application/openmetrics-text; version=0.0.1", true, false},
		// client_golang answers text 1.0.0 with 0.0.4 and an escaping parameter.
		{config.PrometheusText1_0_0, "text/plain; version=0.0.4; charset=utf-8; escaping=allow-utf-8", false, false},
		{config.PrometheusText0_0_4, "text/plain; version=0.0.4", false, false},
	}
	for _, tc := range cases {
		t.Run(string(tc.protocol), func(t *testing.T) {
			ex := newExporter(t)
			var (
				mu          sync.Mutex
				contentType string
				encoding    string
			)
			srv := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ex.handler.ServeHTTP(w, r)
				mu.Lock()
				contentType, encoding = w.Header().Get("Content-Type"), w.Header().Get("Content-Encoding")
				mu.Unlock()
			}))
			host := hostOf(srv.URL)
			h := startManager(t, loadScrapeConfigs(t, jobYAML("100ms", fmt.Sprintf(`    scrape_protocols: [%s]
    scrape_native_histograms: true`, tc.protocol))))
			h.setTargets("test", host)
			h.waitUp(host, 1)
			mu.Lock()
			ct, enc := contentType, encoding
			mu.Unlock()
			if !strings.HasPrefix(ct, tc.wantContentType) {
				t.Errorf("served Content-Type %q, want %q", ct, tc.wantContentType)
			}
			if enc != "gzip" {
				t.Errorf("served Content-Encoding %q, want gzip", enc)
			}
			if v, _ := h.s.last("__name__", "test_temperature_celsius"); v != 21.5 {
				t.Errorf("gauge = %v, want 21.5", v)
			}
			if got := len(h.s.exemplars("__name__", "test_requests_total")) > 0; got != tc.wantExemplars {
				t.Errorf("exemplars present = %v, want %v", got, tc.wantExemplars)
			}
			if got := len(h.s.histograms("__name__", "test_native_seconds")) > 0; got != tc.wantNative {
				t.Errorf("native histogram present = %v, want %v", got, tc.wantNative)
			}
		})
	}
}

func TestManager_ReloadKeepsSeries(t *testing.T) {
	ex := newExporter(t)
	srv := newTestServer(t, ex.handler)
	host := hostOf(srv.URL)
	h := startManager(t, loadScrapeConfigs(t, jobYAML("100ms", "")))
	h.setTargets("test", host)
	h.waitUp(host, 1)
	refs := h.s.find("__name__", "test_temperature_celsius")

	// A new interval restarts the loop; the series keep their refs.
	if err := h.m.ApplyConfig(loadScrapeConfigs(t, jobYAML("150ms", ""))); err != nil {
		t.Fatal(err)
	}
	before := len(h.s.floats(t, "__name__", "test_temperature_celsius"))
	waitFor(t, "scrapes after the reload", func() bool {
		return len(h.s.floats(t, "__name__", "test_temperature_celsius")) >= before+2
	})
	if got := h.s.find("__name__", "test_temperature_celsius"); len(got) != 1 || got[0] != refs[0] {
		t.Errorf("refs after reload = %v, want %v", got, refs)
	}
	if n := h.s.staleCount(); n != 0 {
		t.Errorf("%d stale markers after a reload that kept every series", n)
	}

	// Metric relabelling changes: dropped series are staled, kept ones keep refs.
	if err := h.m.ApplyConfig(loadScrapeConfigs(t, jobYAML("150ms", `    metric_relabel_configs:
      - source_labels: [__name__]
        regex: test_size_bytes.*
        action: drop`))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stale markers for relabelled-away series", func() bool { return h.s.staleAll("__name__", "test_size_bytes_count") })
	if got := h.s.find("__name__", "test_temperature_celsius"); len(got) != 1 || got[0] != refs[0] {
		t.Errorf("refs after relabel change = %v, want %v", got, refs)
	}

	// The job goes: everything is staled.
	if err := h.m.ApplyConfig(nil); err != nil {
		t.Fatal(err)
	}
	if !h.s.staleAll("__name__", "up") || !h.s.staleAll("__name__", "test_temperature_celsius") {
		t.Error("series of a removed job not staled")
	}
	if n := len(h.m.ActiveTargets()["test"]); n != 0 {
		t.Errorf("%d active targets after the job was removed", n)
	}
}

// TestManager_ApplyConfigRenewing: an unchanged job keeps its config (and
// so its client and loops) unless renew names it, as when its sigv4 block
// changed; a renewed job keeps its series' refs, without stale markers.
func TestManager_ApplyConfigRenewing(t *testing.T) {
	ex := newExporter(t)
	srv := newTestServer(t, ex.handler)
	host := hostOf(srv.URL)
	h := startManager(t, loadScrapeConfigs(t, jobYAML("100ms", "")))
	h.setTargets("test", host)
	h.waitUp(host, 1)
	refs := h.s.find("__name__", "test_temperature_celsius")
	jobConfigOf := func() *jobConfig {
		h.m.mu.Lock()
		defer h.m.mu.Unlock()
		return h.m.configs["test"]
	}
	before := jobConfigOf()
	if err := h.m.ApplyConfig(loadScrapeConfigs(t, jobYAML("100ms", ""))); err != nil {
		t.Fatal(err)
	}
	if jobConfigOf() != before {
		t.Fatal("an unchanged job was rebuilt by ApplyConfig")
	}
	if err := h.m.ApplyConfigRenewing(loadScrapeConfigs(t, jobYAML("100ms", "")), func(job string) bool { return job == "test" }); err != nil {
		t.Fatal(err)
	}
	if jobConfigOf() == before {
		t.Fatal("a job renew named was kept")
	}
	n := len(h.s.floats(t, "__name__", "test_temperature_celsius"))
	waitFor(t, "scrapes after the renewal", func() bool {
		return len(h.s.floats(t, "__name__", "test_temperature_celsius")) >= n+2
	})
	if got := h.s.find("__name__", "test_temperature_celsius"); len(got) != 1 || got[0] != refs[0] {
		t.Errorf("refs after renewal = %v, want %v", got, refs)
	}
	if n := h.s.staleCount(); n != 0 {
		t.Errorf("%d stale markers after renewing a job", n)
	}
}

func TestManager_LogFailure(t *testing.T) {
	ex := newExporter(t)
	srv := newTestServer(t, ex.handler)
	host := hostOf(srv.URL)
	h := startManager(t, loadScrapeConfigs(t, jobYAML("100ms", "")))
	h.s.setFail(errTestLog)
	h.setTargets("test", host)
	dropped := h.m.metrics.dropped.WithLabelValues(reasonWALError)
	waitFor(t, "dropped samples counted", func() bool { return testutil.ToFloat64(dropped) > 0 })
	h.s.setFail(nil)
	h.waitUp(host, 1)
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if h.s.orphans != 0 {
		t.Errorf("%d samples logged for series whose record was lost", h.s.orphans)
	}
}

func TestManager_ApplyConfigErrors(t *testing.T) {
	valid := loadScrapeConfigs(t, jobYAML("100ms", ""))[0]
	cases := []struct {
		name    string
		mutate  func(c *config.ScrapeConfig)
		wantErr string
	}{
		{"timeout above interval", func(c *config.ScrapeConfig) { c.ScrapeTimeout = c.ScrapeInterval * 2 }, "scrape_timeout"},
		{"no interval", func(c *config.ScrapeConfig) { c.ScrapeInterval = 0 }, "scrape_interval"},
		{"no protocols", func(c *config.ScrapeConfig) { c.ScrapeProtocols = nil }, "scrape_protocols"},
		{"unknown protocol", func(c *config.ScrapeConfig) { c.ScrapeProtocols = []config.ScrapeProtocol{"Nope"} }, "scrape_protocols"},
		{"no validation scheme", func(c *config.ScrapeConfig) { c.MetricNameValidationScheme = model.UnsetValidation }, "metric_name_validation_scheme"},
		{"bad escaping", func(c *config.ScrapeConfig) { c.MetricNameEscapingScheme = "nope" }, "metric_name_escaping_scheme"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewManager(ManagerOptions{Storage: newMemStorage()})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			c := *valid
			tc.mutate(&c)
			err = m.ApplyConfig([]*config.ScrapeConfig{&c})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), `"test"`) {
				t.Errorf("error = %v, want one naming %s and the job", err, tc.wantErr)
			}
		})
	}
	m, err := NewManager(ManagerOptions{Storage: newMemStorage()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.ApplyConfig([]*config.ScrapeConfig{valid, valid}); err == nil {
		t.Error("duplicate job_name accepted")
	}
	if _, err := NewManager(ManagerOptions{}); err == nil {
		t.Error("NewManager without Storage succeeded")
	}
}

// TestUnregisterMetrics builds a Manager twice on one registry, closing it
// each time: the second must register, and nothing is left registered.
func TestUnregisterMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		m, err := NewManager(ManagerOptions{Registerer: reg, Storage: newMemStorage()})
		if err != nil {
			t.Fatal(err)
		}
		m.Close()
		m.Close()
	}
	if mfs, err := reg.Gather(); err != nil || len(mfs) != 0 {
		t.Errorf("after Close: %d metric families registered (err %v), want 0", len(mfs), err)
	}
}

// TestNewManager_RegisterFails checks that a Manager whose metrics cannot be
// registered is refused by the metric's name, leaving nothing registered.
func TestNewManager_RegisterFails(t *testing.T) {
	reg := prometheus.NewRegistry()
	blocker := prometheus.NewGauge(prometheus.GaugeOpts{Name: "rwagent_shard_info", Help: "another"})
	reg.MustRegister(blocker)
	_, err := NewManager(ManagerOptions{Registerer: reg, Storage: newMemStorage()})
	if err == nil || !strings.Contains(err.Error(), "rwagent_shard_info") {
		t.Fatalf("NewManager = %v, want an error naming rwagent_shard_info", err)
	}
	reg.Unregister(blocker)
	if mfs, err := reg.Gather(); err != nil || len(mfs) != 0 {
		t.Errorf("after a refused NewManager: %d metric families registered (err %v), want 0", len(mfs), err)
	}
}

func TestManager_TargetLimit(t *testing.T) {
	ex := newExporter(t)
	a, b := newTestServer(t, ex.handler), newTestServer(t, ex.handler)
	h := startManager(t, loadScrapeConfigs(t, jobYAML("100ms", "    target_limit: 1")))
	h.setTargets("test", hostOf(a.URL), hostOf(b.URL))
	h.waitUp(hostOf(a.URL), 0)
	h.waitUp(hostOf(b.URL), 0)
	for _, tgt := range h.m.ActiveTargets()["test"] {
		if err := tgt.LastError(); err == nil || !strings.Contains(err.Error(), "target_limit") {
			t.Errorf("target error = %v, want target_limit", err)
		}
	}
}

// TestLogWALError checks that Storage.Log failures are logged once per
// walErrorLogInterval across the Manager's loops, at error level.
func TestLogWALError(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	m := newScrapeMetrics(nil)
	for i := range 5 {
		m.logWALError(logger, fmt.Sprintf("http://t%d/metrics", i), 10, errors.New("disk full"))
	}
	if n := strings.Count(buf.String(), "Write scraped samples to the WAL"); n != 1 {
		t.Errorf("%d lines logged within the interval, want 1:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "level=ERROR") || !strings.Contains(buf.String(), "samples_dropped=10") {
		t.Errorf("line lacks the level or the count of dropped samples: %s", buf.String())
	}
}

// TestManager_ClosesCaches: every series cache is closed once its loop is
// done with it, however the loop ends (its target goes, a reload hands the
// cache on, its job goes, shutdown): the bytes mapped off the heap for the
// caches of targets of 3,000 series return to where they were.
func TestManager_ClosesCaches(t *testing.T) {
	body, _ := loadgen.NewTarget(3000, 1).Scrape()
	body = append([]byte(nil), body...)
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write(body)
	})
	hostA, hostB := hostOf(newTestServer(t, handler).URL), hostOf(newTestServer(t, handler).URL)
	base := offheap.Mapped()
	checkMapped := func(what string) {
		t.Helper()
		if runtime.GOOS == "linux" && offheap.Mapped() == base {
			t.Fatalf("%s: nothing mapped for targets of 3,000 series", what)
		}
	}
	checkFreed := func(what string) {
		t.Helper()
		if got := offheap.Mapped(); got != base {
			t.Errorf("%s: %d bytes mapped, want %d", what, got, base)
		}
	}

	h := startManager(t, loadScrapeConfigs(t, jobYAML("100ms", "")))
	h.setTargets("test", hostA, hostB)
	h.waitUp(hostA, 1)
	h.waitUp(hostB, 1)
	checkMapped("two targets")
	// A reload that restarts the loops: the caches are handed on.
	if err := h.m.ApplyConfig(loadScrapeConfigs(t, jobYAML("150ms", ""))); err != nil {
		t.Fatal(err)
	}
	before := len(h.s.floats(t, "__name__", "up", "instance", hostB))
	waitFor(t, "scrapes after the reload", func() bool {
		return len(h.s.floats(t, "__name__", "up", "instance", hostB)) >= before+1
	})
	h.setTargets("test", hostA) // B's loop ends
	h.setTargets("test", hostA, hostB)
	h.waitUp(hostB, 1)
	checkMapped("reloaded")
	if err := h.m.ApplyConfig(nil); err != nil { // the job goes
		t.Fatal(err)
	}
	checkFreed("job removed")

	h = startManager(t, loadScrapeConfigs(t, jobYAML("100ms", "")))
	h.setTargets("test", hostA, hostB)
	h.waitUp(hostA, 1)
	h.waitUp(hostB, 1)
	checkMapped("started again")
	h.stop()
	checkFreed("shut down")
}
