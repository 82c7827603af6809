package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rwagent/rwagent/pkg/receive"
)

// get returns the status and body of url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReadyWaitsForDiscovery runs a static job beside a file_sd naming a
// missing file and an http_sd answering 500: /-/ready says 503 naming
// both jobs until the discovery wait, then 200; the static job is scraped
// and sent meanwhile, and the status page shows the silent discoveries.
func TestReadyWaitsForDiscovery(t *testing.T) {
	app := serve(t, appRegistry(t))
	var sdHits atomic.Int64
	broken := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		sdHits.Add(1)
		http.Error(w, "broken", http.StatusInternalServerError)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	broken.Listener = ln
	broken.Start()
	t.Cleanup(broken.Close)

	dir := t.TempDir()
	recv, err := receive.New(receive.Options{Dir: filepath.Join(dir, "amp"), WorkspaceID: "ws"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { recv.Close() })
	rs := httptest.NewUnstartedServer(recv.Handler())
	if rs.Listener, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	rs.Start()
	t.Cleanup(rs.Close)

	cfg := strings.NewReplacer("APP", app.Listener.Addr().String(), "BROKEN", broken.URL,
		"MISSING", filepath.Join(dir, "absent.json"), "RECEIVER", rs.URL+"/workspaces/ws/api/v1/remote_write").Replace(`
global:
  scrape_interval: 100ms
  scrape_timeout: 80ms
scrape_configs:
  - job_name: app
    static_configs:
      - targets: [APP]
  - job_name: files
    file_sd_configs:
      - files: [MISSING]
  - job_name: web
    http_sd_configs:
      - url: BROKEN
remote_write:
  - url: RECEIVER
    queue_config:
      batch_send_deadline: 100ms
`)
	cfgFile := filepath.Join(dir, "agent.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	const wait = 8 * time.Second // above discovery's 5s hand-on, so the static job is scraped before it
	start := time.Now()
	a := launch(t, &agentUnderTest{recv: recv}, agentOptions{
		ConfigFile: cfgFile, StoragePath: filepath.Join(dir, "agent"),
		FlushDeadline: 5 * time.Second, DiscoveryWait: wait,
	})

	// Not ready, with the reason, while the static job is scraped and sent.
	waitFor(t, "app scraped and sent while not ready", func() bool {
		code, body := get(t, a.web+"/-/ready")
		if code != http.StatusServiceUnavailable {
			t.Fatalf("/-/ready %d before the discovery wait (%s elapsed): %s", code, time.Since(start), body)
		}
		if strings.Contains(body, "replaying the WAL") || strings.Contains(body, "starting") {
			return false
		}
		for _, want := range []string{
			"job files (file_sd_configs) has produced no targets yet",
			"job web (http_sd_configs) has produced no targets yet",
		} {
			if !strings.Contains(body, want) {
				t.Fatalf("/-/ready body %q lacks %q", body, want)
			}
		}
		v := a.query(t, `up{job="app"}`)
		return len(v) == 1 && v[0].F == 1
	})
	_, page := get(t, a.web+"/")
	for _, want := range []string{"file_sd_configs", "http_sd_configs", "no target set yet"} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q while waiting", want)
		}
	}

	waitFor(t, "ready after the discovery wait", func() bool {
		code, _ := get(t, a.web+"/-/ready")
		return code == http.StatusOK
	})
	if d := time.Since(start); d < wait {
		t.Errorf("ready after %s, before the %s discovery wait", d, wait)
	}
	_, page = get(t, a.web+"/")
	if !strings.Contains(page, "failed or empty") {
		t.Errorf("status page does not show the given-up discoveries as failed or empty")
	}
	if sdHits.Load() == 0 {
		t.Errorf("http_sd server never asked")
	}
	if f := a.metric(t, "prometheus_sd_http_failures_total", nil); f < 1 {
		t.Errorf("prometheus_sd_http_failures_total = %v, want >= 1", f)
	}
	logs := a.logs.String()
	for _, job := range []string{"scrape_job=files", "scrape_job=web"} {
		if !strings.Contains(logs, "service discovery sent no target set") || !strings.Contains(logs, job) {
			t.Errorf("log does not say discovery of %s was given up on", job)
		}
	}
	// The static job is still scraped after readiness.
	n := len(a.query(t, `up{job="app"}`))
	if n != 1 {
		t.Errorf("up{job=app}: %d series after ready", n)
	}
}
