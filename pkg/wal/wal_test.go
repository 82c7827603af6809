package wal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// logBuffer collects log output; slog handlers may write from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// openWAL opens a WAL in dir and closes it at the end of the test.
func openWAL(t testing.TB, opts Options, logger *slog.Logger, reg prometheus.Registerer) *WAL {
	t.Helper()
	if opts.Fsync == "" {
		opts.Fsync = FsyncNever
	}
	w, err := Open(opts, logger, reg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("close: %v", err)
		}
	})
	return w
}

// rotate makes the writer start a new segment and returns its index.
func rotate(t testing.TB, w *WAL) int {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.wl.NextSegmentSync()
	if err != nil {
		t.Fatalf("next segment: %v", err)
	}
	return n
}

func mustLog(t testing.TB, w *WAL, r *Records) {
	t.Helper()
	if err := w.Log(r); err != nil {
		t.Fatalf("log: %v", err)
	}
}

// batch returns series for refs with labels naming them and n samples per ref at time ts.
func batch(refs []chunks.HeadSeriesRef, withSeries bool, n int, ts int64) *Records {
	r := &Records{}
	for _, ref := range refs {
		if withSeries {
			r.Series = append(r.Series, record.RefSeries{Ref: ref, Labels: seriesLabels(ref)})
		}
		for i := range n {
			r.Samples = append(r.Samples, record.RefSample{Ref: ref, T: ts + int64(i), V: float64(ref) + float64(i)/10})
		}
	}
	return r
}

func seriesLabels(ref chunks.HeadSeriesRef) labels.Labels {
	return labels.FromStrings("__name__", "test_metric", "ref", fmt.Sprint(uint64(ref)))
}

// collected is everything a Reader yielded, in order.
type collected struct {
	types     []record.Type
	positions []Position
	gaps      []*GapError // trimmed or cut stretches the Reader reported
	Records
}

func (c *collected) add(r *Reader) {
	c.types = append(c.types, r.Type())
	c.positions = append(c.positions, r.Position())
	c.Series = append(c.Series, r.Series()...)
	c.Samples = append(c.Samples, r.Samples()...)
	c.Histograms = append(c.Histograms, r.Histograms()...)
	c.FloatHistograms = append(c.FloatHistograms, r.FloatHistograms()...)
	c.Exemplars = append(c.Exemplars, r.Exemplars()...)
	c.Metadata = append(c.Metadata, r.Metadata()...)
}

// readToEnd reads a closed WAL from `from` until ErrClosed.
func readToEnd(t testing.TB, w *WAL, from Position) *collected {
	t.Helper()
	if !w.closed.Load() {
		t.Fatal("readToEnd needs a closed WAL")
	}
	r, err := w.NewReader(from)
	if err != nil {
		t.Fatalf("new reader: %v", err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c := &collected{}
	for {
		err := r.Next(ctx)
		if errors.Is(err, ErrClosed) {
			return c
		}
		if gap, ok := errors.AsType[*GapError](err); ok {
			c.gaps = append(c.gaps, gap)
			continue
		}
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		c.add(r)
	}
}

func testHistogram(i int) *histogram.Histogram {
	return &histogram.Histogram{
		Schema: 1, Count: uint64(10 + i), Sum: 20.5, ZeroThreshold: 0.001, ZeroCount: 2,
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{1, int64(i)},
		NegativeSpans: []histogram.Span{{Offset: 1, Length: 1}}, NegativeBuckets: []int64{3},
	}
}

func testCustomHistogram(i int) *histogram.Histogram {
	return &histogram.Histogram{
		Schema: histogram.CustomBucketsSchema, Count: uint64(5 + i), Sum: 7,
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{2, 1},
		CustomValues: []float64{1, 5},
	}
}

func testFloatHistogram(i int) *histogram.FloatHistogram {
	return &histogram.FloatHistogram{
		Schema: 0, Count: float64(3 + i), Sum: 5.5, ZeroThreshold: 0.001, ZeroCount: 1,
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 1}}, PositiveBuckets: []float64{2},
	}
}

func testCustomFloatHistogram(i int) *histogram.FloatHistogram {
	return &histogram.FloatHistogram{
		Schema: histogram.CustomBucketsSchema, Count: float64(4 + i), Sum: 9,
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []float64{1, 3},
		CustomValues: []float64{0.5, 2},
	}
}

// equalRecords reports the first difference between what was logged and read.
func equalRecords(want, got *Records) error {
	if len(want.Series) != len(got.Series) {
		return fmt.Errorf("series: got %d, want %d", len(got.Series), len(want.Series))
	}
	for i := range want.Series {
		if want.Series[i].Ref != got.Series[i].Ref || !labels.Equal(want.Series[i].Labels, got.Series[i].Labels) {
			return fmt.Errorf("series %d: got %v, want %v", i, got.Series[i], want.Series[i])
		}
	}
	if fmt.Sprint(want.Samples) != fmt.Sprint(got.Samples) {
		return fmt.Errorf("samples: got %v, want %v", got.Samples, want.Samples)
	}
	if fmt.Sprint(want.Metadata) != fmt.Sprint(got.Metadata) {
		return fmt.Errorf("metadata: got %v, want %v", got.Metadata, want.Metadata)
	}
	if len(want.Histograms) != len(got.Histograms) {
		return fmt.Errorf("histograms: got %d, want %d", len(got.Histograms), len(want.Histograms))
	}
	for i, h := range want.Histograms {
		g := got.Histograms[i]
		if h.Ref != g.Ref || h.T != g.T || h.ST != g.ST || !h.H.Equals(g.H) {
			return fmt.Errorf("histogram %d: got %v %v, want %v %v", i, g, g.H, h, h.H)
		}
	}
	if len(want.FloatHistograms) != len(got.FloatHistograms) {
		return fmt.Errorf("float histograms: got %d, want %d", len(got.FloatHistograms), len(want.FloatHistograms))
	}
	for i, h := range want.FloatHistograms {
		g := got.FloatHistograms[i]
		if h.Ref != g.Ref || h.T != g.T || h.ST != g.ST || !h.FH.Equals(g.FH) {
			return fmt.Errorf("float histogram %d: got %v %v, want %v %v", i, g, g.FH, h, h.FH)
		}
	}
	if len(want.Exemplars) != len(got.Exemplars) {
		return fmt.Errorf("exemplars: got %d, want %d", len(got.Exemplars), len(want.Exemplars))
	}
	for i, e := range want.Exemplars {
		g := got.Exemplars[i]
		if e.Ref != g.Ref || e.T != g.T || e.V != g.V || !labels.Equal(e.Labels, g.Labels) {
			return fmt.Errorf("exemplar %d: got %v, want %v", i, g, e)
		}
	}
	return nil
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string // substring of the error; empty: valid
	}{
		{"defaults", Options{Dir: "x"}, ""},
		{"all set", Options{Dir: "x", SegmentSize: 64 * 1024, Fsync: FsyncAlways, FsyncInterval: time.Minute}, ""},
		{"no dir", Options{}, "wal dir is empty"},
		{"segment size not a page multiple", Options{Dir: "x", SegmentSize: 1000}, "wal segment size 1000"},
		{"negative segment size", Options{Dir: "x", SegmentSize: -pageSize}, "not a positive multiple"},
		{"unknown fsync", Options{Dir: "x", Fsync: "sometimes"}, `wal fsync policy "sometimes"`},
		{"negative interval", Options{Dir: "x", FsyncInterval: -time.Second}, "wal fsync interval -1s is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestLogReadRoundTrip(t *testing.T) {
	series := []record.RefSeries{{Ref: 1, Labels: seriesLabels(1)}, {Ref: 2, Labels: seriesLabels(2)}}
	samples := []record.RefSample{{Ref: 1, T: 1000, V: 1.5}, {Ref: 2, T: 1001, V: -3}, {Ref: 1, T: 2000, V: 2.5}}
	hists := []record.RefHistogramSample{{Ref: 1, T: 10, H: testHistogram(1)}, {Ref: 2, T: 11, H: testHistogram(2)}}
	customHists := []record.RefHistogramSample{{Ref: 1, T: 12, H: testCustomHistogram(1)}, {Ref: 2, T: 13, H: testCustomHistogram(2)}}
	floatHists := []record.RefFloatHistogramSample{{Ref: 1, T: 20, FH: testFloatHistogram(1)}}
	customFloatHists := []record.RefFloatHistogramSample{{Ref: 2, T: 21, FH: testCustomFloatHistogram(1)}}
	exemplars := []record.RefExemplar{{Ref: 1, T: 30, V: 0.25, Labels: labels.FromStrings("trace_id", "abc")}}
	metadata := []record.RefMetadata{{Ref: 1, Type: uint8(record.Counter), Unit: "seconds", Help: "Time spent."}}
	// Start timestamps on some entries make V2 records, which keep them.
	stSamples := []record.RefSample{{Ref: 1, ST: 500, T: 1000, V: 1.5}, {Ref: 2, T: 1001, V: -3}, {Ref: 1, ST: 500, T: 2000, V: 2.5}}
	stHists := []record.RefHistogramSample{{Ref: 1, ST: 5, T: 10, H: testHistogram(1)}, {Ref: 2, T: 13, H: testCustomHistogram(2)}}
	stFloatHists := []record.RefFloatHistogramSample{{Ref: 1, ST: 15, T: 20, FH: testFloatHistogram(1)}, {Ref: 2, ST: 16, T: 21, FH: testCustomFloatHistogram(1)}}

	for _, tc := range []struct {
		name      string
		in        Records
		wantTypes []record.Type
		want      *Records // what is read back; nil: in
	}{
		{"series", Records{Series: series}, []record.Type{record.Series}, nil},
		{"samples", Records{Samples: samples}, []record.Type{record.Samples}, nil},
		{"histograms", Records{Histograms: hists}, []record.Type{record.HistogramSamples}, nil},
		{"custom-bucket histograms", Records{Histograms: customHists}, []record.Type{record.HistogramSamples}, nil},
		{
			"mixed histograms", Records{Histograms: append(append([]record.RefHistogramSample{}, customHists[0], hists[0]), customHists[1])},
			[]record.Type{record.HistogramSamples, record.HistogramSamples},
			// exponential ones first, then the custom-bucket record
			&Records{Histograms: []record.RefHistogramSample{hists[0], customHists[0], customHists[1]}},
		},
		{"float histograms", Records{FloatHistograms: floatHists}, []record.Type{record.FloatHistogramSamples}, nil},
		{"custom-bucket float histograms", Records{FloatHistograms: customFloatHists}, []record.Type{record.FloatHistogramSamples}, nil},
		{"exemplars", Records{Exemplars: exemplars}, []record.Type{record.Exemplars}, nil},
		{"metadata", Records{Metadata: metadata}, []record.Type{record.Metadata}, nil},
		// The Reader reports V2 records as their V1 kind.
		{"samples with start timestamps", Records{Samples: stSamples}, []record.Type{record.Samples}, nil},
		{"histograms with start timestamps", Records{Histograms: stHists}, []record.Type{record.HistogramSamples}, nil},
		{"float histograms with start timestamps", Records{FloatHistograms: stFloatHists}, []record.Type{record.FloatHistogramSamples}, nil},
		{
			"every kind in one batch",
			Records{Series: series, Samples: samples, Histograms: hists, FloatHistograms: floatHists, Exemplars: exemplars, Metadata: metadata},
			[]record.Type{record.Series, record.Metadata, record.Samples, record.HistogramSamples, record.FloatHistogramSamples, record.Exemplars},
			nil,
		},
		{"empty batch", Records{}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := openWAL(t, Options{Dir: t.TempDir()}, nil, nil)
			in := tc.in
			mustLog(t, w, &in)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			got := readToEnd(t, w, Position{})
			if fmt.Sprint(got.types) != fmt.Sprint(tc.wantTypes) {
				t.Fatalf("types: got %v, want %v", got.types, tc.wantTypes)
			}
			want := tc.want
			if want == nil {
				want = &tc.in
			}
			if err := equalRecords(want, &got.Records); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestLogAfterClose(t *testing.T) {
	w := openWAL(t, Options{Dir: t.TempDir()}, nil, nil)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Log(batch([]chunks.HeadSeriesRef{1}, true, 1, 0)); !errors.Is(err, ErrClosed) {
		t.Errorf("log after close: got %v, want ErrClosed", err)
	}
	if err := w.Truncate(Position{Segment: 5}); !errors.Is(err, ErrClosed) {
		t.Errorf("truncate after close: got %v, want ErrClosed", err)
	}
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second close: got %v, want ErrClosed", err)
	}
	w.Release([]chunks.HeadSeriesRef{1}) // must not panic
}

func TestUnregisterMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	for range 2 {
		w, err := Open(Options{Dir: dir, Fsync: FsyncNever}, nil, reg)
		if err != nil {
			t.Fatal(err)
		}
		mustLog(t, w, batch([]chunks.HeadSeriesRef{w.NewRef()}, true, 3, 0))
		if n := testutil.ToFloat64(w.metrics.entries[kindSamples]); n != 3 {
			t.Errorf("samples counted: got %v, want 3", n)
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, mf := range mfs {
			names[mf.GetName()] = true
		}
		for _, n := range []string{"rwagent_wal_records_written_total", "rwagent_wal_segment_current", "rwagent_wal_replay_duration_seconds"} {
			if !names[n] {
				t.Errorf("metric %s not registered", n)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if mfs, _ := reg.Gather(); len(mfs) != 0 {
		t.Errorf("%d metric families left registered after Close", len(mfs))
	}
}

// TestOpen_RegisterFails checks that a registry already holding another
// collector under one of the WAL's names refuses Open by the metric's name
// (it panicked), leaving nothing of the WAL registered.
func TestOpen_RegisterFails(t *testing.T) {
	reg := prometheus.NewRegistry()
	blocker := prometheus.NewGauge(prometheus.GaugeOpts{Name: "rwagent_wal_write_failures_total", Help: "another"})
	reg.MustRegister(blocker)
	w, err := Open(Options{Dir: t.TempDir(), Fsync: FsyncNever}, nil, reg)
	if err == nil {
		w.Close()
		t.Fatal("Open succeeded on a registry with a conflicting metric")
	}
	if !strings.Contains(err.Error(), "rwagent_wal_write_failures_total") {
		t.Errorf("Open = %v, want an error naming rwagent_wal_write_failures_total", err)
	}
	reg.Unregister(blocker)
	if mfs, _ := reg.Gather(); len(mfs) != 0 {
		t.Errorf("%d metric families left registered after a refused Open", len(mfs))
	}
}

// fsyncCount returns how many fsync durations the WAL observed.
func fsyncCount(t *testing.T, reg *prometheus.Registry) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "rwagent_wal_fsync_duration_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatal("no fsync metric")
	return 0
}

func TestFsyncPolicies(t *testing.T) {
	for _, tc := range []struct {
		policy FsyncPolicy
		wait   time.Duration // fake time Run runs for
		want   uint64        // fsyncs observed
	}{
		{FsyncAlways, 0, 2},                         // one per Log
		{FsyncInterval, 0, 0},                       // none before the first tick
		{FsyncInterval, 3500 * time.Millisecond, 3}, // one per second
		{FsyncNever, 5 * time.Second, 0},
	} {
		t.Run(fmt.Sprintf("%s after %s", tc.policy, tc.wait), func(t *testing.T) {
			dir := t.TempDir()
			synctest.Test(t, func(t *testing.T) {
				reg := prometheus.NewRegistry()
				w, err := Open(Options{Dir: dir, Fsync: tc.policy}, nil, reg)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(t.Context())
				var wg sync.WaitGroup
				wg.Go(func() {
					if err := w.Run(ctx); err != nil {
						t.Errorf("run: %v", err)
					}
				})
				mustLog(t, w, batch([]chunks.HeadSeriesRef{1}, true, 10, 0))
				mustLog(t, w, batch([]chunks.HeadSeriesRef{1}, false, 10, 10))
				time.Sleep(tc.wait)
				synctest.Wait()
				if got := fsyncCount(t, reg); got != tc.want {
					t.Errorf("fsyncs: got %d, want %d", got, tc.want)
				}
				cancel()
				wg.Wait()
				must(w.Close())
			})
		})
	}
}

func TestLogAllocs(t *testing.T) {
	w := openWAL(t, Options{Dir: t.TempDir()}, nil, nil)
	refs := make([]chunks.HeadSeriesRef, 1000)
	for i := range refs {
		refs[i] = w.NewRef()
	}
	mustLog(t, w, batch(refs, true, 0, 0))
	r := batch(refs, false, 1, 0)
	mustLog(t, w, r) // grows the encode buffer
	allocs := testing.AllocsPerRun(100, func() {
		for i := range r.Samples {
			r.Samples[i].T += 15000
		}
		if err := w.Log(r); err != nil {
			t.Fatal(err)
		}
	})
	// wlog.WL.Log copies into its page and writes it; it allocates nothing
	// with compression off, so the whole steady-state Log is free.
	if allocs != 0 {
		t.Errorf("Log of a steady-state batch of %d samples: %v allocs, want 0", len(r.Samples), allocs)
	}
}
