package scrape

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/tsdb/chunks"

	"github.com/rwagent/rwagent/pkg/lograte"
)

// badSampleLogInterval is how often a target's dropped samples (duplicate,
// out of order, out of bounds) are logged at most.
const badSampleLogInterval = time.Minute

// alignTolerance is how far a scrape may start after its slot and still be
// stamped with the slot's time (at most 1% of the interval), as Prometheus
// does for better compression downstream.
const alignTolerance = 2 * time.Millisecond

// loop scrapes one target every interval and logs the result to the WAL.
// Its run method is its only goroutine; stop and the forced error are the
// only ways to reach it from outside.
type loop struct {
	target   *scrape.Target
	hash     uint64 // identity of the target (all labels and URL)
	key      uint64 // identity of the target's series (public labels and URL)
	job      string
	url      string // redacted, for logs
	interval time.Duration
	timeout  time.Duration
	scraper  *scraper
	app      *appender
	storage  Storage
	logger   *slog.Logger
	metrics  *scrapeMetrics
	now      func() time.Time
	pool     *bufferPool
	reportTO float64 // scrape_timeout_seconds
	reportSL float64 // scrape_sample_limit

	// Metrics of this loop, resolved once.
	scrapesOK, scrapesFailed prometheus.Counter
	intervalLength           prometheus.Observer

	forcedErr atomic.Pointer[error]     // set by the manager when target_limit is exceeded
	stats     atomic.Pointer[loopStats] // set by run after each scrape, read by Manager.Status

	stopc    chan struct{} // closed by stop
	done     chan struct{} // closed when run returns
	handover bool          // written before stopc is closed: keep the cache, write no stale markers

	badSamples lograte.Limiter // logs dropped samples at most every badSampleLogInterval
	failureLog string          // scrape_failure_log_file; empty: none
	fails      *failureLogs    // the Manager's, shared by its loops

	// Owned by run.
	lastTime int64  // timestamp of the last scrape (ms)
	lastErr  string // last error logged, to log once per change
}

// signalStop makes run return; wait on done. With handover the cache is
// left for a successor and no stale markers are written; otherwise every
// series of the target gets a stale marker and its ref is released. A scrape
// in flight completes first (at most the scrape timeout). Call it once.
func (l *loop) signalStop(handover bool) {
	l.handover = handover
	close(l.stopc)
}

// run scrapes until ctx is done (shutdown: nothing more is written, so that
// a restart continues the series) or stop is called. It must be called once.
func (l *loop) run(ctx context.Context) {
	defer close(l.done)

	if !l.wait(ctx, l.offset(l.now())) {
		l.end(ctx)
		return
	}
	ticker := time.NewTicker(l.interval)
	defer ticker.Stop()
	aligned := l.now().Round(0)
	tolerance := min(l.interval/100, alignTolerance)
	var last time.Time
	for {
		ts := l.now().Round(0)
		for ts.Sub(aligned) >= l.interval {
			aligned = aligned.Add(l.interval)
		}
		if ts.Sub(aligned) <= tolerance {
			ts = aligned
		}
		// A tick left pending by a slow scrape can start the next one at
		// once, snapped to the same aligned time: never stamp two scrapes
		// alike, or the receiver gets duplicate samples.
		if ts.UnixMilli() <= l.lastTime {
			ts = time.UnixMilli(l.lastTime + 1)
		}
		start := time.Now()
		if !last.IsZero() {
			l.intervalLength.Observe(start.Sub(last).Seconds())
		}
		last = start
		if !l.scrapeOnce(ctx, ts) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-l.stopc:
			l.end(ctx)
			return
		case <-ticker.C:
		}
	}
}

// wait waits d and says whether to go on scraping.
func (l *loop) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-l.stopc:
		return false
	case <-t.C:
		return true
	}
}

// offset returns how long to wait before the first scrape so that the
// target's scrapes fall on a fixed phase of the interval derived from its
// hash: targets spread over the interval, and a restart keeps the phase.
func (l *loop) offset(now time.Time) time.Duration {
	iv := int64(l.interval)
	next := iv - now.UnixNano()%iv + int64(l.hash%uint64(iv))
	if next > iv {
		next -= iv
	}
	return time.Duration(next)
}

// scrapeOnce scrapes, appends and logs one scrape stamped ts. It returns
// false if ctx ended during the scrape; then nothing was written.
func (l *loop) scrapeOnce(ctx context.Context, ts time.Time) bool {
	start := time.Now()
	t := ts.UnixMilli()
	a := l.app
	a.recs = l.pool.getRecords()
	defer func() {
		l.pool.putRecords(a.recs)
		a.recs = nil
	}()

	var (
		res      appendResult
		err      error
		bodySize float64
	)
	if fe := l.forcedErr.Load(); fe != nil {
		err = *fe
	} else {
		body, contentType, ferr := l.scraper.fetch(ctx)
		if ctx.Err() != nil {
			l.pool.putBody(body)
			return false
		}
		err = ferr
		if err == nil {
			bodySize = float64(len(*body))
			res, err = a.append(*body, contentType, t, l.now().UnixMilli())
			l.pool.putBody(body)
		} else if errors.Is(err, ErrBodySizeLimit) {
			bodySize = -1
			l.metrics.bodySizeLimit.Inc()
		}
	}
	a.cache.finish(err == nil, t, a.recs)
	dur := time.Since(start)

	up := 0.0
	if err == nil {
		up = 1
	}
	vals := [numReportSeries]float64{
		reportUp:                 up,
		reportDuration:           dur.Seconds(),
		reportSamplesScraped:     float64(res.total),
		reportSamplesPostRelabel: float64(res.added),
		reportSeriesAdded:        float64(res.seriesAdded),
		reportTimeout:            l.reportTO,
		reportSampleLimit:        l.reportSL,
		reportBodySize:           bodySize,
	}
	a.report(t, &vals)
	l.write(a.cache.released)
	l.lastTime = t

	if err == nil {
		l.scrapesOK.Inc()
	} else {
		l.scrapesFailed.Inc()
		l.metrics.failures.WithLabelValues(l.job, failureReason(err)).Inc()
		l.fails.log(l.failureLog, l.job, l.url, err)
	}
	l.metrics.countAppend(&res)
	if res.duplicates+res.outOfOrder+res.outOfBounds > 0 {
		l.badSamples.Log(l.logger, "Samples dropped", "target", l.url,
			"duplicate", res.duplicates, "out_of_order", res.outOfOrder, "out_of_bounds", res.outOfBounds)
	}
	l.target.Report(start, dur, err)
	l.publishStats(res.added, start)
	l.logOutcome(err)
	return true
}

// end writes the end-of-run stale markers and releases every ref, unless the
// loop hands its cache over or the manager is shutting down.
func (l *loop) end(ctx context.Context) {
	if l.handover || ctx.Err() != nil {
		return
	}
	t := max(l.now().UnixMilli(), l.lastTime+1)
	a := l.app
	a.recs = l.pool.getRecords()
	defer func() {
		l.pool.putRecords(a.recs)
		a.recs = nil
	}()
	a.cache.end(t, a.recs)
	l.write(a.cache.released)
}

// write logs a.recs in one call and then releases refs.
func (l *loop) write(released []chunks.HeadSeriesRef) {
	a := l.app
	if r := a.recs; len(r.Series)+len(r.Samples)+len(r.Histograms)+len(r.FloatHistograms)+len(r.Exemplars)+len(r.Metadata) == 0 {
		if len(released) > 0 {
			l.storage.Release(released)
		}
		return
	}
	err := l.storage.Log(a.recs)
	a.logged(err == nil)
	if err != nil {
		n := len(a.recs.Samples) + len(a.recs.Histograms) + len(a.recs.FloatHistograms)
		l.metrics.dropped.WithLabelValues(reasonWALError).Add(float64(n))
		l.metrics.logWALError(l.logger, l.url, n, err)
	}
	if len(released) > 0 {
		l.storage.Release(released)
	}
}

// logOutcome logs a failed scrape when its error differs from the last one,
// and the recovery.
func (l *loop) logOutcome(err error) {
	switch {
	case err == nil && l.lastErr != "":
		l.logger.Info("Scrape recovered", "target", l.url)
		l.lastErr = ""
	case err != nil && err.Error() != l.lastErr:
		l.lastErr = err.Error()
		l.logger.Warn("Scrape failed", "target", l.url, "err", err)
	}
}
