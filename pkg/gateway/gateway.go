// Package gateway is rwagent's receiver for other senders: it takes
// remote write 1.0 and 2.0 and OTLP/HTTP metrics requests authenticated
// by API keys, bounds and validates them (OTLP translated by Prometheus'
// own translator), sets each tenant's label, and logs them to the same WAL
// as the scrapes, so they leave through the same queues and signing. A
// request is answered 2xx only once its samples are logged.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	otlptranslator "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"

	"github.com/rwagent/rwagent/pkg/lograte"
	"github.com/rwagent/rwagent/pkg/metricset"
	"github.com/rwagent/rwagent/pkg/wal"
)

const (
	// DefaultMaxRequestBytes is the body bound when Options leave it zero
	// (config.DefaultReceiveConfig explains the number).
	DefaultMaxRequestBytes = 10 << 20
	// DefaultSeriesIdle is how long a received series is kept in the
	// series cache after its last sample: longer than any scrape or push
	// interval, so steady senders log each series record once.
	DefaultSeriesIdle = 10 * time.Minute
	// DefaultFullRetryAfter is the Retry-After of a 429 for a full WAL:
	// a truncation (every minute by default) or the queues catching up
	// make room on that scale.
	DefaultFullRetryAfter = 30 * time.Second
	// DefaultMaxInFlight lets a few requests wait on the WAL's fsync
	// while others decode, on the 2-4 cores an agent usually has. What
	// they hold at once is bounded by the memory budget
	// (MaxMemoryInFlight), not by their count: 16 requests at the
	// per-request bounds would take some 3.5 GiB.
	DefaultMaxInFlight = 16
	// shutdownTimeout bounds the wait for requests in flight at stop.
	shutdownTimeout = 10 * time.Second
)

// Options configures New. Zero values of optional fields mean the
// defaults given on each. Reload applies Keys, TenantLabel,
// MaxRequestBytes, MaxDecodedBytes, MaxMemoryInFlight and the TLS files
// of new Options to a running Gateway.
type Options struct {
	Addr        string // listen address, host:port; port 0 picks one
	TLSCertFile string // with TLSKeyFile, serve HTTPS; empty: HTTP
	TLSKeyFile  string
	Keys        []Key  // accepted keys; at least one
	TenantLabel string // label set to the tenant on every series; "" none
	// MaxRequestBytes bounds the compressed body. Zero: DefaultMaxRequestBytes.
	MaxRequestBytes int64
	// MaxDecodedBytes bounds the decompressed body. Zero:
	// config.MaxDecodedBytes(MaxRequestBytes), 8 times it, at least 32 MiB.
	MaxDecodedBytes int64
	// MaxMemoryInFlight is the memory budget the requests in flight share:
	// each reserves from it, before allocating, its body, its decompressed
	// body and twice its decoding's estimated bookkeeping, and a request
	// the budget cannot cover is answered 503 with Retry-After at once
	// (reason memory_in_flight). At least config.RequestMemory(MaxRequestBytes);
	// zero: config.MemoryInFlight's default.
	MaxMemoryInFlight int64
	// MaxInFlight bounds the requests read, decoded and written at once;
	// others wait for a turn (as long as their sender does), holding
	// nothing of the memory budget. Zero: DefaultMaxInFlight.
	MaxInFlight int
	// SeriesIdle releases series not received for this long. Zero:
	// DefaultSeriesIdle.
	SeriesIdle time.Duration
	// Storage receives the samples. Required.
	Storage Storage
	// Full reports whether the WAL is at its size cap: requests are then
	// answered 429 rather than written, so that nothing already logged is
	// trimmed to make room. Nil: never full.
	Full func() bool
	// FullRetryAfter is the Retry-After of that 429. Zero: DefaultFullRetryAfter.
	FullRetryAfter time.Duration
	// Logger receives refusals (rate-limited) and serving errors. Nil discards.
	Logger *slog.Logger
	// Registerer receives the rwagent_receive_* metrics, unregistered by
	// Close. Nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock of the rate limits and the series cache. Nil: time.Now.
	Now func() time.Time
}

// Gateway is the receiver. Build it with New, bind with Listen, serve with
// Run, and Close it when Run has returned. Its handler is safe for
// concurrent use.
type Gateway struct {
	opts    Options // as New filled it; Reload replaces cur, not this
	logger  *slog.Logger
	metrics *metrics
	series  *seriesCache
	// cur holds the live settings; each request loads it once. Reload
	// stores a new one, under reloadMu.
	cur      atomic.Pointer[state]
	reloadMu sync.Mutex
	srv      *http.Server
	ln       net.Listener
	refused  lograte.Limiter
	busy     lograte.Limiter         // refusals for the memory budget: apart, so neither hides the other
	turns    chan struct{}           // a slot per request in flight (MaxInFlight)
	mem      memBudget               // what the requests in flight hold (MaxMemoryInFlight)
	recs     sync.Pool               // *wal.Records, keeping their encode buffers
	decoders sync.Pool               // *decoder, keeping their buffers
	convs    sync.Pool               // *otlptranslator.PrometheusConverter
	otlp     otlptranslator.Settings // the translator's, from otlpSettings; read-only
}

// New validates opts and builds a Gateway. It starts nothing.
func New(opts Options) (*Gateway, error) {
	if opts.Storage == nil {
		return nil, errors.New("gateway: Options.Storage is nil")
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.SeriesIdle <= 0 {
		opts.SeriesIdle = DefaultSeriesIdle
	}
	if opts.FullRetryAfter <= 0 {
		opts.FullRetryAfter = DefaultFullRetryAfter
	}
	if opts.Full == nil {
		opts.Full = func() bool { return false }
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{
		opts:    opts,
		logger:  opts.Logger.With("component", "gateway"),
		series:  newSeriesCache(opts.Storage, opts.SeriesIdle),
		refused: lograte.Limiter{Interval: time.Minute},
		busy:    lograte.Limiter{Interval: time.Minute},
		turns:   make(chan struct{}, opts.MaxInFlight),
	}
	st, err := newState(opts, nil, opts.Now())
	if err != nil {
		return nil, err
	}
	g.cur.Store(st)
	g.recs.New = func() any { return new(wal.Records) }
	g.decoders.New = func() any { return new(decoder) }
	g.convs.New = func() any { return otlptranslator.NewPrometheusConverter(nil) }
	g.otlp = otlpSettings()
	var tlsConfig *tls.Config
	if st.cert != nil {
		// The certificate is looked up per connection, so Reload can
		// rotate it.
		tlsConfig = &tls.Config{GetCertificate: g.certificate, MinVersion: tls.VersionTLS12}
	}
	g.metrics = newMetrics(opts.Registerer, &g.mem)
	if err := g.metrics.register(); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.srv = &http.Server{
		Handler:           g.Handler(),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		// A body of MaxRequestBytes over a slow link still arrives; a
		// sender that stalls does not hold a connection for ever.
		ReadTimeout: time.Minute,
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(g.logger.Handler(), slog.LevelWarn),
	}
	return g, nil
}

// Handler routes POST /api/v1/write and /api/v1/push to the remote-write
// receiver and POST /v1/metrics to the OTLP/HTTP one.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/write", func(w http.ResponseWriter, r *http.Request) { g.serve(w, r, false) })
	mux.HandleFunc("/api/v1/push", func(w http.ResponseWriter, r *http.Request) { g.serve(w, r, false) })
	mux.HandleFunc("/v1/metrics", func(w http.ResponseWriter, r *http.Request) { g.serve(w, r, true) })
	return mux
}

// Listen binds the listener and returns its address.
func (g *Gateway) Listen() (net.Addr, error) {
	ln, err := net.Listen("tcp", g.opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen for the gateway on %s: %w", g.opts.Addr, err)
	}
	g.ln = ln
	return ln.Addr(), nil
}

// Run serves on the listener bound by Listen, and releases idle series,
// until ctx is done. Then it stops taking requests and waits up to 10 s
// for those in flight: each is answered after its Log returns, so the
// Storage must stay open until Run has returned. Run must be called once.
func (g *Gateway) Run(ctx context.Context) error {
	if g.ln == nil {
		return errors.New("gateway: Run before Listen")
	}
	errc := make(chan error, 1)
	go func() {
		var err error
		if g.srv.TLSConfig != nil {
			err = g.srv.ServeTLS(g.ln, "", "") // the current state's certificate
		} else {
			err = g.srv.Serve(g.ln)
		}
		errc <- err
	}()
	gcEvery := min(g.opts.SeriesIdle/2, time.Minute)
	t := time.NewTicker(gcEvery)
	defer t.Stop()
	for {
		select {
		case err := <-errc:
			return fmt.Errorf("serve the gateway on %s: %w", g.ln.Addr(), err)
		case <-t.C:
			g.metrics.seriesCached.Set(float64(g.series.gc(g.opts.Now())))
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
			err := g.srv.Shutdown(sctx)
			cancel()
			if err != nil {
				err = errors.Join(err, g.srv.Close())
			}
			if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
				err = errors.Join(err, serr)
			}
			if err != nil {
				return fmt.Errorf("stop the gateway: %w", err)
			}
			return nil
		}
	}
}

// Close unregisters the metrics. Call it after Run has returned.
func (g *Gateway) Close() {
	g.metrics.unregister()
}

// serve receives one write request: remote write, or OTLP/HTTP when otlp.
// Both take the same path (key, limits, WAL) and differ in their decoder
// and in how they answer.
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, otlp bool) {
	start := time.Now()
	st := g.cur.Load()
	var (
		tenant string
		proto  protocol
		code   int
	)
	defer func() {
		g.metrics.requests.WithLabelValues(tenant, protoLabel(proto), strconv.Itoa(code)).Inc()
		g.metrics.duration.WithLabelValues(protoLabel(proto)).Observe(time.Since(start).Seconds())
	}()
	refuse := func(status int, reason, msg string, samples int) {
		code = status
		g.metrics.rejected.WithLabelValues(tenant, reason).Inc()
		if samples > 0 {
			g.metrics.rejectedSamples.WithLabelValues(tenant, reason).Add(float64(samples))
		}
		lim := &g.refused
		if reason == reasonMemoryBudget {
			lim = &g.busy
		}
		lim.Log(g.logger, "Write request refused", "tenant", tenant, "status", status, "reason", reason, "err", msg, "remote", r.RemoteAddr)
		if otlp {
			writeOTLPError(w, otlpErrorFormat(r.Header), status, msg)
			return
		}
		http.Error(w, msg, status)
	}
	refuseDecode := func(de *decodeError) {
		if de.retryAfter > 0 {
			w.Header().Set("Retry-After", seconds(de.retryAfter))
		}
		refuse(de.status, de.reason, de.msg, 0)
	}

	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		refuse(http.StatusMethodNotAllowed, reasonMethodNotAllow, "only POST", 0)
		return
	}
	key, ok := keyFrom(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="rwagent"`)
		refuse(http.StatusUnauthorized, reasonUnauthorized, "no API key: send Authorization: Bearer <key> or X-API-Key", 0)
		return
	}
	t := lookup(st.keys, key)
	if t == nil {
		refuse(http.StatusForbidden, reasonForbidden, "API key not accepted", 0)
		return
	}
	tenant = t.Name
	ts := st.tenants[t]
	var err error
	if otlp {
		proto, err = otlpType(r.Header)
	} else {
		proto, err = messageType(r.Header)
	}
	if err != nil {
		refuse(http.StatusUnsupportedMediaType, reasonUnsupported, err.Error(), 0)
		return
	}
	if g.opts.Full() {
		w.Header().Set("Retry-After", seconds(g.opts.FullRetryAfter))
		refuse(http.StatusTooManyRequests, reasonWALFull, "the WAL is full (wal.max_size): nothing written, retry later", 0)
		return
	}

	select {
	case g.turns <- struct{}{}:
		defer func() { <-g.turns }()
	case <-r.Context().Done():
		code = 499 // the sender gave up waiting; nothing read
		return
	}
	// What the request holds from here on is reserved first, and all of
	// it given back when it ends (remote write: in the decoder, before it
	// goes back to the pool, so a request allocates no reservation).
	var (
		d    *decoder // remote write's, with its buffers
		mem  *reservation
		body []byte
	)
	if otlp {
		mem = newReservation(&g.mem, st.maxMemory)
		defer mem.release()
	} else {
		d = g.decoders.Get().(*decoder)
		d.res = reservation{b: &g.mem, size: st.maxMemory}
		mem = &d.res
		defer func() {
			mem.release()
			d.release()
			g.decoders.Put(d)
		}()
	}
	l := st.limits(ts)
	l.mem = mem
	bounded := http.MaxBytesReader(w, r.Body, st.maxRequestBytes)
	size := min(r.ContentLength, st.maxRequestBytes)
	if otlp {
		body, err = readBody(nil, bounded, size, st.maxRequestBytes, mem)
	} else {
		body, err = d.readBody(bounded, size, st.maxRequestBytes, mem)
	}
	if err != nil {
		if de, ok := errors.AsType[*decodeError](err); ok {
			refuseDecode(de)
			return
		}
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			refuse(http.StatusRequestEntityTooLarge, reasonBodyTooLarge, fmt.Sprintf("body over max_request_bytes (%d bytes)", st.maxRequestBytes), 0)
			return
		}
		refuse(http.StatusBadRequest, reasonMalformed, "read body: "+err.Error(), 0)
		return
	}
	var (
		b        *batch
		warnings []string
	)
	if otlp {
		b, warnings, err = g.decodeOTLP(r.Context(), body, proto, r.Header.Get("Content-Encoding") != "" && !strings.EqualFold(r.Header.Get("Content-Encoding"), "identity"), l)
	} else {
		b, err = d.decodeRW(body, proto, l, g.series)
	}
	if err != nil {
		de, _ := errors.AsType[*decodeError](err) // decode returns no other
		refuseDecode(de)
		return
	}

	n := b.samplesCount()
	bk := ts.bucket
	if bk != nil {
		if float64(n) > bk.Burst() {
			refuse(http.StatusRequestEntityTooLarge, reasonBurstExceeded, fmt.Sprintf("%d samples in one request, over the tenant's burst of %.0f: send fewer per request", n, bk.Burst()), n)
			return
		}
		if wait := bk.Take(n, g.opts.Now()); wait > 0 {
			w.Header().Set("Retry-After", seconds(wait))
			refuse(http.StatusTooManyRequests, reasonRateLimited, fmt.Sprintf("over the tenant's limit of %g samples/s: nothing written, retry later", t.SamplesPerSecond), n)
			return
		}
	}

	if err := g.write(b); err != nil {
		if bk != nil {
			bk.Give(n)
		}
		g.logger.Error("write received samples to the WAL; answered 503 so the sender retries", "tenant", tenant, "samples", n, "err", err)
		code = http.StatusServiceUnavailable
		g.metrics.rejected.WithLabelValues(tenant, reasonWALError).Inc()
		g.metrics.rejectedSamples.WithLabelValues(tenant, reasonWALError).Add(float64(n))
		if otlp {
			writeOTLPError(w, proto, code, "write to the WAL failed: nothing acknowledged, retry")
			return
		}
		http.Error(w, "write to the WAL failed: nothing acknowledged, retry", code)
		return
	}
	g.metrics.samples.WithLabelValues(tenant, "float").Add(float64(len(b.samples)))
	g.metrics.samples.WithLabelValues(tenant, "histogram").Add(float64(len(b.histograms) + len(b.floatHistograms)))
	g.metrics.samples.WithLabelValues(tenant, "exemplar").Add(float64(len(b.exemplars)))
	if proto == protoV2 {
		h := w.Header()
		h.Set("X-Prometheus-Remote-Write-Samples-Written", strconv.Itoa(len(b.samples)))
		h.Set("X-Prometheus-Remote-Write-Histograms-Written", strconv.Itoa(len(b.histograms)+len(b.floatHistograms)))
		h.Set("X-Prometheus-Remote-Write-Exemplars-Written", strconv.Itoa(len(b.exemplars)))
	}
	if otlp {
		if len(warnings) > 0 {
			g.metrics.otlpWarnings.WithLabelValues(tenant).Add(float64(len(warnings)))
			g.refused.Log(g.logger, "OTLP translation warnings; the rest of the request was written", "tenant", tenant, "warnings", boundedJoin(warnings, 1024), "remote", r.RemoteAddr)
		}
		code = http.StatusOK
		writeOTLPResponse(w, proto, warnings)
		return
	}
	code = http.StatusNoContent
	w.WriteHeader(code)
}

// decodeOTLP decodes and translates an OTLP/HTTP body of the message type
// proto within l. Its errors are *decodeError.
func (g *Gateway) decodeOTLP(ctx context.Context, body []byte, proto protocol, gzipped bool, l limits) (*batch, []string, error) {
	conv := g.convs.Get().(*otlptranslator.PrometheusConverter)
	defer g.convs.Put(conv)
	return decodeOTLP(ctx, conv, g.otlp, body, proto, gzipped, l)
}

// decodeRW decompresses and decodes a remote-write body of the message
// type proto within l, with the labels of series c has seen. Its errors
// are *decodeError.
func (d *decoder) decodeRW(body []byte, proto protocol, l limits, c *seriesCache) (*batch, error) {
	raw, err := d.decompress(body, l.maxDecodedBytes, l.mem)
	if err != nil {
		return nil, err
	}
	if proto == protoV2 {
		return d.decodeV2(raw, l, c)
	}
	return d.decodeV1(raw, l, c)
}

// write logs b to the WAL: series records for series new to the cache,
// then the samples. It returns once Log has.
func (g *Gateway) write(b *batch) error {
	recs := g.recs.Get().(*wal.Records)
	defer func() {
		// Drop the batch's slices, keep the encode buffers.
		recs.Series, recs.Samples, recs.Histograms, recs.FloatHistograms, recs.Exemplars, recs.Metadata = recs.Series[:0], nil, nil, nil, nil, nil
		g.recs.Put(recs)
	}()
	g.series.gate.RLock()
	defer g.series.gate.RUnlock()
	res := g.series.resolve(b, recs, g.opts.Now())
	err := g.opts.Storage.Log(recs)
	clear(recs.Series)
	g.series.done(res, err == nil)
	return err
}

// messageType reads the remote-write message type from Content-Type and
// checks Content-Encoding, as the remote-write specs define them.
func messageType(h http.Header) (protocol, error) {
	if enc := h.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "snappy") {
		return "", fmt.Errorf("Content-Encoding %q is not supported: send snappy", enc)
	}
	ct := h.Get("Content-Type")
	if ct == "" {
		return protoV1, nil // 1.0 senders need not set it
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/x-protobuf" {
		return "", fmt.Errorf("Content-Type %q is not supported: send application/x-protobuf", ct)
	}
	switch p := protocol(params["proto"]); p {
	case "", protoV1:
		return protoV1, nil
	case protoV2:
		return protoV2, nil
	default:
		return "", fmt.Errorf("proto %q is not supported: send %s or %s", p, protoV1, protoV2)
	}
}

// protoLabel is the protocol label of the metrics.
func protoLabel(p protocol) string {
	switch p {
	case protoV1:
		return "remote_write_1.0"
	case protoV2:
		return "remote_write_2.0"
	case protoOTLP:
		return "otlp_protobuf"
	case protoOTLPJSON:
		return "otlp_json"
	default:
		return "unknown"
	}
}

// readBody reads r, which yields at most limit bytes (and then an error
// or EOF), to its end into buf's array (reused) and returns it, reserving
// from mem what it holds before reading into it: a positive size (the
// request's Content-Length, at most limit) up front, so the buffer does
// not grow on the way; otherwise a reserveChunk at a time. Its error is
// r's, or mem's *decodeError; the bytes read are returned with r's.
func readBody(buf []byte, r io.Reader, size, limit int64, mem *reservation) ([]byte, error) {
	buf = buf[:0]
	var reserved int64 // of buf's bytes
	if size > 0 {
		// +1: the read that finds the end (or MaxBytesReader's one more).
		if err := mem.take(size + 1); err != nil {
			return buf, err
		}
		reserved = size + 1
		buf = slices.Grow(buf, int(size)+1)
	}
	for {
		if int64(len(buf)) >= reserved {
			n := min(reserveChunk, max(limit+1-reserved, 1))
			if err := mem.take(n); err != nil {
				return buf, err
			}
			reserved += n
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):int(min(int64(cap(buf)), reserved))])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// seconds is d as a Retry-After value: whole seconds, at least 1.
func seconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}

// metrics are the rwagent_receive_* metrics of one Gateway.
type metrics struct {
	reg             prometheus.Registerer
	all             metricset.Set // every collector below
	requests        *prometheus.CounterVec
	samples         *prometheus.CounterVec
	rejected        *prometheus.CounterVec
	rejectedSamples *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	seriesCached    prometheus.Gauge
	otlpWarnings    *prometheus.CounterVec
	memory          prometheus.GaugeFunc
}

// newMetrics builds the metrics of a Gateway whose memory budget is mem.
func newMetrics(reg prometheus.Registerer, mem *memBudget) *metrics {
	f := promauto.With(nil) // register adds them all or none, so unregister removes exactly these
	m := &metrics{
		reg: reg,
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rwagent_receive_requests_total",
			Help: "Write requests received by the gateway, by tenant (empty before authentication), protocol and HTTP status.",
		}, []string{"tenant", "protocol", "code"}),
		samples: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rwagent_receive_samples_total",
			Help: "Samples, histograms and exemplars received by the gateway and logged to the WAL, by tenant and type.",
		}, []string{"tenant", "type"}),
		rejected: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rwagent_receive_rejected_requests_total",
			Help: "Write requests refused by the gateway, nothing of them written, by tenant and reason.",
		}, []string{"tenant", "reason"}),
		rejectedSamples: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rwagent_receive_rejected_samples_total",
			Help: "Samples and histograms of decoded requests the gateway refused (rate limits, WAL errors), by tenant and reason.",
		}, []string{"tenant", "reason"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rwagent_receive_request_duration_seconds",
			Help:    "Time from receiving a write request to answering it, WAL write included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8), // 0.5ms to 8s
		}, []string{"protocol"}),
		seriesCached: f.NewGauge(prometheus.GaugeOpts{
			Name: "rwagent_receive_series_cached",
			Help: "Series received within the idle time whose WAL refs the gateway keeps.",
		}),
		otlpWarnings: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rwagent_receive_otlp_translation_warnings_total",
			Help: "Warnings of Prometheus' OTLP translator on requests the gateway wrote (an empty metric dropped, label names colliding), by tenant; each is also in the answer's partial_success.",
		}, []string{"tenant"}),
		memory: f.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rwagent_receive_memory_reserved_bytes",
			Help: "Memory the gateway's requests in flight have reserved from receive.max_memory_in_flight (bodies, decoded bodies, decoding).",
		}, func() float64 { return float64(mem.inUse()) }),
	}
	m.all.Add(m.requests, m.samples, m.rejected, m.rejectedSamples, m.duration, m.seriesCached, m.otlpWarnings, m.memory)
	return m
}

// register registers every metric on the Registerer given to newMetrics,
// or none.
func (m *metrics) register() error { return m.all.Register(m.reg) }

// unregister removes what register registered.
func (m *metrics) unregister() { m.all.Unregister() }
