package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/rwagent/rwagent/bench/sink"
)

func TestLabelSets(t *testing.T) {
	tg := newTarget(1000, 0, 7)
	sets := tg.labelSets("bench", "10.0.0.1:9100")
	if len(sets) != tg.series {
		t.Fatalf("%d label sets, target has %d series", len(sets), tg.series)
	}
	seen := map[string]bool{}
	for _, ls := range sets {
		var key strings.Builder
		for i, l := range ls {
			if i > 0 && ls[i-1].Name >= l.Name {
				t.Fatalf("labels not sorted or repeated: %v", ls)
			}
			key.WriteString(l.Name + "=" + l.Value + ",")
		}
		if ls[0].Name != "__name__" || !slices.ContainsFunc(ls, func(l prompb.Label) bool { return l.Name == "job" && l.Value == "bench" }) {
			t.Fatalf("no name or job: %v", ls)
		}
		if seen[key.String()] {
			t.Fatalf("series %s twice", key.String())
		}
		seen[key.String()] = true
	}
}

// runSink serves a counting sink until the test ends.
func runSink(t *testing.T) *sink.Sink {
	t.Helper()
	snk, err := sink.New()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- snk.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return snk
}

// push runs p until it has had want samples acknowledged (or 10 s pass).
func push(t *testing.T, p *Pusher, want int64) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for p.Counts().Samples+p.Counts().Failed < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestPusherDelivers pushes to the benchmark's sink: every acknowledged
// sample arrives once, in order, and every series is pushed.
func TestPusherDelivers(t *testing.T) {
	snk := runSink(t)
	start := time.Now()
	snk.SetWindow(start.Add(-time.Minute), start.Add(time.Hour))
	p, err := NewPusher(PushOptions{URL: snk.URL(), Targets: 2, Series: 150, Interval: 200 * time.Millisecond, BatchSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	n := int64(p.SeriesCount())
	push(t, p, 3*n)
	c, got := p.Counts(), snk.Counts()
	if c.Samples < 3*n || c.Retries != 0 {
		t.Fatalf("pusher counts %+v, want at least %d samples and no retries", c, 3*n)
	}
	// A request abandoned at the stop may still have been counted by the sink.
	if got.Samples < c.Samples || got.Samples > c.Samples+c.Failed {
		t.Errorf("sink counted %d samples, pusher %d acknowledged and %d failed", got.Samples, c.Samples, c.Failed)
	}
	if got.Duplicates != 0 || got.OutOfOrder != 0 || got.Rejected != 0 {
		t.Errorf("sink counts %+v", got)
	}
	if w := snk.Window(); w.Series != int(n) {
		t.Errorf("sink saw %d series, pusher has %d", w.Series, n)
	}
	if a := p.Acked(start.Add(-time.Minute), time.Now().Add(time.Minute)); a != c.Samples {
		t.Errorf("Acked over the whole run = %d, Counts().Samples = %d", a, c.Samples)
	}
	if a := p.Acked(start.Add(-time.Minute), start); a != 0 {
		t.Errorf("Acked before the start = %d", a)
	}
	p50, p99, maxTook := p.AnswerTimes(start.Add(-time.Minute), time.Now().Add(time.Minute))
	if p50 <= 0 || p50 > p99 || p99 > maxTook || maxTook > 10*time.Second {
		t.Errorf("answer times p50 %v, p99 %v, max %v", p50, p99, maxTook)
	}
	if p50, _, _ := p.AnswerTimes(start.Add(-time.Minute), start); p50 != 0 {
		t.Errorf("answer time before the start %v", p50)
	}
}

// TestAnswerTimes checks the quantiles on known answer times.
func TestAnswerTimes(t *testing.T) {
	p := &Pusher{}
	base := time.UnixMilli(1_000_000)
	for i := 1; i <= 100; i++ {
		p.acked = append(p.acked, ackedBatch{ts: base.UnixMilli() + int64(i), n: 1, took: time.Duration(i) * time.Millisecond})
	}
	for _, tc := range []struct {
		name           string
		from, to       time.Time
		p50, p99, maxT time.Duration
	}{
		{"all", base, base.Add(time.Second), 50 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond},
		{"first ten", base, base.Add(11 * time.Millisecond), 5 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond},
		{"none", base.Add(time.Hour), base.Add(2 * time.Hour), 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p50, p99, maxT := p.AnswerTimes(tc.from, tc.to)
			if p50 != tc.p50 || p99 != tc.p99 || maxT != tc.maxT {
				t.Errorf("AnswerTimes = %v, %v, %v; want %v, %v, %v", p50, p99, maxT, tc.p50, tc.p99, tc.maxT)
			}
		})
	}
}

// TestPusherRetries: 5xx and 429 answers are retried until the request
// passes, with the key sent each time; other refusals count as failed.
func TestPusherRetries(t *testing.T) {
	for _, tc := range []struct {
		name        string
		codes       []int // answers to the first requests; then the sink
		wantRetries int64
		wantFailed  bool
	}{
		{"unavailable then throttled", []int{503, 500, 429}, 3, false},
		{"bad request", []int{400}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snk := runSink(t)
			var calls, badKey atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer k3y" {
					badKey.Add(1)
				}
				if i := calls.Add(1) - 1; i < int64(len(tc.codes)) {
					http.Error(w, "no", tc.codes[i])
					return
				}
				snk.ServeHTTP(w, r)
			}))
			defer srv.Close()
			p, err := NewPusher(PushOptions{URL: srv.URL, Key: "k3y", Series: 100, Interval: 100 * time.Millisecond, Senders: 1})
			if err != nil {
				t.Fatal(err)
			}
			push(t, p, 2*int64(p.SeriesCount()))
			c := p.Counts()
			if c.Retries != tc.wantRetries || (c.Failed > 0) != tc.wantFailed || badKey.Load() != 0 {
				t.Fatalf("counts %+v, %d requests without the key; want %d retries, failed %v", c, badKey.Load(), tc.wantRetries, tc.wantFailed)
			}
			if got := snk.Counts().Samples; got < c.Samples {
				t.Errorf("sink counted %d samples, pusher %d acknowledged", got, c.Samples)
			}
		})
	}
}
