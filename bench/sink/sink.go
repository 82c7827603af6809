// Package sink is the load benchmark's counting remote-write receiver. It
// decodes remote-write 1.0 (prompb.WriteRequest) and 2.0
// (io.prometheus.write.v2.Request), snappy-compressed, and counts
// requests, wire bytes, samples, series, duplicates, out-of-order samples
// and the latency from each sample's timestamp to its arrival. It stores
// nothing else.
package sink

import (
	"context"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// maxLatency bounds the latency histogram; later arrivals land in its
// last bucket.
const maxLatency = 120 * time.Second

// Counts are cumulative counters since the last Reset.
type Counts struct {
	Requests   int64 // decoded requests
	Rejected   int64 // requests that could not be decoded
	WireBytes  int64 // request bodies as sent (compressed)
	V1, V2     int64 // requests per protocol
	Samples    int64 // float samples, staleness markers excluded
	Histograms int64 // native histogram samples
	Stale      int64 // staleness markers
	// Report counts the samples of the agents' own per-target series (up,
	// scrape_*), included in Samples; Samples-Report is what the targets served.
	Report     int64
	Duplicates int64 // same series and timestamp as the previous sample
	OutOfOrder int64 // timestamp below the series' previous one
}

// Window holds what arrived for samples whose timestamps lie in the window
// given to SetWindow: target samples (report series and staleness markers
// excluded), distinct series, and the arrival latency.
type Window struct {
	Samples    int64 // histogram samples included
	Histograms int64
	Series     int
	P50, P99   time.Duration
	Max        time.Duration
}

// Sink is an http.Handler-backed receiver on a 127.0.0.1 listener. Its
// methods are safe for concurrent use.
type Sink struct {
	l    net.Listener
	seed maphash.Seed
	now  func() time.Time

	mu       sync.Mutex // guards everything below
	counts   Counts
	last     map[uint64]int64 // series hash → last timestamp (ms)
	from, to int64            // window, ms; to == 0: none
	inWin    map[uint64]struct{}
	winN     int64
	winH     int64   // histogram samples of winN
	latency  []int64 // per-millisecond counts of window samples
}

// New opens the sink's listener; it starts nothing.
func New() (*Sink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for remote write: %w", err)
	}
	s := newSink(time.Now)
	s.l = l
	return s, nil
}

// newSink returns a Sink without a listener, its clock now.
func newSink(now func() time.Time) *Sink {
	s := &Sink{seed: maphash.MakeSeed(), now: now}
	s.Reset()
	return s
}

// URL is the remote-write URL to give the agents.
func (s *Sink) URL() string { return "http://" + s.l.Addr().String() + "/api/v1/write" }

// Run serves until ctx is done.
func (s *Sink) Run(ctx context.Context) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.l) }()
	select {
	case <-ctx.Done():
		srv.Close()
		<-errc
		return nil
	case err := <-errc:
		return fmt.Errorf("serve remote write on %s: %w", s.l.Addr(), err)
	}
}

// Reset forgets every count, series and window.
func (s *Sink) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts = Counts{}
	s.last = make(map[uint64]int64)
	s.from, s.to, s.winN, s.winH = 0, 0, 0, 0
	s.inWin = make(map[uint64]struct{})
	s.latency = make([]int64, maxLatency/time.Millisecond+1)
}

// SetWindow starts counting samples with timestamps in [from, to) into
// the Window, from zero.
func (s *Sink) SetWindow(from, to time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.from, s.to, s.winN, s.winH = from.UnixMilli(), to.UnixMilli(), 0, 0
	s.inWin = make(map[uint64]struct{})
	clear(s.latency)
}

// Counts returns the counters.
func (s *Sink) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// Window returns what arrived for the window's samples so far.
func (s *Sink) Window() Window {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := Window{Samples: s.winN, Histograms: s.winH, Series: len(s.inWin)}
	w.P50 = s.quantile(0.50)
	w.P99 = s.quantile(0.99)
	w.Max = s.quantile(1)
	return w
}

func (s *Sink) quantile(q float64) time.Duration {
	if s.winN == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(s.winN)))
	var seen int64
	for ms, n := range s.latency {
		seen += n
		if seen >= rank && n > 0 {
			return time.Duration(ms) * time.Millisecond
		}
	}
	return maxLatency
}

// ServeHTTP decodes one remote-write request and counts it.
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		s.reject(w, http.StatusBadRequest, fmt.Errorf("read body: %w", err))
		return
	}
	arrival := s.now().UnixMilli()
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		s.reject(w, http.StatusBadRequest, fmt.Errorf("snappy-decode body: %w", err))
		return
	}
	var samples, hists int
	if strings.Contains(r.Header.Get("Content-Type"), "io.prometheus.write.v2.Request") {
		var req writev2.Request
		if err := req.Unmarshal(raw); err != nil {
			s.reject(w, http.StatusBadRequest, fmt.Errorf("decode write v2 request: %w", err))
			return
		}
		samples, hists = s.countV2(&req, len(body), arrival)
		w.Header().Set("X-Prometheus-Remote-Write-Samples-Written", strconv.Itoa(samples))
		w.Header().Set("X-Prometheus-Remote-Write-Histograms-Written", strconv.Itoa(hists))
		w.Header().Set("X-Prometheus-Remote-Write-Exemplars-Written", "0")
	} else {
		var req prompb.WriteRequest
		if err := req.Unmarshal(raw); err != nil {
			s.reject(w, http.StatusBadRequest, fmt.Errorf("decode write request: %w", err))
			return
		}
		s.countV1(&req, len(body), arrival)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sink) reject(w http.ResponseWriter, code int, err error) {
	s.mu.Lock()
	s.counts.Rejected++
	s.mu.Unlock()
	http.Error(w, err.Error(), code)
}

// series is one decoded series' identity, in either protocol.
type series struct {
	hash   uint64
	report bool // up or scrape_*: the agent's own series
}

func (s *Sink) countV1(req *prompb.WriteRequest, wire int, arrival int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts.Requests++
	s.counts.V1++
	s.counts.WireBytes += int64(wire)
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		var h maphash.Hash
		h.SetSeed(s.seed)
		var name string
		for _, l := range ts.Labels {
			h.WriteString(l.Name)
			h.WriteByte(0xff)
			h.WriteString(l.Value)
			h.WriteByte(0xff)
			if l.Name == "__name__" {
				name = l.Value
			}
		}
		sr := series{hash: h.Sum64(), report: isReport(name)}
		for _, smp := range ts.Samples {
			s.sample(sr, smp.Timestamp, value.IsStaleNaN(smp.Value), false, arrival)
		}
		for _, hs := range ts.Histograms {
			s.sample(sr, hs.Timestamp, false, true, arrival)
		}
	}
}

func (s *Sink) countV2(req *writev2.Request, wire int, arrival int64) (samples, hists int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts.Requests++
	s.counts.V2++
	s.counts.WireBytes += int64(wire)
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		var h maphash.Hash
		h.SetSeed(s.seed)
		var name string
		for j := 0; j+1 < len(ts.LabelsRefs); j += 2 {
			n, v := symbol(req.Symbols, ts.LabelsRefs[j]), symbol(req.Symbols, ts.LabelsRefs[j+1])
			h.WriteString(n)
			h.WriteByte(0xff)
			h.WriteString(v)
			h.WriteByte(0xff)
			if n == "__name__" {
				name = v
			}
		}
		sr := series{hash: h.Sum64(), report: isReport(name)}
		for _, smp := range ts.Samples {
			s.sample(sr, smp.Timestamp, value.IsStaleNaN(smp.Value), false, arrival)
		}
		for _, hs := range ts.Histograms {
			s.sample(sr, hs.Timestamp, false, true, arrival)
		}
		samples += len(ts.Samples)
		hists += len(ts.Histograms)
	}
	return samples, hists
}

func symbol(symbols []string, ref uint32) string {
	if int(ref) < len(symbols) {
		return symbols[ref]
	}
	return ""
}

func isReport(name string) bool { return name == "up" || strings.HasPrefix(name, "scrape_") }

// sample counts one sample; s.mu is held by the caller.
func (s *Sink) sample(sr series, ts int64, stale, hist bool, arrival int64) {
	switch {
	case stale:
		s.counts.Stale++
		return // a marker may share the timestamp of nothing in particular
	case hist:
		s.counts.Histograms++
	default:
		s.counts.Samples++
	}
	if sr.report {
		s.counts.Report++
	}
	if prev, ok := s.last[sr.hash]; ok {
		switch {
		case ts == prev:
			s.counts.Duplicates++
		case ts < prev:
			s.counts.OutOfOrder++
		}
	}
	if prev, ok := s.last[sr.hash]; !ok || ts > prev {
		s.last[sr.hash] = ts
	}
	if sr.report || s.to == 0 || ts < s.from || ts >= s.to {
		return
	}
	s.winN++
	if hist {
		s.winH++
	}
	s.inWin[sr.hash] = struct{}{}
	lat := min(max(arrival-ts, 0), int64(len(s.latency)-1))
	s.latency[lat]++
}
