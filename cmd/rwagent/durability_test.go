package main

import (
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/fileutil"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"

	"github.com/rwagent/rwagent/pkg/sendpos"
)

// sink is a remote-write receiver that keeps every sample it accepted, in
// arrival order per series, so tests can see duplicates and gaps (a TSDB
// would silently merge duplicates). It answers 503 while down. It is safe
// for concurrent use.
type sink struct {
	mu       sync.Mutex
	down     bool
	series   map[string][]prompb.Sample // by labels, in arrival order
	accepted int                        // requests stored
	refused  int                        // requests answered 503
}

func newSink(t *testing.T) (*sink, string) {
	t.Helper()
	s := &sink{series: map[string][]prompb.Sample{}}
	srv := httptest.NewUnstartedServer(s)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return s, srv.URL + "/api/v1/write"
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		s.refused++
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
	for _, ts := range req.Timeseries {
		var sb strings.Builder
		for _, l := range ts.Labels {
			fmt.Fprintf(&sb, "%s=%q,", l.Name, l.Value)
		}
		k := sb.String()
		s.series[k] = append(s.series[k], ts.Samples...)
	}
	s.accepted++
	w.WriteHeader(http.StatusNoContent)
}

func (s *sink) setDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

func (s *sink) refusedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// values returns the values of the series whose labels contain match, in
// arrival order, stale markers left out.
func (s *sink) values(match string) []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []float64
	for k, ss := range s.series {
		if !strings.Contains(k, match) {
			continue
		}
		for _, x := range ss {
			if !value.IsStaleNaN(x.Value) {
				out = append(out, x.Value)
			}
		}
	}
	return out
}

// checkOrder fails the test if any series received a timestamp twice or
// out of order.
func (s *sink) checkOrder(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.series) == 0 {
		t.Fatal("the receiver got no series")
	}
	for k, ss := range s.series {
		for i := 1; i < len(ss); i++ {
			if ss[i].Timestamp <= ss[i-1].Timestamp {
				t.Errorf("series %s: sample %d at %d after %d: duplicate or out of order", k, i, ss[i].Timestamp, ss[i-1].Timestamp)
				break
			}
		}
	}
}

// seqTarget serves one counter, seq_total, whose value is the number of
// scrapes served so far: a gap or a repeat in what arrives is a lost or
// duplicated sample. extra gauges fill the WAL faster.
type seqTarget struct {
	served atomic.Int64
	addr   string
}

func newSeqTarget(t *testing.T, extra int) *seqTarget {
	t.Helper()
	st := &seqTarget{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := st.served.Add(1)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE seq_total counter\nseq_total %d\n", n)
		for i := range extra {
			fmt.Fprintf(w, "filler_value{i=\"%d\"} %d\n", i, n+int64(i))
		}
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	st.addr = ln.Addr().String()
	return st
}

// startDurable runs the agent with cfgText on stateDir, a state directory
// that outlives it, so a test can stop it and start another on the same
// state. Its receiver is the one in cfgText (recv is unused).
func startDurable(t *testing.T, stateDir, cfgText string) *agentUnderTest {
	t.Helper()
	cfgFile := filepath.Join(t.TempDir(), "agent.yml")
	if err := os.WriteFile(cfgFile, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	return launch(t, &agentUnderTest{}, agentOptions{
		ConfigFile:       cfgFile,
		StoragePath:      stateDir,
		FlushDeadline:    time.Second,
		PositionInterval: 100 * time.Millisecond,
	})
}

// seqConfig scrapes target every 50ms and writes to url with fast retries.
// The timeout is the whole interval: a scrape that times out on a busy
// machine leaves a gap in seq_total that no drop counter explains.
func seqConfig(target, url, walExtra string) string {
	return reloadConfig(target, [][]string{{"sink", url}}, walExtra)
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

// checkSeq checks that seq_total arrived as 1..n exactly once each, in
// order, with n at least served-1 (a scrape cut short by the stop is never
// logged), and returns n.
func checkSeq(t *testing.T, s *sink, served int64, stops ...[2]int64) int {
	t.Helper()
	got := s.values(`__name__="seq_total"`)
	// A scrape in flight when the agent stops is served but, cut short,
	// never logged: the values served during a stop, (from, to], may be
	// missing. So may one value for each scrape the agent itself logged
	// as failed (up=0): on a loaded machine a 50ms scrape_timeout can cut a
	// scrape the target has served. No other value may be missing.
	failedUp := 0
	for _, v := range s.values(`__name__="up"`) {
		if v == 0 {
			failedUp++
		}
	}
	failed := failedUp
	mayMiss := func(v int64) bool {
		for _, st := range stops {
			if v > st[0] && v <= st[1] {
				return true
			}
		}
		if failed > 0 {
			failed--
			return true
		}
		return false
	}
	want := int64(1)
	for i, v := range got {
		for float64(want) < v && mayMiss(want) {
			want++
		}
		if v != float64(want) {
			t.Fatalf("seq_total value %d is %v, want %d: a sample was lost, repeated or reordered (got %v)", i, v, want, got)
		}
		want++
	}
	if int64(len(got)) < served-1-int64(len(stops))-int64(failedUp) {
		t.Fatalf("seq_total: %d values arrived, the target served %d scrapes", len(got), served)
	}
	return len(got)
}

// TestSendPositionsSurviveRestart: the agent is stopped with a backlog
// logged but unsent (the receiver is down), and restarted on the same
// state: the backlog arrives, and nothing sent before the stop is sent
// again.
func TestSendPositionsSurviveRestart(t *testing.T) {
	s, url := newSink(t)
	target := newSeqTarget(t, 0)
	state := t.TempDir()
	cfg := seqConfig(target.addr, url, "")

	a := startDurable(t, state, cfg)
	waitFor(t, "first samples", func() bool { return len(s.values("seq_total")) >= 5 })
	s.setDown(true)
	down := target.served.Load()
	waitFor(t, "a backlog while the receiver is down", func() bool {
		return target.served.Load() >= down+10 && s.refusedCount() > 0
	})
	// The scrape in flight now may be cut by the stop: the value served
	// last before it counts as served during the stop.
	stopFrom := target.served.Load() - 1
	a.stop(t)
	stop := [2]int64{stopFrom, target.served.Load()}
	before := len(s.values("seq_total"))
	if int64(before) >= target.served.Load() {
		t.Fatalf("no backlog: %d arrived of %d served", before, target.served.Load())
	}
	if _, ok, err := sendpos.New(filepath.Join(state, "send_positions")).Load("sink"); !ok || err != nil {
		t.Fatalf("no send position saved: %v", err)
	}

	s.setDown(false)
	b := startDurable(t, state, cfg)
	restart := target.served.Load()
	waitFor(t, "backlog and new samples", func() bool {
		return int64(len(s.values("seq_total"))) >= restart+5
	})
	b.stop(t)
	checkSeq(t, s, target.served.Load(), stop)
	s.checkOrder(t)
	if !strings.Contains(b.logs.String(), "resuming remote write at its saved send position") {
		t.Errorf("the restart did not resume at the saved position:\n%s", b.logs.String())
	}
}

// TestOutage: the receiver answers 503 for a while, then recovers: every
// sample scraped during the outage arrives, in order per series, once.
func TestOutage(t *testing.T) {
	s, url := newSink(t)
	target := newSeqTarget(t, 0)
	a := startDurable(t, t.TempDir(), seqConfig(target.addr, url, ""))
	waitFor(t, "first samples", func() bool { return len(s.values("seq_total")) >= 3 })
	s.setDown(true)
	down := target.served.Load()
	waitFor(t, "an outage of 20 scrapes", func() bool { return target.served.Load() >= down+20 && s.refusedCount() >= 3 })
	s.setDown(false)
	up := target.served.Load()
	waitFor(t, "the outage's samples", func() bool { return int64(len(s.values("seq_total"))) >= up+3 })
	a.stop(t)
	n := checkSeq(t, s, target.served.Load())
	if int64(n) <= up {
		t.Fatalf("only %d samples arrived", n)
	}
	s.checkOrder(t)
}

// TestTruncationHeldBySlowestEndpoint: an endpoint that cannot send holds
// the WAL (no segment it has not acknowledged is removed), and once it is
// removed from the configuration it releases its hold.
func TestTruncationHeldBySlowestEndpoint(t *testing.T) {
	up, upURL := newSink(t)
	dead, deadURL := newSink(t)
	dead.setDown(true)
	target := newSeqTarget(t, 300)
	state := t.TempDir()
	walDir := filepath.Join(state, "wal")
	// The second remote_write entry must come before the wal section.
	base := seqConfig(target.addr, upURL, "")
	i := strings.Index(base, "wal:")
	two := base[:i] + fmt.Sprintf(`  - url: %s
    name: dead
    queue_config:
      min_backoff: 10ms
      max_backoff: 50ms
`, deadURL) + base[i:]

	a := startDurable(t, state, two)
	waitFor(t, "four segments", func() bool {
		_, last, err := wlog.Segments(walDir)
		return err == nil && last >= 4
	})
	// Truncation ticks every 200ms; the live endpoint has acknowledged
	// segments 0 to 3, the dead one nothing.
	waitFor(t, "the live endpoint past segment 3", func() bool {
		p, ok, _ := sendpos.New(filepath.Join(state, "send_positions")).Load("sink")
		return ok && p.Acked.Segment >= 4
	})
	// The scrape in flight now may be cut by the stop: the value served
	// last before it counts as served during the stop.
	stopFrom := target.served.Load() - 1
	a.stop(t)
	stop := [2]int64{stopFrom, target.served.Load()}
	if first, _, _ := wlog.Segments(walDir); first != 0 {
		t.Fatalf("segments removed although the dead endpoint never sent them: first is %d", first)
	}

	b := startDurable(t, state, base)
	waitFor(t, "truncation once the dead endpoint is gone", func() bool {
		first, _, err := wlog.Segments(walDir)
		return err == nil && first > 0
	})
	b.stop(t)
	if keys, _ := sendpos.New(filepath.Join(state, "send_positions")).Keys(); !slices.Equal(keys, []string{"sink"}) {
		t.Errorf("send positions after the dead endpoint was removed: %v", keys)
	}
	checkSeq(t, up, target.served.Load(), stop)
	up.checkOrder(t)
}

// TestDiskCap: with a small wal.max_size and a long outage the WAL never
// grows past the cap plus one segment, scraping goes on, and what the
// endpoint counts as dropped (wal_full) is exactly what never arrived.
func TestDiskCap(t *testing.T) {
	const maxSize, segment = 256 << 10, 64 << 10
	s, url := newSink(t)
	target := newSeqTarget(t, 500)
	state := t.TempDir()
	a := startDurable(t, state, seqConfig(target.addr, url, fmt.Sprintf("  max_size: %d\n", maxSize)))
	waitFor(t, "first samples", func() bool { return len(s.values("seq_total")) >= 3 })

	s.setDown(true)
	var largest int64
	waitFor(t, "six segments trimmed during the outage", func() bool {
		if n, err := fileutil.DirSize(filepath.Join(state, "wal")); err == nil {
			if n > largest {
				largest = n
				if n > maxSize+segment {
					t.Logf("WAL at %d bytes: %s", n, listing(filepath.Join(state, "wal")))
				}
			}
		}
		return a.metric(t, "rwagent_wal_trimmed_segments_total", nil) >= 6
	})
	s.setDown(false)
	up := target.served.Load()
	waitFor(t, "samples after the outage", func() bool { return int64(len(s.values("seq_total"))) >= up+3 })
	if largest > maxSize+segment {
		t.Errorf("the WAL grew to %d bytes, over the cap %d plus a segment", largest, maxSize)
	}

	got := s.values("seq_total")
	missing := 0
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("seq_total %v after %v: duplicate or out of order", got[i], got[i-1])
		}
		missing += int(got[i]-got[i-1]) - 1
	}
	if got[0] != 1 || missing == 0 {
		t.Fatalf("seq_total starts at %v with %d missing: the outage dropped nothing", got[0], missing)
	}
	s.mu.Lock()
	perScrape := len(s.series) // every series gets one sample per scrape
	s.mu.Unlock()
	dropped := a.metric(t, "prometheus_remote_storage_samples_dropped_total", map[string]string{"remote_name": "sink", "reason": "wal_full"})
	// A scrape the agent failed (on a loaded machine the 50ms timeout can
	// cut one the target served) is a gap that no trim caused: each such
	// failure may take one scrape off what the trims must account for.
	failed := max(a.metric(t, "rwagent_scrape_failures_total", map[string]string{"scrape_job": "seq", "reason": "other"}), 0)
	if hi, lo := float64(missing*perScrape), (float64(missing)-failed)*float64(perScrape); dropped > hi || dropped < lo {
		t.Errorf("dropped (wal_full) = %v, want %d scrapes × %d samples = %v (%v with the %v failed scrapes)", dropped, missing, perScrape, hi, lo, failed)
	}
	a.stop(t)
	s.checkOrder(t)
	if !strings.Contains(a.logs.String(), "these remote_write endpoints held it back") || !strings.Contains(a.logs.String(), "endpoints=[sink]") {
		t.Errorf("no warning naming the endpoint that held the WAL back")
	}
}

// listing names every file under dir with its size.
func listing(dir string) string {
	var sb strings.Builder
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				fmt.Fprintf(&sb, "%s=%d ", strings.TrimPrefix(path, dir+"/"), fi.Size())
			}
		}
		return nil
	})
	return sb.String()
}

// TestRestartIntoTrimmed: the WAL is trimmed (wal.max_size) past an
// endpoint's saved position while its receiver is down, and the agent is
// restarted: the new process counts what those segments held as dropped
// (wal_full), says so, and sends what is left.
func TestRestartIntoTrimmed(t *testing.T) {
	const maxSize = 256 << 10
	s, url := newSink(t)
	target := newSeqTarget(t, 500)
	state := t.TempDir()
	cfg := seqConfig(target.addr, url, fmt.Sprintf("  max_size: %d\n", maxSize))
	a := startDurable(t, state, cfg)
	waitFor(t, "first samples", func() bool { return len(s.values("seq_total")) >= 3 })
	s.setDown(true)
	waitFor(t, "four segments trimmed during the outage", func() bool {
		return a.metric(t, "rwagent_wal_trimmed_segments_total", nil) >= 4
	})
	a.stop(t)
	if _, err := os.Stat(filepath.Join(state, "wal", "trimmed")); err != nil {
		t.Fatalf("no record of the trimmed segments in the WAL directory: %v", err)
	}

	s.setDown(false)
	b := startDurable(t, state, cfg)
	waitFor(t, "the restarted agent to count the trimmed segments' unsent samples as dropped (wal_full)", func() bool {
		return b.metric(t, "prometheus_remote_storage_samples_dropped_total", map[string]string{"remote_name": "sink", "reason": "wal_full"}) > 0
	})
	if !strings.Contains(b.logs.String(), "the WAL was trimmed past the saved send position") {
		t.Errorf("the restart did not say the WAL was trimmed past the saved position:\n%s", b.logs.String())
	}
	restart := target.served.Load()
	waitFor(t, "samples after the restart", func() bool {
		v := s.values("seq_total")
		return len(v) > 0 && v[len(v)-1] >= float64(restart+3)
	})
	b.stop(t)
	s.checkOrder(t)
}

// sampleKey is one sample as the sink keys it: the series' labels, as
// sink.ServeHTTP formats them, and the timestamp.
type sampleKey struct {
	series string
	t      int64
}

// walSamples reads the segments of the WAL in walDir, read-only, and
// returns the samples of each, keyed as the sink keys them.
func walSamples(t *testing.T, walDir string) map[int]map[sampleKey]bool {
	t.Helper()
	first, last, err := wlog.Segments(walDir)
	if err != nil {
		t.Fatal(err)
	}
	var (
		dec     = record.NewDecoder(nil, nil)
		series  = map[chunks.HeadSeriesRef]string{}
		out     = map[int]map[sampleKey]bool{}
		samples []record.RefSample
	)
	for i := first; i <= last; i++ {
		sr, err := wlog.NewSegmentsRangeReader(wlog.SegmentRange{Dir: walDir, First: i, Last: i})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = map[sampleKey]bool{}
		r := wlog.NewReader(sr)
		for r.Next() {
			rec := r.Record()
			switch dec.Type(rec) {
			case record.Series:
				ss, err := dec.Series(rec, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range ss {
					var sb strings.Builder
					s.Labels.Range(func(l labels.Label) { fmt.Fprintf(&sb, "%s=%q,", l.Name, l.Value) })
					series[s.Ref] = sb.String()
				}
			case record.Samples, record.SamplesV2:
				if samples, err = dec.Samples(rec, samples[:0]); err != nil {
					t.Fatal(err)
				}
				for _, s := range samples {
					k, ok := series[s.Ref]
					if !ok {
						t.Fatalf("segment %d: sample of unknown series %d", i, s.Ref)
					}
					out[i][sampleKey{k, s.T}] = true
				}
			}
		}
		if err := r.Err(); err != nil {
			t.Fatalf("read segment %d: %v", i, err)
		}
		sr.Close()
	}
	return out
}

// has says whether the sink received the sample k.
func (s *sink) has(k sampleKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.series[k.series] {
		if x.Timestamp == k.t {
			return true
		}
	}
	return false
}

// TestDamagedWALKeepsTheRest: the agent logs twelve segments and more while
// its receiver is down and stops; segment 5 is then deleted, gets one
// flipped byte, or is cut short. The restarted agent starts, every sample
// of the other segments reaches the receiver, and what the damaged segment
// lost is counted in samples_dropped_total{reason="wal_corrupt"} (an upper
// bound, so at least what never arrived).
func TestDamagedWALKeepsTheRest(t *testing.T) {
	const damaged = 5
	for _, tc := range []struct {
		name   string
		damage func(name string) error
	}{
		{"segment deleted", os.Remove},
		{"one flipped byte", func(name string) error {
			f, err := os.OpenFile(name, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			at := fi.Size()/2 + 1001 // inside a record, not a page's first header
			b := make([]byte, 1)
			if _, err := f.ReadAt(b, at); err != nil {
				return err
			}
			b[0] ^= 0x01
			_, err = f.WriteAt(b, at)
			return err
		}},
		{"segment truncated", func(name string) error {
			fi, err := os.Stat(name)
			if err != nil {
				return err
			}
			return os.Truncate(name, fi.Size()/2+3)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, url := newSink(t)
			s.setDown(true)
			target := newSeqTarget(t, 1000)
			state := t.TempDir()
			walDir := filepath.Join(state, "wal")
			cfg := seqConfig(target.addr, url, "")
			a := startDurable(t, state, cfg)
			waitFor(t, "segments 0 to 11 written", func() bool {
				_, last, err := wlog.Segments(walDir)
				return err == nil && last >= 12
			})
			a.stop(t)

			logged := walSamples(t, walDir)
			if err := tc.damage(wlog.SegmentName(walDir, damaged)); err != nil {
				t.Fatal(err)
			}
			s.setDown(false)
			b := startDurable(t, state, cfg)
			var missing []sampleKey
			waitFor(t, "every sample of the intact segments", func() bool {
				missing = missing[:0]
				for seg, ks := range logged {
					if seg == damaged {
						continue
					}
					for k := range ks {
						if !s.has(k) {
							missing = append(missing, k)
						}
					}
				}
				return len(missing) == 0
			})
			lost := 0
			for k := range logged[damaged] {
				if !s.has(k) {
					lost++
				}
			}
			dropped := b.metric(t, "prometheus_remote_storage_samples_dropped_total", map[string]string{"remote_name": "sink", "reason": "wal_corrupt"})
			b.stop(t)
			if lost == 0 {
				t.Fatalf("segment %d lost nothing: the test damaged nothing", damaged)
			}
			if dropped < float64(lost) {
				t.Errorf("dropped (wal_corrupt) = %v, but %d samples of segment %d never arrived", dropped, lost, damaged)
			}
			t.Logf("segment %d: %d of %d samples lost, %v counted as dropped (wal_corrupt)", damaged, lost, len(logged[damaged]), dropped)
			for _, l := range strings.Split(b.logs.String(), "\n") {
				if strings.Contains(l, "damaged") || strings.Contains(l, "missing") {
					t.Log(l)
				}
			}
			if !strings.Contains(b.logs.String(), "segment="+wlog.SegmentName(walDir, damaged)) {
				t.Errorf("no log line names the damaged segment:\n%s", b.logs.String())
			}
			s.checkOrder(t)
		})
	}
}

// TestDamagedSeriesRecord: one flipped byte in the series record of the
// first scrape. The samples of those series in the later, intact segments
// cannot be sent without their labels: they are counted as dropped
// (unintentionally_dropped_series), nothing vanishes uncounted, and the
// restarted agent sends what it scrapes anew. (The cut record holds no
// samples; the endpoint had acknowledged past it, so wal_corrupt may be
// zero.)
func TestDamagedSeriesRecord(t *testing.T) {
	s, url := newSink(t)
	s.setDown(true)
	target := newSeqTarget(t, 1000)
	state := t.TempDir()
	walDir := filepath.Join(state, "wal")
	cfg := seqConfig(target.addr, url, "")
	a := startDurable(t, state, cfg)
	waitFor(t, "segments 0 to 5 written", func() bool {
		_, last, err := wlog.Segments(walDir)
		return err == nil && last >= 6
	})
	a.stop(t)

	logged := walSamples(t, walDir)
	total := 0
	for _, ks := range logged {
		total += len(ks)
	}
	// Flip a byte inside the first large series record.
	seg, at := -1, int64(-1)
	for i := 0; i <= 6 && at < 0; i++ {
		sr, err := wlog.NewSegmentsRangeReader(wlog.SegmentRange{Dir: walDir, First: i, Last: i})
		if err != nil {
			t.Fatal(err)
		}
		r := wlog.NewReader(sr)
		for start := int64(0); r.Next(); start = r.Offset() {
			if rec := r.Record(); len(rec) > 1000 && record.Type(rec[0]) == record.Series {
				seg, at = i, start+500
				break
			}
		}
		sr.Close()
	}
	if at < 0 {
		t.Fatal("no large series record in segments 0 to 6")
	}
	f, err := os.OpenFile(wlog.SegmentName(walDir, seg), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s.setDown(false)
	b2 := startDurable(t, state, cfg)
	restart := target.served.Load()
	// The queue reads in order: new samples arriving means the old ones
	// were all read, sent or counted.
	waitFor(t, "samples scraped after the restart", func() bool {
		v := s.values("seq_total")
		return len(v) > 0 && v[len(v)-1] >= float64(restart+3)
	})
	label := func(reason string) map[string]string {
		return map[string]string{"remote_name": "sink", "reason": reason}
	}
	// metric is -1 for a series never exported: none counted.
	unknown := max(b2.metric(t, "prometheus_remote_storage_samples_dropped_total", label("unintentionally_dropped_series")), 0)
	corrupt := max(b2.metric(t, "prometheus_remote_storage_samples_dropped_total", label("wal_corrupt")), 0)
	b2.stop(t)
	arrived := 0
	for _, ks := range logged {
		for k := range ks {
			if s.has(k) {
				arrived++
			}
		}
	}
	if unknown == 0 {
		t.Errorf("no sample counted as dropped for its cut series record")
	}
	if float64(arrived)+unknown+corrupt < float64(total) {
		t.Errorf("%d samples logged before the damage, %d arrived, %v dropped as of unknown series, %v as wal_corrupt: some vanished uncounted",
			total, arrived, unknown, corrupt)
	}
	t.Logf("%d logged, %d arrived, %v dropped (unknown series), %v dropped (wal_corrupt)", total, arrived, unknown, corrupt)
}
