//go:build process

package process

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
)

// peakRSSBound is what rwagent may reach, at its peak, while it scrapes one
// hostile target with the default body_size_limit (64 MiB) next to a normal
// one: an idle agent's 75 MiB, the cut body (the limit, in chunks reused
// from one scrape to the next) and 50 MiB for the garbage collector's
// slack. Measured: 152 MiB for each of the three targets. Before the limit,
// a 1 GiB body took the agent to 2.4 GB; with the limit but a buffer that
// doubled as it grew, to 300 MiB.
const peakRSSBound = 192 << 20

// TestProcessHostileTargets runs rwagent with no body_size_limit in its
// configuration against a target that sends 1 GiB, a gzip bomb that
// inflates to 2 GiB, and a body that never ends, one agent per target. Each
// scrape must be cut at the default limit, fail with up=0, be counted and
// logged, leave the agent's peak RSS (VmHWM) under peakRSSBound, and leave
// the normal target scraped.
func TestProcessHostileTargets(t *testing.T) {
	rwagent := lookBinary(t, "RWAGENT_BIN", "rwagent")
	bomb := gzipBomb(t)
	cases := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"1GiB body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			chunk := bytes.Repeat([]byte("big_metric 1\n"), (1<<20)/13)
			for sent := 0; sent < 1<<30; sent += len(chunk) { // chunked: no Content-Length
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}},
		{"gzip bomb", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(bomb)
		}},
		{"endless body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			chunk := bytes.Repeat([]byte("endless_metric 1\n"), 4096)
			deadline := time.Now().Add(time.Minute)
			for i := 0; i < 1<<20 && time.Now().Before(deadline); i++ {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runHostile(t, rwagent, tc.handler)
		})
	}
}

func runHostile(t *testing.T, rwagent string, hostile http.Handler) {
	dir := t.TempDir()
	hostileAddr := serve(t, hostile)
	normalAddr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = io.WriteString(w, "normal_metric 1\n")
	}))
	recv := &upReceiver{up: map[string]float64{}}
	recvAddr := serve(t, recv)
	agentAddr := freePort(t)

	failureLog := filepath.Join(dir, "failures.log")
	cfg := strings.NewReplacer("HOSTILE", hostileAddr, "NORMAL", normalAddr, "RECV", recvAddr, "FAILURES", failureLog).Replace(`
global:
  scrape_interval: 2s
  scrape_timeout: 2s
  scrape_failure_log_file: FAILURES
scrape_configs:
  - job_name: hostile
    static_configs:
      - targets: ["HOSTILE"]
  - job_name: normal
    static_configs:
      - targets: ["NORMAL"]
remote_write:
  - url: http://RECV/api/v1/write
    queue_config:
      batch_send_deadline: 200ms
wal:
  fsync: never
`)
	cfgPath := filepath.Join(dir, "rwagent.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	agent := startProc(t, dir, "rwagent", rwagent,
		"--config.file="+cfgPath,
		"--storage.path="+filepath.Join(dir, "agent"),
		"--web.listen-address="+agentAddr)
	waitUp(t, "http://"+agentAddr+"/-/ready")

	// Three scrapes cut at the limit, and both jobs' up delivered.
	deadline := time.Now().Add(40 * time.Second)
	var cut float64
	for time.Now().Before(deadline) {
		cut = metricValue(t, agentAddr, `rwagent_scrape_failures_total{reason="body_size_limit",scrape_job="hostile"}`)
		hostileUp, okH := recv.get("hostile")
		normalUp, okN := recv.get("normal")
		if cut >= 3 && okH && hostileUp == 0 && okN && normalUp == 1 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	hostileUp, okH := recv.get("hostile")
	normalUp, okN := recv.get("normal")
	if cut < 3 || !okH || hostileUp != 0 || !okN || normalUp != 1 {
		t.Fatalf("after 40s: %v scrapes cut at body_size_limit (want >= 3), up{job=hostile}=%v (received %v, want 0), up{job=normal}=%v (received %v, want 1)",
			cut, hostileUp, okH, normalUp, okN)
	}
	if v := metricValue(t, agentAddr, `prometheus_target_scrapes_exceeded_body_size_limit_total`); v < 3 {
		t.Errorf("prometheus_target_scrapes_exceeded_body_size_limit_total = %v, want >= 3", v)
	}

	hwm := vmHWM(t, agent.cmd.Process.Pid)
	t.Logf("peak RSS (VmHWM) %.1f MiB, bound %d MiB", float64(hwm)/(1<<20), peakRSSBound>>20)
	if hwm > peakRSSBound {
		t.Errorf("peak RSS %d bytes, over the bound of %d", hwm, peakRSSBound)
	}
	agent.stop(t, "rwagent", 30*time.Second, true)

	log, err := os.ReadFile(agent.log)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for line := range strings.Lines(string(log)) {
		if strings.Contains(line, "Scrape failed") && strings.Contains(line, "body_size_limit") && strings.Contains(line, hostileAddr) {
			found = true
		}
	}
	if !found {
		t.Errorf("no log line says the scrape of %s failed at body_size_limit:\n%s", hostileAddr, tail(string(log), 4000))
	}

	// scrape_failure_log_file: one JSON line per failed scrape.
	b, err := os.ReadFile(failureLog)
	if err != nil {
		t.Fatalf("scrape_failure_log_file: %v", err)
	}
	n := 0
	for line := range strings.Lines(string(b)) {
		var l struct {
			Msg    string `json:"msg"`
			Target string `json:"target"`
			Job    string `json:"scrape_job"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("line %q of the scrape_failure_log_file: %v", line, err)
		}
		if l.Job != "hostile" || l.Target != "http://"+hostileAddr+"/metrics" || !strings.Contains(l.Msg, "body_size_limit") {
			t.Errorf("failure line %q: want job hostile, target %s, body_size_limit", line, hostileAddr)
		}
		n++
	}
	if n < 3 {
		t.Errorf("scrape_failure_log_file has %d lines, want one per failed scrape (>= 3)", n)
	}
}

// gzipBomb returns a gzip body of about 2 MiB that inflates to 2 GiB of
// zeros: one member of 16 MiB, repeated (a gzip reader reads concatenated
// members as one stream).
func gzipBomb(t *testing.T) []byte {
	t.Helper()
	var member bytes.Buffer
	zw, err := gzip.NewWriterLevel(&member, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(make([]byte, 16<<20)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return bytes.Repeat(member.Bytes(), 128)
}

// serve serves h on 127.0.0.1 until the test ends.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// upReceiver is a remote-write 1.0 receiver that keeps the last value of up
// per job.
type upReceiver struct {
	mu sync.Mutex
	up map[string]float64
}

func (u *upReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := decodeWriteRequest(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, ts := range req.Timeseries {
		var name, job string
		for _, l := range ts.Labels {
			switch l.Name {
			case "__name__":
				name = l.Value
			case "job":
				job = l.Value
			}
		}
		if name == "up" && len(ts.Samples) > 0 {
			u.up[job] = ts.Samples[len(ts.Samples)-1].Value
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (u *upReceiver) get(job string) (float64, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	v, ok := u.up[job]
	return v, ok
}

// metricValue returns the value of the series named exactly by series
// (name{labels} in the exposition's order) on rwagent's /metrics, or 0.
func metricValue(t *testing.T, addr, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("value of %s: %v", series, err)
			}
			return v
		}
	}
	return 0
}

// vmHWM reads the peak resident set size of process pid from
// /proc/pid/status, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/pid/status")
	return 0
}
