package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// PushOptions configure a Pusher. Zero values are described per field.
type PushOptions struct {
	URL string // remote-write URL; required
	// Key is sent as `Authorization: Bearer <key>`; zero: no header.
	Key string
	// Targets and Series shape the series as Generator's targets do: the
	// same families, plus job and instance labels as a scraper adds.
	// Zero: 1 and 1000.
	Targets, Series int
	// Interval is how often each series gets a sample; requests are
	// spread evenly over it. Zero: 5 s.
	Interval time.Duration
	// BatchSize is the samples per request (one per series); zero: 2,000,
	// Prometheus' max_samples_per_send.
	BatchSize int
	// Senders is how many requests may be in flight; zero: 4.
	Senders int
	Seed    uint64       // zero: 1
	Client  *http.Client // zero: one with a 30 s timeout
	Logger  *slog.Logger // zero: none
}

// PushCounts are a Pusher's counters since it was made.
type PushCounts struct {
	Requests int64 // answered 2xx
	Samples  int64 // in requests answered 2xx
	Retries  int64 // attempts that failed and were repeated
	// Failed counts the samples of requests refused for good: a 4xx
	// other than 429.
	Failed int64
	// Abandoned counts the samples of requests still unsent or
	// unanswered when Run stopped.
	Abandoned int64
}

// Pusher sends remote write 1.0 (snappy-compressed prompb.WriteRequest)
// at a fixed rate, as a Prometheus server's queue does, to measure an
// agent's receive path. A request answered 429, 5xx or not at all is
// retried until Run stops. Its methods are safe for concurrent use.
type Pusher struct {
	opts   PushOptions
	series [][]prompb.Label // sorted by name
	values []float64
	rng    uint64

	mu     sync.Mutex // guards counts and acked
	counts PushCounts
	acked  []ackedBatch // in the order answered; see Acked
}

// ackedBatch is one request answered 2xx: its samples' timestamp and
// count, and how long its last attempt waited for the answer.
type ackedBatch struct {
	ts   int64 // ms
	n    int
	took time.Duration
}

// NewPusher renders the series; it starts nothing.
func NewPusher(opts PushOptions) (*Pusher, error) {
	if opts.URL == "" {
		return nil, errors.New("pusher: no URL")
	}
	if opts.Targets <= 0 {
		opts.Targets = 1
	}
	if opts.Series <= 0 {
		opts.Series = 1000
	}
	if opts.Interval <= 0 {
		opts.Interval = 5 * time.Second
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 2000
	}
	if opts.Senders <= 0 {
		opts.Senders = 4
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Pusher{opts: opts, rng: opts.Seed | 1}
	for i := range opts.Targets {
		t := newTarget(opts.Series, 0, opts.Seed*uint64(i+1)*0x9e3779b97f4a7c15)
		instance := fmt.Sprintf("10.0.%d.%d:9100", i/250, i%250)
		p.series = append(p.series, t.labelSets("bench", instance)...)
	}
	p.values = make([]float64, len(p.series))
	return p, nil
}

// labelSets returns every series of the target with the job and instance
// labels added, each sorted by label name as remote write requires.
func (t *target) labelSets(job, instance string) [][]prompb.Label {
	var out [][]prompb.Label
	for fi := range t.families {
		f := &t.families[fi]
		for ii := range f.instances {
			in := &f.instances[ii]
			one := func(suffix string, extra ...string) {
				ls := []prompb.Label{{Name: "__name__", Value: f.spec.name + suffix}, {Name: "job", Value: job}, {Name: "instance", Value: instance}}
				pairs := append(in.labels[:len(in.labels):len(in.labels)], extra...)
				for j := 0; j+1 < len(pairs); j += 2 {
					ls = append(ls, prompb.Label{Name: pairs[j], Value: pairs[j+1]})
				}
				sort.Slice(ls, func(a, b int) bool { return ls[a].Name < ls[b].Name })
				out = append(out, ls)
			}
			if f.spec.kind != kindHistogram {
				one("")
				continue
			}
			for _, le := range bucketBounds {
				one("_bucket", "le", le)
			}
			one("_bucket", "le", "+Inf")
			one("_sum")
			one("_count")
		}
	}
	return out
}

// SeriesCount is the number of series pushed, each once per Interval.
func (p *Pusher) SeriesCount() int { return len(p.series) }

// Counts returns the counters.
func (p *Pusher) Counts() PushCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts
}

// Acked returns the samples with timestamps in [from, to) whose requests
// were answered 2xx.
func (p *Pusher) Acked(from, to time.Time) int64 {
	f, t := from.UnixMilli(), to.UnixMilli()
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for _, b := range p.acked {
		if b.ts >= f && b.ts < t {
			n += int64(b.n)
		}
	}
	return n
}

// AnswerTimes returns the median, 99th percentile and maximum of how long
// the requests with timestamps in [from, to) that were answered 2xx
// waited for their answer (the last attempt's); zero if there were none.
func (p *Pusher) AnswerTimes(from, to time.Time) (p50, p99, maxTook time.Duration) {
	f, t := from.UnixMilli(), to.UnixMilli()
	p.mu.Lock()
	var took []time.Duration
	for _, b := range p.acked {
		if b.ts >= f && b.ts < t {
			took = append(took, b.took)
		}
	}
	p.mu.Unlock()
	if len(took) == 0 {
		return 0, 0, 0
	}
	slices.Sort(took)
	rank := func(q float64) time.Duration { return took[int(math.Ceil(q*float64(len(took))))-1] }
	return rank(0.5), rank(0.99), took[len(took)-1]
}

// request is one encoded batch.
type request struct {
	body []byte
	ts   int64
	n    int
}

// Run pushes until ctx is done: every Interval/batches one batch of the
// next BatchSize series, each with one sample stamped now, so every
// series gets one sample per Interval. Batches wait for a free sender;
// if all are busy past the next tick, that tick is skipped and the rate
// drops (Counts and Acked say what was sent). Requests in flight when ctx
// is done are abandoned and counted as Abandoned.
func (p *Pusher) Run(ctx context.Context) error {
	batches := (len(p.series) + p.opts.BatchSize - 1) / p.opts.BatchSize
	tick := time.NewTicker(p.opts.Interval / time.Duration(batches))
	defer tick.Stop()
	queue := make(chan request)
	var wg sync.WaitGroup
	for range p.opts.Senders {
		wg.Go(func() {
			for req := range queue {
				p.send(ctx, req)
			}
		})
	}
	defer wg.Wait()
	defer close(queue)
	var wr prompb.WriteRequest
	var raw []byte
	for k := 0; ; k = (k + 1) % batches {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		lo := k * p.opts.BatchSize
		hi := min(lo+p.opts.BatchSize, len(p.series))
		req := request{ts: time.Now().UnixMilli(), n: hi - lo}
		wr.Timeseries = wr.Timeseries[:0]
		for i := lo; i < hi; i++ {
			p.values[i] += float64(p.next() % 100)
			wr.Timeseries = append(wr.Timeseries, prompb.TimeSeries{Labels: p.series[i],
				Samples: []prompb.Sample{{Value: p.values[i], Timestamp: req.ts}}})
		}
		var err error
		if raw, err = appendMarshal(raw[:0], &wr); err != nil {
			return fmt.Errorf("encode batch %d: %w", k, err)
		}
		req.body = snappy.Encode(nil, raw)
		select {
		case <-ctx.Done():
			p.abandon(req.n)
			return nil
		case queue <- req:
		}
	}
}

func appendMarshal(dst []byte, wr *prompb.WriteRequest) ([]byte, error) {
	n := wr.Size()
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	dst = dst[:n]
	m, err := wr.MarshalToSizedBuffer(dst)
	return dst[n-m:], err
}

func (p *Pusher) next() uint64 {
	p.rng ^= p.rng << 13
	p.rng ^= p.rng >> 7
	p.rng ^= p.rng << 17
	return p.rng
}

// send posts req until it is answered 2xx, refused for good, or ctx is done.
func (p *Pusher) send(ctx context.Context, req request) {
	backoff := 50 * time.Millisecond
	for {
		start := time.Now()
		retry, err := p.post(ctx, req.body)
		if err == nil {
			took := time.Since(start)
			p.mu.Lock()
			p.counts.Requests++
			p.counts.Samples += int64(req.n)
			p.acked = append(p.acked, ackedBatch{ts: req.ts, n: req.n, took: took})
			p.mu.Unlock()
			return
		}
		if ctx.Err() != nil {
			p.abandon(req.n)
			return
		}
		if !retry {
			p.opts.Logger.Warn("push: samples dropped", "samples", req.n, "err", err)
			p.fail(req.n)
			return
		}
		p.mu.Lock()
		p.counts.Retries++
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			p.abandon(req.n)
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (p *Pusher) fail(n int) {
	p.mu.Lock()
	p.counts.Failed += int64(n)
	p.mu.Unlock()
}

func (p *Pusher) abandon(n int) {
	p.mu.Lock()
	p.counts.Abandoned += int64(n)
	p.mu.Unlock()
}

// post sends one request; retry says whether a failure may pass.
func (p *Pusher) post(ctx context.Context, body []byte) (retry bool, err error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, p.opts.URL, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("push to %s: %w", p.opts.URL, err)
	}
	hreq.Header.Set("Content-Encoding", "snappy")
	hreq.Header.Set("Content-Type", "application/x-protobuf")
	hreq.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	hreq.Header.Set("User-Agent", "rwbench")
	if p.opts.Key != "" {
		hreq.Header.Set("Authorization", "Bearer "+p.opts.Key)
	}
	resp, err := p.opts.Client.Do(hreq)
	if err != nil {
		return true, fmt.Errorf("push to %s: %w", p.opts.URL, err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		return false, nil
	}
	err = fmt.Errorf("push to %s: %s: %s", p.opts.URL, resp.Status, bytes.TrimSpace(msg))
	return resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode/100 == 5, err
}

// String names the pusher's shape for logs.
func (p *Pusher) String() string {
	return strconv.Itoa(len(p.series)) + " series @ " + p.opts.Interval.String() + ", " + strconv.Itoa(p.opts.BatchSize) + " per request"
}
