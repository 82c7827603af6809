package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// gaEnv is the environment of the Grafana Agent tests: only what a test
// sets, so the files' ${NAME:-default}s show.
func gaEnv(kv ...string) func(string) (string, bool) {
	return func(n string) (string, bool) {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] == n {
				return kv[i+1], true
			}
		}
		return "", false
	}
}

// TestGrafanaAgent_Good loads Grafana Agent files of each shape and checks
// that every setting lands where the agent reads it: per instance, the
// Prometheus-shaped config (global merged in, the global remote_write where
// the instance has none, send_exemplars defaulting to true), the WAL
// directory wal_directory/<name> and Grafana Agent's WAL defaults, and the
// server block.
func TestGrafanaAgent_Good(t *testing.T) {
	t.Run("ec2", func(t *testing.T) {
		c, err := LoadFile("testdata/grafana-agent/ec2.yml", gaEnv("CLUSTER", "prod"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Shape != ShapeGrafanaAgent || c.Prometheus != nil || len(c.Instances) != 1 {
			t.Fatalf("shape %v, Prometheus %v, %d instances", c.Shape, c.Prometheus, len(c.Instances))
		}
		if want := (ServerConfig{LogLevel: "info", HTTPListenAddress: "127.0.0.1:12345"}); c.Server != want {
			t.Errorf("server = %+v, want %+v", c.Server, want)
		}
		in := c.Instances[0]
		if in.Instance.Name != "agent" || in.File != c.File {
			t.Errorf("instance %q from %q", in.Instance.Name, in.File)
		}
		want := WALConfig{Dir: "/var/lib/grafana-agent/agent", Fsync: FsyncInterval, FsyncInterval: model.Duration(time.Second),
			SegmentSize: DefaultWALConfig.SegmentSize, TruncateFrequency: model.Duration(time.Hour),
			MinAge: model.Duration(5 * time.Minute), MaxAge: model.Duration(4 * time.Hour)}
		if in.WAL != want {
			t.Errorf("WAL = %+v, want %+v", in.WAL, want)
		}
		pc := in.Prometheus
		if got := pc.GlobalConfig.ExternalLabels.Get("cluster"); got != "prod" {
			t.Errorf("external label cluster = %q", got)
		}
		if pc.GlobalConfig.ScrapeInterval != model.Duration(15*time.Second) || pc.ScrapeConfigs[0].ScrapeInterval != model.Duration(15*time.Second) {
			t.Errorf("scrape interval %s, job's %s", pc.GlobalConfig.ScrapeInterval, pc.ScrapeConfigs[0].ScrapeInterval)
		}
		if got := pc.ScrapeConfigs[0].ServiceDiscoveryConfigs; len(got) != 1 {
			t.Errorf("node job discoveries = %v", got)
		}
		rw := pc.RemoteWriteConfigs[0]
		if !strings.Contains(rw.URL.String(), "aps-workspaces.us-east-1") || !rw.SendExemplars ||
			rw.QueueConfig.MaxSamplesPerSend != 1000 || rw.QueueConfig.MaxShards != 200 || rw.QueueConfig.Capacity != 2500 {
			t.Errorf("remote_write = %s exemplars %v queue %+v", rw.URL, rw.SendExemplars, rw.QueueConfig)
		}
		if s := in.RemoteWriteSigV4[0]; s == nil || s.Region != "us-east-1" {
			t.Errorf("sigv4 = %+v", s)
		}
		if in.Instance.FlushDeadline != time.Minute || in.Instance.HostFilter || in.Instance.WriteStaleOnShutdown {
			t.Errorf("instance = %+v", in.Instance)
		}
	})

	t.Run("two instances", func(t *testing.T) {
		c, err := LoadFile("testdata/grafana-agent/two-instances.yml", gaEnv("WAL_DIR", "/srv/wal", "APPS_URL", "http://127.0.0.1:1/apps"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := (ServerConfig{LogLevel: "debug", LogFormat: "json", HTTPListenAddress: "0.0.0.0:9090"}); c.Server != want {
			t.Errorf("server = %+v, want %+v", c.Server, want)
		}
		if got := c.Pipelines(); len(got) != 2 || got[0].Instance.Name != "apps" || got[1].Instance.Name != "infra" {
			t.Fatalf("pipelines = %v", got)
		}
		apps, infra := c.Instances[0], c.Instances[1]
		if apps.WAL.Dir != "/srv/wal/apps" || infra.WAL.Dir != "/srv/wal/infra" {
			t.Errorf("WAL dirs %s, %s", apps.WAL.Dir, infra.WAL.Dir)
		}
		// apps has no remote_write: the global one.
		if got := apps.Prometheus.RemoteWriteConfigs; len(got) != 1 || got[0].URL.String() != "http://127.0.0.1:1/apps" || !got[0].SendExemplars {
			t.Errorf("apps remote_write = %v", got)
		}
		// infra has its own, and only it.
		if got := infra.Prometheus.RemoteWriteConfigs; len(got) != 1 || got[0].Name != "infra" || got[0].SendExemplars {
			t.Errorf("infra remote_write = %v", got)
		}
		for _, p := range c.Instances {
			if got := p.Prometheus.GlobalConfig.ExternalLabels.Get("region"); got != "eu-west-1" {
				t.Errorf("%s: external label region = %q", p.Instance.Name, got)
			}
			if p.Prometheus.ScrapeConfigs[0].ScrapeTimeout != model.Duration(2*time.Second) {
				t.Errorf("%s: scrape timeout %s", p.Instance.Name, p.Prometheus.ScrapeConfigs[0].ScrapeTimeout)
			}
		}
		if infra.WAL.TruncateFrequency != model.Duration(30*time.Minute) || infra.WAL.MinAge != model.Duration(time.Minute) || infra.WAL.MaxAge != model.Duration(2*time.Hour) {
			t.Errorf("infra WAL = %+v", infra.WAL)
		}
		ic := infra.Instance
		if ic.FlushDeadline != 20*time.Second || !ic.WriteStaleOnShutdown || !ic.HostFilter || len(ic.HostFilterRelabelConfigs) != 1 ||
			ic.HostFilterRelabelConfigs[0].TargetLabel != "__host__" {
			t.Errorf("infra instance = %+v", ic)
		}
	})

	t.Run("sigv4 enabled false signs nothing", func(t *testing.T) {
		c, err := Load([]byte("metrics:\n  configs:\n    - name: a\n      remote_write:\n        - url: http://127.0.0.1:9/w\n          sigv4: {enabled: false, region: us-east-1}\n"), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s := c.Instances[0].RemoteWriteSigV4[0]; s != nil || c.Instances[0].Prometheus.RemoteWriteConfigs[0].SigV4Config != nil {
			t.Errorf("sigv4 = %+v", s)
		}
	})

	t.Run("notes for what has no effect", func(t *testing.T) {
		c, err := Load([]byte("server:\n  grpc_listen_port: 9095\nmetrics:\n  instance_restart_backoff: 10s\n  instance_mode: shared\n  wal_cleanup_period: 0s\n"+
			"integrations:\n  agent:\n    enabled: false\nlogs: {}\n"), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Pipelines()) != 0 || len(c.Notes) != 2 || !strings.HasPrefix(c.Notes[0], "server.grpc_listen_port: ") ||
			!strings.HasPrefix(c.Notes[1], "metrics.instance_restart_backoff: ") {
			t.Errorf("pipelines %d, notes %q", len(c.Pipelines()), c.Notes)
		}
	})
}

// TestGrafanaAgent_Bad: each file is refused with its line and the field as
// the file spells it.
func TestGrafanaAgent_Bad(t *testing.T) {
	want := map[string]string{
		"duplicate-name.bad.yml":       `4: metrics.configs[1].name: "a" is also the name of configs[0]: each instance needs its own WAL directory`,
		"global-rw.bad.yml":            `5: metrics.global.remote_write[0].url: parse "::bad": missing protocol scheme`,
		"integrations.bad.yml":         `11: integrations.node_exporter: not supported: rwagent embeds no exporters; run node_exporter (port 9100) as its own process, scrape it with a job in metrics.configs[].scrape_configs, and remove integrations.node_exporter`,
		"interval-truncate.bad.yml":    `7: metrics.configs[0].scrape_configs[0].scrape_interval: 1m is longer than wal_truncate_frequency 30s`,
		"logs.bad.yml":                 `4: logs: not supported: rwagent forwards metrics only; ship logs with Grafana Alloy, Promtail or Fluent Bit, and remove logs`,
		"min-max.bad.yml":              `4: metrics.configs[0].min_wal_time: 5h0m0s is more than max_wal_time 4h0m0s`,
		"name-path.bad.yml":            `3: metrics.configs[0].name: "../etc" cannot be a directory name under wal_directory`,
		"no-name.bad.yml":              `3: metrics.configs[0].name: missing: every instance needs a name (its WAL directory)`,
		"scraping-service.bad.yml":     `2: metrics.scraping_service: not supported: rwagent does not share scrape configs through a KV store; run one rwagent per host with its own file (host_filter keeps each to its host's targets), and remove scraping_service`,
		"server-tls.bad.yml":           `2: server.http_tls_config: not supported: rwagent serves /metrics and /-/ready over plain HTTP at the root of --web.listen-address (127.0.0.1 by default); put a proxy in front for TLS or a prefix, and remove http_tls_config`,
		"sigv4-disabled-amp.bad.yml":   `5: metrics.configs[0].remote_write[0].url: an Amazon Managed Service for Prometheus workspace refuses unsigned requests (403): add a sigv4: block (sigv4: {} takes the region from the URL and credentials from the AWS default chain)`,
		"sigv4-enabled.bad.yml":        `7: metrics.configs[0].remote_write[0].sigv4.enabled: "maybe" is not true or false`,
		"top-level-scrape.bad.yml":     `5: unknown field "scrape_configs" (a Grafana Agent file has server, metrics, integrations, logs and traces)`,
		"unknown-scrape-field.bad.yml": `6: metrics.configs[0].scrape_configs[0]: unknown field "scrape_intervall"`,
		"wal-cleanup.bad.yml":          `2: metrics.wal_cleanup_age: not supported: rwagent does not remove the WAL of an instance no longer configured; remove its directory under wal_directory yourself, and set wal_cleanup_period: 0 or remove wal_cleanup_age`,
	}
	files, err := filepath.Glob("testdata/grafana-agent/*.bad.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Errorf("%d bad files, %d expectations", len(files), len(want))
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			_, err := LoadFile(f, gaEnv(), nil)
			if err == nil {
				t.Fatal("loaded")
			}
			if got, w := err.Error(), f+":"+want[name]; got != w {
				t.Errorf("error\n got %s\nwant %s", got, w)
			}
		})
	}
}

// TestGrafanaAgent_Shape: the shape comes from the top-level sections.
func TestGrafanaAgent_Shape(t *testing.T) {
	for doc, want := range map[string]Shape{
		"scrape_configs: []\n":            ShapePrometheus,
		"global: {scrape_interval: 1m}\n": ShapePrometheus,
		"":                                ShapePrometheus,
		"server: {log_level: warn}\n":     ShapeGrafanaAgent,
		"metrics: {}\n":                   ShapeGrafanaAgent,
		"prometheus: {configs: []}\n":     ShapeGrafanaAgent,
		"integrations: {}\n":              ShapeGrafanaAgent,
	} {
		c, err := Load([]byte(doc), nil, nil)
		if err != nil {
			t.Errorf("%q: %v", doc, err)
			continue
		}
		if c.Shape != want {
			t.Errorf("%q: shape %v, want %v", doc, c.Shape, want)
		}
		if want == ShapePrometheus && !slices.Equal(c.Pipelines(), []*Config{c}) {
			t.Errorf("%q: Prometheus' shape is not its own pipeline", doc)
		}
	}
}
