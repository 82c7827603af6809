// Package scrape scrapes Prometheus targets and logs their samples to the
// WAL. It is a lean scrape loop of its own on Prometheus' libraries: target
// labels from scrape.TargetsFromGroup, parsing by model/textparse, metric
// relabelling by model/relabel, HTTP clients from prometheus/common/config.
package scrape

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/tsdb/chunks"

	"github.com/rwagent/rwagent/pkg/lograte"
	"github.com/rwagent/rwagent/pkg/metricset"
	"github.com/rwagent/rwagent/pkg/wal"
)

// Storage is where scraped samples go; *wal.WAL implements it. All methods
// must be safe for concurrent use: every target's loop calls them.
type Storage interface {
	// NewRef returns a series ref unique in the storage.
	NewRef() chunks.HeadSeriesRef
	// Log writes the batch: series records before the samples that use
	// them. It does not retain r after it returns.
	Log(r *wal.Records) error
	// Release says the series get no more samples. It does not retain refs.
	Release(refs []chunks.HeadSeriesRef)
}

// Target labels Prometheus uses to override histogram options per target.
const (
	labelScrapeNativeHistograms  = "__scrape_native_histograms__"
	labelAlwaysScrapeClassicHist = "__always_scrape_classic_histograms__"
	labelConvertClassicToNHCB    = "__convert_classic_histograms_to_nhcb__"
)

// ManagerOptions configures a Manager.
type ManagerOptions struct {
	// Logger receives scrape failures (once per change of error per
	// target) and reload problems. Nil discards.
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Storage receives the samples. Required.
	Storage Storage
	// UserAgent is sent with every scrape. Zero: "rwagent".
	UserAgent string
	// Now stamps scrapes and stale markers. Zero: time.Now. Timers still
	// run on the real clock.
	Now func() time.Time
	// WrapTransport, when set, wraps the HTTP transport of each job's
	// client (rwagent signs scrapes with SigV4 this way). Nil: no wrapping.
	WrapTransport WrapTransport
	// BodySizeLimit is the largest uncompressed body read from a target
	// whose scrape config sets no body_size_limit. Zero:
	// DefaultBodySizeLimit. There is no way to read without a limit.
	BodySizeLimit int64
	// StartTimestamps parses each sample's start (created) timestamp, from
	// protobuf CreatedTimestamp or OpenMetrics _created lines, into the
	// WAL (as Prometheus' ParseST does), where remote write 2.0 sends it.
	// It costs a look-ahead per sample in the OpenMetrics 1.0 parser,
	// whose look-ahead then skips the _created series themselves (as in
	// Prometheus with ParseST). Zero: not parsed, _created series are
	// scraped as samples, and the WAL keeps V1 sample records.
	StartTimestamps bool
	// Shard, when its Count is above 1, keeps only this agent's share of
	// the targets (after relabeling) and counts the others in
	// rwagent_shard_targets{state="dropped"}. Zero: every target.
	Shard Shard
}

// WrapTransport returns the transport a job's scrapes go through, built
// around the one its http_client_config made. An error fails ApplyConfig.
type WrapTransport func(job string, next http.RoundTripper) (http.RoundTripper, error)

// Manager runs one scrape loop per target of every scrape config.
//
// Call ApplyConfig (at start and on every reload) and Run once. All methods
// are safe for concurrent use. Once Run has returned, ApplyConfig only stores
// configs. The zero value is not usable; use NewManager.
type Manager struct {
	opts    ManagerOptions
	logger  *slog.Logger
	metrics *scrapeMetrics
	shard   *shardMetrics
	parsers *parserPool // shared by the loops' appenders
	pool    bufferPool
	fails   failureLogs
	ready   atomic.Bool
	active  atomic.Pointer[map[string][]*scrape.Target]
	views   atomic.Pointer[map[string]*jobView] // for Status; replaced by each sync

	// mu guards the fields below and serialises syncs; it is held while
	// loops stop (up to a scrape timeout).
	mu      sync.Mutex
	configs map[string]*jobConfig           // by job name
	jobs    map[string]*job                 // running jobs, by name
	groups  map[string][]*targetgroup.Group // last target sets from discovery
	runCtx  context.Context                 // set while Run runs
	runDone bool                            // Run has returned or is returning
	closed  bool
	loops   sync.WaitGroup // every loop goroutine; waited for by Run
}

// NewManager returns a Manager with no scrape configs. It starts nothing.
func NewManager(opts ManagerOptions) (*Manager, error) {
	if opts.Storage == nil {
		return nil, errors.New("scrape: ManagerOptions.Storage is nil")
	}
	if err := opts.Shard.Validate(); err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "rwagent"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Manager{
		opts:    opts,
		logger:  opts.Logger,
		metrics: newScrapeMetrics(opts.Registerer),
		shard:   newShardMetrics(opts.Registerer, opts.Shard),
		parsers: newParserPool(2 * runtime.GOMAXPROCS(0)),
		configs: map[string]*jobConfig{},
		jobs:    map[string]*job{},
	}
	m.fails.logger = opts.Logger
	m.fails.limit = lograte.Limiter{Interval: walErrorLogInterval, Level: slog.LevelWarn}
	if err := m.metrics.register(); err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	if err := m.shard.register(); err != nil {
		m.metrics.unregister()
		return nil, fmt.Errorf("scrape: %w", err)
	}
	return m, nil
}

// ApplyConfig replaces the scrape configs. They must have been validated
// (config.ScrapeConfig.Validate, as config.Load does). Jobs whose config
// changed restart their loops: series that keep their labels keep their
// refs, the others get stale markers. Removed jobs stop and their series get
// stale markers. Every scrape_failure_log_file is (re)opened. On error
// nothing changes. ApplyConfig returns once stopped loops have stopped.
func (m *Manager) ApplyConfig(cfgs []*config.ScrapeConfig) error {
	return m.ApplyConfigRenewing(cfgs, nil)
}

// ApplyConfigRenewing is ApplyConfig, and also restarts the jobs for which
// renew says true even when their scrape config did not change: those
// whose WrapTransport would now wrap differently (a changed sigv4 block).
// Their series keep their refs, as in any changed job. Nil renews none.
func (m *Manager) ApplyConfigRenewing(cfgs []*config.ScrapeConfig, renew func(job string) bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.metrics.reloads.Inc()
	files, err := openFailureLogs(cfgs)
	if err != nil {
		m.metrics.reloadsFailed.Inc()
		return err
	}
	next, err := m.buildConfigs(cfgs, renew)
	if err != nil {
		closeFailureLogs(files)
		m.metrics.reloadsFailed.Inc()
		return err
	}
	if m.closed {
		closeFailureLogs(files)
	} else {
		m.fails.swap(files)
	}
	old := m.configs
	m.configs = next
	if m.runCtx != nil && !m.runDone {
		m.syncLocked()
	}
	for name, jc := range old {
		if next[name] != jc {
			jc.client.CloseIdleConnections()
		}
	}
	return nil
}

func (m *Manager) buildConfigs(cfgs []*config.ScrapeConfig, renew func(job string) bool) (map[string]*jobConfig, error) {
	next := make(map[string]*jobConfig, len(cfgs))
	for _, c := range cfgs {
		if c == nil {
			return nil, errors.New("apply scrape configs: nil scrape config")
		}
		if _, ok := next[c.JobName]; ok {
			return nil, fmt.Errorf("apply scrape configs: job_name %q is used twice", c.JobName)
		}
		if old, ok := m.configs[c.JobName]; ok && sameScrapeConfig(old.cfg, c) && (renew == nil || !renew(c.JobName)) {
			next[c.JobName] = old
			continue
		}
		jc, err := newJobConfig(c, m.opts.UserAgent, m.opts.WrapTransport)
		if err != nil {
			for _, built := range next {
				if m.configs[built.cfg.JobName] != built {
					built.client.CloseIdleConnections()
				}
			}
			return nil, err
		}
		next[c.JobName] = jc
	}
	return next, nil
}

// Run starts and stops loops as target sets arrive on tsets (keyed by job
// name, each one the complete set, as discovery.Manager's SyncCh sends
// them) and as ApplyConfig changes the configs. When ctx is done it stops
// every loop without writing stale markers (so a restart continues the
// series), waits for them, unregisters the metrics and returns nil. A closed
// tsets only means no more updates. Run must be called once.
func (m *Manager) Run(ctx context.Context, tsets <-chan map[string][]*targetgroup.Group) error {
	m.mu.Lock()
	if m.runCtx != nil || m.closed {
		m.mu.Unlock()
		return errors.New("scrape: Manager.Run called twice or after Close")
	}
	m.runCtx = ctx
	m.mu.Unlock()

	for {
		select {
		case <-ctx.Done():
			m.mu.Lock()
			m.runDone = true
			jobs := m.jobs
			m.jobs = map[string]*job{}
			m.mu.Unlock()
			m.loops.Wait()
			for _, j := range jobs {
				for _, l := range j.loops {
					l.app.cache.close()
				}
			}
			m.active.Store(nil)
			m.views.Store(nil)
			m.Close()
			return nil
		case ts, ok := <-tsets:
			if !ok {
				tsets = nil
				continue
			}
			m.mu.Lock()
			m.groups = ts
			if !m.runDone && ctx.Err() == nil {
				m.syncLocked()
			}
			m.mu.Unlock()
			m.ready.Store(true)
		}
	}
}

// Ready says whether the first target sets were applied.
func (m *Manager) Ready() bool { return m.ready.Load() }

// ActiveTargets returns the scraped targets by job name, for a status page.
// The map and slices are the caller's; the targets are shared and safe for
// concurrent use (Health, LastError, LastScrape, ...).
func (m *Manager) ActiveTargets() map[string][]*scrape.Target {
	out := map[string][]*scrape.Target{}
	if p := m.active.Load(); p != nil {
		for name, ts := range *p {
			out[name] = append([]*scrape.Target(nil), ts...)
		}
	}
	return out
}

// Close unregisters the metrics and closes idle connections. Run calls it
// when it returns; call it yourself if Run never ran. It is idempotent.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.closed = true
	for _, jc := range m.configs {
		jc.client.CloseIdleConnections()
	}
	m.fails.swap(nil)
	m.metrics.unregister()
	m.shard.unregister()
}

// syncLocked brings the loops in line with m.configs and m.groups. m.mu must
// be held and Run must be running.
func (m *Manager) syncLocked() {
	for name, j := range m.jobs {
		if _, ok := m.configs[name]; !ok {
			stopLoops(slices.Collect(maps.Values(j.loops)), nil)
			delete(m.jobs, name)
			m.metrics.deleteJob(name)
			m.shard.deleteJob(name)
		}
	}
	for name, jc := range m.configs {
		j, ok := m.jobs[name]
		if !ok {
			j = &job{jc: jc, loops: map[uint64]*loop{}}
			m.jobs[name] = j
		}
		begin := time.Now()
		m.syncJob(j, jc, m.groups[name])
		m.metrics.syncLength.WithLabelValues(name).Observe(time.Since(begin).Seconds())
	}
	active := make(map[string][]*scrape.Target, len(m.jobs))
	views := make(map[string]*jobView, len(m.jobs))
	for name, j := range m.jobs {
		ts := make([]*scrape.Target, 0, len(j.loops))
		v := &jobView{dropped: j.dropped, droppedTotal: j.droppedTotal, discovered: j.discovered}
		for _, l := range j.loops {
			ts = append(ts, l.target)
			v.loops = append(v.loops, l)
		}
		active[name] = ts
		views[name] = v
	}
	m.active.Store(&active)
	m.views.Store(&views)
}

// The reason labels of rwagent_scrape_samples_dropped_total.
const (
	reasonWALError    = "wal_error"        // Storage.Log failed
	reasonDuplicate   = "duplicate_sample" // the series came twice in one exposition
	reasonOutOfOrder  = "out_of_order"     // a timestamp older than the series' last
	reasonOutOfBounds = "out_of_bounds"    // a timestamp more than maxAheadTime ahead
)

// The reason labels of rwagent_scrape_failures_total: what failed a whole
// scrape (up=0, nothing of it logged).
const (
	failBodySizeLimit  = "body_size_limit"
	failSampleLimit    = "sample_limit"
	failBucketLimit    = "native_histogram_bucket_limit"
	failLabelLimit     = "label_limit"
	failDuplicateNames = "duplicate_label_names"
	failTargetLimit    = "target_limit"
	failOther          = "other" // unreachable, timeout, HTTP status, parse error, ...
)

// failureReason classifies the error of a failed scrape.
func failureReason(err error) string {
	switch {
	case errors.Is(err, ErrBodySizeLimit):
		return failBodySizeLimit
	case errors.Is(err, ErrSampleLimit):
		return failSampleLimit
	case errors.Is(err, ErrBucketLimit):
		return failBucketLimit
	case errors.Is(err, ErrLabelLimit):
		return failLabelLimit
	case errors.Is(err, ErrDuplicateLabelNames):
		return failDuplicateNames
	case errors.Is(err, ErrTargetLimit):
		return failTargetLimit
	}
	return failOther
}

// walErrorLogInterval rate-limits the logging of Storage.Log failures.
const walErrorLogInterval = 10 * time.Second

// scrapeMetrics are the Manager's metrics, shared by its loops. Safe for
// concurrent use.
type scrapeMetrics struct {
	reg prometheus.Registerer
	all metricset.Set // every collector below

	poolTargets    *prometheus.GaugeVec
	syncFailed     *prometheus.CounterVec
	reloads        prometheus.Counter
	reloadsFailed  prometheus.Counter
	targetLimit    prometheus.Counter
	sampleLimit    prometheus.Counter
	bucketLimit    prometheus.Counter
	bodySizeLimit  prometheus.Counter
	labelLimits    prometheus.Counter
	duplicates     prometheus.Counter
	outOfOrder     prometheus.Counter
	outOfBounds    prometheus.Counter
	intervalLength *prometheus.SummaryVec
	syncLength     *prometheus.SummaryVec
	scrapes        *prometheus.CounterVec
	failures       *prometheus.CounterVec
	dropped        *prometheus.CounterVec

	walErrLog lograte.Limiter // of Storage.Log failures, across the Manager
}

// newScrapeMetrics builds the metrics, unregistered; register puts them on
// reg.
func newScrapeMetrics(reg prometheus.Registerer) *scrapeMetrics {
	m := &scrapeMetrics{reg: reg, walErrLog: lograte.Limiter{Interval: walErrorLogInterval, Level: slog.LevelError}}
	f := promauto.With(nil)
	m.poolTargets = f.NewGaugeVec(prometheus.GaugeOpts{
		Name: "prometheus_target_scrape_pool_targets",
		Help: "Current number of targets in this scrape pool.",
	}, []string{"scrape_job"})
	m.syncFailed = f.NewCounterVec(prometheus.CounterOpts{
		Name: "prometheus_target_sync_failed_total",
		Help: "Total number of target sync failures.",
	}, []string{"scrape_job"})
	m.reloads = f.NewCounter(prometheus.CounterOpts{
		Name: "prometheus_target_scrape_pool_reloads_total",
		Help: "Total number of scrape pool reloads.",
	})
	m.reloadsFailed = f.NewCounter(prometheus.CounterOpts{
		Name: "prometheus_target_scrape_pool_reloads_failed_total",
		Help: "Total number of failed scrape pool reloads.",
	})
	m.targetLimit = f.NewCounter(prometheus.CounterOpts{
		Name: "prometheus_target_scrape_pool_exceeded_target_limit_total",
		Help: "Total number of times scrape pools hit the target limit, during sync or config reload.",
	})
	m.sampleLimit = f.NewCounter(prometheus.CounterOpts{
		Name: "prometheus_target_scrapes_exceeded_sample_limit_total",
		Help: "Total number of scrapes that hit the sample limit and were rejected.",
	})
	m.bucketLimit = f.NewCounter(prometheus.CounterOpts{
		Name: "prometheus_target_scrapes_exceeded_native_histogram_bucket_limit_total",
		Help: "Total number of scrapes that hit the native histogram bucket limit and were rejected.",
	})
	m.bodySizeLimit = f.NewCounter(prometheus.CounterOpts{
		Name: "prometheus_target_scrapes_exceeded_body_size_limit_total",
		Help: "Total number of scrapes that hit the body size limit",
	})
	m.labelLimits = f.NewCounter(prometheus.CounterOpts{
		Name: "prometheus_target_scrape_pool_exceeded_label_limits_total",
		Help: "Total number of times scrape pools hit the label limits, during sync or config reload.",
	})
	m.duplicates = f.NewCounter(prometheus.CounterOpts{
		Name: "prometheus_target_scrapes_sample_duplicate_timestamp_total",
		Help: "Total number of samples rejected due to duplicate timestamps but different values.",
	})
	m.outOfOrder = f.NewCounter(prometheus.CounterOpts{
		Name: "prometheus_target_scrapes_sample_out_of_order_total",
		Help: "Total number of samples rejected due to not being out of the expected order.",
	})
	m.outOfBounds = f.NewCounter(prometheus.CounterOpts{
		Name: "prometheus_target_scrapes_sample_out_of_bounds_total",
		Help: "Total number of samples rejected due to timestamp falling outside of the time bounds.",
	})
	m.intervalLength = f.NewSummaryVec(prometheus.SummaryOpts{
		Name:       "prometheus_target_interval_length_seconds",
		Help:       "Actual intervals between scrapes.",
		Objectives: map[float64]float64{0.01: 0.001, 0.05: 0.005, 0.5: 0.05, 0.90: 0.01, 0.99: 0.001},
	}, []string{"interval"})
	m.syncLength = f.NewSummaryVec(prometheus.SummaryOpts{
		Name:       "prometheus_target_sync_length_seconds",
		Help:       "Actual interval to sync the scrape pool.",
		Objectives: map[float64]float64{0.01: 0.001, 0.05: 0.005, 0.5: 0.05, 0.90: 0.01, 0.99: 0.001},
	}, []string{"scrape_job"})
	m.scrapes = f.NewCounterVec(prometheus.CounterOpts{
		Name: "rwagent_scrapes_total",
		Help: "Scrapes by job and result (success or failure).",
	}, []string{"scrape_job", "result"})
	m.failures = f.NewCounterVec(prometheus.CounterOpts{
		Name: "rwagent_scrape_failures_total",
		Help: "Failed scrapes (up=0, none of their samples logged) by job and reason.",
	}, []string{"scrape_job", "reason"})
	m.dropped = f.NewCounterVec(prometheus.CounterOpts{
		Name: "rwagent_scrape_samples_dropped_total",
		Help: "Scraped samples (and stale markers) that did not reach the WAL, by reason.",
	}, []string{"reason"})
	m.all.Add(
		m.poolTargets, m.syncFailed, m.reloads, m.reloadsFailed, m.targetLimit,
		m.sampleLimit, m.bucketLimit, m.bodySizeLimit, m.labelLimits,
		m.duplicates, m.outOfOrder, m.outOfBounds, m.intervalLength, m.syncLength, m.scrapes, m.failures, m.dropped,
	)
	return m
}

// register registers every metric on the Registerer given to
// newScrapeMetrics, or none.
func (m *scrapeMetrics) register() error { return m.all.Register(m.reg) }

// unregister removes what register registered.
func (m *scrapeMetrics) unregister() { m.all.Unregister() }

// deleteJob drops the series of a removed job.
func (m *scrapeMetrics) deleteJob(job string) {
	m.poolTargets.DeleteLabelValues(job)
	m.syncFailed.DeleteLabelValues(job)
	m.syncLength.DeleteLabelValues(job)
	m.scrapes.DeletePartialMatch(prometheus.Labels{"scrape_job": job})
	m.failures.DeletePartialMatch(prometheus.Labels{"scrape_job": job})
}

// countAppend adds one scrape's rejected samples.
func (m *scrapeMetrics) countAppend(r *appendResult) {
	if r.duplicates > 0 {
		m.duplicates.Add(float64(r.duplicates))
		m.dropped.WithLabelValues(reasonDuplicate).Add(float64(r.duplicates))
	}
	if r.outOfOrder > 0 {
		m.outOfOrder.Add(float64(r.outOfOrder))
		m.dropped.WithLabelValues(reasonOutOfOrder).Add(float64(r.outOfOrder))
	}
	if r.outOfBounds > 0 {
		m.outOfBounds.Add(float64(r.outOfBounds))
		m.dropped.WithLabelValues(reasonOutOfBounds).Add(float64(r.outOfBounds))
	}
}

// logWALError logs a Storage.Log failure, at most once per
// walErrorLogInterval across the Manager, with the number of failures not
// logged since (suppressed_since_last).
func (m *scrapeMetrics) logWALError(logger *slog.Logger, target string, samples int, err error) {
	m.walErrLog.Log(logger, "Write scraped samples to the WAL", "target", target, "samples_dropped", samples, "err", err)
}
