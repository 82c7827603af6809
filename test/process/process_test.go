//go:build process

// Package process runs rwagent as users do, as a process between Debian's
// prometheus-node-exporter and prometheus (its remote-write receiver), and
// checks with Prometheus' HTTP API that node_exporter's series arrive.
// `make test-process` builds rwagent and runs it; .ci/run installs the
// Debian packages.
package process

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

func freePort(t *testing.T) string {
	t.Helper()
	return freePorts(t, 1)[0]
}

// freePorts returns n distinct free addresses on 127.0.0.1. It holds every
// listener open until all n are chosen, so that the kernel cannot hand the
// same port out twice (it did: ampemu and prometheus once got one port).
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs[i] = ln.Addr().String()
	}
	return addrs
}

func lookBinary(t *testing.T, env, name string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (set %s, or install it: .ci/run and `make deps` do): %v", name, env, err)
	}
	return p
}

type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan error
}

func startProc(t *testing.T, dir, name, bin string, args ...string) *proc {
	t.Helper()
	return startProcEnv(t, dir, name, bin, nil, args...)
}

// startProcEnv is startProc with env added to (and overriding) the test's
// environment.
func startProcEnv(t *testing.T, dir, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true"), env...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", name, tail(string(b), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// stop sends SIGTERM and waits for the process to end; clean says it
// must exit 0 (node_exporter just dies of the signal, which is fine).
func (p *proc) stop(t *testing.T, name string, within time.Duration, clean bool) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil && clean {
			t.Errorf("%s exited with %v", name, err)
		}
	case <-time.After(within):
		t.Errorf("%s did not stop within %s", name, within)
	}
}

// waitUp waits for u to answer 200.
func waitUp(t *testing.T, u string) {
	t.Helper()
	waitFor(t, u+" to answer 200", func() bool {
		resp, err := http.Get(u)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// waitDeadline bounds every waitFor in this package. The rule, the same in
// every package: long enough that a loaded 2-core CI machine never hits it
// while a test is merely slow, short enough that a hang fails inside the
// package's go test -timeout with the name of what it waited for.
const waitDeadline = 30 * time.Second

// waitFor polls cond every 10ms until it holds, and fails the test if it
// does not within waitDeadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitDeadline, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// query runs an instant PromQL query against Prometheus' HTTP API and
// returns the first result's value, or -1 when the result is empty.
func query(t *testing.T, promAddr, q string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			}
		}
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Status != "success" {
		t.Fatalf("query %q: %s %s", q, resp.Status, b)
	}
	if len(r.Data.Result) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(fmt.Sprint(r.Data.Result[0].Value[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestProcessNodeExporterToPrometheus(t *testing.T) {
	dir := t.TempDir()
	rwagent := lookBinary(t, "RWAGENT_BIN", "rwagent")
	promBin := lookBinary(t, "PROMETHEUS_BIN", "prometheus")
	nodeBin := lookBinary(t, "NODE_EXPORTER_BIN", "prometheus-node-exporter")

	ports := freePorts(t, 3)
	nodeAddr, promAddr, agentAddr := ports[0], ports[1], ports[2]
	node := startProc(t, dir, "node_exporter", nodeBin, "--web.listen-address="+nodeAddr)
	promCfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(promCfg, []byte("global:\n  scrape_interval: 1m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := startProc(t, dir, "prometheus", promBin,
		"--config.file="+promCfg,
		"--storage.tsdb.path="+filepath.Join(dir, "prom-data"),
		"--web.listen-address="+promAddr,
		"--web.enable-remote-write-receiver")
	waitUp(t, "http://"+nodeAddr+"/metrics")
	waitUp(t, "http://"+promAddr+"/-/ready")

	// The same file a Prometheus user would write, pointed at Prometheus'
	// receiver. The external label proves it is applied on the way.
	agentCfg := filepath.Join(dir, "rwagent.yml")
	cfg := strings.NewReplacer("NODE", nodeAddr, "PROM", promAddr).Replace(`
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  external_labels:
    agent: process-test
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["NODE"]
remote_write:
  - url: http://PROM/api/v1/write
    queue_config:
      batch_send_deadline: 500ms
wal:
  fsync: never
`)
	if err := os.WriteFile(agentCfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	agent := startProc(t, dir, "rwagent", rwagent,
		"--config.file="+agentCfg,
		"--storage.path="+filepath.Join(dir, "agent"),
		"--web.listen-address="+agentAddr)
	waitUp(t, "http://"+agentAddr+"/-/ready")

	deadline := time.Now().Add(60 * time.Second)
	var series, up, ver float64
	for time.Now().Before(deadline) {
		series = query(t, promAddr, `count({job="node", instance="`+nodeAddr+`", agent="process-test"})`)
		up = query(t, promAddr, `up{job="node", agent="process-test"}`)
		ver = query(t, promAddr, `count(node_exporter_build_info{job="node"})`)
		if series >= 100 && up == 1 && ver == 1 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if series < 100 || up != 1 || ver != 1 {
		t.Fatalf("in Prometheus after 60s: %v node series (want >= 100), up=%v (want 1), node_exporter_build_info count=%v (want 1)", series, up, ver)
	}
	// Values travel intact: the CPU seconds counter is positive.
	if v := query(t, promAddr, `sum(node_cpu_seconds_total{job="node"})`); v <= 0 {
		t.Errorf("sum(node_cpu_seconds_total) = %v, want > 0", v)
	}
	agent.stop(t, "rwagent", 30*time.Second, true)
	node.stop(t, "node_exporter", 10*time.Second, false)
	prom.stop(t, "prometheus", 30*time.Second, false)
}

// decodeWriteRequest reads a remote-write 1.0 request: a snappy-compressed
// prompb.WriteRequest.
func decodeWriteRequest(r *http.Request) (*prompb.WriteRequest, error) {
	compressed, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	raw, err := snappy.Decode(nil, compressed)
	if err != nil {
		return nil, err
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		return nil, err
	}
	return &req, nil
}
