package main

import (
	"crypto/sha256"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	promconfig "github.com/prometheus/prometheus/config"
	"github.com/rwagent/rwagent/pkg/config"
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

// TestReceiveConfigs checks the receive workload's set-up: rwagent's
// configuration loads with rwagent's own loader, with the gateway on the
// given address, the key, no tenant label and nothing to scrape; vmagent
// takes remote write on its web listener and reads no scrape config; an
// agent without a receiver is refused by name.
func TestReceiveConfigs(t *testing.T) {
	w := workload{Interval: 5 * time.Second, URL: "http://127.0.0.1:3/api/v1/write",
		Receive: true, ReceiveAddr: "127.0.0.1:4", Key: "0123abcd"}
	for _, rw2 := range []bool{false, true} {
		a := agent{Name: "rwagent", Flavour: "rwagent", RW2: rw2}
		c, err := config.Load(a.config(w), func(string) (string, bool) { return "", false }, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("load rwagent receive config: %v\n%s", err, a.config(w))
		}
		r := c.Receive
		if r == nil || r.ListenAddress != w.ReceiveAddr || r.TenantLabel != "" || len(r.APIKeys) != 1 || r.APIKeys[0].Digest != sha256.Sum256([]byte(w.Key)) {
			t.Fatalf("receive section %+v", r)
		}
		if len(c.Prometheus.ScrapeConfigs) != 0 || len(c.Prometheus.RemoteWriteConfigs) != 1 || c.Prometheus.RemoteWriteConfigs[0].URL.String() != w.URL {
			t.Fatalf("scrape configs %d, remote write %v", len(c.Prometheus.ScrapeConfigs), c.Prometheus.RemoteWriteConfigs)
		}
		if got := c.Prometheus.RemoteWriteConfigs[0].ProtobufMessage == "io.prometheus.write.v2.Request"; got != rw2 {
			t.Errorf("rw2 %v: protobuf_message %q", rw2, c.Prometheus.RemoteWriteConfigs[0].ProtobufMessage)
		}
	}
	vm := agent{Name: "vmagent", Bin: "/bin/true", Flavour: "vmagent"}
	if addr, err := vm.receiveAddr("127.0.0.1:5"); err != nil || addr != "127.0.0.1:5" {
		t.Errorf("vmagent receives on %q, %v", addr, err)
	}
	cmd, err := vm.command(t.Context(), w, t.TempDir(), "127.0.0.1:5")
	if err != nil {
		t.Fatal(err)
	}
	if args := strings.Join(cmd.Args, " "); strings.Contains(args, "promscrape.config") || !strings.Contains(args, "-httpListenAddr=127.0.0.1:5") {
		t.Errorf("vmagent args %s", args)
	}
	if _, err := (agent{Name: "prometheus", Flavour: "prometheus"}).receiveAddr("127.0.0.1:5"); err == nil || !strings.Contains(err.Error(), "prometheus") {
		t.Errorf("prometheus in the receive workload: %v", err)
	}
}

// TestProfiles fetches both profiles from Go's pprof handlers.
func TestProfiles(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.Handle("/debug/pprof/heap", pprof.Handler("heap"))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	prefix := filepath.Join(t.TempDir(), "rwagent")
	p := startProfiles(t.Context(), srv.URL, 2*time.Second, prefix)
	if errs := p.finish(t.Context()); len(errs) != 0 {
		t.Fatal(errs)
	}
	for _, f := range []string{prefix + ".cpu.pprof", prefix + ".heap.pprof"} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("profile %s: %v", f, err)
		}
	}
	if err := fetchProfile(t.Context(), srv.URL+"/debug/pprof/nothing", prefix+".x", time.Second); err == nil {
		t.Error("a 404 was saved as a profile")
	}
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
}

// TestRSSTimeline reads this process' RSS into one-second steps.
func TestRSSTimeline(t *testing.T) {
	stop := make(chan struct{})
	time.AfterFunc(2500*time.Millisecond, func() { close(stop) })
	steps := rssTimeline("self", time.Second, stop)
	if len(steps) < 2 {
		t.Fatalf("got %d steps in 2.5 s, want at least 2: %v", len(steps), steps)
	}
	for i, v := range steps {
		if v <= 0 {
			t.Errorf("step %d: RSS %d", i, v)
		}
	}
}
