package web

import (
	"bytes"
	"html/template"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwagent/rwagent/pkg/remotewrite"
	"github.com/rwagent/rwagent/pkg/scrape"
	"github.com/rwagent/rwagent/pkg/wal"
)

// templatePage renders d with testdata/status.html.tmpl, the page as an
// html/template, for the price of 10M samples d.Price.
func templatePage(t *testing.T, d pageData) string {
	t.Helper()
	tmpl, err := template.New("status.html.tmpl").Funcs(template.FuncMap{
		"ago":     ago,
		"ms":      ms,
		"bytes":   byteSize,
		"jobRate": jobRate,
		"lbls": func(ls labels.Labels) []labels.Label {
			var out []labels.Label
			ls.Range(func(l labels.Label) { out = append(out, l) })
			return out
		},
		"cost": func(perSecond float64) float64 { return monthlyCost(perSecond, d.Price) },
	}).ParseFiles("testdata/status.html.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, d); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// hostile is a value with every character HTML or a URL must escape.
const hostile = `<script>alert("x'y")</script> & a+b ` + "\x00 é \xff %zz %41"

// TestPageMatchesTemplate checks, byte for byte, that writePage writes
// what html/template wrote from testdata/status.html.tmpl, for pages with
// nothing, with one pipeline and with several, every branch taken and
// every value escaped (hostile labels, errors and URLs included).
func TestPageMatchesTemplate(t *testing.T) {
	at := time.Date(2026, 12, 6, 7, 30, 0, 0, time.UTC)
	active := scrape.TargetStatus{
		ScrapeURL: "http://10.0.0.1:9100/metrics?x=" + hostile, Health: "up",
		Labels:             labels.FromStrings("instance", "10.0.0.1:9100", "job", "node", "evil", hostile),
		DiscoveredLabels:   labels.FromStrings("__address__", "10.0.0.1:9100", "__meta_x", hostile),
		LastScrape:         at.Add(-1500 * time.Millisecond),
		LastScrapeDuration: 12345 * time.Microsecond, LastError: hostile, ScrapeInterval: 15 * time.Second,
		Series: 1234, Samples: 1300,
	}
	down := active
	down.ScrapeURL, down.Health, down.LastScrape, down.LastError = "javascript:alert(1)", "down", time.Time{}, ""
	unknown := active
	unknown.ScrapeURL, unknown.Health, unknown.LastScrape = "https://[::1]:443/m", "unknown", at.Add(-2*time.Hour)
	jobs := []scrape.JobStatus{
		{Job: "node", Active: []scrape.TargetStatus{active, down, unknown}, Discovered: 5, DroppedTotal: 2, Series: 2468,
			Dropped:  []scrape.DroppedTarget{{DiscoveredLabels: labels.FromStrings("__address__", hostile), Reason: "relabeling"}},
			TopNames: []scrape.NameCount{{Name: "node_cpu_seconds_total", Series: 64}, {Name: hostile, Series: 1}}},
		{Job: "one", Active: []scrape.TargetStatus{active}},
		{Job: hostile},
	}
	endpoints := []endpointView{
		{Status: remotewrite.Status{Name: "amp", URL: "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write",
			Protocol: "2.0", Shards: 2, DesiredShards: 3, MaxShards: 50, Pending: 17, LagSeconds: 1.25, LagBytes: 123456789,
			SendPosition: wal.Position{Segment: 3, Offset: 4096}},
			LastError: remotewrite.LoggedError{Time: at.Add(-time.Minute), Message: "send batch", Err: hostile},
			PerSecond: 1234.56, RateSince: "over the last 5m0s", CostMonth: 287.5},
		{Status: remotewrite.Status{URL: "http://user:xxxxx@127.0.0.1:9095/" + hostile, Protocol: "1.0", LagSeconds: -1, LagBytes: -1},
			LastError: remotewrite.LoggedError{Time: at.Add(-3 * time.Second), Message: "throttled"}, RateSince: "since the start"},
		{Status: remotewrite.Status{Name: "quiet", URL: "http://127.0.0.1:9095/api/v1/write", Protocol: "1.0"}},
	}
	stats := wal.Stats{Dir: "/var/lib/rwagent/" + hostile, Bytes: 3 << 30, Segments: 4, FirstSegment: 7, LastSegment: 10,
		OldestWrite: at.Add(-90 * time.Second), Checkpoint: "checkpoint.00000006", CheckpointTime: at.Add(-time.Minute),
		Started: wal.Position{Segment: 7}, Fsync: wal.FsyncInterval, FsyncInterval: time.Second}
	pipes := []pipelineView{
		{Instance: "a", Jobs: jobs, Endpoints: endpoints, WAL: stats, HasWAL: true, WALErr: hostile, Series: 99,
			Silent: []Discovery{{Job: "k", Mechanism: "kubernetes_sd_configs", Wait: time.Minute},
				{Job: "f", Mechanism: "file_sd_configs", GaveUp: true, Wait: 2 * time.Minute},
				{Job: hostile, Mechanism: "consul_sd_configs", Failed: true}}},
		{Instance: hostile, WAL: wal.Stats{FirstSegment: -1, LastSegment: -1, Fsync: wal.FsyncAlways}, HasWAL: true},
		{Instance: "c"},
	}
	rt := runtimeInfo{LastConfigTime: at.Add(-time.Hour), CWD: "/" + hostile, GoroutineCount: 42, GOMAXPROCS: 2, GOGC: "50"}
	failed := rt
	failed.ReloadConfigSuccess = false
	rt.ReloadConfigSuccess = true
	build := BuildInfo{Version: "1.2.3", Revision: "abc" + hostile, GoVersion: "go1.26.8"}
	for name, d := range map[string]pageData{
		"nothing":      {view: &view{At: at, Price: 0.9, Start: at.Add(-time.Hour)}, Runtime: rt},
		"one pipeline": {view: &view{At: at, Price: 0.9, Pipelines: pipes[:1], Build: build, Start: at.Add(-3 * time.Hour)}, Runtime: failed},
		"several":      {view: &view{At: at, Price: 1.23456, Pipelines: pipes, Build: build, Start: at}, Several: true, Runtime: rt},
		"no jobs":      {view: &view{At: at, Price: 0.9, Pipelines: pipes[2:]}, Runtime: rt},
	} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			writePage(&b, d)
			got, want := b.String(), templatePage(t, d)
			if got != want {
				i := 0
				for i < len(got) && i < len(want) && got[i] == want[i] {
					i++
				}
				t.Errorf("writePage differs from the template at byte %d:\n got: %q\nwant: %q", i, excerpt(got, i), excerpt(want, i))
			}
			if strings.Contains(got, "<script>") {
				t.Error("a value went out unescaped")
			}
		})
	}
}

func excerpt(s string, i int) string {
	return s[max(0, i-80):min(len(s), i+80)]
}

// TestPageMatchesTemplateLive compares both on a real pipeline's page.
func TestPageMatchesTemplateLive(t *testing.T) {
	r := newRig(t, "a", "b")
	r.waitScraped(t)
	v := r.ui.snapshot()
	d := pageData{view: v, Several: len(v.Pipelines) > 1, Runtime: r.ui.runtime()}
	var b bytes.Buffer
	writePage(&b, d)
	if got, want := b.String(), templatePage(t, d); got != want {
		t.Errorf("writePage differs from the template:\n got: %s\nwant: %s", got, want)
	}
}
