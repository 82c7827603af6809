package scrape

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/wal"
)

var _ Storage = (*wal.WAL)(nil)

// countingStorage counts successful Log calls of the Storage it wraps.
type countingStorage struct {
	Storage
	logs atomic.Int64
}

func (s *countingStorage) Log(r *wal.Records) error {
	err := s.Storage.Log(r)
	if err == nil {
		s.logs.Add(1)
	}
	return err
}

// TestManager_RealWAL scrapes into a real WAL in a temporary directory and
// reads it back: every sample's series is logged before it, with the target
// labels.
func TestManager_RealWAL(t *testing.T) {
	w, err := wal.Open(wal.Options{Dir: t.TempDir(), Fsync: wal.FsyncNever}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ex := newExporter(t)
	srv := newTestServer(t, ex.handler)
	host := hostOf(srv.URL)

	cs := &countingStorage{Storage: w}
	h := startManagerWith(t, loadScrapeConfigs(t, jobYAML("100ms", "    scrape_native_histograms: true\n    scrape_protocols: [PrometheusProto]")), cs)
	h.setTargets("test", host)
	waitFor(t, "three scrapes logged", func() bool { return cs.logs.Load() >= 3 })
	h.stop()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	r, err := w.NewReader(wal.Position{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	series := map[chunks.HeadSeriesRef]labels.Labels{}
	var ups, temps, hists int
	for {
		err := r.Next(context.Background())
		if errors.Is(err, wal.ErrClosed) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch r.Type() {
		case record.Series:
			for _, s := range r.Series() {
				series[s.Ref] = s.Labels.Copy()
			}
		case record.Samples:
			for _, s := range r.Samples() {
				ls, ok := series[s.Ref]
				if !ok {
					t.Fatalf("sample %+v before its series", s)
				}
				if ls.Get("job") != "test" || ls.Get("instance") != host {
					t.Errorf("series %v lacks the target labels", ls)
				}
				switch ls.Get("__name__") {
				case "up":
					if s.V != 1 {
						t.Errorf("up = %v", s.V)
					}
					ups++
				case "test_temperature_celsius":
					if s.V != 21.5 {
						t.Errorf("gauge = %v", s.V)
					}
					temps++
				}
			}
		case record.HistogramSamples:
			for _, s := range r.Histograms() {
				if _, ok := series[s.Ref]; !ok {
					t.Fatalf("histogram %+v before its series", s)
				}
				hists++
			}
		}
	}
	if ups < 3 || temps < 3 || hists < 3 {
		t.Errorf("read %d up, %d gauge, %d native histogram samples; want at least 3 each", ups, temps, hists)
	}
}
