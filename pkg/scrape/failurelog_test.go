package scrape

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// failureLines reads the JSON lines of a scrape_failure_log_file.
func failureLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q of %s is not JSON: %v", sc.Text(), path, err)
		}
		out = append(out, m)
	}
	return out
}

// TestManager_ScrapeFailureLogFile: every failed scrape is one JSON line in
// the scrape_failure_log_file of its job (the global one unless the job
// sets its own); a good scrape writes none; a reload reopens the file.
func TestManager_ScrapeFailureLogFile(t *testing.T) {
	dir := t.TempDir()
	global, own := filepath.Join(dir, "global.log"), filepath.Join(dir, "own.log")
	good := hostOf(newTestServer(t, newExporter(t).handler).URL)
	broken := hostOf(newTestServer(t, http.NotFoundHandler()).URL)
	yml := fmt.Sprintf(`
global:
  scrape_failure_log_file: %s
scrape_configs:
  - job_name: test
    scrape_interval: 50ms
    scrape_timeout: 50ms
  - job_name: own
    scrape_interval: 50ms
    scrape_timeout: 50ms
    scrape_failure_log_file: %s
`, global, own)
	cfgs := loadScrapeConfigs(t, yml)
	h := startManager(t, cfgs)
	h.setTargets("test", good, broken)
	failed := h.m.metrics.scrapes.WithLabelValues("test", "failure")
	waitFor(t, "three failed scrapes", func() bool { return testutil.ToFloat64(failed) >= 3 })

	lines := failureLines(t, global)
	if len(lines) < 3 {
		t.Fatalf("%s has %d lines, want one per failed scrape (>= 3)", global, len(lines))
	}
	for _, l := range lines {
		if l["target"] != "http://"+broken+"/metrics" || l["scrape_job"] != "test" || l["level"] != "ERROR" {
			t.Errorf("line %v: want target http://%s/metrics, scrape_job test, level ERROR", l, broken)
		}
		if msg, _ := l["msg"].(string); !strings.Contains(msg, "404") {
			t.Errorf("line %v: msg does not carry the error", l)
		}
		if _, ok := l["time"]; !ok {
			t.Errorf("line %v has no time", l)
		}
	}
	if got := failureLines(t, own); len(got) != 0 {
		t.Errorf("%s has lines of another job: %v", own, got)
	}

	// Rotation: the file is moved away, and a reload opens a new one.
	if err := os.Rename(global, global+".1"); err != nil {
		t.Fatal(err)
	}
	if err := h.m.ApplyConfig(cfgs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a line in the reopened file", func() bool { return len(failureLines(t, global)) > 0 })

	// The job with its own file.
	h.tsets <- map[string][]*targetgroup.Group{"own": {{Source: "test", Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(broken)}}}}}
	waitFor(t, "a line in the job's own file", func() bool { return len(failureLines(t, own)) > 0 })
}

func TestManager_ScrapeFailureLogFileUnwritable(t *testing.T) {
	cfgs := loadScrapeConfigs(t, jobYAML("50ms", "    scrape_failure_log_file: "+filepath.Join(t.TempDir(), "missing", "x.log")))
	m, err := NewManager(ManagerOptions{Storage: newMemStorage()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.ApplyConfig(cfgs); err == nil || !strings.Contains(err.Error(), "scrape_failure_log_file") {
		t.Errorf("error = %v, want one naming scrape_failure_log_file", err)
	}
}
