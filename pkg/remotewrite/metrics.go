package remotewrite

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rwagent/rwagent/pkg/metricset"
)

// queueMetrics are a Queue's metrics, with Prometheus' names and its
// remote_name and url (redacted) labels so the mixin dashboards work.
type queueMetrics struct {
	reg prometheus.Registerer
	all metricset.Set // every collector below

	samplesTotal, histogramsTotal, exemplarsTotal       prometheus.Counter
	samplesFailed, histogramsFailed, exemplarsFailed    prometheus.Counter
	samplesRetried, histogramsRetried, exemplarsRetried prometheus.Counter
	samplesDropped, histogramsDropped, exemplarsDropped *prometheus.CounterVec
	samplesPending, histogramsPending, exemplarsPending prometheus.Gauge
	seriesDropped, seriesNotRouted, walReadErrors       prometheus.Counter
	enqueueRetries                                      prometheus.Counter
	metadataTotal, metadataFailed                       prometheus.Counter
	metadataRetried, metadataBytes                      prometheus.Counter

	shards, shardsMin, shardsMax, shardsDesired prometheus.Gauge
	shardCapacity, maxSamplesPerSend            prometheus.Gauge
	sentBatchDuration                           prometheus.Histogram
	bytesTotal                                  prometheus.Counter
	highestRead, highestEnqueued, highestSent   *maxGauge
}

// newQueueMetrics builds the metrics of the queue named name sending to
// url (redacted). lagBytes, if not nil, is what
// rwagent_remote_write_lag_bytes reports on each scrape.
func newQueueMetrics(reg prometheus.Registerer, name, url string, lagBytes func() float64) *queueMetrics {
	m := &queueMetrics{reg: reg}
	constLabels := prometheus.Labels{"remote_name": name, "url": url}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "prometheus", Subsystem: "remote_storage", Name: name, Help: help, ConstLabels: constLabels,
		})
		m.all.Add(c)
		return c
	}
	dropped := func(name, help string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "prometheus", Subsystem: "remote_storage", Name: name, Help: help, ConstLabels: constLabels,
		}, []string{"reason"})
		m.all.Add(c)
		return c
	}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "prometheus", Subsystem: "remote_storage", Name: name, Help: help, ConstLabels: constLabels,
		})
		m.all.Add(g)
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
	// Every known reason exists at zero from the start, so a dashboard
	// or an alert on increase() sees the first drop.
	for _, r := range allDropReasons() {
		for _, c := range []*prometheus.CounterVec{m.samplesDropped, m.histogramsDropped, m.exemplarsDropped} {
			c.WithLabelValues(r)
		}
	}
	m.metadataTotal = counter("metadata_total", "Total number of metadata entries sent to remote storage (remote write 1.0 only).")
	m.metadataFailed = counter("metadata_failed_total", "Total number of metadata entries which failed on send to remote storage, non-recoverable errors or still failing at the next send_interval (remote write 1.0 only).")
	m.metadataRetried = counter("metadata_retried_total", "Total number of metadata entries which failed on send to remote storage but were retried because the send error was recoverable (remote write 1.0 only).")
	m.metadataBytes = counter("metadata_bytes_total", "The total number of bytes of metadata sent by the queue after compression (remote write 1.0 only).")
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
	m.seriesNotRouted = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "rwagent", Subsystem: "remote_write", Name: "series_not_routed_total", ConstLabels: constLabels,
		Help: "Total number of series the gateway routed to other remote_write endpoints (a tenant's remote_write_names): not sent here, and not dropped.",
	})
	m.all.Add(m.seriesDropped, m.seriesNotRouted, m.walReadErrors)
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
	m.all.Add(m.sentBatchDuration)
	m.enqueueRetries = counter("enqueue_retries_total", "Total number of times enqueue has waited because a shard's queue was full.")
	m.bytesTotal = counter("bytes_total", "The total number of bytes of data (not metadata) sent by the queue after compression.")
	m.highestEnqueued = &maxGauge{Gauge: gauge("queue_highest_timestamp_seconds", "Highest timestamp that was enqueued, in seconds since epoch.")}
	m.highestSent = &maxGauge{Gauge: gauge("queue_highest_sent_timestamp_seconds", "Highest timestamp successfully sent by this queue, in seconds since epoch.")}
	// Prometheus' is one series for all queues: the newest sample
	// appended to storage. Ours is per queue, the newest read from the
	// WAL, which is what each queue has to send.
	// Prometheus' highest_timestamp_in_seconds is one series for all
	// queues (the WAL exports it); what this queue has read is only
	// kept for the lag below.
	m.highestRead = &maxGauge{}
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "rwagent", Subsystem: "remote_write", Name: "lag_seconds", ConstLabels: constLabels,
		Help: "Newest timestamp read from the WAL minus newest timestamp delivered: how far this endpoint is behind, in sample time.",
	}, func() float64 { return max(m.highestRead.get()-m.highestSent.get(), 0) })
	m.all.Add(lag)
	if lagBytes != nil {
		m.all.Add(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "rwagent", Subsystem: "remote_write", Name: "lag_bytes", ConstLabels: constLabels,
			Help: "WAL bytes from this endpoint's acknowledged position to the WAL head: how far behind it is, in bytes (NaN if the WAL cannot be measured).",
		}, lagBytes))
	}
	return m
}

// register registers every collector on the Registerer given to
// newQueueMetrics, or none; the error names the metric that failed.
func (m *queueMetrics) register() error { return m.all.Register(m.reg) }

// unregister removes what register registered.
func (m *queueMetrics) unregister() { m.all.Unregister() }

// allDropReasons returns every reason samples_dropped_total (and the
// histograms_ and exemplars_ counters) can count.
func allDropReasons() []string {
	rs := []string{
		reasonDroppedSeries, reasonUnknownSeries, reasonNHCB, reasonEncode, reasonWALFull, reasonWALCorrupt,
	}
	return append(rs, rejectReasons[:]...) // rejected, too_old, ... : what sending drops
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
// With a nil Gauge it only keeps the maximum.
type maxGauge struct {
	prometheus.Gauge
	mu  sync.Mutex
	max float64
}

func (g *maxGauge) get() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.max
}

func (g *maxGauge) set(v float64) {
	g.mu.Lock()
	if v > g.max {
		g.max = v
		if g.Gauge != nil {
			g.Gauge.Set(v)
		}
	}
	g.mu.Unlock()
}
