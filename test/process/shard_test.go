//go:build process

package process

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// labelReceiver is a remote-write 1.0 receiver that counts, for each value
// of the label key, the samples that came with each value of the label by.
type labelReceiver struct {
	key, by string

	mu      sync.Mutex
	seen    map[string]map[string]int  // key value → by value → samples
	unkeyed int                        // series without the key label
	values  map[string]map[string]bool // label name → values seen
}

func newLabelReceiver(key, by string) *labelReceiver {
	return &labelReceiver{key: key, by: by, seen: map[string]map[string]int{}, values: map[string]map[string]bool{}}
}

func (u *labelReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := decodeWriteRequest(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, ts := range req.Timeseries {
		var key, by string
		for _, l := range ts.Labels {
			switch l.Name {
			case u.key:
				key = l.Value
			case u.by:
				by = l.Value
			}
			if u.values[l.Name] == nil {
				u.values[l.Name] = map[string]bool{}
			}
			u.values[l.Name][l.Value] = true
		}
		if key == "" {
			u.unkeyed++
			continue
		}
		if u.seen[key] == nil {
			u.seen[key] = map[string]int{}
		}
		u.seen[key][by] += len(ts.Samples)
	}
	w.WriteHeader(http.StatusNoContent)
}

// snapshot returns a copy of seen.
func (u *labelReceiver) snapshot() map[string]map[string]int {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := map[string]map[string]int{}
	for k, m := range u.seen {
		out[k] = map[string]int{}
		for b, n := range m {
			out[k][b] = n
		}
	}
	return out
}

// labelValues returns the values seen of label name, sorted.
func (u *labelReceiver) labelValues(name string) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for v := range u.values[name] {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// agentEnv is the environment of an agent named like a StatefulSet pod,
// with nothing inherited that would pick another shard.
func agentEnv(hostname string) []string {
	return []string{"HOSTNAME=" + hostname, "POD_NAME=", "RWAGENT_SHARD_COUNT=", "RWAGENT_SHARD_INDEX=", "RWAGENT_SHARD_REPLICATION="}
}

// TestProcessShards runs three rwagents as the pods rwagent-0..2 of a
// StatefulSet with --shard.count=3 on the same 30 targets: every target's
// samples arrive from exactly one agent, each agent has some, and each
// agent's rwagent_shard_targets says what it kept and dropped.
func TestProcessShards(t *testing.T) {
	const targets, agents = 30, 3
	dir := t.TempDir()
	rwagent := lookBinary(t, "RWAGENT_BIN", "rwagent")

	var addrs []string
	for i := range targets {
		addrs = append(addrs, serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "probe_value{target=\"%d\"} 1\n", i)
		})))
	}
	recv := newLabelReceiver("instance", "agent")
	recvAddr := serve(t, recv)

	cfg := filepath.Join(dir, "rwagent.yml")
	if err := os.WriteFile(cfg, []byte(`
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  external_labels:
    agent: ${HOSTNAME}
scrape_configs:
  - job_name: fleet
    static_configs:
      - targets: ["`+strings.Join(addrs, `", "`)+`"]
remote_write:
  - url: http://`+recvAddr+`/write
    queue_config:
      batch_send_deadline: 200ms
wal:
  fsync: never
`), 0o644); err != nil {
		t.Fatal(err)
	}
	webs := freePorts(t, agents)
	procs := make([]*proc, agents)
	for i := range agents {
		name := fmt.Sprintf("rwagent-%d", i)
		procs[i] = startProcEnv(t, dir, name, rwagent, agentEnv(name),
			"--config.file="+cfg,
			"--storage.path="+filepath.Join(dir, name),
			"--web.listen-address="+webs[i],
			"--shard.count=3")
	}
	for i := range agents {
		waitUp(t, "http://"+webs[i]+"/-/ready")
	}

	// Wait until every target has sent at least 5 scrapes' worth of
	// samples (probe_value, up and the scrape_* series): enough for a
	// second agent scraping it to have shown up too.
	deadline := time.Now().Add(45 * time.Second)
	var seen map[string]map[string]int
	for {
		seen = recv.snapshot()
		done := len(seen) == targets
		for _, by := range seen {
			n := 0
			for _, c := range by {
				n += c
			}
			done = done && n >= 5*6
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 45s the receiver has %d of %d targets: %v", len(seen), targets, seen)
		}
		time.Sleep(200 * time.Millisecond)
	}

	perAgent := map[string]int{}
	for inst, by := range seen {
		if len(by) != 1 {
			t.Errorf("target %s scraped by %d agents: %v", inst, len(by), by)
		}
		for a := range by {
			perAgent[a]++
		}
	}
	t.Logf("targets per agent: %v", perAgent)
	for i := range agents {
		name := fmt.Sprintf("rwagent-%d", i)
		if perAgent[name] == 0 {
			t.Errorf("%s scraped no target (split %v)", name, perAgent)
		}
		kept := metricValue(t, webs[i], `rwagent_shard_targets{scrape_job="fleet",state="kept"}`)
		dropped := metricValue(t, webs[i], `rwagent_shard_targets{scrape_job="fleet",state="dropped"}`)
		if int(kept) != perAgent[name] || int(kept+dropped) != targets {
			t.Errorf("%s: rwagent_shard_targets kept %v dropped %v; it sent %d of %d targets", name, kept, dropped, perAgent[name], targets)
		}
	}
	for i, p := range procs {
		p.stop(t, fmt.Sprintf("rwagent-%d", i), 30*time.Second, true)
	}
}

// TestProcessHAPair runs two unsharded rwagents on the same target, as an
// HA pair for AMP's deduplication: external_labels cluster and
// __replica__ (from ${HOSTNAME}) reach the receiver on every series, one
// replica value per agent.
func TestProcessHAPair(t *testing.T) {
	dir := t.TempDir()
	rwagent := lookBinary(t, "RWAGENT_BIN", "rwagent")
	target := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "probe_value 1")
	}))
	recv := newLabelReceiver("__replica__", "cluster")
	recvAddr := serve(t, recv)
	cfg := filepath.Join(dir, "rwagent.yml")
	if err := os.WriteFile(cfg, []byte(`
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  external_labels:
    cluster: prod
    __replica__: ${HOSTNAME}
scrape_configs:
  - job_name: ha
    static_configs:
      - targets: ["`+target+`"]
remote_write:
  - url: http://`+recvAddr+`/write
    queue_config:
      batch_send_deadline: 200ms
wal:
  fsync: never
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var procs []*proc
	for _, name := range []string{"rwagent-a", "rwagent-b"} {
		web := freePort(t)
		procs = append(procs, startProcEnv(t, dir, name, rwagent, agentEnv(name),
			"--config.file="+cfg, "--storage.path="+filepath.Join(dir, name), "--web.listen-address="+web))
		waitUp(t, "http://"+web+"/-/ready")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		seen := recv.snapshot()
		if len(seen) == 2 && seen["rwagent-a"]["prod"] > 0 && seen["rwagent-b"]["prod"] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s the receiver has replicas %v, want rwagent-a and rwagent-b each with cluster=prod", seen)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Every series carries both labels: none arrives without them.
	if got := recv.labelValues("cluster"); !slices.Equal(got, []string{"prod"}) {
		t.Errorf("cluster values %v, want [prod]", got)
	}
	recv.mu.Lock()
	unkeyed := recv.unkeyed
	recv.mu.Unlock()
	if unkeyed != 0 {
		t.Errorf("%d series arrived without __replica__", unkeyed)
	}
	for i, p := range procs {
		p.stop(t, []string{"rwagent-a", "rwagent-b"}[i], 30*time.Second, true)
	}
}
