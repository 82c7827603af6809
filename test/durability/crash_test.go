//go:build durability

// Package durability runs rwagent as a process, kills it with SIGKILL while
// its receiver is down or slow, restarts it on the same data directory, and
// checks that every sample logged before the kill arrives, with duplicates
// counted and bounded.
package durability

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// binary returns $RWAGENT_BIN, or builds rwagent into a temporary directory.
func binary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("RWAGENT_BIN"); b != "" {
		return b
	}
	out := filepath.Join(t.TempDir(), "rwagent")
	cmd := exec.Command("go", "build", "-o", out, "github.com/rwagent/rwagent/cmd/rwagent")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build rwagent: %v", err)
	}
	return out
}

// listen starts h on 127.0.0.1.
func listen(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return ln.Addr().String()
}

// sink keeps every seq_total value it accepted, in arrival order. While
// down it answers 503; delay slows every answer.
type sink struct {
	mu    sync.Mutex
	down  bool
	delay time.Duration
	seq   []float64
	// seen counts each sample (series and timestamp) accepted; dups
	// counts those accepted more than once, of every series.
	seen map[string]int
	dups int
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	down, delay := s.down, s.delay
	s.mu.Unlock()
	if down {
		http.Error(w, "down for the test", http.StatusServiceUnavailable)
		return
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// Stored before the slow answer: a kill during the delay leaves a
	// batch delivered but not acknowledged, which is sent again.
	s.mu.Lock()
	if s.seen == nil {
		s.seen = map[string]int{}
	}
	for _, ts := range req.Timeseries {
		var sb strings.Builder
		for _, l := range ts.Labels {
			fmt.Fprintf(&sb, "%s=%q,", l.Name, l.Value)
		}
		for _, x := range ts.Samples {
			k := fmt.Sprintf("%s@%d", sb.String(), x.Timestamp)
			s.seen[k]++
			if s.seen[k] > 1 {
				s.dups++
			}
		}
		for _, l := range ts.Labels {
			if l.Name == "__name__" && l.Value == "seq_total" {
				for _, x := range ts.Samples {
					if !value.IsStaleNaN(x.Value) {
						s.seq = append(s.seq, x.Value)
					}
				}
			}
		}
	}
	s.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *sink) set(down bool, delay time.Duration) {
	s.mu.Lock()
	s.down, s.delay = down, delay
	s.mu.Unlock()
}

// duplicates returns the samples accepted more than once, and how many
// distinct series were accepted.
func (s *sink) duplicates() (dups, series int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := map[string]bool{}
	for k := range s.seen {
		names[k[:strings.LastIndexByte(k, '@')]] = true
	}
	return s.dups, len(names)
}

func (s *sink) values() []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]float64(nil), s.seq...)
}

// logBuffer is a bytes.Buffer safe to read while the process writes it.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// agent is a running rwagent process.
type agent struct {
	cmd  *exec.Cmd
	logs *logBuffer
	done chan error
}

var webAddr = regexp.MustCompile(`rwagent starting.*web=([0-9.]+:[0-9]+)`)

// metric returns the value of the sample of the agent's /metrics whose
// line starts with prefix (a name and labels), 0 if there is none.
func (a *agent) metric(t *testing.T, prefix string) float64 {
	t.Helper()
	var m []string
	waitFor(t, "the web address in the logs", func() bool {
		m = webAddr.FindStringSubmatch(a.logs.String())
		return m != nil
	})
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				continue
			}
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return v
		}
	}
	return 0
}

func start(t *testing.T, bin, cfg, dir string) *agent {
	t.Helper()
	a := &agent{logs: &logBuffer{}, done: make(chan error, 1)}
	a.cmd = exec.Command(bin, "--config.file="+cfg, "--storage.path="+dir, "--web.listen-address=127.0.0.1:0", "--log.level=debug")
	a.cmd.Stdout = a.logs
	a.cmd.Stderr = a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.done <- a.cmd.Wait() }()
	t.Cleanup(func() {
		if a.cmd.ProcessState == nil {
			_ = a.cmd.Process.Kill()
			<-a.done
		}
	})
	return a
}

// stop sends sig and waits for the process to end.
func (a *agent) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := a.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("rwagent did not exit within 30s of %v", sig)
	}
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

// TestCrash kills rwagent with SIGKILL mid-run while its receiver is down
// or slow, and restarts it on the same data directory with the receiver
// up: every sample logged before the kill arrives. Samples delivered but
// not yet acknowledged durably are sent again: they are counted, and must
// stay within what the position interval (1s) and the batches in flight
// allow.
func TestCrash(t *testing.T) {
	bin := binary(t)
	for _, tc := range []struct {
		name  string
		down  bool
		delay time.Duration
	}{
		{"receiver down", true, 0},
		{"receiver slow", false, 150 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var served atomic.Int64
			target := listen(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := served.Add(1)
				fmt.Fprintf(w, "# TYPE seq_total counter\nseq_total %d\n", n)
				for i := range 100 {
					fmt.Fprintf(w, "filler{i=\"%d\"} %d\n", i, n)
				}
			}))
			s := &sink{}
			s.set(tc.down, tc.delay)
			recv := listen(t, s)
			dir := t.TempDir()
			cfg := filepath.Join(dir, "rwagent.yml")
			if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
global:
  scrape_interval: 50ms
  scrape_timeout: 40ms
scrape_configs:
  - job_name: seq
    static_configs:
      - targets: [%s]
remote_write:
  - url: http://%s/api/v1/write
    name: sink
    queue_config:
      max_samples_per_send: 200
      capacity: 400
      max_shards: 2
      batch_send_deadline: 20ms
      min_backoff: 10ms
      max_backoff: 50ms
wal:
  fsync: always
  segment_size: 65536
  truncate_frequency: 500ms
`, target, recv)), 0o644); err != nil {
				t.Fatal(err)
			}
			state := filepath.Join(dir, "data")

			a := start(t, bin, cfg, state)
			waitFor(t, "60 scrapes", func() bool { return served.Load() >= 60 })
			if !tc.down {
				waitFor(t, "samples arriving", func() bool { return len(s.values()) >= 20 })
			}
			a.stop(t, syscall.SIGKILL)
			killedAt := served.Load()
			before := len(s.values())

			s.set(false, 0)
			b := start(t, bin, cfg, state)
			// The last scrape served may not have been logged when the
			// process died; every one before it was, with fsync.
			waitFor(t, "every sample logged before the kill", func() bool {
				seen := map[float64]bool{}
				for _, v := range s.values() {
					seen[v] = true
				}
				for v := int64(1); v < killedAt; v++ {
					if !seen[float64(v)] {
						return false
					}
				}
				return true
			})
			resent := b.metric(t, `rwagent_remote_write_resent_samples_total{remote_name="sink"`)
			b.stop(t, syscall.SIGTERM)
			allDups, perScrape := s.duplicates()

			got := s.values()
			seen := map[float64]int{}
			dups := 0
			for _, v := range got {
				seen[v]++
				if seen[v] > 1 {
					dups++
				}
			}
			t.Logf("scrapes served before the kill: %d; seq_total values before the kill: %d, in all: %d, duplicates: %d; "+
				"samples duplicated at the receiver: %d, counted resent by the agent: %v, series per scrape: %d",
				killedAt, before, len(got), dups, allDups, resent, perScrape)
			if tc.down && dups > 0 {
				t.Errorf("%d duplicates although nothing was acknowledged before the kill", dups)
			}
			// The count is an upper bound: every duplicate the receiver
			// saw was counted.
			if float64(allDups) > resent {
				t.Errorf("the receiver got %d duplicate samples, the agent counted only %v resent", allDups, resent)
			}
			// Positions are written on every acknowledgement, so only
			// what was in flight or queued at the last send is resent:
			// with max_samples_per_send 200 a handful of batches, far
			// below the position interval (1s, 20 scrapes) of before.
			if limit := 5; dups > limit {
				t.Errorf("%d seq_total duplicates, more than the %d batches in flight allow", dups, limit)
			}
			if !tc.down {
				// The sent mark covers what the reader had queued when a
				// send passed the last one: at most each shard's ring
				// (capacity) and its batch in flight, and the record
				// being read.
				if limit := float64(2*(400+200) + perScrape); resent > limit {
					t.Errorf("%v samples counted resent, more than 2 shards' rings and batches hold (%v)", resent, limit)
				}
			} else if limit := float64(int(killedAt) * perScrape); resent > limit {
				t.Errorf("%v samples counted resent, more than were scraped (%v)", resent, limit)
			}
			if resent > 0 && !strings.Contains(b.logs.String(), "resending bytes of WAL acknowledged-or-in-flight before the restart") {
				t.Errorf("the restart did not log what it resends")
			}
			if t.Failed() {
				t.Logf("first run logs:\n%s\nsecond run logs:\n%s", lastLines(a.logs.String(), 40), lastLines(b.logs.String(), 40))
			}
		})
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
