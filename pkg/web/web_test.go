package web

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.uber.org/goleak"

	"github.com/rwagent/rwagent/pkg/remotewrite"
	"github.com/rwagent/rwagent/pkg/scrape"
	"github.com/rwagent/rwagent/pkg/wal"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rig is a real pipeline: a scrape manager scraping an exporter into a
// WAL, and a queue sending it to a receiver whose URL has a password.
type rig struct {
	ui       *UI
	srv      *httptest.Server
	exporter *httptest.Server
	receiver *httptest.Server
}

const secretPassword = "s3cr3t-rw-password"

func newRig(t *testing.T, instances ...string) *rig {
	t.Helper()
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "demo_temperature_celsius", Help: "Temperature."}, []string{"room"})
	for _, r := range []string{"a", "b", "c"} {
		g.WithLabelValues(r).Set(20)
	}
	reg.MustRegister(g)
	r := &rig{
		exporter: httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})),
		receiver: httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusNoContent)
		})),
	}
	t.Cleanup(r.exporter.Close)
	t.Cleanup(r.receiver.Close)
	r.ui = New(Options{Config: "global: {}\n", Flags: map[string]string{"web.listen-address": "127.0.0.1:0"}, Build: BuildInfo{Version: "9.9.9"}})
	if len(instances) == 0 {
		instances = []string{""}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2*len(instances))
	for _, inst := range instances {
		w, err := wal.Open(wal.Options{Dir: t.TempDir(), Fsync: wal.FsyncNever}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := promconfig.Load(`
scrape_configs:
  - job_name: demo
    scrape_interval: 100ms
    scrape_timeout: 100ms
    relabel_configs:
      - {source_labels: [skip], regex: "yes", action: drop}
`, nil)
		if err != nil {
			t.Fatal(err)
		}
		scfgs, err := cfg.GetScrapeConfigs()
		if err != nil {
			t.Fatal(err)
		}
		sm, err := scrape.NewManager(scrape.ManagerOptions{Storage: w})
		if err != nil {
			t.Fatal(err)
		}
		if err := sm.ApplyConfig(scfgs); err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(strings.Replace(r.receiver.URL, "http://", "http://user:"+secretPassword+"@", 1))
		rw := promconfig.DefaultRemoteWriteConfig
		rw.URL = &config_util.URL{URL: u}
		rw.Name = "primary"
		rw.QueueConfig.BatchSendDeadline = model.Duration(10 * time.Millisecond)
		var errs remotewrite.ErrorLog
		q, err := remotewrite.New(ctx, remotewrite.Options{Config: &rw, Log: remotewrite.WALLog(w), Logger: errs.Logger(slog.New(slog.DiscardHandler))})
		if err != nil {
			t.Fatal(err)
		}
		tsets := make(chan map[string][]*targetgroup.Group, 1)
		tsets <- map[string][]*targetgroup.Group{"demo": {{Source: "s", Targets: []model.LabelSet{
			{model.AddressLabel: model.LabelValue(strings.TrimPrefix(r.exporter.URL, "http://"))},
			{model.AddressLabel: "10.9.9.9:9100", "skip": "yes"},
		}}}}
		go func() { _ = sm.Run(ctx, tsets); done <- struct{}{} }()
		go func() { _ = q.Run(ctx); done <- struct{}{} }()
		reg := r.ui.Register(&Pipeline{Instance: inst, Scrape: sm, Endpoints: []Endpoint{{Queue: q, Errors: &errs}}, WAL: w})
		t.Cleanup(func() { reg.Remove(); _ = w.Close() })
	}
	t.Cleanup(func() {
		cancel()
		for range 2 * len(instances) {
			<-done
		}
	})
	r.srv = httptest.NewServer(r.ui.Handler())
	t.Cleanup(r.srv.Close)
	return r
}

func (r *rig) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(r.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (r *rig) waitScraped(t *testing.T) {
	t.Helper()
	waitFor(t, "a sample delivered and a target up with series", func() bool {
		_, body := r.get(t, "/api/v1/remote_write")
		if strings.Contains(body, `"health"`) || (strings.Contains(body, `"samplesDelivered":`) && !strings.Contains(body, `"samplesDelivered":0,`)) {
			_, tb := r.get(t, "/api/v1/targets")
			return strings.Contains(tb, `"health":"up"`) && !strings.Contains(tb, `"series":0`)
		}
		return false
	})
}

// waitDeadline bounds every waitFor in this package. The rule, the same in
// every package: long enough that a loaded 2-core CI machine never hits it
// while a test is merely slow, short enough that a hang fails inside the
// package's go test -timeout with the name of what it waited for.
const waitDeadline = 30 * time.Second

// waitFor polls cond every 10ms until it holds, and fails the test if it
// does not within waitDeadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitDeadline, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPage checks what a user sees: the target, the endpoint without its
// password, the WAL, the cost section with its price and source, and the
// time the page was computed.
func TestPage(t *testing.T) {
	r := newRig(t)
	r.waitScraped(t)
	code, body := r.get(t, "/")
	if code != 200 {
		t.Fatalf("/ = %d %s", code, body)
	}
	for _, want := range []string{
		strings.TrimPrefix(r.exporter.URL, "http://") + "/metrics", `class="up"`, "demo_temperature_celsius",
		"user:xxxxx@", "Computed at", `href="#cost"`, "$0.90 per 10 million samples", "aws.amazon.com/prometheus/pricing",
		"Fsync policy", "9.9.9", "relabeling",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(body, secretPassword) {
		t.Error("the page shows the remote_write password")
	}
	if code, _ := r.get(t, "/nope"); code != 404 {
		t.Errorf("/nope = %d, want 404", code)
	}
}

// TestAPITargets checks Prometheus' shape and the state filter.
func TestAPITargets(t *testing.T) {
	r := newRig(t)
	r.waitScraped(t)
	var resp struct {
		Status string
		Data   struct {
			ActiveTargets []struct {
				ScrapePool, ScrapeURL, Health string
				Labels                        map[string]string
				LastScrape                    time.Time
			}
			DroppedTargets []struct {
				DiscoveredLabels map[string]string
				Reason           string
			}
			DroppedTargetCounts map[string]int
		}
	}
	for _, c := range []struct {
		state           string
		active, dropped int
	}{{"", 1, 1}, {"any", 1, 1}, {"active", 1, 0}, {"dropped", 0, 1}} {
		_, body := r.get(t, "/api/v1/targets?state="+c.state)
		resp.Data.ActiveTargets, resp.Data.DroppedTargets = nil, nil
		if err := json.Unmarshal([]byte(body), &resp); err != nil {
			t.Fatalf("state=%s: %v: %s", c.state, err, body)
		}
		if resp.Status != "success" || len(resp.Data.ActiveTargets) != c.active || len(resp.Data.DroppedTargets) != c.dropped {
			t.Errorf("state=%s: %s", c.state, body)
		}
	}
	_, body := r.get(t, "/api/v1/targets")
	_ = json.Unmarshal([]byte(body), &resp)
	a := resp.Data.ActiveTargets[0]
	if a.ScrapePool != "demo" || a.Health != "up" || a.Labels["job"] != "demo" || a.LastScrape.IsZero() {
		t.Errorf("active target: %+v", a)
	}
	d := resp.Data.DroppedTargets[0]
	if d.DiscoveredLabels["skip"] != "yes" || d.Reason != "relabeling" || resp.Data.DroppedTargetCounts["demo"] != 1 {
		t.Errorf("dropped: %+v, counts %v", d, resp.Data.DroppedTargetCounts)
	}
	if code, _ := r.get(t, "/api/v1/targets?state=bogus"); code != 400 {
		t.Errorf("state=bogus: %d, want 400", code)
	}
}

// TestAPIStatus checks the other APIs answer in Prometheus' envelope with
// what was loaded, and the endpoint table hides the password.
func TestAPIStatus(t *testing.T) {
	r := newRig(t, "east", "west")
	r.waitScraped(t)
	for path, want := range map[string]string{
		"/api/v1/status/config":            `"yaml":"global: {}\n"`,
		"/api/v1/status/flags":             `"web.listen-address":"127.0.0.1:0"`,
		"/api/v1/status/buildinfo":         `"version":"9.9.9"`,
		"/api/v1/status/runtimeinfo":       `"reloadConfigSuccess":true`,
		"/api/v1/status/walreplay":         `"current":0`,
		"/api/v1/remote_write":             `"instanceName":"west","name":"primary","url":"http://user:xxxxx@`,
		"/api/v1/targets/metadata":         `"metric":"demo_temperature_celsius","type":"gauge","help":"Temperature."`,
		"/api/v1/targets/metadata?limit=0": `"data":[]`,
	} {
		code, body := r.get(t, path)
		if code != 200 || !strings.Contains(body, `"status":"success"`) || !strings.Contains(body, want) {
			t.Errorf("%s = %d %s, want %s", path, code, body, want)
		}
		if strings.Contains(body, secretPassword) {
			t.Errorf("%s shows the password", path)
		}
	}
	if code, body := r.get(t, "/api/v1/targets/metadata?match_target=%7Bjob%3D%22demo%22%7D"); code != 400 || !strings.Contains(body, "match_target") {
		t.Errorf("match_target: %d %s, want 400 naming it", code, body)
	}
	_, page := r.get(t, "/")
	if !strings.Contains(page, "Instance east") || !strings.Contains(page, "Instance west") {
		t.Error("the page does not group by instance")
	}
}

// TestReloaded: a failed reload shows in runtimeinfo and leaves the
// configuration shown; a successful one replaces it and the last
// configuration time.
func TestReloaded(t *testing.T) {
	start := time.Unix(1_000_000, 0).UTC()
	u := New(Options{Config: "global: {}\n", Start: start})
	get := func(path string) string {
		rec := httptest.NewRecorder()
		u.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Body.String()
	}
	u.Reloaded(false, "ignored: true\n", 0, start.Add(time.Minute))
	if rt := get("/api/v1/status/runtimeinfo"); !strings.Contains(rt, `"reloadConfigSuccess":false`) || !strings.Contains(rt, `"lastConfigTime":"1970-01-12T13:46:40Z"`) {
		t.Errorf("runtimeinfo after a failed reload: %s", rt)
	}
	if cfg := get("/api/v1/status/config"); !strings.Contains(cfg, `"yaml":"global: {}\n"`) {
		t.Errorf("config after a failed reload: %s", cfg)
	}
	if page := get("/"); !strings.Contains(page, "the last reload failed") {
		t.Error("the page does not say the last reload failed")
	}
	u.Reloaded(true, "scrape_configs: []\n", 25, start.Add(2*time.Minute))
	if rt := get("/api/v1/status/runtimeinfo"); !strings.Contains(rt, `"reloadConfigSuccess":true`) || !strings.Contains(rt, `"lastConfigTime":"1970-01-12T13:48:40Z"`) || !strings.Contains(rt, `"GOGC":"25"`) {
		t.Errorf("runtimeinfo after a reload: %s", rt)
	}
	if cfg := get("/api/v1/status/config"); !strings.Contains(cfg, `"yaml":"scrape_configs: []\n"`) {
		t.Errorf("config after a reload: %s", cfg)
	}
	if page := get("/"); strings.Contains(page, "the last reload failed") || !strings.Contains(page, "loaded 1970-01-12 13:48:40 UTC") {
		t.Error("the page does not show the reloaded configuration's time, or still says a reload failed")
	}
}

// TestRegistrationUpdate: a pipeline updated by a reload keeps its place
// on the page.
func TestRegistrationUpdate(t *testing.T) {
	u := New(Options{})
	one := u.Register(&Pipeline{Instance: "one"})
	u.Register(&Pipeline{Instance: "two"})
	one.Update(&Pipeline{Instance: "one-reloaded"})
	var got []string
	for _, p := range u.snapshot().Pipelines {
		got = append(got, p.Instance)
	}
	if !slices.Equal(got, []string{"one-reloaded", "two"}) {
		t.Errorf("pipelines shown %v, want [one-reloaded two]", got)
	}
	one.Remove()
	one.Update(&Pipeline{Instance: "gone"})
	if n := len(u.snapshot().Pipelines); n != 1 {
		t.Errorf("%d pipelines after one was removed and updated, want 1", n)
	}
}

// TestRateAndCost checks the delivered rate over the window watched and
// the monthly estimate: 100 samples/s for 30 days at $0.90 per 10M is
// $23.33.
func TestRateAndCost(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	u := New(Options{Start: now.Add(-time.Hour), Now: func() time.Time { return now }})
	if r, d := u.rate("k", 360_000, now); r != 100 || d != time.Hour {
		t.Errorf("first look: %v over %v, want 100/s since the start (1h)", r, d)
	}
	now = now.Add(20 * time.Second)
	if r, d := u.rate("k", 360_000+20*50, now); r != 50 || d != 20*time.Second {
		t.Errorf("20s later: %v over %v, want 50/s over 20s", r, d)
	}
	if c := monthlyCost(100, DefaultAMPPricePer10M); c < 23.32 || c > 23.33 {
		t.Errorf("cost of 100/s = %v, want 23.328", c)
	}
}
