package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/relabel"
	"go.yaml.in/yaml/v2"

	"github.com/rwagent/rwagent/pkg/config"
	"github.com/rwagent/rwagent/pkg/receive"
	"github.com/rwagent/rwagent/pkg/sigv4"
)

// gaTestdata is where pkg/config keeps the Grafana Agent files of each
// shape; the agent's tests load and run the same files.
const gaTestdata = "../../pkg/config/testdata/grafana-agent/"

// startReceiver starts an ampemu receiver that checks SigV4 for region
// (the e2e credentials) and returns it with its remote-write URL.
func startReceiver(t *testing.T, region string) (*receive.Server, string) {
	t.Helper()
	v := &sigv4.Verifier{Region: region, Service: "aps",
		Credentials: []sigv4.Credential{{AccessKeyID: e2eAccessKey, SecretAccessKey: e2eSecret, SessionToken: e2eToken}}}
	recv, base := serveReceiver(t, receive.Options{Dir: t.TempDir(), WorkspaceID: "ws-e2e", Verify: v.Verify})
	return recv, base + "/workspaces/ws-e2e/api/v1/remote_write"
}

// TestGrafanaAgent_TwoInstances runs testdata's two-instance Grafana Agent
// file, unchanged but for its environment, against two ampemu receivers:
// each instance's samples reach its own receiver only (apps through the
// global remote_write, infra through its own), each instance has its WAL
// and send positions in wal_directory/<name>, its metrics carry
// instance_name, and infra's write_stale_on_shutdown leaves its series
// stale at the receiver after a stop while apps' are not.
func TestGrafanaAgent_TwoInstances(t *testing.T) {
	setAWSEnv(t)
	appsRecv, appsURL := startReceiver(t, "eu-west-1")
	infraRecv, infraURL := startReceiver(t, "eu-west-1")
	app := serve(t, appRegistry(t))
	infraReg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "infra_disk_free_bytes", Help: "Free."})
	g.Set(42)
	infraReg.MustRegister(g)
	infra := serve(t, infraReg)
	walDir := t.TempDir()
	t.Setenv("WAL_DIR", walDir)
	t.Setenv("APPS_URL", appsURL)
	t.Setenv("INFRA_URL", infraURL)
	t.Setenv("APP_TARGET", app.Listener.Addr().String())
	t.Setenv("INFRA_TARGET", infra.Listener.Addr().String())

	a := launch(t, &agentUnderTest{recv: appsRecv}, agentOptions{ConfigFile: gaTestdata + "two-instances.yml", FlushDeadline: 5 * time.Second})
	at := func(r *receive.Server) *agentUnderTest { return &agentUnderTest{recv: r} }
	waitFor(t, "apps' samples at the apps receiver", at(appsRecv).scalarIs(t, `app_temperature_celsius{job="app",region="eu-west-1"}`, 21.5))
	waitFor(t, "infra's samples at the infra receiver", at(infraRecv).scalarIs(t, `infra_disk_free_bytes{job="infra",region="eu-west-1"}`, 42))
	for _, c := range []struct {
		recv *receive.Server
		expr string
	}{
		{appsRecv, `{job="infra"}`}, {appsRecv, `{__name__=~"infra_.+"}`},
		{infraRecv, `{job="app"}`}, {infraRecv, `{__name__=~"app_.+"}`},
	} {
		if v := at(c.recv).query(t, c.expr); len(v) != 0 {
			t.Errorf("%s crossed instances: %v", c.expr, v)
		}
	}
	for _, name := range []string{"apps", "infra"} {
		if got := a.metric(t, "prometheus_remote_storage_samples_total", map[string]string{"instance_name": name}); got <= 0 {
			t.Errorf("prometheus_remote_storage_samples_total{instance_name=%q} = %v", name, got)
		}
	}
	a.stop(t)

	for _, name := range []string{"apps", "infra"} {
		segs, _ := filepath.Glob(filepath.Join(walDir, name, "wal", "0*"))
		pos, _ := os.ReadDir(filepath.Join(walDir, name, "send_positions"))
		if len(segs) == 0 || len(pos) == 0 {
			t.Errorf("instance %s: %d WAL segments, %d send positions in %s", name, len(segs), len(pos), filepath.Join(walDir, name))
		}
	}
	// Stale markers end infra's series; apps' stay current.
	if v := at(infraRecv).query(t, `up{job="infra"}`); len(v) != 0 {
		t.Errorf("infra's up after a stop with write_stale_on_shutdown: %v, want stale", v)
	}
	if v := at(appsRecv).query(t, `up{job="app"}`); len(v) != 1 {
		t.Errorf("apps' up after a stop without write_stale_on_shutdown: %v, want current", v)
	}
	if strings.Contains(a.logs.String(), e2eSecret) {
		t.Error("the secret key is in the log")
	}
}

// TestGrafanaAgent_EC2 runs the EC2 file of AWS's shape, its URL pointed at
// ampemu: the instance scrapes a node_exporter stand-in and sends signed.
func TestGrafanaAgent_EC2(t *testing.T) {
	setAWSEnv(t)
	recv, url := startReceiver(t, "us-east-1")
	node := serve(t, appRegistry(t))
	t.Setenv("REMOTE_WRITE_URL", url)
	t.Setenv("NODE_EXPORTER", node.Listener.Addr().String())
	t.Setenv("AGENT_ADDRESS", "127.0.0.1:1") // the agent's own port is not known before it listens
	storage := t.TempDir()
	a := launch(t, &agentUnderTest{recv: recv}, agentOptions{ConfigFile: gaTestdata + "ec2.yml", StoragePath: storage, FlushDeadline: 5 * time.Second})
	waitFor(t, "node's samples", a.scalarIs(t, `app_temperature_celsius{job="node",cluster="ec2-fleet"}`, 21.5))
	waitFor(t, "the unreachable job's up", a.scalarIs(t, `up{job="agent"}`, 0))
	a.stop(t)
	// --storage.path takes wal_directory's place; the instance keeps its directory.
	if segs, _ := filepath.Glob(filepath.Join(storage, "agent", "wal", "0*")); len(segs) == 0 {
		t.Errorf("no WAL in %s", filepath.Join(storage, "agent", "wal"))
	}
}

// TestGrafanaAgent_CheckConfig: check-config accepts the files of each
// shape (the EKS one needs this binary's Kubernetes discovery) and names
// the refused field of a bad one.
func TestGrafanaAgent_CheckConfig(t *testing.T) {
	t.Setenv("REMOTE_WRITE_URL", "https://aps-workspaces.us-west-2.amazonaws.com/workspaces/ws-1/api/v1/remote_write")
	var stdout, stderr bytes.Buffer
	code := run([]string{"check-config", gaTestdata + "eks.yml", gaTestdata + "two-instances.yml"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, stdout.String(), stderr.String())
	}
	for _, want := range []string{
		"eks.yml is valid: Grafana Agent static mode, 1 instance(s)",
		"instance agent: 1 scrape config(s), 1 remote_write endpoint(s), WAL in /var/lib/agent/data/agent",
		"instance infra: 1 scrape config(s), 1 remote_write endpoint(s), WAL in /var/lib/grafana-agent/infra",
		`listen address "0.0.0.0:9090"`,
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}
	stdout.Reset()
	if code := run([]string{"check-config", gaTestdata + "integrations.bad.yml"}, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "integrations.bad.yml:11: integrations.node_exporter: not supported: rwagent embeds no exporters; run node_exporter") {
		t.Errorf("exit %d, stderr %s", code, stderr.String())
	}
}

// TestGrafanaAgent_Convert: convert's output for each file matches its
// golden file, keeps the environment references as written, and loads as
// a Prometheus-shaped configuration that means the same as the Grafana
// Agent instance: the same Prometheus config, sigv4 blocks and WAL.
func TestGrafanaAgent_Convert(t *testing.T) {
	t.Setenv("REMOTE_WRITE_URL", "https://aps-workspaces.us-west-2.amazonaws.com/workspaces/ws-1/api/v1/remote_write")
	t.Setenv("AWS_REGION", "us-west-2")
	for _, name := range []string{"ec2", "eks"} {
		t.Run(name, func(t *testing.T) {
			file := gaTestdata + name + ".yml"
			var stdout, stderr bytes.Buffer
			if code := run([]string{"convert", "grafana-agent", file}, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			golden := filepath.Join("testdata", "convert-"+name+".golden")
			if os.Getenv("UPDATE_GOLDEN") != "" {
				if err := os.WriteFile(golden, stdout.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if stdout.String() != string(want) {
				t.Errorf("output differs from %s:\n%s", golden, stdout.String())
			}
			if !strings.Contains(stdout.String(), "${REMOTE_WRITE_URL") {
				t.Error("the environment reference was expanded into the output")
			}

			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			ga, err := config.Load(raw, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			conv, err := config.Load(stdout.Bytes(), nil, nil)
			if err != nil {
				t.Fatalf("converted output does not load: %v", err)
			}
			in := ga.Instances[0]
			if conv.Shape != config.ShapePrometheus || conv.WAL != in.WAL {
				t.Errorf("converted WAL %+v, instance's %+v", conv.WAL, in.WAL)
			}
			a, _ := yaml.Marshal(in.Prometheus)
			b, _ := yaml.Marshal(conv.Prometheus)
			if string(a) != string(b) {
				t.Errorf("the converted Prometheus config differs:\n%s\nwant\n%s", b, a)
			}
			for i := range in.RemoteWriteSigV4 {
				if (in.RemoteWriteSigV4[i] == nil) != (conv.RemoteWriteSigV4[i] == nil) ||
					(in.RemoteWriteSigV4[i] != nil && *in.RemoteWriteSigV4[i] != *conv.RemoteWriteSigV4[i]) {
					t.Errorf("sigv4 of remote_write[%d]: %+v, want %+v", i, conv.RemoteWriteSigV4[i], in.RemoteWriteSigV4[i])
				}
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"convert", "grafana-agent", gaTestdata + "two-instances.yml"}, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "metrics.configs[1].host_filter: cannot be converted") {
		t.Errorf("host_filter: exit %d, stderr %s", code, stderr.String())
	}
}

// TestGrafanaAgent_ServerBlock: the server: block fills in the flags the
// command line leaves out, and a flag given wins.
func TestGrafanaAgent_ServerBlock(t *testing.T) {
	for _, tc := range []struct {
		args                []string
		level, format, addr string
	}{
		{nil, "debug", "json", "0.0.0.0:9090"},
		{[]string{"--log.level=warn", "--web.listen-address=127.0.0.1:1"}, "warn", "json", "127.0.0.1:1"},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		level := fs.String("log.level", "info", "")
		format := fs.String("log.format", "logfmt", "")
		addr := fs.String("web.listen-address", "127.0.0.1:12345", "")
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		applyServerBlock(fs, gaTestdata+"two-instances.yml")
		if *level != tc.level || *format != tc.format || *addr != tc.addr {
			t.Errorf("%v: %s %s %s, want %s %s %s", tc.args, *level, *format, *addr, tc.level, tc.format, tc.addr)
		}
	}
}

// TestHostFilter keeps the targets whose address or host label names this
// host (or localhost), after host_filter_relabel_configs.
func TestHostFilter(t *testing.T) {
	var rc []*relabel.Config
	if err := yaml.UnmarshalStrict([]byte(`
- source_labels: [__meta_ec2_private_dns_name]
  target_label: __host__
- source_labels: [__meta_ec2_tag_skip]
  regex: "yes"
  action: drop
`), &rc); err != nil {
		t.Fatal(err)
	}
	for _, c := range rc {
		c.NameValidationScheme = model.UTF8Validation // as pkg/config sets it
	}
	f := &hostFilter{host: "node-a", relabels: rc}
	in := map[string][]*targetgroup.Group{"job": {{
		Source: "s",
		Labels: model.LabelSet{"__meta_kubernetes_pod_node_name": "node-b"},
		Targets: []model.LabelSet{
			{"__address__": "node-a:9100"},                                                // address
			{"__address__": "10.0.0.1:9100"},                                              // group's node label: node-b
			{"__address__": "10.0.0.2:9100", "__meta_kubernetes_pod_node_name": "node-a"}, // own label wins
			{"__address__": "localhost:9100"},                                             // always
			{"__address__": "10.0.0.3:9100", "__meta_ec2_private_dns_name": "node-a"},     // relabelled __host__
			{"__address__": "node-a:9100", "__meta_ec2_tag_skip": "yes"},                  // dropped by relabeling
			{"__meta_foo": "x"},                                                           // no address: kept for the scrape manager to report
		},
	}}}
	out := f.filter(in)
	var got []string
	for _, tg := range out["job"][0].Targets {
		got = append(got, string(tg["__address__"]))
	}
	want := []string{"node-a:9100", "10.0.0.2:9100", "localhost:9100", "10.0.0.3:9100", ""}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("kept %q, want %q", got, want)
	}
	if len(in["job"][0].Targets) != 7 {
		t.Error("the discovered group was changed")
	}
	if _, ok := out["job"][0].Targets[4]["__host__"]; ok {
		t.Error("the relabeling leaked into the scraped target")
	}

	// run stops with its context.
	ctx, cancel := context.WithCancel(context.Background())
	src, dst := make(chan map[string][]*targetgroup.Group), make(chan map[string][]*targetgroup.Group)
	done := make(chan struct{})
	go func() { f.run(ctx, src, dst); close(done) }()
	src <- in
	if got := <-dst; len(got["job"][0].Targets) != 5 {
		t.Errorf("run passed %d targets", len(got["job"][0].Targets))
	}
	cancel()
	<-done
}

// TestGrafanaAgent_CommandLine: Grafana Agent's command line parses.
func TestGrafanaAgent_CommandLine(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-config.file=" + gaTestdata + "ec2.yml", "-config.expand-env", "--version"}, &stdout, &stderr); code != 0 {
		t.Errorf("exit %d: %s", code, stderr.String())
	}
}

// TestGrafanaAgent_NoExpandEnvRefused: rwagent always expands ${VAR}, so
// Grafana Agent's -config.expand-env=false cannot be honoured and is
// refused by name rather than ignored.
func TestGrafanaAgent_NoExpandEnvRefused(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"-config.file=" + gaTestdata + "ec2.yml", "-config.expand-env=false", "--web.listen-address=127.0.0.1:0", "--storage.path=" + t.TempDir()}, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "--config.expand-env=false is not supported") {
		t.Errorf("exit %d, stderr %q; want 2 and the flag named", code, stderr.String())
	}
}
