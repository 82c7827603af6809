package scrape

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// TestManager_Status checks what a status page gets of a job: the active
// target with its health, labels and series, the top metric names, and the
// targets dropped by relabeling, bounded by keep_dropped_targets.
func TestManager_Status(t *testing.T) {
	ex := newExporter(t)
	srv := newTestServer(t, ex.handler)
	cfgs := loadScrapeConfigs(t, jobYAML("100ms", `    keep_dropped_targets: 2
    relabel_configs:
      - source_labels: [drop]
        regex: "yes"
        action: drop`))
	h := startManager(t, cfgs)
	g := &targetgroup.Group{Source: "test", Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(hostOf(srv.URL))}}}
	for i := range 3 {
		g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("10.0.0.%d:9100", i)), "drop": "yes"})
	}
	h.tsets <- map[string][]*targetgroup.Group{"test": {g}}
	h.waitUp(hostOf(srv.URL), 1)

	var js JobStatus
	waitFor(t, "status with series", func() bool {
		st := h.m.Status()
		if len(st) != 1 || len(st[0].Active) != 1 || st[0].Active[0].Series == 0 {
			return false
		}
		js = st[0]
		return true
	})
	if js.Job != "test" || js.Discovered != 4 || js.DroppedTotal != 3 || len(js.Dropped) != 2 {
		t.Errorf("job %q: discovered %d, dropped %d (%d kept), want test, 4, 3 (2 kept: keep_dropped_targets)", js.Job, js.Discovered, js.DroppedTotal, len(js.Dropped))
	}
	for _, d := range js.Dropped {
		if d.Reason != DroppedByRelabeling || d.DiscoveredLabels.Get("drop") != "yes" {
			t.Errorf("dropped target %v, reason %q: want one with drop=yes, dropped by relabeling", d.DiscoveredLabels, d.Reason)
		}
	}
	a := js.Active[0]
	if a.Health != "up" || a.ScrapeURL != srv.URL+"/metrics" || a.LastScrape.IsZero() || a.LastError != "" {
		t.Errorf("active target %+v: want up, %s/metrics, scraped, no error", a, srv.URL)
	}
	if a.Labels.Get("job") != "test" || a.DiscoveredLabels.Get(model.AddressLabel) != hostOf(srv.URL) {
		t.Errorf("labels %v, discovered %v", a.Labels, a.DiscoveredLabels)
	}
	// test_latency_seconds: 3 buckets (0.1, 1, +Inf), _sum, _count.
	if len(js.TopNames) == 0 || js.TopNames[0] != (NameCount{Name: "test_latency_seconds_bucket", Series: 3}) {
		t.Errorf("top names %v, want test_latency_seconds_bucket (3 series) first", js.TopNames)
	}
	if js.Series != a.Series || a.Samples == 0 {
		t.Errorf("job series %d, target series %d, samples %d", js.Series, a.Series, a.Samples)
	}
	var meta bool
	for _, m := range a.Metadata {
		if m.Family == "test_temperature_celsius" && m.Type == "gauge" && m.Help == "Temperature." {
			meta = true
		}
	}
	if !meta {
		t.Errorf("metadata %v lacks test_temperature_celsius (gauge, Temperature.)", a.Metadata)
	}
}

// TestManager_StatusShard checks that the targets another shard scrapes
// are listed as dropped with the reason "shard" (keep_dropped_targets 0:
// all of them).
func TestManager_StatusShard(t *testing.T) {
	cfgs := loadScrapeConfigs(t, jobYAML("1h", ""))
	h := startManagerOpts(t, cfgs, ManagerOptions{Storage: newMemStorage(), Shard: Shard{Count: 2, Index: 0}})
	var addrs []string
	for i := range 40 {
		addrs = append(addrs, fmt.Sprintf("10.0.1.%d:9100", i))
	}
	h.setTargets("test", addrs...)
	var js JobStatus
	waitFor(t, "status", func() bool {
		st := h.m.Status()
		if len(st) == 1 {
			js = st[0]
		}
		return len(st) == 1 && js.Discovered == 40
	})
	if len(js.Active)+js.DroppedTotal != 40 || len(js.Dropped) != js.DroppedTotal || js.DroppedTotal == 0 || len(js.Active) == 0 {
		t.Fatalf("active %d, dropped %d (%d listed) of 40: want a split with every dropped one listed", len(js.Active), js.DroppedTotal, len(js.Dropped))
	}
	for _, d := range js.Dropped {
		if d.Reason != DroppedByShard || !strings.HasPrefix(d.DiscoveredLabels.Get(model.AddressLabel), "10.0.1.") {
			t.Errorf("dropped %v reason %q, want reason shard", d.DiscoveredLabels, d.Reason)
		}
	}
}
