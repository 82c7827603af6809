package scrape

import (
	"math"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb/record"
)

// The synthetic series written for every scrape, in reportSeries order. The
// last three are written only with extra_scrape_metrics.
const (
	reportUp = iota
	reportDuration
	reportSamplesScraped
	reportSamplesPostRelabel
	reportSeriesAdded
	reportTimeout
	reportSampleLimit
	reportBodySize
	numReportSeries
	numBasicReportSeries = reportTimeout
)

// reportSeries describes the synthetic series. Immutable.
var reportSeries = [numReportSeries]struct {
	name, help, unit string
}{
	reportUp:                 {"up", "Health of the scrape target. 1 means the target is healthy, 0 if the scrape failed.", "targets"},
	reportDuration:           {"scrape_duration_seconds", "Duration of the last scrape in seconds.", "seconds"},
	reportSamplesScraped:     {"scrape_samples_scraped", "Number of samples last scraped.", "samples"},
	reportSamplesPostRelabel: {"scrape_samples_post_metric_relabeling", "Number of samples remaining after metric relabeling was applied.", "samples"},
	reportSeriesAdded:        {"scrape_series_added", "Number of series in the last scrape.", "series"},
	reportTimeout:            {"scrape_timeout_seconds", "The configured scrape timeout for a target.", "seconds"},
	reportSampleLimit:        {"scrape_sample_limit", "The configured sample limit for a target. Returns zero if there is no limit configured.", "samples"},
	reportBodySize:           {"scrape_body_size_bytes", "The uncompressed size of the last scrape response, if successful. Scrapes failing because body_size_limit is exceeded report -1, other scrape failures report 0.", "bytes"},
}

// report appends the synthetic series' samples at t. vals is indexed like
// reportSeries; the extra series are written only with extra_scrape_metrics,
// and get a stale marker when that is switched off.
func (a *appender) report(t int64, vals *[numReportSeries]float64) {
	c := a.cache
	n := numBasicReportSeries
	if a.opts.extraMetrics {
		n = numReportSeries
	}
	for i := range numReportSeries {
		ref := c.reportRefs[i]
		if i >= n {
			if ref != 0 {
				if c.reportLogged[i] {
					a.recs.Samples = append(a.recs.Samples, record.RefSample{Ref: ref, T: t, V: math.Float64frombits(value.StaleNaN)})
				}
				c.released = append(c.released, ref)
				c.reportRefs[i], c.reportLogged[i] = 0, false
			}
			continue
		}
		if ref == 0 {
			ref = a.storage.NewRef()
			c.reportRefs[i] = ref
		}
		if !c.reportLogged[i] {
			a.recs.Series = append(a.recs.Series, record.RefSeries{Ref: ref, Labels: a.reportLabels(reportSeries[i].name)})
			a.recs.Metadata = append(a.recs.Metadata, record.RefMetadata{
				Ref:  ref,
				Type: record.GetMetricType(model.MetricTypeGauge),
				Unit: reportSeries[i].unit,
				Help: reportSeries[i].help,
			})
		}
		a.recs.Samples = append(a.recs.Samples, record.RefSample{Ref: ref, T: t, V: vals[i]})
	}
}

// reportLabels returns the labels of a synthetic series: its name and the
// target labels (which always win, the series being ours).
func (a *appender) reportLabels(name string) labels.Labels {
	lb := a.lb
	lb.Reset(labels.EmptyLabels())
	lb.Set(model.MetricNameLabel, name)
	for _, l := range a.opts.targetLabels {
		lb.Set(l.Name, l.Value)
	}
	return lb.Labels()
}

// logged records the outcome of logging a.recs: on success the synthetic
// series records are in the WAL; on failure the series created in this
// iteration are forgotten, their records being lost.
func (a *appender) logged(ok bool) {
	c := a.cache
	if ok {
		for i, ref := range c.reportRefs {
			c.reportLogged[i] = ref != 0
		}
		c.clearCreated()
		return
	}
	c.rollback()
}
