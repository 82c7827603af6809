package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	promconfig "github.com/prometheus/prometheus/config"
	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseStat(t *testing.T) {
	// Fields after the command name: state ppid pgrp session tty tpgid
	// flags minflt cminflt majflt cmajflt utime stime ...
	const tail = " S 1 2 3 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0 1000 0 0"
	for _, tc := range []struct {
		name, stat string
		want       time.Duration
		wantErr    bool
	}{
		{"plain", "123 (prometheus)" + tail, 3250 * time.Millisecond, false},
		{"spaces and parenthesis in name", "123 (a b) c)" + tail, 3250 * time.Millisecond, false},
		{"no name", "123 prometheus" + tail, 0, true},
		{"short", "123 (x) S 1 2", 0, true},
		{"not a number", "123 (x) S 1 2 3 0 -1 4194560 100 0 0 0 x 75", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat("123", []byte(tc.stat))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("parseStat = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestSelfProc(t *testing.T) {
	if _, err := cpuTime("self"); err != nil {
		t.Fatal(err)
	}
	peak, rss, err := memory("self")
	if err != nil || rss <= 0 || peak < rss {
		t.Fatalf("memory(self) = %d, %d, %v", peak, rss, err)
	}
}

// TestAgentConfigs checks every flavour's generated configuration: the
// Prometheus-format ones load with Prometheus' own loader, vmagent's is
// valid YAML with the targets.
func TestAgentConfigs(t *testing.T) {
	w := workload{Targets: []string{"127.0.0.1:1", "127.0.0.1:2"}, Interval: 5 * time.Second,
		URL: "http://127.0.0.1:3/api/v1/write", Native: true}
	for _, a := range []agent{
		{Name: "rwagent", Flavour: "rwagent"},
		{Name: "rwagent-rw2", Flavour: "rwagent", RW2: true},
		{Name: "prometheus", Flavour: "prometheus"},
		{Name: "prometheus-rw2", Flavour: "prometheus", RW2: true},
		{Name: "vmagent", Flavour: "vmagent"},
	} {
		t.Run(a.Name, func(t *testing.T) {
			cfg := a.config(w)
			if a.Flavour == "vmagent" {
				var v struct {
					ScrapeConfigs []struct {
						StaticConfigs []struct{ Targets []string } `yaml:"static_configs"`
					} `yaml:"scrape_configs"`
				}
				if err := yaml.Unmarshal(cfg, &v); err != nil {
					t.Fatal(err)
				}
				if got := v.ScrapeConfigs[0].StaticConfigs[0].Targets; len(got) != 2 {
					t.Fatalf("targets %v", got)
				}
				return
			}
			c, err := promconfig.Load(string(cfg), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatalf("load %s config: %v\n%s", a.Name, err, cfg)
			}
			rw := c.RemoteWriteConfigs[0]
			if rw.URL.String() != w.URL || !rw.SendNativeHistograms || !c.ScrapeConfigs[0].ScrapeNativeHistogramsEnabled() {
				t.Errorf("remote write %v, native histograms not enabled everywhere:\n%s", rw.URL, cfg)
			}
			if a.RW2 != (rw.ProtobufMessage == "io.prometheus.write.v2.Request") {
				t.Errorf("protobuf_message %q for %s", rw.ProtobufMessage, a.Name)
			}
		})
	}
}

func TestCommandWritesConfig(t *testing.T) {
	dir := t.TempDir()
	a := agent{Name: "rwagent", Bin: "/bin/true", Flavour: "rwagent"}
	cmd, err := a.command(t.Context(), workload{Targets: []string{"127.0.0.1:1"}, Interval: time.Second, URL: "http://127.0.0.1:2/"}, dir, "127.0.0.1:3")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(cmd.Args, " "), "--config.file="+filepath.Join(dir, "config.yaml")) {
		t.Errorf("args %v", cmd.Args)
	}
	if _, err := os.Stat(filepath.Join(dir, "config.yaml")); err != nil {
		t.Error(err)
	}
}
