package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// workload is what every agent is configured to do.
type workload struct {
	Targets  []string      // host:port of the load generator's targets
	Interval time.Duration // scrape interval (push interval with Receive)
	URL      string        // the sink's remote-write URL
	Native   bool          // scrape native histograms (protobuf format)

	// Receive: the agent scrapes nothing and forwards the remote write
	// pushed to ReceiveAddr (host:port), authenticated by Key.
	Receive     bool
	ReceiveAddr string
	Key         string
}

// receiveAddr returns where the agent takes remote write in the receive
// workload: rwagent on a listener of the gateway's own, vmagent on its web
// listener.
func (a agent) receiveAddr(listen string) (string, error) {
	switch a.Flavour {
	case "rwagent":
		return freeAddr()
	case "vmagent":
		return listen, nil
	}
	return "", fmt.Errorf("%s: no remote-write receiver in the receive workload (rwagent and vmagent have one)", a.Name)
}

// agent is one agent under test: how to configure and start it.
type agent struct {
	Name string // row name in the table
	Bin  string
	// Flavour selects the config and flags: rwagent, prometheus (v3
	// --agent), prometheus2 (2.x --enable-feature=agent), vmagent.
	Flavour string
	RW2     bool // send remote-write 2.0 (rwagent and Prometheus v3)
}

// version asks the binary for its version and returns its first line.
func (a agent) version(ctx context.Context) string {
	flag := "--version"
	if a.Flavour == "vmagent" {
		flag = "-version"
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, a.Bin, flag).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	// go install leaves the version string empty; the module version is
	// in the build information.
	if bi, err := buildinfo.ReadFile(a.Bin); err == nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		line += " [" + bi.Main.Path + "@" + bi.Main.Version + ", " + bi.GoVersion + "]"
	}
	return strings.TrimSpace(line)
}

// command writes the agent's configuration into dir and returns the
// command that runs it, its web server on listen.
func (a agent) command(ctx context.Context, w workload, dir, listen string) (*exec.Cmd, error) {
	cfgFile := filepath.Join(dir, "config.yaml")
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(cfgFile, a.config(w), 0o644); err != nil {
		return nil, fmt.Errorf("write config of %s: %w", a.Name, err)
	}
	var args []string
	switch a.Flavour {
	case "rwagent":
		args = []string{"--config.file=" + cfgFile, "--storage.path=" + data, "--web.listen-address=" + listen}
	case "prometheus":
		args = []string{"--agent", "--config.file=" + cfgFile, "--storage.agent.path=" + data, "--web.listen-address=" + listen}
	case "prometheus2":
		args = []string{"--enable-feature=agent", "--config.file=" + cfgFile, "--storage.agent.path=" + data, "--web.listen-address=" + listen}
		if w.Native {
			args[0] += ",native-histograms"
		}
	case "vmagent":
		args = []string{"-remoteWrite.url=" + w.URL, "-remoteWrite.tmpDataPath=" + data, "-httpListenAddr=" + listen}
		if !w.Receive {
			args = append(args, "-promscrape.config="+cfgFile)
		}
		// Newer vmagents first probe for VictoriaMetrics' own protocol
		// (zstd); the sink speaks only Prometheus' snappy remote write.
		if help, _ := exec.CommandContext(ctx, a.Bin, "-help").CombinedOutput(); bytes.Contains(help, []byte("remoteWrite.forcePromProto")) {
			args = append(args, "-remoteWrite.forcePromProto")
		}
	default:
		return nil, fmt.Errorf("unknown agent flavour %q", a.Flavour)
	}
	return exec.CommandContext(ctx, a.Bin, args...), nil
}

// config renders Prometheus' configuration format; vmagent reads the same
// scrape_configs and takes remote write from flags. In the receive
// workload rwagent's has a receive: section with one key and no tenant
// label, so it forwards the series as received, and no scrape_configs.
func (a agent) config(w workload) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\n", w.Interval, w.Interval*4/5)
	if w.Receive {
		if a.Flavour == "vmagent" {
			return []byte(b.String()) // unused: it takes everything from flags
		}
		fmt.Fprintf(&b, "receive:\n  listen_address: %q\n  api_keys:\n    - {tenant: bench, key: %q}\n  tenant_label: \"\"\n", w.ReceiveAddr, w.Key)
		fmt.Fprintf(&b, "remote_write:\n  - url: %q\n    name: sink\n", w.URL)
		if a.RW2 {
			b.WriteString("    protobuf_message: io.prometheus.write.v2.Request\n")
		}
		return []byte(b.String())
	}
	b.WriteString("scrape_configs:\n  - job_name: bench\n")
	if w.Native && (a.Flavour == "rwagent" || a.Flavour == "prometheus") {
		b.WriteString("    scrape_native_histograms: true\n")
	}
	b.WriteString("    static_configs:\n      - targets:\n")
	for _, t := range w.Targets {
		fmt.Fprintf(&b, "          - %q\n", t)
	}
	if a.Flavour == "vmagent" {
		return []byte(b.String())
	}
	fmt.Fprintf(&b, "remote_write:\n  - url: %q\n    name: sink\n", w.URL)
	if a.RW2 {
		b.WriteString("    protobuf_message: io.prometheus.write.v2.Request\n")
	}
	if w.Native {
		b.WriteString("    send_native_histograms: true\n")
	}
	return []byte(b.String())
}
