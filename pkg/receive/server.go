package receive

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/rwagent/rwagent/pkg/tokenbucket"
)

// Server is one emulated AMP workspace over a local TSDB. It is safe for
// concurrent use. Handler serves it; Close stops it, after which requests get
// 503 and Query, Series and Exemplars return ErrClosed.
type Server struct {
	opts    Options
	logger  *slog.Logger
	db      *tsdb.DB
	engine  *promql.Engine
	parser  parser.Parser
	write   http.Handler // Prometheus' remote-write handler over db
	metrics *serverMetrics
	reg     *registry // nil when Options.Registerer is nil
	handler http.Handler

	// AMP's ingestion rules (Options.Limits); each is safe for concurrent
	// use on its own.
	bucket *tokenbucket.Bucket
	ha     *haTracker
	active *activeSeries
	meta   *metadataStore

	// mu is held for reading by every request and helper call that uses db,
	// and for writing by Close, so Close waits for them and they never see a
	// closed TSDB.
	mu     sync.RWMutex
	closed bool // guarded by mu
}

// ErrClosed is returned by Query, Series and Exemplars after Close.
var ErrClosed = errors.New("receive: server closed")

// New opens (or creates) the TSDB in opts.Dir and returns a Server over it.
// The TSDB runs its own compaction goroutine until Close; New starts nothing
// else.
func New(opts Options) (*Server, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	lim := opts.Limits
	s := &Server{
		opts:   opts,
		logger: opts.Logger,
		bucket: tokenbucket.New(lim.IngestionRate, lim.IngestionBurst, opts.Now()),
		ha:     newHATracker(lim.HAFailoverTimeout, lim.MaxHAClusters),
		active: newActiveSeries(lim.MaxActiveSeries),
		meta:   newMetadataStore(lim.MaxMetadataMetrics),
	}

	// Our own metrics go to the registerer as they are; the TSDB's, the
	// engine's and the write handler's get an "ampemu_" prefix so they do not
	// collide with the same Prometheus packages used by the agent in one
	// process (its WAL registers prometheus_tsdb_wal_*).
	var own, inner prometheus.Registerer
	if opts.Registerer != nil {
		s.reg = &registry{reg: opts.Registerer}
		own = s.reg
		inner = prometheus.WrapRegistererWithPrefix("ampemu_", s.reg)
	}
	s.metrics = newServerMetrics(own)

	tsdbOpts := tsdb.DefaultOptions()
	tsdbOpts.OutOfOrderTimeWindow = OutOfOrderWindow.Milliseconds()
	tsdbOpts.EnableExemplarStorage = true
	tsdbOpts.MaxExemplars = 100_000
	db, err := tsdb.Open(opts.Dir, s.logger.With("component", "tsdb"), inner, tsdbOpts, nil)
	if err != nil {
		s.unregister()
		return nil, fmt.Errorf("open tsdb in %s: %w", opts.Dir, err)
	}
	s.db = db

	s.parser = parser.NewParser(parser.Options{})
	s.engine = promql.NewEngine(promql.EngineOpts{
		Logger:               s.logger.With("component", "promql"),
		Reg:                  inner,
		MaxSamples:           50_000_000,
		Timeout:              2 * time.Minute, // Prometheus' default --query.timeout
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		Parser:               s.parser,
	})
	s.write = newWriteHandler(s, inner)
	s.handler = s.routes()
	return s, nil
}

// Handler returns the HTTP handler of the workspace. Every answer carries a
// Date header from Options.Now and an x-amzn-RequestId header.
func (s *Server) Handler() http.Handler { return s.handler }

// URL returns the workspace's base URL under root (for example
// "http://127.0.0.1:9095"): root + "/workspaces/<id>". Remote write goes to
// URL + "/api/v1/remote_write".
func (s *Server) URL(root string) string {
	return root + "/workspaces/" + s.opts.WorkspaceID
}

// WorkspaceID returns the id of the served workspace.
func (s *Server) WorkspaceID() string { return s.opts.WorkspaceID }

// Close waits for requests in progress, then closes the engine and the TSDB
// and unregisters all metrics. Calls after the first return nil.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := errors.Join(s.engine.Close(), s.db.Close())
	s.unregister()
	if err != nil {
		return fmt.Errorf("close tsdb in %s: %w", s.opts.Dir, err)
	}
	return nil
}

func (s *Server) unregister() {
	if s.reg != nil {
		s.reg.unregisterAll()
	}
}

// acquire takes a read lock on s for one request or helper call; it returns
// false (holding nothing) once s is closed. The caller releases with
// s.mu.RUnlock.
func (s *Server) acquire() bool {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return false
	}
	return true
}

// Route names, used as the handler label of ampemu_requests_total.
const (
	routeRemoteWrite = "remote_write"
	routeQuery       = "query"
	routeQueryRange  = "query_range"
	routeSeries      = "series"
	routeLabels      = "labels"
	routeLabelValues = "label_values"
	routeExemplars   = "query_exemplars"
	routeMetadata    = "metadata"
	routeOther       = "other"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	const base = "/workspaces/{id}/api/v1/"
	mux.Handle("POST "+base+"remote_write", s.workspace(routeRemoteWrite, s.serveRemoteWrite))
	for _, m := range []string{"GET ", "POST "} {
		mux.Handle(m+base+"query", s.workspace(routeQuery, s.serveQuery))
		mux.Handle(m+base+"query_range", s.workspace(routeQueryRange, s.serveQueryRange))
		mux.Handle(m+base+"series", s.workspace(routeSeries, s.serveSeries))
		mux.Handle(m+base+"labels", s.workspace(routeLabels, s.serveLabels))
		mux.Handle(m+base+"query_exemplars", s.workspace(routeExemplars, s.serveExemplars))
	}
	mux.Handle("GET "+base+"label/{name}/values", s.workspace(routeLabelValues, s.serveLabelValues))
	mux.Handle("GET "+base+"metadata", s.workspace(routeMetadata, s.serveMetadata))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.metrics.request(routeOther, http.StatusNotFound)
		writeAWSError(w, http.StatusNotFound, codeResourceNotFound, awsError{Message: "Not Found"})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Date", s.opts.Now().UTC().Format(http.TimeFormat))
		h.Set("x-amzn-RequestId", requestID())
		mux.ServeHTTP(w, r)
	})
}

// workspace wraps a route of the workspace API: it reads the body (at most
// Options.MaxBodyBytes), calls Options.Verify, checks the workspace id,
// restores the body and calls serve with it. It counts the answer.
func (s *Server) workspace(route string, serve func(w http.ResponseWriter, r *http.Request, body []byte)) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w := &statusWriter{ResponseWriter: rw}
		defer func() { s.metrics.request(route, w.status()) }()

		if !s.acquire() {
			writeAWSError(w, http.StatusServiceUnavailable, codeUnavailable, awsError{Message: "Service is shutting down"})
			return
		}
		defer s.mu.RUnlock()

		body, err := s.readBody(r)
		if err != nil {
			if errors.Is(err, errTooLarge) {
				writeAWSError(w, http.StatusRequestEntityTooLarge, codeTooLarge, awsError{Message: err.Error()})
				return
			}
			writeAWSError(w, http.StatusBadRequest, codeValidation, awsError{Message: err.Error()})
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if s.opts.Verify != nil {
			if err := s.opts.Verify(r, body); err != nil {
				s.logger.Debug("Request refused by verifier", "route", route, "err", err)
				writeVerifyError(w, err)
				return
			}
		}
		if id := r.PathValue("id"); id != s.opts.WorkspaceID {
			writeAWSError(w, http.StatusNotFound, codeResourceNotFound, awsError{
				Message:      fmt.Sprintf("Workspace not found: %s", id),
				ResourceID:   id,
				ResourceType: "Workspace",
			})
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body)) // again: Verify may have read it
		r.ContentLength = int64(len(body))
		serve(w, r, body)
	})
}

var errTooLarge = errors.New("request body too large")

// readBody reads r's body, refusing more than Options.MaxBodyBytes.
func (s *Server) readBody(r *http.Request) ([]byte, error) {
	limit := s.opts.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", errTooLarge, r.ContentLength, limit)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", errTooLarge, limit)
	}
	return body, nil
}

// requestID returns a random UUID like AWS's x-amzn-RequestId.
func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// statusWriter records the status code written through it.
type statusWriter struct {
	http.ResponseWriter
	code int
}

// WriteHeader records code. A 400 that Prometheus' handlers answer (a body
// that does not decode, a sample out of bounds, a bad query) gets the
// x-amzn-ErrorType AMP sends with its 400s, ValidationException, as ampemu's
// own errors carry theirs.
func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	if h := w.Header(); code == http.StatusBadRequest && h.Get("x-amzn-ErrorType") == "" {
		h.Set("x-amzn-ErrorType", codeValidation)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// serverMetrics counts what the workspace accepted and refused.
type serverMetrics struct {
	requests      *prometheus.CounterVec // handler, code
	receivedBytes prometheus.Counter
	samples       *prometheus.CounterVec // type, result
	// Refused before the TSDB by AMP's rules.
	discarded       *prometheus.CounterVec // reason
	deduplicated    prometheus.Counter
	metadataDropped prometheus.Counter
}

// Label values of ampemu_remote_write_samples_total.
const (
	sampleFloat     = "float"
	sampleHistogram = "histogram"
	sampleExemplar  = "exemplar"
	resultAccepted  = "accepted"
	resultRejected  = "rejected"
)

func newServerMetrics(reg prometheus.Registerer) *serverMetrics {
	f := promauto.With(reg)
	m := &serverMetrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "ampemu_requests_total",
			Help: "Requests answered by the emulated workspace, by handler and HTTP status code.",
		}, []string{"handler", "code"}),
		receivedBytes: f.NewCounter(prometheus.CounterOpts{
			Name: "ampemu_remote_write_received_bytes_total",
			Help: "Bytes of remote-write request bodies read, as sent (compressed), including refused ones.",
		}),
		samples: f.NewCounterVec(prometheus.CounterOpts{
			Name: "ampemu_remote_write_samples_total",
			Help: "Samples, histograms and exemplars that reached the TSDB appender, by whether they were stored (accepted) or refused or rolled back (rejected). Requests refused before decoding (signature, size, workspace) and samples Prometheus' write handler refuses itself (too far in the future, invalid labels) are only counted in ampemu_requests_total.",
		}, []string{"type", "result"}),
	}
	m.discarded = f.NewCounterVec(prometheus.CounterOpts{
		Name: "ampemu_discarded_samples_total",
		Help: "Samples and histograms refused by AMP's ingestion rules before they reached the TSDB, by Cortex's reason: rate_limited (answered 429), per_user_series_limit (429), max_label_names_per_series, label_name_too_long, label_value_too_long, too_many_ha_clusters (400).",
	}, []string{"reason"})
	m.deduplicated = f.NewCounter(prometheus.CounterOpts{
		Name: "ampemu_ha_deduplicated_samples_total",
		Help: "Samples and histograms of HA replicas that were not the elected replica of their cluster, answered 202 and not stored.",
	})
	m.metadataDropped = f.NewCounter(prometheus.CounterOpts{
		Name: "ampemu_metadata_dropped_total",
		Help: "Metadata entries not kept because the workspace holds metadata for Limits.MaxMetadataMetrics metrics, or the metric has 10 different ones.",
	})
	for _, r := range discardReasons {
		m.discarded.WithLabelValues(r)
	}
	for _, t := range []string{sampleFloat, sampleHistogram, sampleExemplar} {
		for _, r := range []string{resultAccepted, resultRejected} {
			m.samples.WithLabelValues(t, r)
		}
	}
	return m
}

func (m *serverMetrics) request(route string, code int) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
}
