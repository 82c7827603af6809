package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"

	"github.com/rwagent/rwagent/pkg/sendpos"
)

// staleCount is the number of stale markers received for the series
// whose labels contain match.
func (s *sink) staleCount(match string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, ss := range s.series {
		if !strings.Contains(k, match) {
			continue
		}
		for _, x := range ss {
			if value.IsStaleNaN(x.Value) {
				n++
			}
		}
	}
	return n
}

// checkContiguous fails the test unless vs is a run of consecutive
// integers (each seq_total value once, in order), and returns its last.
func checkContiguous(t *testing.T, what string, vs []float64) float64 {
	t.Helper()
	if len(vs) == 0 {
		t.Fatalf("%s: nothing arrived", what)
	}
	for i := 1; i < len(vs); i++ {
		if vs[i] != vs[i-1]+1 {
			t.Fatalf("%s: value %v after %v: a sample was lost, repeated or reordered (got %v)", what, vs[i], vs[i-1], vs)
		}
	}
	return vs[len(vs)-1]
}

// postReload asks the agent to reload and returns the answer.
func postReload(t *testing.T, a *agentUnderTest) (int, string) {
	t.Helper()
	resp, err := http.Post(a.web+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// reloadConfig is seqConfig's scrape of target with the remote_write
// entries given (each a name and a URL; a third element, when given, is
// its batch_send_deadline), and extra appended.
func reloadConfig(target string, rws [][]string, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `
global:
  scrape_interval: 50ms
  scrape_timeout: 50ms
scrape_configs:
  - job_name: seq
    static_configs:
      - targets: [%s]
remote_write:
`, target)
	for _, rw := range rws {
		deadline := "20ms"
		if len(rw) > 2 {
			deadline = rw[2]
		}
		fmt.Fprintf(&b, `  - url: %s
    name: %s
    queue_config:
      batch_send_deadline: %s
      min_backoff: 10ms
      max_backoff: 50ms
`, rw[1], rw[0], deadline)
	}
	b.WriteString(`wal:
  segment_size: 65536
  truncate_frequency: 200ms
`)
	b.WriteString(extra)
	return b.String()
}

// TestReloadUnderLoad reloads a scraping, sending agent through each kind
// of change, via POST /-/reload, and checks with counting receivers that
// nothing logged is lost or repeated: an unchanged job keeps scraping
// without a stale marker, an unchanged endpoint keeps its queue, an added
// endpoint starts, a changed one hands over where it left off, a removed
// one flushes and releases its send position, and a refused or broken
// configuration changes nothing.
func TestReloadUnderLoad(t *testing.T) {
	sa, urlA := newSink(t)
	sb, urlB := newSink(t)
	target := newSeqTarget(t, 20)
	second := newSeqTarget(t, 0)
	state := t.TempDir()
	cfgFile := filepath.Join(t.TempDir(), "agent.yml")
	write := func(cfg string) {
		t.Helper()
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(reloadConfig(target.addr, [][]string{{"a", urlA}}, ""))
	a := launch(t, &agentUnderTest{}, agentOptions{
		ConfigFile:       cfgFile,
		StoragePath:      state,
		FlushDeadline:    5 * time.Second,
		PositionInterval: 100 * time.Millisecond,
	})
	waitFor(t, "first samples at a", func() bool { return len(sa.values("seq_total")) >= 5 })
	if v := a.metric(t, "prometheus_config_last_reload_successful", nil); v != 1 {
		t.Fatalf("prometheus_config_last_reload_successful at start = %v, want 1", v)
	}
	startedAt := a.metric(t, "prometheus_config_last_reload_success_timestamp_seconds", nil)

	// 1. Endpoint b added; the job and endpoint a unchanged.
	write(reloadConfig(target.addr, [][]string{{"a", urlA}, {"b", urlB}}, ""))
	if code, body := postReload(t, a); code != http.StatusOK {
		t.Fatalf("reload adding b: %d %s", code, body)
	}
	if ts := a.metric(t, "prometheus_config_last_reload_success_timestamp_seconds", nil); ts <= startedAt {
		t.Errorf("last reload success timestamp %v not after the start's %v", ts, startedAt)
	}
	n := target.served.Load()
	waitFor(t, "samples at b, and at a after the reload", func() bool {
		return len(sb.values("seq_total")) >= 5 && int64(len(sa.values("seq_total"))) >= n+5
	})

	// 2. Refused and broken configurations change nothing.
	write(strings.Replace(reloadConfig(target.addr, [][]string{{"a", urlA}, {"b", urlB}}, ""), "segment_size: 65536", "segment_size: 131072", 1))
	if code, body := postReload(t, a); code != http.StatusBadRequest || !strings.Contains(body, "wal:") {
		t.Errorf("reload changing wal.segment_size: %d %q, want 400 naming wal", code, body)
	}
	write("scrape_configs: [\n")
	if code, body := postReload(t, a); code != http.StatusBadRequest || !strings.Contains(body, "agent.yml:1:") {
		t.Errorf("reload of broken YAML: %d %q, want 400 with the parse error", code, body)
	}
	if v := a.metric(t, "prometheus_config_last_reload_successful", nil); v != 0 {
		t.Errorf("prometheus_config_last_reload_successful after a failed reload = %v, want 0", v)
	}
	n = target.served.Load()
	waitFor(t, "samples at a and b after the failed reloads", func() bool {
		return int64(len(sa.values("seq_total"))) >= n+5 && int64(len(sb.values("seq_total"))) >= n+5
	})

	// 3. Endpoint a removed, b changed, a second job added.
	cfg := reloadConfig(target.addr, [][]string{{"b", urlB, "30ms"}}, "")
	cfg = strings.Replace(cfg, "remote_write:\n", fmt.Sprintf("  - job_name: second\n    static_configs:\n      - targets: [%s]\nremote_write:\n", second.addr), 1)
	write(cfg)
	if code, body := postReload(t, a); code != http.StatusOK {
		t.Fatalf("reload removing a, changing b, adding a job: %d %s", code, body)
	}
	if v := a.metric(t, "prometheus_config_last_reload_successful", nil); v != 1 {
		t.Errorf("prometheus_config_last_reload_successful after a good reload = %v, want 1", v)
	}
	positions := sendpos.New(filepath.Join(state, "send_positions"))
	waitFor(t, "a's send position removed once it flushed", func() bool {
		keys, err := positions.Keys()
		return err == nil && !slices.Contains(keys, "a") && slices.Contains(keys, "b")
	})
	waitFor(t, "the second job's samples at b", func() bool { return len(sb.values(`job="second"`)) >= 3 })
	n = target.served.Load()
	waitFor(t, "samples at b after the change", func() bool {
		return lastValue(sb.values(`__name__="seq_total",instance="`+target.addr)) >= float64(n+5)
	})
	a.stop(t)

	// What each receiver got: a, every value up to its removal, once; b,
	// a contiguous run from where it joined to the stop, across its
	// change; no stale marker for the job kept through every reload.
	lastA := checkContiguous(t, "a", sa.values(`__name__="seq_total"`))
	if first := sa.values(`__name__="seq_total"`)[0]; first != 1 {
		t.Errorf("a's first seq_total is %v, want 1", first)
	}
	lastB := checkContiguous(t, "b", sb.values(`__name__="seq_total",instance="`+target.addr))
	if lastB < float64(target.served.Load()-2) {
		t.Errorf("b's last seq_total %v, the target served %d scrapes", lastB, target.served.Load())
	}
	if lastA >= lastB {
		t.Errorf("a got %v, b %v: a kept receiving after its removal", lastA, lastB)
	}
	if n := sa.staleCount(`__name__="seq_total"`) + sb.staleCount(`__name__="seq_total"`); n != 0 {
		t.Errorf("%d stale markers for seq_total: the unchanged job was restarted by a reload", n)
	}
	sa.checkOrder(t)
	sb.checkOrder(t)
	logs := a.logs.String()
	for _, want := range []string{"remote_write added by the reload", "remote_write changed by the reload", "remote_write removed by the reload", "configuration reload failed"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log does not say %q", want)
		}
	}
	if strings.Count(logs, "remote_write added by the reload") != 1 {
		t.Errorf("endpoints added %d times, want once (b): an unchanged endpoint was rebuilt", strings.Count(logs, "remote_write added by the reload"))
	}
}

// lastValue is the last of vs, or -1.
func lastValue(vs []float64) float64 {
	if len(vs) == 0 {
		return -1
	}
	return vs[len(vs)-1]
}

// TestReloadGrafanaAgent: a Grafana Agent file reloads its instances'
// scrape configs in place; adding an instance is refused by name and
// changes nothing.
func TestReloadGrafanaAgent(t *testing.T) {
	app := serve(t, appRegistry(t))
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "agent.yml")
	instance := func(name string, jobs ...string) string {
		s := "    - name: " + name + "\n      scrape_configs:\n"
		for _, j := range jobs {
			s += "        - job_name: " + j + "\n          static_configs: [{targets: ['" + app.Listener.Addr().String() + "']}]\n"
		}
		return s
	}
	write := func(instances ...string) {
		t.Helper()
		cfg := "metrics:\n  wal_directory: " + filepath.Join(dir, "wal") + "\n  global: {scrape_interval: 100ms}\n  configs:\n" + strings.Join(instances, "")
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(instance("one", "app"))
	a := launch(t, &agentUnderTest{}, agentOptions{ConfigFile: cfgFile, FlushDeadline: time.Second})
	targets := func() string {
		resp, err := http.Get(a.web + "/api/v1/targets")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor(t, "job app scraped", func() bool { return strings.Contains(targets(), `"scrapePool":"app"`) })

	write(instance("one", "app", "again"))
	if code, body := postReload(t, a); code != http.StatusOK {
		t.Fatalf("reload adding a job to instance one: %d %s", code, body)
	}
	waitFor(t, "job again scraped", func() bool { return strings.Contains(targets(), `"scrapePool":"again"`) })

	write(instance("one", "app", "again"), instance("two", "app"))
	if code, body := postReload(t, a); code != http.StatusBadRequest || !strings.Contains(body, "metrics.configs") {
		t.Errorf("reload adding an instance: %d %q, want 400 naming metrics.configs", code, body)
	}
	if v := a.metric(t, "prometheus_config_last_reload_successful", nil); v != 0 {
		t.Errorf("prometheus_config_last_reload_successful after a refused reload = %v, want 0", v)
	}
	if !strings.Contains(targets(), `"scrapePool":"again"`) {
		t.Error("a refused reload changed the running jobs")
	}
}

// TestReloadChangedEndpointDown: changing an endpoint whose receiver is
// down does not wait out its flush deadline (ten minutes here): the old
// queue hands over within seconds, and the backlog it held arrives, once,
// from its successor when the receiver is back.
func TestReloadChangedEndpointDown(t *testing.T) {
	s, url := newSink(t)
	target := newSeqTarget(t, 0)
	cfgFile := filepath.Join(t.TempDir(), "agent.yml")
	if err := os.WriteFile(cfgFile, []byte(reloadConfig(target.addr, [][]string{{"a", url}}, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	a := launch(t, &agentUnderTest{}, agentOptions{
		ConfigFile:       cfgFile,
		StoragePath:      t.TempDir(),
		FlushDeadline:    10 * time.Minute,
		PositionInterval: 100 * time.Millisecond,
	})
	waitFor(t, "first samples", func() bool { return len(s.values("seq_total")) >= 3 })
	s.setDown(true)
	down := target.served.Load()
	waitFor(t, "a backlog", func() bool { return target.served.Load() >= down+10 && s.refusedCount() > 0 })

	if err := os.WriteFile(cfgFile, []byte(reloadConfig(target.addr, [][]string{{"a", url, "40ms"}}, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: waitDeadline}
	resp, err := client.Post(a.web+"/-/reload", "", nil)
	if err != nil {
		t.Fatalf("reload of an endpoint whose receiver is down did not answer within %s: %v", waitDeadline, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reload: %d", resp.StatusCode)
	}
	s.setDown(false)
	up := target.served.Load()
	waitFor(t, "the backlog and new samples", func() bool { return lastValue(s.values("seq_total")) >= float64(up+5) })
	a.stop(t)
	checkSeq(t, s, target.served.Load())
	s.checkOrder(t)
}

// TestReloadGatewayKeys: POST /-/reload rotates the gateway's keys (the
// old one 403 after, the new one accepted), and moving its listen
// address is refused by name with the old address still serving.
func TestReloadGatewayKeys(t *testing.T) {
	s, url := newSink(t)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "agent.yml")
	gwAddr := freeLocalAddr(t)
	write := func(listen, key string) {
		t.Helper()
		cfg := fmt.Sprintf(`
global: {scrape_interval: 1h}
remote_write:
  - url: %s
    queue_config: {batch_send_deadline: 20ms}
receive:
  listen_address: %s
  api_keys:
    - {tenant: team-a, key: %s}
`, url, listen, key)
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(gwAddr, "old-key")
	a := launch(t, &agentUnderTest{}, agentOptions{ConfigFile: cfgFile, StoragePath: filepath.Join(dir, "state"), FlushDeadline: time.Second})
	push := "http://" + a.gatewayAddr(t) + "/api/v1/write"
	now := time.Now().UnixMilli()
	req := func(v float64) *prompb.WriteRequest {
		now++
		return &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels: []prompb.Label{{Name: "__name__", Value: "pushed"}}, Samples: []prompb.Sample{{Value: v, Timestamp: now}},
		}}}
	}
	if code := pushV1(t, push, "old-key", req(1)); code != http.StatusNoContent {
		t.Fatalf("push with the key at start: %d", code)
	}

	write(gwAddr, "new-key")
	if code, body := postReload(t, a); code != http.StatusOK {
		t.Fatalf("reload rotating the key: %d %s", code, body)
	}
	if code := pushV1(t, push, "old-key", req(2)); code != http.StatusForbidden {
		t.Errorf("push with the rotated-out key: %d, want 403", code)
	}
	if code := pushV1(t, push, "new-key", req(3)); code != http.StatusNoContent {
		t.Errorf("push with the new key: %d, want 204", code)
	}

	write(freeLocalAddr(t), "newer-key")
	if code, body := postReload(t, a); code != http.StatusBadRequest || !strings.Contains(body, "listen_address") {
		t.Errorf("reload moving the gateway: %d %q, want 400 naming listen_address", code, body)
	}
	if code := pushV1(t, push, "new-key", req(4)); code != http.StatusNoContent {
		t.Errorf("push after the refused reload: %d, want 204 with the running key", code)
	}
	waitFor(t, "the accepted pushes at the receiver", func() bool { return len(s.values(`pushed`)) == 3 })
	if got := s.values(`pushed`); !slices.Equal(got, []float64{1, 3, 4}) {
		t.Errorf("received %v, want [1 3 4]: only the accepted pushes", got)
	}
}
