package remotewrite

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"testing"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus/testutil"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
	"go.uber.org/goleak"

	"github.com/rwagent/rwagent/pkg/wal"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testConfig is a remote_write block for rawURL with fast batching and
// backoff; mod may change it.
func testConfig(t testing.TB, rawURL string, mod func(*config.RemoteWriteConfig)) *config.RemoteWriteConfig {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.DefaultRemoteWriteConfig
	cfg.URL = &config_util.URL{URL: u}
	cfg.Name = "test"
	cfg.RemoteTimeout = model.Duration(5 * time.Second)
	cfg.QueueConfig.BatchSendDeadline = model.Duration(5 * time.Millisecond)
	cfg.QueueConfig.MinBackoff = model.Duration(time.Millisecond)
	cfg.QueueConfig.MaxBackoff = model.Duration(20 * time.Millisecond)
	cfg.QueueConfig.MaxSamplesPerSend = 100
	cfg.QueueConfig.Capacity = 1000
	if mod != nil {
		mod(&cfg)
	}
	return &cfg
}

// running is a Queue whose Run is in a goroutine.
type running struct {
	q      *Queue
	cancel context.CancelFunc
	done   chan error
}

func startQueue(t *testing.T, opts Options) *running {
	t.Helper()
	return startQueueWith(t, opts, nil)
}

// startQueueWith is startQueue with tune, if not nil, called on the Queue
// before it runs, to change what Options cannot.
func startQueueWith(t *testing.T, opts Options, tune func(*Queue)) *running {
	t.Helper()
	q, err := New(t.Context(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if tune != nil {
		tune(q)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{q: q, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- q.Run(ctx) }()
	t.Cleanup(func() { _ = r.stop(t) })
	return r
}

// stop cancels Run and waits for it; it may be called more than once.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

// waitDeadline bounds every waitFor in this package. The rule, the same in
// every package: long enough that a loaded 2-core CI machine never hits it
// while a test is merely slow, short enough that a hang fails inside the
// package's go test -timeout with the name of what it waited for.
const waitDeadline = 30 * time.Second

// waitFor polls cond every 10ms until it holds, and fails the test if it
// does not within waitDeadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitDeadline, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func seriesRec(refs ...record.RefSeries) fakeRecord {
	return fakeRecord{typ: record.Series, series: refs}
}

func rs(ref chunks.HeadSeriesRef, kv ...string) record.RefSeries {
	return record.RefSeries{Ref: ref, Labels: labels.FromStrings(kv...)}
}

func samplesRec(ss ...record.RefSample) fakeRecord {
	return fakeRecord{typ: record.Samples, samples: ss}
}

func nowMs() int64 { return time.Now().UnixMilli() }

func key(kv ...string) string { return labels.FromStrings(kv...).String() }

func testHistogram(i int) *histogram.Histogram {
	return &histogram.Histogram{
		Count:           uint64(10 + i),
		ZeroCount:       2,
		ZeroThreshold:   0.001,
		Sum:             18.4 + float64(i),
		Schema:          1,
		PositiveSpans:   []histogram.Span{{Offset: 0, Length: 2}, {Offset: 1, Length: 2}},
		PositiveBuckets: []int64{int64(i + 1), 1, -1, 0},
		NegativeSpans:   []histogram.Span{{Offset: 0, Length: 1}},
		NegativeBuckets: []int64{int64(i + 1)},
	}
}

func TestQueue_Send(t *testing.T) {
	base := nowMs() - 60_000
	stale := math.Float64frombits(value.StaleNaN)
	type want map[string][]point
	type sendCase struct {
		name     string
		external labels.Labels
		mod      func(*config.RemoteWriteConfig)
		records  []fakeRecord
		want     want
		dropped  map[string]float64 // samples_dropped_total by reason
		hdropped map[string]float64 // histograms_dropped_total by reason
		exemplar int                // exemplars expected on series "up"
	}
	nhcb := &histogram.Histogram{
		Schema: histogram.CustomBucketsSchema, Count: 3, Sum: 2,
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 2}}, PositiveBuckets: []int64{1, 1},
		CustomValues: []float64{1, 2},
	}
	cases := []sendCase{
		{
			name:     "float samples with external labels",
			external: labels.FromStrings("cluster", "c1", "job", "ext"),
			records: []fakeRecord{
				seriesRec(rs(1, "__name__", "up", "job", "a"), rs(2, "__name__", "up", "job", "b")),
				samplesRec(record.RefSample{Ref: 1, T: base, V: 1}, record.RefSample{Ref: 2, T: base, V: 0}),
				samplesRec(record.RefSample{Ref: 1, T: base + 15000, V: 1}),
			},
			want: want{
				key("__name__", "up", "cluster", "c1", "job", "a"): {{t: base, v: 1}, {t: base + 15000, v: 1}},
				key("__name__", "up", "cluster", "c1", "job", "b"): {{t: base, v: 0}},
			},
		},
		{
			name: "stale NaN preserved",
			records: []fakeRecord{
				seriesRec(rs(1, "__name__", "up")),
				samplesRec(record.RefSample{Ref: 1, T: base, V: 1}, record.RefSample{Ref: 1, T: base + 1, V: stale}),
			},
			want: want{key("__name__", "up"): {{t: base, v: 1}, {t: base + 1, v: stale}}},
		},
		{
			name: "native histograms",
			mod:  func(c *config.RemoteWriteConfig) { c.SendNativeHistograms = true },
			records: []fakeRecord{
				seriesRec(rs(1, "__name__", "h"), rs(2, "__name__", "fh")),
				{typ: record.HistogramSamples, hists: []record.RefHistogramSample{{Ref: 1, T: base, H: testHistogram(0)}, {Ref: 1, T: base + 1, H: testHistogram(1)}}},
				{typ: record.FloatHistogramSamples, fhists: []record.RefFloatHistogramSample{{Ref: 2, T: base, FH: testHistogram(2).ToFloat(nil)}}},
			},
			want: want{
				key("__name__", "h"):  {{t: base, h: testHistogram(0)}, {t: base + 1, h: testHistogram(1)}},
				key("__name__", "fh"): {{t: base, fh: testHistogram(2).ToFloat(nil)}},
			},
		},
		{
			name: "write relabel drop and unknown ref",
			mod: func(c *config.RemoteWriteConfig) {
				c.WriteRelabelConfigs = []*relabel.Config{{
					SourceLabels:         model.LabelNames{"job"},
					Regex:                relabel.MustNewRegexp("drop"),
					Action:               relabel.Drop,
					NameValidationScheme: model.UTF8Validation,
				}}
			},
			records: []fakeRecord{
				seriesRec(rs(1, "__name__", "up", "job", "keep"), rs(2, "__name__", "up", "job", "drop")),
				samplesRec(record.RefSample{Ref: 1, T: base, V: 1}, record.RefSample{Ref: 2, T: base, V: 2},
					record.RefSample{Ref: 2, T: base + 1, V: 2}, record.RefSample{Ref: 99, T: base, V: 3}),
			},
			want:    want{key("__name__", "up", "job", "keep"): {{t: base, v: 1}}},
			dropped: map[string]float64{reasonDroppedSeries: 2, reasonUnknownSeries: 1},
		},
		{
			name: "too old and custom buckets",
			mod: func(c *config.RemoteWriteConfig) {
				c.SendNativeHistograms = true
				c.QueueConfig.SampleAgeLimit = model.Duration(time.Hour)
			},
			records: []fakeRecord{
				seriesRec(rs(1, "__name__", "up"), rs(2, "__name__", "h")),
				samplesRec(record.RefSample{Ref: 1, T: base - 2*3600_000, V: 1}, record.RefSample{Ref: 1, T: base, V: 2}),
				{typ: record.HistogramSamples, hists: []record.RefHistogramSample{{Ref: 2, T: base, H: nhcb}}},
			},
			want:     want{key("__name__", "up"): {{t: base, v: 2}}},
			dropped:  map[string]float64{reasonTooOld: 1},
			hdropped: map[string]float64{reasonNHCB: 1},
		},
		{
			name: "exemplars",
			mod: func(c *config.RemoteWriteConfig) {
				c.SendExemplars = true
				// Sample and exemplar in one batch: 2.0 carries an
				// exemplar only beside a sample of its series.
				c.QueueConfig.MaxSamplesPerSend = 2
				c.QueueConfig.BatchSendDeadline = model.Duration(time.Minute)
			},
			records: []fakeRecord{
				seriesRec(rs(1, "__name__", "up")),
				samplesRec(record.RefSample{Ref: 1, T: base, V: 1}),
				{typ: record.Exemplars, exemplars: []record.RefExemplar{{Ref: 1, T: base, V: 1, Labels: labels.FromStrings("trace_id", "abc")}}},
			},
			want:     want{key("__name__", "up"): {{t: base, v: 1}}},
			exemplar: 1,
		},
	}
	// Many series and samples through several shards and small batches,
	// so per-series order is tested across batches.
	order := fakeRecord{typ: record.Series}
	orderWant := want{}
	var orderSamples []fakeRecord
	for s := range 50 {
		order.series = append(order.series, rs(chunks.HeadSeriesRef(s+1), "__name__", "m", "i", fmt.Sprint(s)))
	}
	for i := range 20 {
		rec := fakeRecord{typ: record.Samples}
		for s := range 50 {
			rec.samples = append(rec.samples, record.RefSample{Ref: chunks.HeadSeriesRef(s + 1), T: base + int64(i), V: float64(i)})
			k := key("__name__", "m", "i", fmt.Sprint(s))
			orderWant[k] = append(orderWant[k], point{t: base + int64(i), v: float64(i)})
		}
		orderSamples = append(orderSamples, rec)
	}
	cases = append(cases, sendCase{
		name: "per-series order across shards and batches",
		mod: func(c *config.RemoteWriteConfig) {
			c.QueueConfig.MinShards = 3
			c.QueueConfig.MaxSamplesPerSend = 7
			c.QueueConfig.Capacity = 20
		},
		records: append([]fakeRecord{order}, orderSamples...),
		want:    orderWant,
	})

	// Each case runs over remote-write 1.0 and 2.0; the 2.0 receiver
	// accepts only 2.0, so a fallback would fail the header check.
	protos := []struct {
		msg     remoteapi.WriteMessageType
		headers map[string]string
	}{
		{remoteapi.WriteV1MessageType, map[string]string{"Content-Type": "application/x-protobuf", "X-Prometheus-Remote-Write-Version": "0.1.0"}},
		{remoteapi.WriteV2MessageType, map[string]string{"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request", "X-Prometheus-Remote-Write-Version": "2.0.0"}},
	}
	run := func(t *testing.T, msg remoteapi.WriteMessageType, headers map[string]string, tc sendCase) {
		rc := newReceiverFor(t, remoteapi.MessageTypes{msg}, nil)
		log := newFakeLog()
		end := log.append(tc.records...)
		r := startQueue(t, Options{
			Config: testConfig(t, rc.srv.URL, func(c *config.RemoteWriteConfig) {
				c.ProtobufMessage = msg
				if tc.mod != nil {
					tc.mod(c)
				}
			}),
			ExternalLabels: tc.external,
			Log:            log,
			UserAgent:      "rwagent/test",
		})
		total := 0
		for _, pts := range tc.want {
			total += len(pts)
		}
		waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
		if err := r.stop(t); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if got := rc.store.count(); got != total {
			t.Errorf("receiver got %d points, want %d", got, total)
		}
		for k, w := range tc.want {
			got := rc.store.get(k)
			if len(got) != len(w) {
				t.Errorf("%s: got %d points, want %d", k, len(got), len(w))
				continue
			}
			for i := range w {
				if !pointEqual(got[i], w[i]) {
					t.Errorf("%s[%d]: got %+v, want %+v", k, i, got[i], w[i])
				}
			}
		}
		for reason, n := range tc.dropped {
			if got := testutil.ToFloat64(r.q.metrics.samplesDropped.WithLabelValues(reason)); got != n {
				t.Errorf("samples_dropped_total{reason=%q} = %v, want %v", reason, got, n)
			}
		}
		for reason, n := range tc.hdropped {
			if got := testutil.ToFloat64(r.q.metrics.histogramsDropped.WithLabelValues(reason)); got != n {
				t.Errorf("histograms_dropped_total{reason=%q} = %v, want %v", reason, got, n)
			}
		}
		rc.store.mu.Lock()
		gotEx := len(rc.store.exemplars[key("__name__", "up")])
		rc.store.mu.Unlock()
		if gotEx != tc.exemplar {
			t.Errorf("got %d exemplars, want %d", gotEx, tc.exemplar)
		}
		for i, h := range rc.requestHeaders() {
			for k, v := range map[string]string{
				"Content-Encoding":                  "snappy",
				"Content-Type":                      headers["Content-Type"],
				"X-Prometheus-Remote-Write-Version": headers["X-Prometheus-Remote-Write-Version"],
				"User-Agent":                        "rwagent/test",
			} {
				if got := h.Get(k); got != v {
					t.Errorf("request %d: header %s = %q, want %q", i, k, got, v)
				}
			}
		}
	}
	for _, proto := range protos {
		for _, tc := range cases {
			t.Run(string(proto.msg)+"/"+tc.name, func(t *testing.T) { run(t, proto.msg, proto.headers, tc) })
		}
	}
}

func pointEqual(a, b point) bool {
	switch {
	case a.t != b.t:
		return false
	case b.h != nil:
		return a.h != nil && a.h.Equals(b.h)
	case b.fh != nil:
		return a.fh != nil && a.fh.Equals(b.fh)
	case a.h != nil || a.fh != nil:
		return false
	}
	return math.Float64bits(a.v) == math.Float64bits(b.v)
}

// floatLog returns a log with nSeries series and nRecs sample records of one
// sample per series each, and the position after its last record.
func floatLog(nSeries, nRecs int) (*fakeLog, wal.Position) {
	log := newFakeLog()
	sr := fakeRecord{typ: record.Series}
	for s := range nSeries {
		sr.series = append(sr.series, rs(chunks.HeadSeriesRef(s+1), "__name__", "m", "i", fmt.Sprint(s)))
	}
	log.append(sr)
	base := nowMs() - 60_000
	var end wal.Position
	for i := range nRecs {
		rec := fakeRecord{typ: record.Samples}
		for s := range nSeries {
			rec.samples = append(rec.samples, record.RefSample{Ref: chunks.HeadSeriesRef(s + 1), T: base + int64(i), V: float64(i)})
		}
		end = log.append(rec)
	}
	return log, end
}

// checkInOrder checks that every series of floatLog arrived exactly once per
// sample, in order.
func checkInOrder(t *testing.T, st *testStore, nSeries, nRecs int) {
	t.Helper()
	for s := range nSeries {
		got := st.get(key("__name__", "m", "i", fmt.Sprint(s)))
		if len(got) != nRecs {
			t.Errorf("series %d: got %d samples, want %d", s, len(got), nRecs)
			continue
		}
		for i, p := range got {
			if p.v != float64(i) {
				t.Errorf("series %d: sample %d has value %v, want %v (order broken or duplicate)", s, i, p.v, i)
				break
			}
		}
	}
}
