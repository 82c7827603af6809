package wal

import (
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
)

// TestRemoteStorageInMetrics checks Prometheus' remote-storage input
// series, which the mixin's "in vs. succeeded" panel and older
// "behind" alerts query: present at 0 before anything is logged, then
// counting what the WAL logs, with one unlabelled highest timestamp.
func TestRemoteStorageInMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	w, err := Open(Options{Dir: t.TempDir(), Fsync: FsyncNever}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	names := []string{
		"prometheus_remote_storage_samples_in_total", "prometheus_remote_storage_histograms_in_total",
		"prometheus_remote_storage_exemplars_in_total", "prometheus_remote_storage_highest_timestamp_in_seconds",
	}
	want := func(samples, histograms, exemplars int, highest string) string {
		return strings.Join([]string{
			"# HELP prometheus_remote_storage_exemplars_in_total Exemplars logged to the WAL, which every remote_write reads.",
			"# TYPE prometheus_remote_storage_exemplars_in_total counter",
			"prometheus_remote_storage_exemplars_in_total " + strconv.Itoa(exemplars),
			"# HELP prometheus_remote_storage_highest_timestamp_in_seconds Highest sample timestamp logged to the WAL, in seconds since epoch; 0 until the first sample. One series for all remote_writes, as in Prometheus.",
			"# TYPE prometheus_remote_storage_highest_timestamp_in_seconds gauge",
			"prometheus_remote_storage_highest_timestamp_in_seconds " + highest,
			"# HELP prometheus_remote_storage_histograms_in_total Histogram samples (integer and float) logged to the WAL, which every remote_write reads.",
			"# TYPE prometheus_remote_storage_histograms_in_total counter",
			"prometheus_remote_storage_histograms_in_total " + strconv.Itoa(histograms),
			"# HELP prometheus_remote_storage_samples_in_total Samples logged to the WAL, which every remote_write reads: compare to the samples out of the queues.",
			"# TYPE prometheus_remote_storage_samples_in_total counter",
			"prometheus_remote_storage_samples_in_total " + strconv.Itoa(samples),
		}, "\n") + "\n"
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want(0, 0, 0, "0")), names...); err != nil {
		t.Errorf("before any Log: %v", err)
	}

	ref := w.NewRef()
	r := batch([]chunks.HeadSeriesRef{ref}, true, 3, 1_700_000_000_000) // samples at ...000, 001, 002
	r.Histograms = append(r.Histograms, record.RefHistogramSample{Ref: ref, T: 1_700_000_005_000, H: &histogram.Histogram{Count: 1, Sum: 1}})
	r.FloatHistograms = append(r.FloatHistograms, record.RefFloatHistogramSample{Ref: ref, T: 1_700_000_001_000, FH: &histogram.FloatHistogram{Count: 1, Sum: 1}})
	r.Exemplars = append(r.Exemplars, record.RefExemplar{Ref: ref, T: 1_700_000_000_000, V: 1})
	mustLog(t, w, r)
	// An older batch does not lower the highest timestamp.
	mustLog(t, w, batch([]chunks.HeadSeriesRef{ref}, false, 2, 1_600_000_000_000))
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want(5, 2, 1, "1.700000005e+09")), names...); err != nil {
		t.Errorf("after two Logs: %v", err)
	}
}
