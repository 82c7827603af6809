package receive

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwagent/rwagent/pkg/ampquota"
)

// Limits are the workspace quotas ampemu enforces on remote write, with
// AMP's defaults. A zero field takes its default from DefaultLimits; a
// negative one turns that limit off.
//
// The numbers are AMP's, from package ampquota, which says where each
// comes from. HA deduplication's labels are named in
// https://docs.aws.amazon.com/prometheus/latest/userguide/AMP-ingest-dedupe.html
// and Send-high-availability-data.html.
type Limits struct {
	// IngestionRate is how many samples per second the workspace's token
	// bucket refills (AMP: "Ingestion rate per workspace", 140,000 on the
	// copy of the quota page this was read from; AWS raises its quotas from
	// time to time, so check the page and pass --ingestion.rate).
	IngestionRate float64
	// IngestionBurst is the bucket's size in samples (AMP: "Ingestion burst
	// size per workspace", 1,000,000).
	IngestionBurst int
	// MaxLabelNamesPerSeries counts __name__ too (AMP: "Labels per metric
	// series", 70).
	MaxLabelNamesPerSeries int
	// MaxLabelNameLength and MaxLabelValueLength are in bytes (Cortex: 1024
	// and 2048).
	MaxLabelNameLength, MaxLabelValueLength int
	// MaxActiveSeries caps the series that had a sample in the last
	// ActiveSeriesWindow (AMP: "Active series per workspace", 10,000,000).
	MaxActiveSeries int
	// MaxMetadataMetrics caps the metrics whose metadata is kept; further
	// metadata is dropped while the samples are stored (AMP: "Active
	// metrics with metadata per workspace", 20,000).
	MaxMetadataMetrics int
	// HAClusterLabel and HAReplicaLabel name the labels of HA
	// deduplication (AMP: cluster and __replica__, fixed).
	HAClusterLabel, HAReplicaLabel string
	// HAFailoverTimeout is how long the elected replica of a cluster may
	// send nothing before another replica is elected (Cortex: 30s).
	HAFailoverTimeout time.Duration
	// MaxHAClusters caps the clusters tracked (AMP: "Maximum HA clusters",
	// 500, "too many HA clusters (limit: 500)").
	MaxHAClusters int
}

// ActiveSeriesWindow is how long a series counts as active after its last
// sample (AMP: "A series is active if a sample has been reported in the past
// 2 hours").
const ActiveSeriesWindow = ampquota.ActiveSeriesWindow

// DefaultLimits are AMP's defaults (package ampquota).
var DefaultLimits = Limits{
	IngestionRate:          ampquota.IngestionRate,
	IngestionBurst:         ampquota.IngestionBurst,
	MaxLabelNamesPerSeries: ampquota.LabelsPerSeries,
	MaxLabelNameLength:     ampquota.LabelNameBytes,
	MaxLabelValueLength:    ampquota.LabelValueBytes,
	MaxActiveSeries:        ampquota.ActiveSeries,
	MaxMetadataMetrics:     ampquota.MetadataMetrics,
	HAClusterLabel:         "cluster",
	HAReplicaLabel:         "__replica__",
	HAFailoverTimeout:      ampquota.HAFailoverTimeout,
	MaxHAClusters:          ampquota.HAClusters,
}

// Validate reports a field that cannot be honoured.
func (l *Limits) Validate() error {
	if l.HAClusterLabel != "" && l.HAClusterLabel == l.HAReplicaLabel {
		return fmt.Errorf("receive: Limits.HAClusterLabel and HAReplicaLabel are both %q", l.HAClusterLabel)
	}
	if l.IngestionRate > 0 && l.IngestionBurst < 0 {
		return errors.New("receive: Limits.IngestionBurst is negative (no bucket) while IngestionRate is set")
	}
	return nil
}

// withDefaults returns l with every zero field set from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	if l.IngestionRate == 0 {
		l.IngestionRate = d.IngestionRate
	}
	setInt(&l.IngestionBurst, d.IngestionBurst)
	setInt(&l.MaxLabelNamesPerSeries, d.MaxLabelNamesPerSeries)
	setInt(&l.MaxLabelNameLength, d.MaxLabelNameLength)
	setInt(&l.MaxLabelValueLength, d.MaxLabelValueLength)
	setInt(&l.MaxActiveSeries, d.MaxActiveSeries)
	setInt(&l.MaxMetadataMetrics, d.MaxMetadataMetrics)
	setInt(&l.MaxHAClusters, d.MaxHAClusters)
	if l.HAClusterLabel == "" {
		l.HAClusterLabel = d.HAClusterLabel
	}
	if l.HAReplicaLabel == "" {
		l.HAReplicaLabel = d.HAReplicaLabel
	}
	if l.HAFailoverTimeout == 0 {
		l.HAFailoverTimeout = d.HAFailoverTimeout
	}
	return l
}

// Reasons of ampemu_discarded_samples_total, Cortex's names for them
// (cortex_discarded_samples_total{reason}).
const (
	reasonRateLimited       = "rate_limited"
	reasonTooManyLabels     = "max_label_names_per_series"
	reasonLabelNameTooLong  = "label_name_too_long"
	reasonLabelValueTooLong = "label_value_too_long"
	reasonSeriesLimit       = "per_user_series_limit"
	reasonHAClusters        = "too_many_ha_clusters"
)

var discardReasons = []string{reasonRateLimited, reasonTooManyLabels, reasonLabelNameTooLong, reasonLabelValueTooLong, reasonSeriesLimit, reasonHAClusters}

// seriesError is a series refused by a per-series limit: the reason it is
// counted under and the message AMP (Cortex) answers with.
type seriesError struct {
	reason, msg string
}

func (e *seriesError) Error() string { return e.msg }

// validateSeries checks ls against the per-series limits in Cortex's order
// (validation.ValidateLabels) and returns the first it breaks, or nil. The
// messages are Cortex's.
func (l *Limits) validateSeries(ls labels.Labels) *seriesError {
	if n := ls.Len(); l.MaxLabelNamesPerSeries > 0 && n > l.MaxLabelNamesPerSeries {
		return &seriesError{reasonTooManyLabels, fmt.Sprintf("series has too many labels (actual: %d, limit: %d) series: '%s'", n, l.MaxLabelNamesPerSeries, ls.String())}
	}
	metric := ls.Get(labels.MetricName)
	var err *seriesError
	ls.Range(func(lb labels.Label) {
		switch {
		case err != nil:
		case l.MaxLabelNameLength > 0 && len(lb.Name) > l.MaxLabelNameLength:
			err = &seriesError{reasonLabelNameTooLong, fmt.Sprintf("label name too long: %.200q metric %.200q", lb.Name, metric)}
		case l.MaxLabelValueLength > 0 && len(lb.Value) > l.MaxLabelValueLength:
			err = &seriesError{reasonLabelValueTooLong, fmt.Sprintf("label value too long: %.200q metric %.200q", lb.Value, metric)}
		}
	})
	return err
}
