package scrape

import (
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
	"go.uber.org/goleak"

	"github.com/rwagent/rwagent/pkg/wal"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// memStorage is an in-memory Storage that records everything logged, for
// tests: a recording fake, not a WAL (pkg/wal has its own tests). It copies
// what it is given, as the real WAL encodes it, so callers may reuse batches.
type memStorage struct {
	next atomic.Uint64

	mu       sync.Mutex
	series   map[chunks.HeadSeriesRef]labels.Labels
	samples  map[chunks.HeadSeriesRef][]record.RefSample
	hists    map[chunks.HeadSeriesRef][]record.RefHistogramSample
	fhists   map[chunks.HeadSeriesRef][]record.RefFloatHistogramSample
	exs      map[chunks.HeadSeriesRef][]record.RefExemplar
	meta     map[chunks.HeadSeriesRef]record.RefMetadata
	released map[chunks.HeadSeriesRef]bool
	logs     int
	failLog  error // returned by Log while set
	orphans  int   // samples for refs without a series record
}

func newMemStorage() *memStorage {
	return &memStorage{
		series:   map[chunks.HeadSeriesRef]labels.Labels{},
		samples:  map[chunks.HeadSeriesRef][]record.RefSample{},
		hists:    map[chunks.HeadSeriesRef][]record.RefHistogramSample{},
		fhists:   map[chunks.HeadSeriesRef][]record.RefFloatHistogramSample{},
		exs:      map[chunks.HeadSeriesRef][]record.RefExemplar{},
		meta:     map[chunks.HeadSeriesRef]record.RefMetadata{},
		released: map[chunks.HeadSeriesRef]bool{},
	}
}

func (s *memStorage) NewRef() chunks.HeadSeriesRef {
	return chunks.HeadSeriesRef(s.next.Add(1))
}

func (s *memStorage) Log(r *wal.Records) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failLog != nil {
		return s.failLog
	}
	s.logs++
	for _, x := range r.Series {
		s.series[x.Ref] = x.Labels
	}
	known := func(ref chunks.HeadSeriesRef) {
		if _, ok := s.series[ref]; !ok {
			s.orphans++
		}
	}
	for _, x := range r.Samples {
		known(x.Ref)
		s.samples[x.Ref] = append(s.samples[x.Ref], x)
	}
	for _, x := range r.Histograms {
		known(x.Ref)
		s.hists[x.Ref] = append(s.hists[x.Ref], x)
	}
	for _, x := range r.FloatHistograms {
		known(x.Ref)
		s.fhists[x.Ref] = append(s.fhists[x.Ref], x)
	}
	for _, x := range r.Exemplars {
		known(x.Ref)
		s.exs[x.Ref] = append(s.exs[x.Ref], x)
	}
	for _, x := range r.Metadata {
		known(x.Ref)
		s.meta[x.Ref] = x
	}
	return nil
}

func (s *memStorage) Release(refs []chunks.HeadSeriesRef) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range refs {
		s.released[r] = true
	}
}

func (s *memStorage) setFail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failLog = err
}

// find returns the refs of series whose labels contain all of the given
// name/value pairs.
func (s *memStorage) find(kv ...string) []chunks.HeadSeriesRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.findLocked(kv...)
}

func (s *memStorage) findLocked(kv ...string) []chunks.HeadSeriesRef {
	var out []chunks.HeadSeriesRef
	for ref, ls := range s.series {
		ok := true
		for i := 0; i < len(kv); i += 2 {
			if ls.Get(kv[i]) != kv[i+1] {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, ref)
		}
	}
	slices.Sort(out)
	return out
}

// floats returns the float samples of the series matching kv (exactly one).
func (s *memStorage) floats(t testing.TB, kv ...string) []record.RefSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	refs := s.findLocked(kv...)
	var out []record.RefSample
	for _, r := range refs {
		out = append(out, s.samples[r]...)
	}
	return out
}

// last returns the last float value of the series matching kv, and false if
// there is none.
func (s *memStorage) last(kv ...string) (float64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best record.RefSample
	found := false
	for _, r := range s.findLocked(kv...) {
		for _, x := range s.samples[r] {
			if !found || x.T >= best.T {
				best, found = x, true
			}
		}
	}
	return best.V, found
}

// staleAll says whether every series matching kv ends with a stale marker.
func (s *memStorage) staleAll(kv ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	refs := s.findLocked(kv...)
	if len(refs) == 0 {
		return false
	}
	for _, r := range refs {
		if !s.endsStale(r) {
			return false
		}
	}
	return true
}

func (s *memStorage) endsStale(r chunks.HeadSeriesRef) bool {
	lastT, stale := int64(math.MinInt64), false
	for _, x := range s.samples[r] {
		if x.T >= lastT {
			lastT, stale = x.T, value.IsStaleNaN(x.V)
		}
	}
	for _, x := range s.hists[r] {
		if x.T >= lastT {
			lastT, stale = x.T, value.IsStaleNaN(x.H.Sum)
		}
	}
	for _, x := range s.fhists[r] {
		if x.T >= lastT {
			lastT, stale = x.T, value.IsStaleNaN(x.FH.Sum)
		}
	}
	return stale
}

// staleCount counts stale markers written, over all series.
func (s *memStorage) staleCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, xs := range s.samples {
		for _, x := range xs {
			if value.IsStaleNaN(x.V) {
				n++
			}
		}
	}
	return n
}

func (s *memStorage) histograms(kv ...string) []*histogram.Histogram {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*histogram.Histogram
	for _, r := range s.findLocked(kv...) {
		for _, x := range s.hists[r] {
			out = append(out, x.H)
		}
	}
	return out
}

func (s *memStorage) exemplars(kv ...string) []record.RefExemplar {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []record.RefExemplar
	for _, r := range s.findLocked(kv...) {
		out = append(out, s.exs[r]...)
	}
	return out
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

// loadScrapeConfigs parses a Prometheus YAML config into validated scrape
// configs.
func loadScrapeConfigs(t testing.TB, yml string) []*config.ScrapeConfig {
	t.Helper()
	cfg, err := config.Load(yml, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	scs, err := cfg.GetScrapeConfigs()
	if err != nil {
		t.Fatalf("scrape configs: %v", err)
	}
	return scs
}

// swappableHandler serves whatever handler is set last.
type swappableHandler struct {
	mu sync.Mutex
	h  http.Handler
}

func (s *swappableHandler) set(h http.Handler) {
	s.mu.Lock()
	s.h = h
	s.mu.Unlock()
}

func (s *swappableHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	h := s.h
	s.mu.Unlock()
	h.ServeHTTP(w, r)
}

// newTestServer starts an HTTP server on 127.0.0.1 serving h, closed at the
// end of the test.
func newTestServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.Listener.Addr().String(), "127.0.0.1:") {
		t.Fatalf("test server listens on %s, want 127.0.0.1", srv.Listener.Addr())
	}
	return srv
}

var errTestLog = errors.New("test: log refused")
