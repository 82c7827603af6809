package scrape

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"time"

	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/scrape"

	"github.com/rwagent/rwagent/pkg/lograte"
	"github.com/rwagent/rwagent/pkg/wal"
)

// jobConfig is a validated scrape config with its HTTP client. Immutable.
type jobConfig struct {
	cfg    *config.ScrapeConfig
	client *http.Client
	accept string
}

// job is a running scrape config: its loops by target hash.
type job struct {
	jc    *jobConfig
	loops map[uint64]*loop
	// shardKept and shardDropped are the split last logged.
	shardKept, shardDropped int
	// The last sync's dropped targets (at most keep_dropped_targets, 0:
	// all), how many it dropped in all, and how many it discovered. A
	// sync replaces dropped whole, never edits it: Status reads it.
	dropped      []droppedTarget
	droppedTotal int
	discovered   int
}

func newJobConfig(c *config.ScrapeConfig, userAgent string, wrap WrapTransport) (*jobConfig, error) {
	switch {
	case c.ScrapeInterval <= 0:
		return nil, fmt.Errorf("apply scrape config of job %q: scrape_interval must be positive", c.JobName)
	case c.ScrapeTimeout <= 0:
		return nil, fmt.Errorf("apply scrape config of job %q: scrape_timeout must be positive", c.JobName)
	case c.ScrapeTimeout > c.ScrapeInterval:
		return nil, fmt.Errorf("apply scrape config of job %q: scrape_timeout %s is greater than scrape_interval %s", c.JobName, c.ScrapeTimeout, c.ScrapeInterval)
	case len(c.ScrapeProtocols) == 0:
		return nil, fmt.Errorf("apply scrape config of job %q: scrape_protocols is empty (was the config validated?)", c.JobName)
	case c.MetricNameValidationScheme != model.UTF8Validation && c.MetricNameValidationScheme != model.LegacyValidation:
		return nil, fmt.Errorf("apply scrape config of job %q: metric_name_validation_scheme is not set (was the config validated?)", c.JobName)
	}
	for _, p := range c.ScrapeProtocols {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("apply scrape config of job %q: scrape_protocols: %w", c.JobName, err)
		}
	}
	escaping, err := config.ToEscapingScheme(c.MetricNameEscapingScheme, c.MetricNameValidationScheme)
	if err != nil {
		return nil, fmt.Errorf("apply scrape config of job %q: metric_name_escaping_scheme: %w", c.JobName, err)
	}
	client, err := config_util.NewClientFromConfig(c.HTTPClientConfig, c.JobName, config_util.WithUserAgent(userAgent))
	if err != nil {
		return nil, fmt.Errorf("apply scrape config of job %q: create HTTP client: %w", c.JobName, err)
	}
	if wrap != nil {
		rt, err := wrap(c.JobName, client.Transport)
		if err != nil {
			client.CloseIdleConnections()
			return nil, fmt.Errorf("apply scrape config of job %q: %w", c.JobName, err)
		}
		client.Transport = rt
	}
	return &jobConfig{cfg: c, client: client, accept: acceptHeader(c.ScrapeProtocols, escaping)}, nil
}

// syncJob starts loops for new targets and stops those of vanished ones (or
// all, if the config changed). A stopped loop whose successor scrapes the
// same series (same public labels and URL) hands its cache over instead of
// writing stale markers.
func (m *Manager) syncJob(j *job, jc *jobConfig, groups []*targetgroup.Group) {
	name := jc.cfg.JobName
	targets := map[uint64]*scrape.Target{}
	lb := labels.NewBuilder(labels.EmptyLabels())
	var buf []*scrape.Target
	shard := m.opts.Shard
	dropped := map[uint64]bool{} // by target hash, as targets
	var keep []droppedTarget
	keepLimit := int(jc.cfg.KeepDroppedTargets) // 0: no limit, as in Prometheus
	droppedTotal, discovered := 0, 0
	drop := func(t *scrape.Target, reason string) {
		droppedTotal++
		if keepLimit == 0 || len(keep) < keepLimit {
			keep = append(keep, droppedTarget{t: t, reason: reason})
		}
	}
	for _, g := range groups {
		if g == nil {
			continue
		}
		var failures []error
		buf, failures = scrape.TargetsFromGroup(g, jc.cfg, buf, lb)
		for _, err := range failures {
			m.logger.Error("Create scrape target", "scrape_job", name, "err", err)
		}
		m.metrics.syncFailed.WithLabelValues(name).Add(float64(len(failures)))
		discovered += len(buf)
		for _, t := range buf {
			if t.Labels(lb).IsEmpty() {
				drop(t, DroppedByRelabeling)
				continue
			}
			if shard.Enabled() && !shard.Keeps(ShardHash(t, lb)) {
				dropped[targetHash(t, lb)] = true // another shard's
				drop(t, DroppedByShard)
				continue
			}
			targets[targetHash(t, lb)] = t
		}
	}
	j.dropped, j.droppedTotal, j.discovered = keep, droppedTotal, discovered
	m.shard.set(name, len(targets), len(dropped))
	if shard.Enabled() && (len(targets) != j.shardKept || len(dropped) != j.shardDropped) {
		m.logger.Info("Shard split the targets", "scrape_job", name, "shard", shard.String(), "kept", len(targets), "dropped", len(dropped))
		j.shardKept, j.shardDropped = len(targets), len(dropped)
	}

	changed := j.jc != jc
	var stopping []*loop
	for h, l := range j.loops {
		if _, ok := targets[h]; !ok || changed {
			stopping = append(stopping, l)
			delete(j.loops, h)
		}
	}
	var starting []uint64           // target hashes
	successors := map[uint64]bool{} // series keys of starting targets
	for h, t := range targets {
		if _, ok := j.loops[h]; !ok {
			starting = append(starting, h)
			successors[seriesKey(t, lb)] = true
		}
	}
	caches := stopLoops(stopping, successors)
	reusable := !changed || reusableCache(j.jc.cfg, jc.cfg)
	j.jc = jc

	for _, h := range starting {
		t := targets[h]
		key := seriesKey(t, lb)
		cache := caches[key]
		delete(caches, key)
		switch {
		case cache == nil:
			cache = newSeriesCache()
		case !reusable:
			cache.resetKeys()
		}
		l, err := m.newLoop(jc, t, h, key, cache)
		if err != nil {
			m.logger.Error("Create scrape loop", "scrape_job", name, "target", t.URL().Redacted(), "err", err)
			caches[key] = cache // ended below, unless a target of the same series takes it
			continue
		}
		j.loops[h] = l
		m.loops.Go(func() { l.run(m.runCtx) })
	}
	// Caches nobody took (the successor failed to start) end like their loop would have.
	for _, c := range caches {
		m.endCache(c)
	}

	var forced error
	if limit := jc.cfg.TargetLimit; limit > 0 && uint(len(j.loops)) > limit {
		forced = fmt.Errorf("%w (number of targets: %d, limit: %d)", ErrTargetLimit, len(j.loops), limit)
		m.metrics.targetLimit.Inc()
	}
	for _, l := range j.loops {
		if forced != nil {
			l.forcedErr.Store(&forced)
		} else {
			l.forcedErr.Store(nil)
		}
	}
	m.metrics.poolTargets.WithLabelValues(name).Set(float64(len(j.loops)))
}

// stopLoops stops loops concurrently. A loop whose series key is in
// successors hands its cache over (returned by key, for the caller to
// own); the others write stale markers and release their refs, and their
// caches are closed.
func stopLoops(loops []*loop, successors map[uint64]bool) map[uint64]*seriesCache {
	caches := map[uint64]*seriesCache{}
	handing := map[uint64]bool{}
	for _, l := range loops {
		// If two old loops wrote the same series, only one hands over.
		handover := successors[l.key] && !handing[l.key]
		if handover {
			handing[l.key] = true
		}
		l.signalStop(handover)
	}
	for _, l := range loops {
		<-l.done
		if l.handover {
			caches[l.key] = l.app.cache
		} else {
			l.app.cache.close()
		}
	}
	return caches
}

func (m *Manager) newLoop(jc *jobConfig, t *scrape.Target, hash, key uint64, cache *seriesCache) (*loop, error) {
	cfg := jc.cfg
	interval, timeout := time.Duration(cfg.ScrapeInterval), time.Duration(cfg.ScrapeTimeout)
	if d, err := model.ParseDuration(t.GetValue(model.ScrapeIntervalLabel)); err == nil && d > 0 {
		interval = time.Duration(d)
	}
	if d, err := model.ParseDuration(t.GetValue(model.ScrapeTimeoutLabel)); err == nil && d > 0 {
		timeout = time.Duration(d)
	}
	u := t.URL()
	sc, err := newScraper(scraperOptions{
		client:        jc.client,
		url:           u.String(),
		accept:        jc.accept,
		compression:   cfg.EnableCompression,
		userAgent:     m.opts.UserAgent,
		timeout:       timeout,
		bodySizeLimit: cmp.Or(int64(cfg.BodySizeLimit), m.opts.BodySizeLimit),
		pool:          &m.pool,
	})
	if err != nil {
		return nil, err
	}
	opts := &appendOptions{
		honorLabels:              cfg.HonorLabels,
		honorTimestamps:          cfg.HonorTimestamps,
		trackTimestampsStaleness: cfg.TrackTimestampsStaleness,
		sampleLimit:              int(cfg.SampleLimit),
		bucketLimit:              int(cfg.NativeHistogramBucketLimit),
		maxSchema:                maxSchemaFor(cfg.NativeHistogramMinBucketFactor),
		labelLimit:               int(cfg.LabelLimit),
		labelNameLengthLimit:     int(cfg.LabelNameLengthLimit),
		labelValueLengthLimit:    int(cfg.LabelValueLengthLimit),
		metricRelabel:            cfg.MetricRelabelConfigs,
		validation:               cfg.MetricNameValidationScheme,
		extraMetrics:             cfg.ExtraScrapeMetricsEnabled(),
		startTimestamps:          m.opts.StartTimestamps,
		parser: textparse.ParserOptions{
			IgnoreNativeHistograms:                  !boolLabel(t, labelScrapeNativeHistograms, cfg.ScrapeNativeHistogramsEnabled()),
			ConvertClassicHistogramsToNHCB:          boolLabel(t, labelConvertClassicToNHCB, cfg.ConvertClassicHistogramsToNHCBEnabled()),
			KeepClassicOnClassicAndNativeHistograms: boolLabel(t, labelAlwaysScrapeClassicHist, cfg.AlwaysScrapeClassicHistogramsEnabled()),
			FallbackContentType:                     cfg.ScrapeFallbackProtocol.HeaderMediaType(),
		},
	}
	t.LabelsRange(func(l labels.Label) { opts.targetLabels = append(opts.targetLabels, l) })
	redacted := u.Redacted()
	return &loop{
		target:         t,
		hash:           hash,
		key:            key,
		job:            cfg.JobName,
		url:            redacted,
		interval:       interval,
		timeout:        timeout,
		scraper:        sc,
		app:            newAppender(opts, m.opts.Storage, cache, m.metrics, m.parsers),
		storage:        m.opts.Storage,
		logger:         m.logger.With("scrape_job", cfg.JobName),
		metrics:        m.metrics,
		now:            m.opts.Now,
		pool:           &m.pool,
		reportTO:       timeout.Seconds(),
		reportSL:       float64(cfg.SampleLimit),
		scrapesOK:      m.metrics.scrapes.WithLabelValues(cfg.JobName, "success"),
		scrapesFailed:  m.metrics.scrapes.WithLabelValues(cfg.JobName, "failure"),
		intervalLength: m.metrics.intervalLength.WithLabelValues(interval.String()),
		stopc:          make(chan struct{}),
		done:           make(chan struct{}),
		badSamples:     lograte.Limiter{Interval: badSampleLogInterval, Level: slog.LevelWarn},
		failureLog:     cfg.ScrapeFailureLogFile,
		fails:          &m.fails,
	}, nil
}

func boolLabel(t *scrape.Target, name string, def bool) bool {
	if v := t.GetValue(name); v != "" {
		if b, err := strconv.ParseBool(v); err == nil {
			return b
		}
	}
	return def
}

// targetHash identifies a target: its labels (public ones, and the private
// ones that change how it is scraped) and URL.
func targetHash(t *scrape.Target, lb *labels.Builder) uint64 {
	h := fnv.New64a()
	var b [8]byte
	putUint64(b[:], t.Labels(lb).Hash())
	h.Write(b[:])
	h.Write([]byte(t.URL().String()))
	for _, n := range []string{model.ScrapeIntervalLabel, model.ScrapeTimeoutLabel, labelScrapeNativeHistograms, labelAlwaysScrapeClassicHist, labelConvertClassicToNHCB} {
		h.Write([]byte{0xff})
		h.Write([]byte(t.GetValue(n)))
	}
	return h.Sum64()
}

// seriesKey identifies the series a target writes: its public labels and URL.
func seriesKey(t *scrape.Target, lb *labels.Builder) uint64 {
	h := fnv.New64a()
	var b [8]byte
	putUint64(b[:], t.Labels(lb).Hash())
	h.Write(b[:])
	h.Write([]byte(t.URL().String()))
	return h.Sum64()
}

func putUint64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
}

// sameScrapeConfig says whether two configs scrape the same way: they may
// differ in service discovery only, whose effect arrives as target groups.
func sameScrapeConfig(a, b *config.ScrapeConfig) bool {
	x, y := *a, *b
	x.ServiceDiscoveryConfigs, y.ServiceDiscoveryConfigs = nil, nil
	return reflect.DeepEqual(&x, &y)
}

// reusableCache says whether the raw series text of a target still maps to
// the same labels under the new config: otherwise the texts are resolved
// again (entries, found by labels, keep their refs).
func reusableCache(old, cur *config.ScrapeConfig) bool {
	return old.HonorLabels == cur.HonorLabels &&
		old.LabelLimit == cur.LabelLimit &&
		old.LabelNameLengthLimit == cur.LabelNameLengthLimit &&
		old.LabelValueLengthLimit == cur.LabelValueLengthLimit &&
		old.MetricNameValidationScheme == cur.MetricNameValidationScheme &&
		reflect.DeepEqual(old.MetricRelabelConfigs, cur.MetricRelabelConfigs)
}

// endCache writes the stale markers of a handed-over cache whose successor
// did not start, releases its refs and closes it.
func (m *Manager) endCache(c *seriesCache) {
	var recs wal.Records
	c.end(m.opts.Now().UnixMilli(), &recs)
	if err := m.opts.Storage.Log(&recs); err != nil {
		n := len(recs.Samples) + len(recs.Histograms) + len(recs.FloatHistograms)
		m.metrics.dropped.WithLabelValues(reasonWALError).Add(float64(n))
		m.metrics.logWALError(m.logger, "", n, err)
	}
	m.opts.Storage.Release(c.released)
	c.close()
}
