//go:build process

package process

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ampemuBinary returns $AMPEMU_BIN, or builds ampemu into dir.
func ampemuBinary(t *testing.T, dir string) string {
	t.Helper()
	if p := os.Getenv("AMPEMU_BIN"); p != "" {
		return p
	}
	out := filepath.Join(dir, "ampemu")
	cmd := exec.Command("go", "build", "-o", out, "github.com/rwagent/rwagent/cmd/ampemu")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build ampemu: %v", err)
	}
	return out
}

// TestProcessPrometheusThroughGateway: Debian's Prometheus, which cannot
// sign for AWS, sends remote write with `authorization:` to rwagent's
// gateway; rwagent forwards to ampemu. Its own series arrive there with
// the tenant label of its key.
func TestProcessPrometheusThroughGateway(t *testing.T) {
	dir := t.TempDir()
	rwagent := lookBinary(t, "RWAGENT_BIN", "rwagent")
	promBin := lookBinary(t, "PROMETHEUS_BIN", "prometheus")
	ampemu := ampemuBinary(t, dir)

	ports := freePorts(t, 4)
	ampAddr, promAddr, agentAddr, gwAddr := ports[0], ports[1], ports[2], ports[3]
	amp := startProc(t, dir, "ampemu", ampemu, "--web.listen-address="+ampAddr, "--workspace-id=ws-gw", "--storage.path="+filepath.Join(dir, "amp"))
	waitUp(t, "http://"+ampAddr+"/workspaces/ws-gw/api/v1/labels")

	keyFile := filepath.Join(dir, "team-a.key")
	if err := os.WriteFile(keyFile, []byte("process-test-key-team-a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	agentCfg := filepath.Join(dir, "rwagent.yml")
	if err := os.WriteFile(agentCfg, []byte(strings.NewReplacer("AMP", ampAddr, "GW", gwAddr, "KEYFILE", keyFile).Replace(`
remote_write:
  - url: http://AMP/workspaces/ws-gw/api/v1/remote_write
    queue_config:
      batch_send_deadline: 500ms
receive:
  listen_address: GW
  api_keys:
    - {tenant: team-a, key_file: KEYFILE}
`)), 0o644); err != nil {
		t.Fatal(err)
	}
	agent := startProc(t, dir, "rwagent", rwagent,
		"--config.file="+agentCfg,
		"--storage.path="+filepath.Join(dir, "agent"),
		"--web.listen-address="+agentAddr)
	waitUp(t, "http://"+agentAddr+"/-/healthy")

	promCfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(promCfg, []byte(strings.NewReplacer("PROM", promAddr, "GW", gwAddr, "KEYFILE", keyFile).Replace(`
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prom
    static_configs:
      - targets: ["PROM"]
remote_write:
  - url: http://GW/api/v1/write
    authorization:
      credentials_file: KEYFILE
    queue_config:
      batch_send_deadline: 500ms
      retry_on_http_429: true
`)), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := startProc(t, dir, "prometheus", promBin,
		"--config.file="+promCfg,
		"--storage.tsdb.path="+filepath.Join(dir, "prom-data"),
		"--web.listen-address="+promAddr)

	ampQuery := ampAddr + "/workspaces/ws-gw"
	deadline := time.Now().Add(60 * time.Second)
	var up, series float64
	for time.Now().Before(deadline) {
		up = query(t, ampQuery, `up{job="prom", tenant="team-a"}`)
		series = query(t, ampQuery, `count({job="prom", tenant="team-a"})`)
		if up == 1 && series >= 100 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if up != 1 || series < 100 {
		t.Fatalf("in ampemu after 60s: up{tenant=team-a}=%v (want 1), %v series of job prom with the tenant label (want >= 100)", up, series)
	}
	if n := query(t, ampQuery, `count({job="prom", tenant!="team-a"})`); n != -1 {
		t.Errorf("%v series of job prom without the tenant label", n)
	}
	prom.stop(t, "prometheus", 30*time.Second, false)
	agent.stop(t, "rwagent", 30*time.Second, true)
	amp.stop(t, "ampemu", 10*time.Second, false)
}
