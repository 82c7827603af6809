package remotewrite

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/wal"
)

func TestFamilyName(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  model.MetricType
		want string
	}{
		{"http_requests_total", model.MetricTypeCounter, "http_requests_total"},
		{"http_requests_created", model.MetricTypeCounter, "http_requests"},
		{"rpc_seconds_bucket", model.MetricTypeHistogram, "rpc_seconds"},
		{"rpc_seconds_sum", model.MetricTypeHistogram, "rpc_seconds"},
		{"rpc_seconds_count", model.MetricTypeSummary, "rpc_seconds"},
		{"rpc_seconds", model.MetricTypeSummary, "rpc_seconds"},
		{"queue_bucket", model.MetricTypeGaugeHistogram, "queue"},
		{"queue_gsum", model.MetricTypeGaugeHistogram, "queue"},
		{"build_info", model.MetricTypeInfo, "build"},
		{"temp_count", model.MetricTypeGauge, "temp_count"},
		{"_sum", model.MetricTypeSummary, "_sum"}, // nothing left: keep it
		{"up", model.MetricTypeUnknown, "up"},
	} {
		if got := familyName(tc.name, tc.typ); got != tc.want {
			t.Errorf("familyName(%q, %s) = %q, want %q", tc.name, tc.typ, got, tc.want)
		}
	}
}

// FuzzFamilyName: the family is a non-empty prefix of a non-empty name.
func FuzzFamilyName(f *testing.F) {
	for _, s := range []string{"http_requests_total", "rpc_seconds_bucket", "_sum", "x_created", "build_info", ""} {
		f.Add(s, "histogram")
	}
	f.Fuzz(func(t *testing.T, name, typ string) {
		got := familyName(name, model.MetricType(typ))
		if !strings.HasPrefix(name, got) || (name != "" && got == "") {
			t.Fatalf("familyName(%q, %q) = %q", name, typ, got)
		}
	})
}

// TestFamilies keeps one entry per family however many series describe it,
// replaces it when the metadata changes, and skips unknown and dropped
// series.
func TestFamilies(t *testing.T) {
	st := newSeriesTable(testPairs, labels.EmptyLabels(), nil)
	st.store(metaSeries())
	st.put(99, st.dropped) // dropped by relabeling
	f := newFamilies()
	f.update(st, metaRecords())
	f.update(st, []record.RefMetadata{{Ref: 99, Type: uint8(record.Gauge), Help: "dropped"}, {Ref: 1000, Help: "unknown"}})
	if got := len(f.m); got != 3 {
		t.Fatalf("%d families, want 3: %v", got, f.snapshot())
	}
	a, _ := st.get(1)
	b, _ := st.get(2)
	if a.meta.Load() == nil || a.meta.Load() != b.meta.Load() {
		t.Errorf("series of one family do not share its entry: %p %p", a.meta.Load(), b.meta.Load())
	}
	before := a.meta.Load()
	f.update(st, []record.RefMetadata{{Ref: 1, Type: uint8(record.Counter), Help: "Requests, renamed."}})
	if after := a.meta.Load(); after == before || after.help != "Requests, renamed." || f.m["http_requests_total"] != after {
		t.Errorf("changed help not applied: %+v", after)
	}
	want := []prompb.MetricMetadata{
		{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "http_requests_total", Help: "Requests, renamed."},
		{Type: prompb.MetricMetadata_HISTOGRAM, MetricFamilyName: "rpc_seconds", Help: "RPC latency.", Unit: "seconds"},
		{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "temp", Help: "Temperature.", Unit: "celsius"},
	}
	if got := f.snapshot(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("snapshot = %v, want %v", got, want)
	}
}

// metaSeries are series of three families: a counter with two series, a
// histogram with two, a gauge.
func metaSeries() []record.RefSeries {
	return []record.RefSeries{
		rs(1, "__name__", "http_requests_total", "job", "a"),
		rs(2, "__name__", "http_requests_total", "job", "b"),
		rs(3, "__name__", "rpc_seconds_bucket", "le", "1"),
		rs(4, "__name__", "rpc_seconds_sum"),
		rs(5, "__name__", "temp"),
	}
}

// metaRecords is the Metadata record the scrape writes for metaSeries.
func metaRecords() []record.RefMetadata {
	return []record.RefMetadata{
		{Ref: 1, Type: uint8(record.Counter), Help: "Requests."},
		{Ref: 2, Type: uint8(record.Counter), Help: "Requests."},
		{Ref: 3, Type: uint8(record.HistogramSample), Help: "RPC latency.", Unit: "seconds"},
		{Ref: 4, Type: uint8(record.HistogramSample), Help: "RPC latency.", Unit: "seconds"},
		{Ref: 5, Type: uint8(record.Gauge), Help: "Temperature.", Unit: "celsius"},
	}
}

// metaLog is a fakeLog with metaSeries, their metadata and one sample each.
func metaLog() (*fakeLog, wal.Position) {
	log := newFakeLog()
	var ss []record.RefSample
	for ref := range chunks.HeadSeriesRef(5) {
		ss = append(ss, record.RefSample{Ref: ref + 1, T: time.Now().UnixMilli(), V: 1})
	}
	end := log.append(
		seriesRec(metaSeries()...),
		fakeRecord{typ: record.Metadata, metadata: metaRecords()},
		samplesRec(ss...),
	)
	return log, end
}

// metaTransport decodes the 1.0 requests that carry metadata itself and
// answers them with fault (nil: 204): Prometheus' 1.0 handler ignores
// WriteRequest.Metadata (it only counts the samples as ingested without
// metadata), so it cannot show what arrived. Other requests go to next.
type metaTransport struct {
	next  http.RoundTripper
	fault func(n int) int // status for the nth metadata request, from 1

	mu    sync.Mutex
	reqs  [][]prompb.MetricMetadata
	times []time.Time
}

func (m *metaTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	var req prompb.WriteRequest
	if r.Header.Get("Content-Type") == "application/x-protobuf" {
		pb, err := snappy.Decode(nil, body)
		if err != nil {
			return nil, err
		}
		if err := req.Unmarshal(pb); err != nil {
			return nil, err
		}
	}
	if len(req.Metadata) == 0 {
		r2 := r.Clone(r.Context())
		r2.Body = io.NopCloser(bytes.NewReader(body))
		return m.next.RoundTrip(r2)
	}
	if len(req.Timeseries) > 0 {
		return nil, fmt.Errorf("metadata request with %d series", len(req.Timeseries))
	}
	m.mu.Lock()
	m.reqs = append(m.reqs, req.Metadata)
	m.times = append(m.times, time.Now())
	n := len(m.reqs)
	m.mu.Unlock()
	code := http.StatusNoContent
	if m.fault != nil {
		code = m.fault(n)
	}
	return &http.Response{StatusCode: code, Status: http.StatusText(code), Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}, Request: r}, nil
}

func (m *metaTransport) requests() ([][]prompb.MetricMetadata, []time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]prompb.MetricMetadata(nil), m.reqs...), append([]time.Time(nil), m.times...)
}

// TestQueue_MetadataV1 checks 1.0 metadata: sent every send_interval in
// requests of at most max_samples_per_send entries, not sent with
// send: false or while the queue speaks 2.0, retried and counted on errors.
func TestQueue_MetadataV1(t *testing.T) {
	families := []string{"http_requests_total", "rpc_seconds", "temp"}
	for _, tc := range []struct {
		name      string
		send      bool
		v2        bool
		fault     func(n int) int
		wantReqs  int // metadata requests after 2.5 intervals
		total     float64
		failed    float64
		retried   float64 // -1: some
		wantFirst bool    // the first request holds the first two families
	}{
		{name: "send", send: true, wantReqs: 4, total: 6, wantFirst: true},
		{name: "send false", send: false},
		{name: "2.0 carries it per series", send: true, v2: true},
		{name: "recoverable then ok", send: true, fault: func(n int) int {
			if n <= 2 {
				return http.StatusServiceUnavailable
			}
			return http.StatusNoContent
		}, wantReqs: 6, total: 6, retried: 4},
		{name: "rejected", send: true, fault: func(int) int { return http.StatusBadRequest }, wantReqs: 4, failed: 6},
		{name: "still failing at the next interval", send: true, fault: func(int) int { return http.StatusServiceUnavailable },
			failed: 6, retried: -1}, // two rounds (the second cut by shutdown), each stuck on its first request
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := newTestStore()
				types := remoteapi.MessageTypes{remoteapi.WriteV1MessageType}
				if tc.v2 {
					types = append(types, remoteapi.WriteV2MessageType)
				}
				tr := &metaTransport{next: newHandlerTransport(st, types), fault: tc.fault}
				log, end := metaLog()
				q, err := New(t.Context(), Options{
					Config: testConfig(t, "http://127.0.0.1:1/write", func(c *config.RemoteWriteConfig) {
						c.MetadataConfig.Send = tc.send
						c.MetadataConfig.SendInterval = model.Duration(time.Minute)
						c.MetadataConfig.MaxSamplesPerSend = 2
						c.QueueConfig.MaxBackoff = model.Duration(10 * time.Second)
						if tc.v2 {
							c.ProtobufMessage = remoteapi.WriteV2MessageType
						}
					}),
					Log:       log,
					Transport: tr,
				})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan error)
				start := time.Now()
				go func() { done <- q.Run(ctx) }()
				time.Sleep(59 * time.Second)
				synctest.Wait()
				if q.Acked() != end {
					t.Errorf("acked %v, want %v", q.Acked(), end)
				}
				if reqs, _ := tr.requests(); len(reqs) != 0 {
					t.Errorf("%d metadata requests before send_interval", len(reqs))
				}
				time.Sleep(91 * time.Second) // 2.5 intervals in all
				synctest.Wait()
				reqs, times := tr.requests()
				if tc.fault == nil || tc.wantReqs > 0 {
					if len(reqs) != tc.wantReqs {
						t.Errorf("%d metadata requests, want %d", len(reqs), tc.wantReqs)
					}
				}
				for i, r := range reqs {
					if len(r) > 2 {
						t.Errorf("request %d has %d entries, over max_samples_per_send 2", i, len(r))
					}
				}
				if len(times) > 0 {
					if d := times[0].Sub(start); d != time.Minute {
						t.Errorf("first metadata sent after %v, want send_interval 1m", d)
					}
				}
				if tc.wantFirst && len(reqs) > 0 {
					var got []string
					for _, r := range reqs[:2] {
						for _, m := range r {
							got = append(got, m.MetricFamilyName)
						}
					}
					if fmt.Sprint(got) != fmt.Sprint(families) {
						t.Errorf("first round sent %v, want %v", got, families)
					}
					if m := reqs[0][1]; m.Type != prompb.MetricMetadata_HISTOGRAM || m.Help != "RPC latency." || m.Unit != "seconds" {
						t.Errorf("rpc_seconds metadata = %+v", m)
					}
				}
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				m := q.metrics
				for _, c := range []struct {
					name      string
					got, want float64
				}{
					{"metadata_total", testutil.ToFloat64(m.metadataTotal), tc.total},
					{"metadata_failed_total", testutil.ToFloat64(m.metadataFailed), tc.failed},
					{"metadata_retried_total", testutil.ToFloat64(m.metadataRetried), tc.retried},
				} {
					if c.got != c.want && !(c.want < 0 && c.got > 0) {
						t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
					}
				}
				if b := testutil.ToFloat64(m.metadataBytes); (b > 0) != (tc.total > 0) {
					t.Errorf("metadata_bytes_total = %v with metadata_total %v", b, tc.total)
				}
			})
		})
	}
}

// TestQueue_MetadataV2 sends 2.0 to Prometheus' handler, which stores the
// metadata each series carries (with its metadata-wal-records behaviour
// on): type, help and unit arrive per series, and none with send: false.
func TestQueue_MetadataV2(t *testing.T) {
	for _, send := range []bool{true, false} {
		t.Run(fmt.Sprintf("send=%v", send), func(t *testing.T) {
			st := newTestStore()
			tr := &handlerTransport{h: remote.NewWriteHandler(slog.New(slog.DiscardHandler), prometheus.NewRegistry(), st,
				remoteapi.MessageTypes{remoteapi.WriteV2MessageType}, false, true)}
			log, end := metaLog()
			r := startQueue(t, Options{
				Config: testConfig(t, "http://127.0.0.1:1/write", func(c *config.RemoteWriteConfig) {
					c.ProtobufMessage = remoteapi.WriteV2MessageType
					c.MetadataConfig.Send = send
				}),
				Log:       log,
				Transport: tr,
			})
			waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			if !r.q.v2.Load() {
				t.Fatal("queue fell back to 1.0")
			}
			for _, c := range []struct {
				series     []string
				typ        model.MetricType
				help, unit string
			}{
				{[]string{"__name__", "http_requests_total", "job", "a"}, model.MetricTypeCounter, "Requests.", ""},
				{[]string{"__name__", "http_requests_total", "job", "b"}, model.MetricTypeCounter, "Requests.", ""},
				{[]string{"__name__", "rpc_seconds_bucket", "le", "1"}, model.MetricTypeHistogram, "RPC latency.", "seconds"},
				{[]string{"__name__", "temp"}, model.MetricTypeGauge, "Temperature.", "celsius"},
			} {
				m, _ := st.getMetadata(key(c.series...))
				if !send {
					if m.Help != "" || m.Unit != "" || (m.Type != "" && m.Type != model.MetricTypeUnknown) {
						t.Errorf("%v: metadata %+v arrived with send: false", c.series, m)
					}
					continue
				}
				if m.Type != c.typ || m.Help != c.help || m.Unit != c.unit {
					t.Errorf("%v: metadata %+v, want %s %q %q", c.series, m, c.typ, c.help, c.unit)
				}
			}
		})
	}
}
