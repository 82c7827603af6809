// Package ampquota holds the quotas and limits of Amazon Managed Service
// for Prometheus (AMP) that rwagent's parts must agree on, each with where
// its number comes from: the sender drops what AMP would refuse
// (remotewrite.AMPLimits), the gateway refuses it where the sender can
// hear about it, and ampemu (pkg/receive) enforces it as AMP does. A
// number changes here, once, for all three.
//
// AMP's quota page is
// https://docs.aws.amazon.com/prometheus/latest/userguide/AMP_quotas.html.
// An earlier version of it listed each quota's error message. AMP runs on
// Cortex, whose defaults
// (https://cortexmetrics.io/docs/configuration/config-file-reference/)
// fill in what the page does not say. AWS raises its quotas from time to
// time: check the page.
package ampquota

import "time"

// Per series: AMP refuses a whole remote-write request with 400 when one
// series is over any of these.
const (
	// LabelsPerSeries is "Labels per metric series", __name__ included:
	// "series has too many labels (...) series: '%s'".
	LabelsPerSeries = 70
	// LabelNameBytes and LabelValueBytes are Cortex's
	// max_label_name_length and max_label_value_length defaults, which AMP
	// answers with "label name too long" / "label value too long". The
	// quota page's rows for them could not be checked when this was
	// written; Grafana Cloud, also Cortex-derived, documents the same
	// 1024/2048.
	LabelNameBytes  = 1024
	LabelValueBytes = 2048
)

// The time window of a sample.
const (
	// MaxSampleAge: "Metric samples older than 1 hour are refused from
	// being ingested" (the quota page, as quoted in
	// aws/amazon-managed-service-for-prometheus-roadmap#27); 400 for the
	// whole request.
	MaxSampleAge = time.Hour
	// MaxFuture: AMP documents none; Cortex refuses samples more than its
	// creation_grace_period (10 minutes by default) ahead.
	MaxFuture = 10 * time.Minute
)

// RequestBytes is the largest remote-write body AMP takes, compressed: it
// is not on the quota page; users report 413 above 1 MB
// (opentelemetry-collector-contrib#20289), taken as 1 MiB.
const RequestBytes = 1 << 20

// Per workspace.
const (
	// IngestionRate is "Ingestion rate per workspace", samples per second
	// (140,000 on the copy of the quota page read), and IngestionBurst
	// "Ingestion burst size per workspace" (1,000,000): a token bucket.
	IngestionRate  = 140_000
	IngestionBurst = 1_000_000
	// ActiveSeries is "Active series per workspace"; a series is active
	// if a sample was reported in the past ActiveSeriesWindow.
	ActiveSeries       = 10_000_000
	ActiveSeriesWindow = 2 * time.Hour
	// MetadataMetrics is "Active metrics with metadata per workspace".
	MetadataMetrics = 20_000
	// HAClusters is "Maximum HA clusters": "too many HA clusters (limit:
	// 500)".
	HAClusters = 500
	// HAFailoverTimeout is how long an HA cluster's elected replica may
	// send nothing before another is elected: Cortex's
	// -distributor.ha-tracker.failover-timeout default (AMP-ingest-dedupe.html
	// names the labels, cluster and __replica__, not the timeout).
	HAFailoverTimeout = 30 * time.Second
)
