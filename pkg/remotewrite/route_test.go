package remotewrite

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/wal"
)

// TestQueue_Route sends one real WAL to three endpoints, "a", "b" and an
// unnamed one: a series without wal.RouteLabel reaches all three, a routed
// one only the endpoints it names, none carries the label (it is gone
// before write_relabel_configs, which would copy it here), and what is
// routed elsewhere is counted as not routed, not as dropped.
func TestQueue_Route(t *testing.T) {
	w, err := wal.Open(wal.Options{Dir: t.TempDir(), SegmentSize: 1 << 20, Fsync: wal.FsyncNever}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	series := []labels.Labels{
		labels.FromStrings("__name__", "all"),
		labels.FromStrings("__name__", "to_a", wal.RouteLabel, "a"),
		labels.FromStrings("__name__", "to_ab", wal.RouteLabel, "a,b"),
		labels.FromStrings("__name__", "to_b", wal.RouteLabel, "b"),
		labels.FromStrings("__name__", "to_c", wal.RouteLabel, "c"),
	}
	var recs wal.Records
	for _, ls := range series {
		recs.Series = append(recs.Series, record.RefSeries{Ref: w.NewRef(), Labels: ls})
	}
	base := nowMs() - 10_000
	for i, s := range recs.Series {
		for j := range 3 {
			recs.Samples = append(recs.Samples, record.RefSample{Ref: s.Ref, T: base + int64(j), V: float64(i)})
		}
		recs.Histograms = append(recs.Histograms, record.RefHistogramSample{Ref: s.Ref, T: base + 5, H: testHistogram(i)})
	}
	if err := w.Log(&recs); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name      string
		want      []string // metric names received
		notRouted float64
	}{
		{"a", []string{"all", "to_a", "to_ab"}, 2},
		{"b", []string{"all", "to_ab", "to_b"}, 2},
		{"", []string{"all"}, 4},
	} {
		t.Run("endpoint "+c.name, func(t *testing.T) {
			rc := newReceiver(t, nil)
			cfg := testConfig(t, rc.srv.URL, func(cfg *config.RemoteWriteConfig) {
				cfg.Name = c.name
				cfg.SendNativeHistograms = true
				cfg.WriteRelabelConfigs = []*relabel.Config{{
					SourceLabels: model.LabelNames{wal.RouteLabel}, Regex: relabel.MustNewRegexp("(.+)"), Separator: ";",
					TargetLabel: "route_seen", Replacement: "$1", Action: relabel.Replace, NameValidationScheme: model.UTF8Validation,
				}}
			})
			q, err := New(t.Context(), Options{Config: cfg, Log: WALLog(w)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := q.Run(ctx); err != nil || ctx.Err() != nil {
				t.Fatalf("Run: %v, ctx: %v", err, ctx.Err())
			}
			// Series arrive under their labels' String: a route label,
			// or route_seen copied from it, would make another key.
			rc.store.mu.Lock()
			var got []string
			for k, pts := range rc.store.points {
				if len(pts) != 4 {
					t.Errorf("series %s: %d points, want 3 samples and a histogram", k, len(pts))
				}
				got = append(got, k)
			}
			rc.store.mu.Unlock()
			var want []string
			for _, n := range c.want {
				want = append(want, key("__name__", n))
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("received %q, want %q", got, want)
			}
			if v := testutil.ToFloat64(q.metrics.seriesNotRouted); v != c.notRouted {
				t.Errorf("series_not_routed_total = %v, want %v", v, c.notRouted)
			}
			for _, r := range allDropReasons() {
				if v := testutil.ToFloat64(q.metrics.samplesDropped.WithLabelValues(r)) + testutil.ToFloat64(q.metrics.histogramsDropped.WithLabelValues(r)); v != 0 {
					t.Errorf("%v dropped for %s: routing is not a drop", v, r)
				}
			}
			if v := testutil.ToFloat64(q.metrics.seriesDropped); v != 0 {
				t.Errorf("series_dropped_total = %v, want 0", v)
			}
		})
	}
}
