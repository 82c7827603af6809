package remotewrite

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	promexemplar "github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
)

// point is one value a receiver stored for a series.
type point struct {
	t  int64
	st int64 // start timestamp, 2.0 only
	v  float64
	h  *histogram.Histogram
	fh *histogram.FloatHistogram
}

// testStore is a storage.AppendableV2 that keeps everything committed, per
// series in arrival order. Safe for concurrent use.
type testStore struct {
	mu        sync.Mutex
	points    map[string][]point // by labels.String()
	exemplars map[string][]promexemplar.Exemplar
	metadata  map[string]metadata.Metadata // latest, by series
	n         int                          // points committed
}

func newTestStore() *testStore {
	return &testStore{points: map[string][]point{}, exemplars: map[string][]promexemplar.Exemplar{}, metadata: map[string]metadata.Metadata{}}
}

func (s *testStore) AppenderV2(context.Context) storage.AppenderV2 { return &testAppender{s: s} }

func (s *testStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *testStore) get(ls string) []point {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]point(nil), s.points[ls]...)
}

func (s *testStore) getMetadata(ls string) (metadata.Metadata, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.metadata[ls]
	return m, ok
}

type testAppender struct {
	s   *testStore
	pts []struct {
		ls string
		p  point
		m  metadata.Metadata
	}
	exs []struct {
		ls string
		e  promexemplar.Exemplar
	}
}

func (a *testAppender) Append(_ storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, o storage.AOptions) (storage.SeriesRef, error) {
	a.pts = append(a.pts, struct {
		ls string
		p  point
		m  metadata.Metadata
	}{ls.String(), point{t: t, st: st, v: v, h: h, fh: fh}, o.Metadata})
	return storage.SeriesRef(1), nil
}

func (a *testAppender) AppendExemplars(ref storage.SeriesRef, ls labels.Labels, es []promexemplar.Exemplar) (storage.SeriesRef, error) {
	for _, e := range es {
		a.exs = append(a.exs, struct {
			ls string
			e  promexemplar.Exemplar
		}{ls.String(), e})
	}
	return ref, nil
}

func (a *testAppender) Commit() error {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	for _, p := range a.pts {
		a.s.points[p.ls] = append(a.s.points[p.ls], p.p)
		if p.m != (metadata.Metadata{}) {
			a.s.metadata[p.ls] = p.m
		}
		a.s.n++
	}
	for _, e := range a.exs {
		a.s.exemplars[e.ls] = append(a.s.exemplars[e.ls], e.e)
	}
	return nil
}

func (a *testAppender) Rollback() error { return nil }

// receiver is Prometheus' remote-write handler on 127.0.0.1 writing into a
// testStore. fault, when set, sees every request first (n counts from 1) and
// returns true if it answered it.
type receiver struct {
	srv   *httptest.Server
	store *testStore

	mu       sync.Mutex
	requests int
	headers  []http.Header
	times    []time.Time
	fault    func(n int, w http.ResponseWriter, r *http.Request) bool
}

func newReceiver(t *testing.T, fault func(n int, w http.ResponseWriter, r *http.Request) bool) *receiver {
	t.Helper()
	return newReceiverFor(t, remoteapi.MessageTypes{remoteapi.WriteV1MessageType}, fault)
}

// newReceiverFor is newReceiver accepting only the protobuf messages in
// accepted; Prometheus' handler answers others with 415.
func newReceiverFor(t *testing.T, accepted remoteapi.MessageTypes, fault func(n int, w http.ResponseWriter, r *http.Request) bool) *receiver {
	t.Helper()
	rc := &receiver{store: newTestStore(), fault: fault}
	h := remote.NewWriteHandler(slog.New(slog.DiscardHandler), prometheus.NewRegistry(), rc.store,
		accepted, false, false)
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.mu.Lock()
		rc.requests++
		n := rc.requests
		rc.headers = append(rc.headers, r.Header.Clone())
		rc.times = append(rc.times, time.Now())
		fault := rc.fault
		rc.mu.Unlock()
		if fault != nil && fault(n, w, r) {
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requestCount() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.requests
}

func (rc *receiver) requestTimes() []time.Time {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]time.Time(nil), rc.times...)
}

func (rc *receiver) requestHeaders() []http.Header {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]http.Header(nil), rc.headers...)
}
