// Package remotewrite sends what the WAL holds to one remote_write endpoint
// with Prometheus remote-write 1.0.
//
// A Queue tails the WAL with one reader goroutine, keeps a table of series
// (external labels merged, write_relabel_configs applied once per series),
// hashes each sample by series ref to a shard so per-series order holds, and
// lets each shard batch, encode (protobuf, snappy) and POST with retries.
// Acked reports the WAL position before which everything was delivered or
// dropped, for WAL truncation.
package remotewrite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwagent/rwagent/pkg/lograte"
	"github.com/rwagent/rwagent/pkg/sigv4"
	"github.com/rwagent/rwagent/pkg/wal"
)

const (
	// DefaultFlushDeadline is how long Run keeps sending after its ctx is
	// done. It is Prometheus' --storage.remote.flush-deadline default: room
	// for one full default remote_timeout (30s) plus several max_backoff
	// (5s) retries. A shorter one loses nothing (unsent samples stay in the
	// WAL behind Acked); they are only sent again after a restart.
	DefaultFlushDeadline = time.Minute
	// DefaultUserAgent is sent when Options.UserAgent is empty.
	DefaultUserAgent = "rwagent"
)

// Options configure a Queue. Config and Log are required.
type Options struct {
	// Name is the remote_name metric label and the name in logs. Zero
	// means Config.Name.
	Name string
	// Config is the remote_write block. Its queue_config must pass
	// QueueConfig.Validate; a zero batch_send_deadline or min_backoff
	// means Prometheus' default. Only protobuf_message
	// prometheus.WriteRequest (remote-write 1.0) is supported; sigv4
	// tags and use_fips_sts_endpoint are not.
	// Metadata is not sent. Config must not change while the Queue
	// exists.
	Config *config.RemoteWriteConfig
	// ExternalLabels are added to every series that lacks them, before
	// write relabeling. They must be sorted (labels.Labels always are).
	ExternalLabels labels.Labels
	// Log is the WAL to tail.
	Log Log
	// Start is where reading starts: samples before it are not sent.
	// Zero means the start of the WAL.
	Start wal.Position
	// SigV4, when set, is how requests are signed, in place of
	// Config.SigV4Config (it carries rwagent's sigv4 extension: sts_region,
	// sts_endpoint, secret_key_file). A zero URL means Config.URL.
	SigV4 *sigv4.Config
	// Transport is the base HTTP transport. Zero means one built from
	// Config.HTTPClientConfig. Either way it is wrapped with SigV4 signing
	// when Config.SigV4Config is set.
	Transport http.RoundTripper
	// UserAgent is sent with every request; zero means DefaultUserAgent.
	UserAgent string
	// FlushDeadline bounds how long Run sends after its ctx is done. Zero
	// means DefaultFlushDeadline.
	FlushDeadline time.Duration
	// Logger gets the queue's logs. Zero means none.
	Logger *slog.Logger
	// Registerer gets the queue's metrics while Run runs. Nil means the
	// metrics are kept but not registered.
	Registerer prometheus.Registerer
}

// Queue sends the samples of one WAL to one remote_write endpoint. Create it
// with New, run it once with Run. Acked is safe for concurrent use at any
// time, also after Run has returned.
type Queue struct {
	name           string
	log            Log
	start          wal.Position
	client         *client
	logger         *slog.Logger
	metrics        *queueMetrics
	flushDeadline  time.Duration
	maxPerSend     int
	batchDeadline  time.Duration
	minBackoff     time.Duration
	maxBackoff     time.Duration
	ageLimit       time.Duration
	sendExemplars  bool
	sendHistograms bool

	// shards is fixed for the life of the Queue. Dynamic resharding would
	// swap it between drained generations; the reader is its only writer.
	shards []*shard
	acks   *acks

	// Owned by the reader goroutine.
	series *seriesTable
	stage  []staging
	cur    current

	rejectLog, retryLog, unknownLog, readErrLog lograte.Limiter

	ran atomic.Bool
}

// New validates opts and builds a Queue. ctx bounds setting up the HTTP
// transport and SigV4 credentials. New starts nothing.
func New(ctx context.Context, opts Options) (*Queue, error) {
	cfg := opts.Config
	if cfg == nil || cfg.URL == nil {
		return nil, errors.New("remotewrite: config with a url is required")
	}
	if opts.Log == nil {
		return nil, errors.New("remotewrite: log is required")
	}
	if m := cfg.ProtobufMessage; m != "" && m != "prometheus.WriteRequest" {
		return nil, fmt.Errorf("remote_write %s: protobuf_message %q is not supported, only prometheus.WriteRequest", cfg.URL.Redacted(), m)
	}
	qc := cfg.QueueConfig
	if err := qc.Validate(); err != nil {
		return nil, fmt.Errorf("remote_write %s: %w", cfg.URL.Redacted(), err)
	}
	name := opts.Name
	if name == "" {
		name = cfg.Name
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("remote_name", name, "url", cfg.URL.Redacted())
	ua := opts.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	cl, err := newClient(ctx, cfg, opts.Transport, ua, logger, opts.SigV4, opts.Registerer)
	if err != nil {
		return nil, err
	}
	q := &Queue{
		name:           name,
		log:            opts.Log,
		start:          opts.Start,
		client:         cl,
		logger:         logger,
		flushDeadline:  opts.FlushDeadline,
		maxPerSend:     qc.MaxSamplesPerSend,
		batchDeadline:  time.Duration(qc.BatchSendDeadline),
		minBackoff:     time.Duration(qc.MinBackoff),
		maxBackoff:     time.Duration(qc.MaxBackoff),
		ageLimit:       time.Duration(qc.SampleAgeLimit),
		sendExemplars:  cfg.SendExemplars,
		sendHistograms: cfg.SendNativeHistograms,
		acks:           newAcks(opts.Start),
		series:         newSeriesTable(opts.ExternalLabels, cfg.WriteRelabelConfigs),
		rejectLog:      lograte.Limiter{Interval: 10 * time.Second, Level: slog.LevelError},
		retryLog:       lograte.Limiter{Interval: 10 * time.Second, Level: slog.LevelWarn},
		unknownLog:     lograte.Limiter{Interval: 10 * time.Second, Level: slog.LevelWarn},
		readErrLog:     lograte.Limiter{Interval: 10 * time.Second, Level: slog.LevelError},
	}
	if q.flushDeadline <= 0 {
		q.flushDeadline = DefaultFlushDeadline
	}
	// Zero would mean sending partial batches at once, or retrying in a
	// tight loop: take Prometheus' defaults instead.
	if q.batchDeadline <= 0 {
		q.batchDeadline = time.Duration(config.DefaultQueueConfig.BatchSendDeadline)
	}
	if q.minBackoff <= 0 {
		q.minBackoff = time.Duration(config.DefaultQueueConfig.MinBackoff)
	}
	q.maxBackoff = max(q.maxBackoff, q.minBackoff)
	// A fixed shard count for now; min_shards is where Prometheus starts
	// too, and max_shards caps it.
	n := min(qc.MaxShards, max(qc.MinShards, 1))
	// The ring must hold a full batch, or a shard below
	// max_samples_per_send would only ever send at the deadline.
	capacity := max(qc.Capacity, qc.MaxSamplesPerSend)
	q.shards = make([]*shard, n)
	for i := range q.shards {
		q.shards[i] = newShard(q, capacity)
	}
	q.stage = make([]staging, n)
	q.metrics = newQueueMetrics(opts.Registerer, name, cfg.URL.Redacted())
	q.metrics.shards.Set(float64(n))
	q.metrics.shardsMin.Set(float64(qc.MinShards))
	q.metrics.shardsMax.Set(float64(qc.MaxShards))
	q.metrics.shardsDesired.Set(float64(n))
	q.metrics.shardCapacity.Set(float64(capacity))
	q.metrics.maxSamplesPerSend.Set(float64(qc.MaxSamplesPerSend))
	return q, nil
}

// Run reads the WAL from Options.Start and sends until ctx is done. Then it
// stops reading, sends what is queued for at most the flush deadline,
// cancels what is still in flight and returns nil. Samples left unsent stay
// in the WAL behind Acked, and are logged. If the WAL is closed first, Run
// sends everything read and returns once it is delivered (or dropped), or
// the flush deadline after ctx is done. Run registers the queue's metrics
// and unregisters them before it returns, so a new Queue for the same
// endpoint can follow. It returns an error only if the metrics cannot be
// registered or the WAL reader cannot be opened. Run must be called once.
func (q *Queue) Run(ctx context.Context) error {
	if !q.ran.CompareAndSwap(false, true) {
		return errors.New("remotewrite: Run called twice")
	}
	if err := q.metrics.register(); err != nil {
		return fmt.Errorf("register metrics of remote write %s: %w", q.name, err)
	}
	defer q.metrics.unregister()
	defer q.client.hc.CloseIdleConnections()
	r, err := q.log.NewReader(q.start)
	if err != nil {
		return fmt.Errorf("open wal reader for remote write %s at %+v: %w", q.name, q.start, err)
	}
	defer r.Close()

	sendCtx, cancelSend := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSend()
	var wg sync.WaitGroup
	for _, s := range q.shards {
		wg.Go(func() { s.run(sendCtx) })
	}
	q.read(ctx, r)

	// Stop softly: shards send what is queued, then return. Once ctx is
	// done (it may not be, when the WAL was closed), they get the flush
	// deadline before what is in flight is cancelled.
	for _, s := range q.shards {
		s.drain()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		t := time.NewTimer(q.flushDeadline)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			cancelSend()
			<-done
		}
	}
	unsent := 0
	for _, s := range q.shards {
		unsent += s.pending()
	}
	if unsent > 0 {
		q.logger.Warn("remote write stopped with samples unsent; they stay in the WAL", "unsent", unsent, "acked", q.Acked())
	}
	return nil
}

// Acked returns the WAL position before which every sample has been
// delivered or dropped: the start of the oldest record with a sample still
// queued or in flight, or the position after the last record read when none
// is. It never goes below Options.Start. It is safe for concurrent use.
func (q *Queue) Acked() wal.Position {
	a := q.acks
	a.mu.Lock()
	defer a.mu.Unlock()
	var oldest uint64
	ok := false
	for _, s := range q.shards {
		if seq, has := s.oldest(); has && (!ok || seq < oldest) {
			oldest, ok = seq, true
		}
	}
	return a.positionLocked(oldest, ok)
}

// queueMetrics are a Queue's metrics, with Prometheus' names and its
// remote_name and url (redacted) labels so the mixin dashboards work.
type queueMetrics struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector

	samplesTotal, histogramsTotal, exemplarsTotal       prometheus.Counter
	samplesFailed, histogramsFailed, exemplarsFailed    prometheus.Counter
	samplesRetried, histogramsRetried, exemplarsRetried prometheus.Counter
	samplesDropped, histogramsDropped, exemplarsDropped *prometheus.CounterVec
	samplesPending, histogramsPending, exemplarsPending prometheus.Gauge
	seriesDropped, walReadErrors                        prometheus.Counter

	shards, shardsMin, shardsMax, shardsDesired prometheus.Gauge
	shardCapacity, maxSamplesPerSend            prometheus.Gauge
	sentBatchDuration                           prometheus.Histogram
	bytesTotal                                  prometheus.Counter
	highestEnqueued, highestSent                *maxGauge
}

func newQueueMetrics(reg prometheus.Registerer, name, url string) *queueMetrics {
	m := &queueMetrics{reg: reg}
	constLabels := prometheus.Labels{"remote_name": name, "url": url}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "prometheus", Subsystem: "remote_storage", Name: name, Help: help, ConstLabels: constLabels,
		})
		m.collectors = append(m.collectors, c)
		return c
	}
	dropped := func(name, help string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "prometheus", Subsystem: "remote_storage", Name: name, Help: help, ConstLabels: constLabels,
		}, []string{"reason"})
		m.collectors = append(m.collectors, c)
		return c
	}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "prometheus", Subsystem: "remote_storage", Name: name, Help: help, ConstLabels: constLabels,
		})
		m.collectors = append(m.collectors, g)
		return g
	}
	m.samplesTotal = counter("samples_total", "Total number of samples sent to remote storage, counted per attempt.")
	m.histogramsTotal = counter("histograms_total", "Total number of histogram samples sent to remote storage, counted per attempt.")
	m.exemplarsTotal = counter("exemplars_total", "Total number of exemplars sent to remote storage, counted per attempt.")
	m.samplesFailed = counter("samples_failed_total", "Total number of samples which failed on send to remote storage, non-recoverable errors.")
	m.histogramsFailed = counter("histograms_failed_total", "Total number of histogram samples which failed on send to remote storage, non-recoverable errors.")
	m.exemplarsFailed = counter("exemplars_failed_total", "Total number of exemplars which failed on send to remote storage, non-recoverable errors.")
	m.samplesRetried = counter("samples_retried_total", "Total number of samples which failed on send to remote storage but were retried because the send error was recoverable.")
	m.histogramsRetried = counter("histograms_retried_total", "Total number of histogram samples which failed on send to remote storage but were retried because the send error was recoverable.")
	m.exemplarsRetried = counter("exemplars_retried_total", "Total number of exemplars which failed on send to remote storage but were retried because the send error was recoverable.")
	m.samplesDropped = dropped("samples_dropped_total", "Total number of samples which were dropped after being read from the WAL before being sent via remote write, by reason.")
	m.histogramsDropped = dropped("histograms_dropped_total", "Total number of histogram samples which were dropped after being read from the WAL before being sent via remote write, by reason.")
	m.exemplarsDropped = dropped("exemplars_dropped_total", "Total number of exemplars which were dropped after being read from the WAL before being sent via remote write, by reason.")
	m.samplesPending = gauge("samples_pending", "The number of samples pending in the queues shards to be sent to the remote storage.")
	m.histogramsPending = gauge("histograms_pending", "The number of histogram samples pending in the queues shards to be sent to the remote storage.")
	m.exemplarsPending = gauge("exemplars_pending", "The number of exemplars pending in the queues shards to be sent to the remote storage.")
	m.seriesDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "rwagent", Subsystem: "remote_write", Name: "series_dropped_total", ConstLabels: constLabels,
		Help: "Total number of series dropped by write_relabel_configs.",
	})
	m.walReadErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "rwagent", Subsystem: "remote_write", Name: "wal_read_errors_total", ConstLabels: constLabels,
		Help: "Total number of WAL read errors; the reader skips what it cannot read.",
	})
	m.collectors = append(m.collectors, m.seriesDropped, m.walReadErrors)
	m.shards = gauge("shards", "The number of shards used for parallel sending to the remote storage.")
	m.shardsMin = gauge("shards_min", "The minimum number of shards that the queue is allowed to run.")
	m.shardsMax = gauge("shards_max", "The maximum number of shards that the queue is allowed to run.")
	m.shardsDesired = gauge("shards_desired", "The number of shards that the queue would like to run.")
	m.shardCapacity = gauge("shard_capacity", "The capacity of each shard of the queue used for parallel sending to the remote storage.")
	m.maxSamplesPerSend = gauge("max_samples_per_send", "The maximum number of samples to be sent, in a single request, to the remote storage.")
	m.sentBatchDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "prometheus", Subsystem: "remote_storage", Name: "sent_batch_duration_seconds",
		Help:                            "Duration of send calls to the remote storage.",
		Buckets:                         append(prometheus.DefBuckets, 25, 60, 120, 300),
		ConstLabels:                     constLabels,
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  100,
		NativeHistogramMinResetDuration: time.Hour,
	})
	m.collectors = append(m.collectors, m.sentBatchDuration)
	m.bytesTotal = counter("bytes_total", "The total number of bytes of data (not metadata) sent by the queue after compression.")
	m.highestEnqueued = &maxGauge{Gauge: gauge("queue_highest_timestamp_seconds", "Highest timestamp that was enqueued, in seconds since epoch.")}
	m.highestSent = &maxGauge{Gauge: gauge("queue_highest_sent_timestamp_seconds", "Highest timestamp successfully sent by this queue, in seconds since epoch.")}
	return m
}

// register registers every collector, or none.
func (m *queueMetrics) register() error {
	if m.reg == nil {
		return nil
	}
	for i, c := range m.collectors {
		if err := m.reg.Register(c); err != nil {
			for _, r := range m.collectors[:i] {
				m.reg.Unregister(r)
			}
			return err
		}
	}
	return nil
}

func (m *queueMetrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}

// dropped counts c as dropped for reason.
func (m *queueMetrics) dropped(reason string, c counts) {
	if c.samples > 0 {
		m.samplesDropped.WithLabelValues(reason).Add(float64(c.samples))
	}
	if c.histograms > 0 {
		m.histogramsDropped.WithLabelValues(reason).Add(float64(c.histograms))
	}
	if c.exemplars > 0 {
		m.exemplarsDropped.WithLabelValues(reason).Add(float64(c.exemplars))
	}
}

// pending adds to the pending gauges.
func (m *queueMetrics) pending(samples, histograms, exemplars int) {
	if samples != 0 {
		m.samplesPending.Add(float64(samples))
	}
	if histograms != 0 {
		m.histogramsPending.Add(float64(histograms))
	}
	if exemplars != 0 {
		m.exemplarsPending.Add(float64(exemplars))
	}
}

// maxGauge is a gauge that only goes up. It is safe for concurrent use.
type maxGauge struct {
	prometheus.Gauge
	mu  sync.Mutex
	max float64
}

func (g *maxGauge) set(v float64) {
	g.mu.Lock()
	if v > g.max {
		g.max = v
		g.Gauge.Set(v)
	}
	g.mu.Unlock()
}
