//go:build durability

package durability

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/wal"
)

// mountTmpfs mounts a tmpfs of size bytes on a new directory until the test
// ends. It needs root, as .ci/run has.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Fatalf("mount a %d-byte tmpfs on %s (the durability tests run as root, as .ci/run does): %v", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes a file in dir until the file system is full, and returns
// its name: removing it gives the space back.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	name := filepath.Join(dir, "filler")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{0xff}, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			return name
		}
	}
}

// TestWALDiskFull logs multi-page batches into a WAL on a small tmpfs,
// fills the file system, keeps logging (Log fails with ENOSPC), then frees
// the space. Logging recovers by itself; a Reader tailing all along and one
// reading after a restart see every batch that was logged, in order, and no
// damage, and a restart needs no repair.
func TestWALDiskFull(t *testing.T) {
	mnt := mountTmpfs(t, 2<<20)
	dir := filepath.Join(mnt, "wal")
	reg := prometheus.NewRegistry()
	w, err := wal.Open(wal.Options{Dir: dir, SegmentSize: 4 * 32 * 1024, Fsync: wal.FsyncNever}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	refs := make([]chunks.HeadSeriesRef, 300)
	for i := range refs {
		refs[i] = w.NewRef()
	}
	// Each batch repeats its series (upserts to a Reader), so that every
	// Log writes a record spanning pages: a failed write tears one.
	var recs wal.Records
	logBatch := func(ts int64) error {
		recs.Reset()
		for _, ref := range refs {
			recs.Series = append(recs.Series, record.RefSeries{Ref: ref, Labels: labels.FromStrings(
				"__name__", "disk_full_test_metric", "ref", strconv.Itoa(int(ref)), "pad", strings.Repeat("x", 80))})
			recs.Samples = append(recs.Samples, record.RefSample{Ref: ref, T: ts, V: float64(ts)})
		}
		return w.Log(&recs)
	}

	tail, err := w.NewReader(wal.Position{})
	if err != nil {
		t.Fatal(err)
	}
	tailed := make(chan map[chunks.HeadSeriesRef][]int64, 1)
	tailErr := make(chan error, 1)
	go func() {
		defer tail.Close()
		got, err := readAll(context.Background(), tail)
		if err != nil {
			tailErr <- err
			return
		}
		tailed <- got
	}()

	var logged, failed []int64
	ts := int64(0)
	for range 5 {
		ts++
		if err := logBatch(ts); err != nil {
			t.Fatalf("log before the disk is full: %v", err)
		}
		logged = append(logged, ts)
	}
	filler := fillDisk(t, mnt)
	for range 10 {
		ts++
		if err := logBatch(ts); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("log on a full disk: %v, want ENOSPC", err)
			}
			failed = append(failed, ts)
		} else {
			logged = append(logged, ts)
		}
	}
	if len(failed) == 0 {
		t.Fatal("no Log failed on a full disk")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		ts++
		if err := logBatch(ts); err != nil {
			t.Fatalf("log after space came back: %v", err)
		}
		logged = append(logged, ts)
	}
	if got := counterValue(t, reg, "rwagent_wal_write_failures_total"); got != float64(len(failed)) {
		t.Errorf("rwagent_wal_write_failures_total = %v, want %d", got, len(failed))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("logged %v; failed %v", logged, failed)

	check := func(who string, got map[chunks.HeadSeriesRef][]int64) {
		t.Helper()
		for _, ref := range refs {
			if err := checkLogged(got[ref], logged, failed); err != nil {
				t.Fatalf("%s, ref %d: %v", who, ref, err)
			}
		}
	}
	select {
	case err := <-tailErr:
		t.Fatalf("tailing reader: %v", err)
	case got := <-tailed:
		check("tailing reader", got)
	}

	reg2 := prometheus.NewRegistry()
	w2, err := wal.Open(wal.Options{Dir: dir, Fsync: wal.FsyncNever}, nil, reg2)
	if err != nil {
		t.Fatal(err)
	}
	if got := counterValue(t, reg2, "rwagent_wal_corruptions_repaired_total"); got != 0 {
		t.Errorf("restart repaired the WAL %v times", got)
	}
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := w2.NewReader(wal.Position{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := readAll(context.Background(), r)
	if err != nil {
		t.Fatalf("reader after restart: %v", err)
	}
	check("reader after restart", got)
}

// readAll reads r until the WAL is closed and returns each ref's sample
// times in the order read.
func readAll(ctx context.Context, r *wal.Reader) (map[chunks.HeadSeriesRef][]int64, error) {
	got := map[chunks.HeadSeriesRef][]int64{}
	known := map[chunks.HeadSeriesRef]bool{}
	for {
		err := r.Next(ctx)
		if errors.Is(err, wal.ErrClosed) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		for _, s := range r.Series() {
			known[s.Ref] = true
		}
		for _, s := range r.Samples() {
			if !known[s.Ref] {
				return got, fmt.Errorf("sample of ref %d at %d before its series", s.Ref, s.T)
			}
			got[s.Ref] = append(got[s.Ref], s.T)
		}
	}
}

// checkLogged checks that got holds every time of logged, in increasing
// order, and otherwise only times of failed: the first failed batch of an
// episode may reach the WAL once the disk takes it.
func checkLogged(got, logged, failed []int64) error {
	allowed := map[int64]bool{}
	for _, ts := range failed {
		allowed[ts] = true
	}
	i := 0
	for k, ts := range got {
		if k > 0 && ts <= got[k-1] {
			return fmt.Errorf("sample at %d after one at %d: repeated or out of order (%v)", ts, got[k-1], got)
		}
		if i < len(logged) && ts == logged[i] {
			i++
			continue
		}
		if !allowed[ts] {
			return fmt.Errorf("unexpected sample at %d (%v)", ts, got)
		}
	}
	if i < len(logged) {
		return fmt.Errorf("logged sample at %d missing (%v)", logged[i], got)
	}
	return nil
}

// TestAgentDiskFull runs rwagent with its data directory on a small tmpfs
// and fills the file system: the agent keeps scraping, counts what it
// drops, recovers by itself when the space comes back, and delivers every
// sample scraped before the disk filled and after it recovered.
func TestAgentDiskFull(t *testing.T) {
	bin := binary(t)
	var served atomic.Int64
	target := listen(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := served.Add(1)
		fmt.Fprintf(w, "# TYPE seq_total counter\nseq_total %d\n", n)
		for i := range 100 {
			fmt.Fprintf(w, "filler{i=\"%d\",pad=\"%s\"} %d\n", i, strings.Repeat("y", 200), n)
		}
	}))
	s := &sink{}
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
      batch_send_deadline: 20ms
      min_backoff: 10ms
      max_backoff: 50ms
wal:
  segment_size: 65536
  truncate_frequency: 200ms
`, target, recv)), 0o644); err != nil {
		t.Fatal(err)
	}
	state := mountTmpfs(t, 4<<20)

	logs := &syncBuffer{}
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.path="+filepath.Join(state, "data"),
		"--web.listen-address=127.0.0.1:0", "--log.level=debug")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Error("rwagent did not exit within 30s of SIGTERM")
		}
	}
	t.Cleanup(stop)
	defer func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("rwagent logs:\n%s", lastLines(logs.String(), 60))
		}
	}()

	var web string
	webRE := regexp.MustCompile(`web=(127\.0\.0\.1:\d+)`)
	waitFor(t, "rwagent listening", func() bool {
		m := webRE.FindStringSubmatch(logs.String())
		if m != nil {
			web = m[1]
		}
		return m != nil
	})
	metric := func(name string) float64 { return scrapeMetric(t, web, name) }

	waitFor(t, "samples arriving", func() bool { return len(s.values()) >= 10 })
	filler := fillDisk(t, state)
	fullAt := served.Load()
	waitFor(t, "samples dropped for WAL errors while the disk is full", func() bool {
		return metric(`rwagent_scrape_samples_dropped_total{reason="wal_error"}`) > 0 &&
			metric("rwagent_wal_write_failures_total") >= 3
	})
	scrapes := served.Load()
	waitFor(t, "scraping going on while the disk is full", func() bool { return served.Load() >= scrapes+5 })
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freedAt := served.Load()
	waitFor(t, "samples scraped after the space came back arriving", func() bool {
		v := s.values()
		return len(v) > 0 && v[len(v)-1] >= float64(freedAt+20)
	})
	stop()

	got := s.values()
	seen := map[float64]bool{}
	for i, v := range got {
		if i > 0 && v <= got[i-1] {
			t.Fatalf("seq_total %v arrived after %v: repeated or out of order", v, got[i-1])
		}
		seen[v] = true
	}
	// Every scrape before the disk filled arrived, and every one from the
	// first logged after the recovery on.
	for v := int64(1); v < fullAt; v++ {
		if !seen[float64(v)] {
			t.Fatalf("seq_total %d, scraped before the disk filled, never arrived", v)
		}
	}
	first := int64(0)
	for v := freedAt; v < freedAt+20; v++ {
		if seen[float64(v)] {
			first = v
			break
		}
	}
	if first == 0 {
		t.Fatalf("nothing scraped within 20 scrapes of the recovery arrived")
	}
	last := int64(got[len(got)-1])
	for v := first; v <= last; v++ {
		if !seen[float64(v)] {
			t.Fatalf("seq_total %d, scraped after the recovery (from %d), never arrived", v, first)
		}
	}
	for _, want := range []string{"write WAL; dropping", "WAL writes recovered"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("rwagent logs lack %q", want)
		}
	}
	t.Logf("disk full after scrape %d, freed after %d; %d values arrived, the first after the recovery is %d",
		fullAt, freedAt, len(got), first)
}

// syncBuffer is a bytes.Buffer safe for the writes of a process's output
// copiers and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// scrapeMetric returns the value of the sample named exactly series
// (name{labels} as exposed) on web's /metrics, or 0.
func scrapeMetric(t *testing.T, web, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + web + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return 0
}

// counterValue returns the sum of the counters named name in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			v += m.GetCounter().GetValue()
		}
	}
	return v
}
