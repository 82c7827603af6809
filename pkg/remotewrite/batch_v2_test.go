package remotewrite

import (
	"bytes"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"

	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/record"
)

// decodeV2 undoes encoderV2.encode.
func decodeV2(t testing.TB, body []byte) *writev2.Request {
	t.Helper()
	pb, err := snappy.Decode(nil, body)
	if err != nil {
		t.Fatalf("snappy: %v", err)
	}
	var req writev2.Request
	if err := req.Unmarshal(pb); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return &req
}

func TestEncodeV2(t *testing.T) {
	st := newSeriesTable(testPairs, labels.FromStrings("cluster", "c1"), nil)
	st.store([]record.RefSeries{
		{Ref: 1, Labels: labels.FromStrings("__name__", "a", "x", "1")},
		{Ref: 2, Labels: labels.FromStrings("__name__", "b")},
		{Ref: 3, Labels: labels.FromStrings("__name__", "c")},
	})
	a, _ := st.get(1)
	b, _ := st.get(2)
	c, _ := st.get(3)
	h := testHistogram(1)
	fh := testHistogram(2).ToFloat(nil)
	ex := func(v string) *exemplar { return &exemplar{labels: []prompb.Label{{Name: "trace_id", Value: v}}} }
	batch := []sample{
		{series: c, t: 1, v: 7, x: ex("orphan")}, // no sample of c in the batch: left out
		{series: a, t: 1, v: 1},
		{series: a, t: 2, v: 2}, // merges with the previous one
		{series: b, t: 1, v: 3},
		{series: a, t: 3, v: 9, x: ex("t1")}, // joins a's latest TimeSeries, behind b
		{series: a, t: 3, v: 4},              // a again, after b: a new TimeSeries keeps order
		{series: a, t: 4, x: h},
		{series: b, t: 5, x: fh},
	}
	e := encoderV2{pairs: testPairs}
	for round := range 2 { // the second round reuses every buffer
		r, err := e.encode(batch)
		if err != nil {
			t.Fatal(err)
		}
		if r.highest != 5 || r.orphans != 1 {
			t.Errorf("round %d: highest, orphans = %d, %d, want 5, 1", round, r.highest, r.orphans)
		}
		req := decodeV2(t, r.body)
		if req.Symbols[0] != "" {
			t.Errorf("symbols[0] = %q, want the empty string", req.Symbols[0])
		}
		seen := map[string]bool{}
		for _, s := range req.Symbols {
			if seen[s] {
				t.Errorf("symbol %q twice", s)
			}
			seen[s] = true
		}
		ts := req.Timeseries
		if len(ts) != 5 {
			t.Fatalf("round %d: got %d time series, want 5: %v", round, len(ts), req)
		}
		var sb labels.ScratchBuilder
		wantLabels := []string{`{__name__="a", cluster="c1", x="1"}`, `{__name__="b", cluster="c1"}`, `{__name__="a", cluster="c1", x="1"}`, `{__name__="a", cluster="c1", x="1"}`, `{__name__="b", cluster="c1"}`}
		for i, w := range wantLabels {
			ls, err := ts[i].ToLabels(&sb, req.Symbols)
			if err != nil || ls.String() != w {
				t.Errorf("series %d labels = %s (%v), want %s", i, ls, err, w)
			}
		}
		if len(ts[0].Samples) != 2 || ts[0].Samples[1].Value != 2 || ts[0].Samples[1].Timestamp != 2 {
			t.Errorf("first series samples = %v", ts[0].Samples)
		}
		if ex := ts[0].Exemplars; len(ex) != 1 || ex[0].Value != 9 || req.Symbols[ex[0].LabelsRefs[1]] != "t1" {
			t.Errorf("exemplars of a = %v", ex)
		}
		if len(ts[2].Samples) != 1 || ts[2].Samples[0].Value != 4 || len(ts[2].Exemplars) != 0 {
			t.Errorf("third series = %v", ts[2])
		}
		if got := ts[3].Histograms[0].ToIntHistogram(); !got.Equals(h) {
			t.Errorf("histogram = %v, want %v", got, h)
		}
		if got := ts[4].Histograms[0].ToFloatHistogram(); !got.Equals(fh) {
			t.Errorf("float histogram = %v, want %v", got, fh)
		}
	}
}

// TestEncodeV2SymbolOrder checks the symbols table is ordered by use: a
// symbol referred to more often never comes after one referred to less,
// except that symbols used once keep their first-seen order at the end,
// and every reference (labels, exemplar labels, metadata) still decodes to
// its string.
func TestEncodeV2SymbolOrder(t *testing.T) {
	batch := withMetadata(benchBatch(500))
	for i := 0; i < len(batch); i += 50 {
		batch = append(batch, sample{series: batch[i].series, t: batch[i].t, v: 1, x: &exemplar{labels: []prompb.Label{{Name: "trace_id", Value: fmt.Sprint("t", i)}}}})
	}
	e := encoderV2{pairs: testPairs}
	r, err := e.encode(batch)
	if err != nil {
		t.Fatal(err)
	}
	req := decodeV2(t, r.body)
	uses := make([]int, len(req.Symbols))
	count := func(refs ...uint32) {
		for _, ref := range refs {
			if int(ref) >= len(uses) {
				t.Fatalf("ref %d beyond the %d symbols", ref, len(uses))
			}
			uses[ref]++
		}
	}
	var sb labels.ScratchBuilder
	for i, ts := range req.Timeseries {
		count(ts.LabelsRefs...)
		count(ts.Metadata.HelpRef, ts.Metadata.UnitRef)
		for _, x := range ts.Exemplars {
			count(x.LabelsRefs...)
		}
		ls, err := ts.ToLabels(&sb, req.Symbols)
		if err != nil {
			t.Fatal(err)
		}
		if want := labelsOf(batch[i].series); ls.String() != want.String() {
			t.Fatalf("series %d labels = %s, want %s", i, ls, want)
		}
		if m, _ := ts.ToMetadata(req.Symbols); m.Help != "Seconds the CPUs spent in each mode." || m.Unit != "seconds" {
			t.Fatalf("series %d metadata = %+v", i, m)
		}
	}
	for ref := 2; ref < len(uses); ref++ {
		if uses[ref] > 1 && uses[ref] > uses[ref-1] {
			t.Errorf("symbol %d %q used %d times, after symbol %d %q used %d times", ref, req.Symbols[ref], uses[ref], ref-1, req.Symbols[ref-1], uses[ref-1])
		}
	}
	if uses[1] < 500 {
		t.Errorf("symbol 1 %q used %d times, want the most used", req.Symbols[1], uses[1])
	}
}

// labelsOf returns s's labels.
func labelsOf(s *series) labels.Labels {
	var b labels.ScratchBuilder
	it := s.labels(testPairs)
	for name, value, ok := it.next(); ok; name, value, ok = it.next() {
		b.Add(name, value)
	}
	return b.Labels()
}

// TestEncodeV2Receivers sends a request larger than snappy's 64 KiB
// blocks, so the compressor's matches reach across them, to Prometheus'
// write handler: every sample and every series' metadata must arrive. It
// also decodes the body with golang/snappy, as other receivers do.
func TestEncodeV2Receivers(t *testing.T) {
	batch := withMetadata(benchBatch(4000))
	e := encoderV2{pairs: testPairs}
	r, err := e.encode(batch)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.pb) <= 64<<10 {
		t.Fatalf("request is %d bytes before snappy, want more than 64 KiB", len(e.pb))
	}
	raw, err := snappy.Decode(nil, r.body)
	if err != nil || !bytes.Equal(raw, e.pb) {
		t.Fatalf("golang/snappy does not give back the request: %v", err)
	}
	st := newTestStore()
	h := remote.NewWriteHandler(slog.New(slog.DiscardHandler), prometheus.NewRegistry(), st,
		remoteapi.MessageTypes{remoteapi.WriteV2MessageType}, false, true)
	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(r.body))
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", contentTypeV2)
	req.Header.Set("X-Prometheus-Remote-Write-Version", versionV2)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusNoContent {
		t.Fatalf("handler answered %d: %s", w.Code, w.Body)
	}
	if got := st.count(); got != len(batch) {
		t.Errorf("handler stored %d samples, want %d", got, len(batch))
	}
	for i := range batch {
		ls := labelsOf(batch[i].series).String()
		if m, ok := st.getMetadata(ls); !ok || m.Help != "Seconds the CPUs spent in each mode." || m.Unit != "seconds" || m.Type != model.MetricTypeCounter {
			t.Fatalf("%s: metadata %+v (%v)", ls, m, ok)
		}
	}
}

// FuzzEncodeV2 encodes batches of float samples of series built from the
// input (label names and values from small alphabets, so that series share
// some labels and not others, in any order) and checks that every
// TimeSeries decodes to its series' labels, samples and metadata: the
// symbols table's renumbering and the reuse of refs already handed out
// must never change what a reference means; and that the request is byte
// for byte referenceV2's.
func FuzzEncodeV2(f *testing.F) {
	f.Add([]byte("abcabcabc"), []byte{0, 1, 2, 0, 0, 1})
	f.Add([]byte("\x00\x01\x02\x03\xff\xfe"), []byte{3, 3, 2, 1, 0, 1, 2, 3})
	f.Add([]byte("zzzzzzzzzzzzzzzz"), []byte{})
	f.Fuzz(func(t *testing.T, shape, order []byte) {
		if len(shape) == 0 || len(shape) > 64 {
			return
		}
		st := newSeriesTable(testPairs, labels.EmptyLabels(), nil)
		fams := newFamilies()
		var all []*series
		for i := 0; i < len(shape); i += 4 {
			b := labels.NewScratchBuilder(5)
			b.Add("__name__", fmt.Sprint("m", shape[i]%3))
			for j, name := range []string{"a", "bb", "c"} {
				if i+j+1 < len(shape) && shape[i+j+1]%4 != 0 {
					b.Add(name, fmt.Sprint(shape[i+j+1]%7, "v"))
				}
			}
			b.Sort()
			ref := refOf(len(all))
			st.store([]record.RefSeries{{Ref: ref, Labels: b.Labels()}})
			fams.update(st, []record.RefMetadata{{Ref: ref, Type: uint8(record.Gauge), Help: fmt.Sprint("help ", shape[i]%2)}})
			s, _ := st.get(ref)
			all = append(all, s)
		}
		if len(order) == 0 {
			order = []byte{0}
		}
		batch := make([]sample, len(order))
		for i, o := range order {
			batch[i] = sample{series: all[int(o)%len(all)], t: int64(i + 1), v: float64(o)}
		}
		e := encoderV2{pairs: testPairs}
		checkReferenceV2(t, &e, batch)
		for range 2 { // the second time with every buffer reused
			r, err := e.encode(batch)
			if err != nil {
				t.Fatal(err)
			}
			req := decodeV2(t, r.body)
			var sb labels.ScratchBuilder
			i := 0
			for k, ts := range req.Timeseries {
				ls, err := ts.ToLabels(&sb, req.Symbols)
				if err != nil {
					t.Fatalf("series %d: %v", k, err)
				}
				if want := labelsOf(batch[i].series); !labels.Equal(ls, want) {
					t.Fatalf("series %d labels %s, want %s", k, ls, want)
				}
				m, err := ts.ToMetadata(req.Symbols)
				if want := batch[i].series.meta.Load(); err != nil || m.Help != want.help || m.Type != model.MetricTypeGauge {
					t.Fatalf("series %d metadata %+v (%v), want help %q", k, m, err, want.help)
				}
				for _, smp := range ts.Samples {
					if i >= len(batch) || smp.Value != batch[i].v || smp.Timestamp != batch[i].t || labelsOf(batch[i].series).String() != ls.String() {
						t.Fatalf("series %d: sample %+v does not match batch[%d]", k, smp, i)
					}
					i++
				}
			}
			if i != len(batch) {
				t.Fatalf("%d samples decoded, want %d", i, len(batch))
			}
		}
	})
}

// TestEncodeV2Allocs locks in that steady-state 2.0 encoding allocates
// nothing for float samples and float histograms (the symbols table, time
// series and ref slices are reused). Integer histograms cost one allocation
// each inside gogo's marshaller, as for 1.0.
func TestEncodeV2Allocs(t *testing.T) {
	cases := []struct {
		name      string
		mix       func(batch []sample)
		maxAllocs float64
	}{
		{name: "floats", mix: func([]sample) {}},
		{name: "floats with metadata", mix: func(batch []sample) { withMetadata(batch) }},
		{
			name: "float histograms",
			mix: func(batch []sample) {
				for i := 0; i < len(batch); i += 10 {
					batch[i].x = testHistogram(i).ToFloat(nil)
				}
			},
		},
		{
			name: "integer histograms",
			mix: func(batch []sample) {
				for i := 0; i < len(batch); i += 10 {
					batch[i].x = testHistogram(i)
				}
			},
			maxAllocs: 200,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			batch := benchBatch(2000)
			tc.mix(batch)
			e := encoderV2{pairs: testPairs}
			if _, err := e.encode(batch); err != nil {
				t.Fatal(err)
			}
			allocs := testing.AllocsPerRun(20, func() {
				if _, err := e.encode(batch); err != nil {
					t.Fatal(err)
				}
			})
			if allocs > tc.maxAllocs {
				t.Errorf("encode allocates %v times per batch of %d, want at most %v", allocs, len(batch), tc.maxAllocs)
			}
		})
	}
}

// TestQueue_V2Fallback sends 2.0 to Prometheus' handler accepting only 1.0:
// it answers 415, the batch arrives as 1.0 and the queue stays on 1.0.
func TestQueue_V2Fallback(t *testing.T) {
	rc := newReceiverFor(t, remoteapi.MessageTypes{remoteapi.WriteV1MessageType}, nil)
	log, end := floatLog(3, 4)
	r := startQueue(t, Options{
		Config: testConfig(t, rc.srv.URL, func(c *config.RemoteWriteConfig) {
			c.ProtobufMessage = remoteapi.WriteV2MessageType
			c.QueueConfig.MaxSamplesPerSend = 3 // several batches
		}),
		Log: log,
	})
	waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	checkInOrder(t, rc.store, 3, 4)
	hs := rc.requestHeaders()
	if len(hs) < 2 {
		t.Fatalf("%d requests, want a 2.0 one and then 1.0", len(hs))
	}
	for i, h := range hs {
		want := "0.1.0"
		if i == 0 {
			want = "2.0.0"
		}
		if got := h.Get("X-Prometheus-Remote-Write-Version"); got != want {
			t.Errorf("request %d: version %q, want %q", i, got, want)
		}
	}
	if r.q.v2.Load() {
		t.Error("queue still on 2.0")
	}
	if got := testutil.ToFloat64(r.q.metrics.samplesFailed); got != 0 {
		t.Errorf("samples_failed_total = %v, want 0", got)
	}
}

// TestQueue_V2Written checks how a 2xx answer's written counts are read:
// fewer than sent are counted dropped, none at all means a 1.0 receiver.
func TestQueue_V2Written(t *testing.T) {
	cases := []struct {
		name        string
		written     map[string]string // response headers on the first request
		wantDropped float64           // samples_dropped_total{reason="receiver_partial"}
		wantV2      bool
	}{
		{name: "all written", written: map[string]string{samplesWritten: "6"}, wantV2: true},
		{name: "partial", written: map[string]string{samplesWritten: "4", histogramsWritten: "0"}, wantDropped: 2, wantV2: true},
		{name: "garbage count is zero", written: map[string]string{samplesWritten: "x"}, wantDropped: 6, wantV2: true},
		{name: "no headers falls back", wantV2: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiverFor(t, remoteapi.MessageTypes{remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType},
				func(n int, w http.ResponseWriter, _ *http.Request) bool {
					if n > 1 {
						return false
					}
					for k, v := range tc.written {
						w.Header().Set(k, v)
					}
					w.WriteHeader(http.StatusNoContent)
					return true
				})
			log, end := floatLog(6, 1)
			r := startQueue(t, Options{
				Config: testConfig(t, rc.srv.URL, func(c *config.RemoteWriteConfig) {
					c.ProtobufMessage = remoteapi.WriteV2MessageType
				}),
				Log: log,
			})
			waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			if got := testutil.ToFloat64(r.q.metrics.samplesDropped.WithLabelValues(reasonPartial)); got != tc.wantDropped {
				t.Errorf("samples_dropped_total{reason=%q} = %v, want %v", reasonPartial, got, tc.wantDropped)
			}
			if got := r.q.v2.Load(); got != tc.wantV2 {
				t.Errorf("on 2.0 = %v, want %v", got, tc.wantV2)
			}
			if !tc.wantV2 {
				// Resent as 1.0 to the real handler.
				checkInOrder(t, rc.store, 6, 1)
			}
			if got := testutil.ToFloat64(r.q.metrics.samplesPending); got != 0 {
				t.Errorf("samples_pending = %v, want 0", got)
			}
		})
	}
}

// TestAppendRequestV2 checks our marshaller writes gogo's bytes, metadata,
// start timestamps, zeros and negative varints included.
func TestAppendRequestV2(t *testing.T) {
	batch := withMetadata(benchBatch(50))
	for i := 0; i < len(batch); i += 7 {
		batch[i].x = testHistogram(i)
		batch[i].st = int64(i) * 1000
	}
	batch[4].st = 1_700_000_000_000
	batch[3].x = testHistogram(3).ToFloat(nil)
	batch = append(batch, sample{series: batch[10].series, t: -5, v: 1, x: &exemplar{labels: []prompb.Label{{Name: "trace_id", Value: "x"}}}})
	batch[11].t = -1 // negative timestamps are 10-byte varints
	batch[12].st = -1
	batch[13].v = 0 // gogo leaves out zeros: +0, -0 and a zero time
	batch[15].v = math.Copysign(0, -1)
	batch[16].v = math.NaN()
	batch[17].t = 0
	e := encoderV2{pairs: testPairs}
	if _, err := e.encode(batch); err != nil {
		t.Fatal(err)
	}
	want, err := e.req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := appendRequestV2(nil, &e.req)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("appendRequestV2 wrote %d bytes differing from gogo's %d", len(got), len(want))
	}
}

func TestParseWritten(t *testing.T) {
	f := func(h map[string]string, want written) {
		t.Helper()
		hh := http.Header{}
		for k, v := range h {
			hh.Set(k, v)
		}
		if got := parseWritten(hh); got != want {
			t.Errorf("parseWritten(%v) = %+v, want %+v", h, got, want)
		}
	}
	f(nil, written{})
	f(map[string]string{samplesWritten: "12", histogramsWritten: "3", exemplarsWritten: "0"}, written{counts{12, 3, 0}, true})
	f(map[string]string{exemplarsWritten: " 7 "}, written{counts{exemplars: 7}, true})
	f(map[string]string{samplesWritten: "-1"}, written{confirmed: true})
	f(map[string]string{samplesWritten: "99999999999999999999999"}, written{confirmed: true})
	f(map[string]string{"X-Other": "5"}, written{})
}

func FuzzParseWritten(f *testing.F) {
	for _, s := range []string{"", "0", "12", "-1", " 7 ", "99999999999999999999999", "1e3"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, samples, histograms string) {
		h := http.Header{}
		h.Set(samplesWritten, samples)
		h.Set(histogramsWritten, histograms)
		w := parseWritten(h)
		if w.samples < 0 || w.histograms < 0 || w.exemplars != 0 {
			t.Errorf("parseWritten(%q, %q) = %+v", samples, histograms, w)
		}
	})
}

// TestQueue_V2OrphanExemplar sends a sample and its exemplar in separate
// batches: 2.0 cannot carry the exemplar alone, so it is counted dropped
// and no request is sent for it.
func TestQueue_V2OrphanExemplar(t *testing.T) {
	rc := newReceiverFor(t, remoteapi.MessageTypes{remoteapi.WriteV2MessageType}, nil)
	log := newFakeLog()
	base := nowMs() - 60_000
	end := log.append(
		seriesRec(rs(1, "__name__", "up")),
		samplesRec(record.RefSample{Ref: 1, T: base, V: 1}),
		fakeRecord{typ: record.Exemplars, exemplars: []record.RefExemplar{{Ref: 1, T: base, V: 1, Labels: labels.FromStrings("trace_id", "abc")}}},
	)
	r := startQueue(t, Options{
		Config: testConfig(t, rc.srv.URL, func(c *config.RemoteWriteConfig) {
			c.ProtobufMessage = remoteapi.WriteV2MessageType
			c.SendExemplars = true
			c.QueueConfig.MaxSamplesPerSend = 1 // every item its own batch
		}),
		Log: log,
	})
	waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := rc.store.count(); got != 1 {
		t.Errorf("receiver got %d points, want 1", got)
	}
	if got := rc.requestCount(); got != 1 {
		t.Errorf("%d requests, want 1", got)
	}
	if got := testutil.ToFloat64(r.q.metrics.exemplarsDropped.WithLabelValues(reasonOrphanExemplar)); got != 1 {
		t.Errorf("exemplars_dropped_total{reason=%q} = %v, want 1", reasonOrphanExemplar, got)
	}
	if got := testutil.ToFloat64(r.q.metrics.exemplarsPending); got != 0 {
		t.Errorf("exemplars_pending = %v, want 0", got)
	}
}

// TestQueue_StartTimestamps sends samples and histograms whose WAL records
// carry start (created) timestamps: 2.0 delivers them to Prometheus'
// handler, 1.0 has no field for them.
func TestQueue_StartTimestamps(t *testing.T) {
	for _, tc := range []struct {
		proto  remoteapi.WriteMessageType
		wantST bool
	}{
		{remoteapi.WriteV2MessageType, true},
		{remoteapi.WriteV1MessageType, false},
	} {
		t.Run(string(tc.proto), func(t *testing.T) {
			st := newTestStore()
			tr := newHandlerTransport(st, remoteapi.MessageTypes{tc.proto})
			base := nowMs()
			log := newFakeLog()
			end := log.append(
				seriesRec(rs(1, "__name__", "c_total"), rs(2, "__name__", "h")),
				fakeRecord{typ: record.SamplesV2, samples: []record.RefSample{
					{Ref: 1, ST: base - 5000, T: base, V: 1},
					{Ref: 1, ST: base - 5000, T: base + 1, V: 2},
				}},
				fakeRecord{typ: record.HistogramSamplesV2, hists: []record.RefHistogramSample{
					{Ref: 2, ST: base - 7000, T: base, H: testHistogram(1)},
				}},
			)
			r := startQueue(t, Options{
				Config: testConfig(t, "http://127.0.0.1:1/write", func(c *config.RemoteWriteConfig) {
					c.ProtobufMessage = tc.proto
					c.SendNativeHistograms = true
				}),
				Log:       log,
				Transport: tr,
			})
			waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				series string
				n      int
				st     int64
			}{
				{key("__name__", "c_total"), 2, base - 5000},
				{key("__name__", "h"), 1, base - 7000},
			} {
				pts := st.get(c.series)
				if len(pts) != c.n {
					t.Fatalf("%s: %d points, want %d", c.series, len(pts), c.n)
				}
				want := c.st
				if !tc.wantST {
					want = 0
				}
				for _, p := range pts {
					if p.st != want {
						t.Errorf("%s at %d: start timestamp %d, want %d", c.series, p.t, p.st, want)
					}
				}
			}
		})
	}
}

// referenceV2 builds, with Prometheus' writev2 types and a plain map of
// strings, the request encoderV2.encode is to write for batch (float
// samples and exemplars): time series grouped as encode groups them,
// symbols in the order symbolTable.finish gives them. Its gogo encoding
// is the byte-for-byte expectation.
func referenceV2(batch []sample) *writev2.Request {
	refs := map[string]uint32{"": 0}
	strs := []string{""}
	uses := []int{0}
	sym := func(s string) uint32 {
		if s == "" {
			return 0
		}
		r, ok := refs[s]
		if !ok {
			r = uint32(len(strs))
			refs[s] = r
			strs = append(strs, s)
			uses = append(uses, 0)
		}
		uses[r]++
		return r
	}
	var (
		req   writev2.Request
		owner []*series
	)
	for _, s := range batch {
		if ex, ok := s.x.(*exemplar); ok {
			j := len(owner) - 1
			for j >= 0 && owner[j] != s.series {
				j--
			}
			if j < 0 {
				continue
			}
			x := writev2.Exemplar{Value: s.v, Timestamp: s.t}
			for _, l := range ex.labels {
				x.LabelsRefs = append(x.LabelsRefs, sym(l.Name), sym(l.Value))
			}
			req.Timeseries[j].Exemplars = append(req.Timeseries[j].Exemplars, x)
			continue
		}
		if n := len(owner); n == 0 || owner[n-1] != s.series {
			var ts writev2.TimeSeries
			labelsOf(s.series).Range(func(l labels.Label) {
				ts.LabelsRefs = append(ts.LabelsRefs, sym(l.Name), sym(l.Value))
			})
			if f := s.series.meta.Load(); f != nil {
				ts.Metadata = writev2.Metadata{Type: f.v2Type, HelpRef: sym(f.help), UnitRef: sym(f.unit)}
			}
			req.Timeseries = append(req.Timeseries, ts)
			owner = append(owner, s.series)
		}
		ts := &req.Timeseries[len(req.Timeseries)-1]
		ts.Samples = append(ts.Samples, writev2.Sample{Value: s.v, Timestamp: s.t, StartTimestamp: s.st})
	}
	var order []int
	for r := 1; r < len(strs); r++ {
		if uses[r] > 1 {
			order = append(order, r)
		}
	}
	sort.SliceStable(order, func(i, j int) bool { return uses[order[i]] > uses[order[j]] })
	for r := 1; r < len(strs); r++ {
		if uses[r] <= 1 {
			order = append(order, r)
		}
	}
	final := make([]uint32, len(strs))
	req.Symbols = []string{""}
	for i, r := range order {
		final[r] = uint32(i + 1)
		req.Symbols = append(req.Symbols, strs[r])
	}
	rewrite := func(refs []uint32) {
		for i, r := range refs {
			refs[i] = final[r]
		}
	}
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		rewrite(ts.LabelsRefs)
		for j := range ts.Exemplars {
			rewrite(ts.Exemplars[j].LabelsRefs)
		}
		ts.Metadata.HelpRef, ts.Metadata.UnitRef = final[ts.Metadata.HelpRef], final[ts.Metadata.UnitRef]
	}
	return &req
}

// checkReferenceV2 encodes batch with e and fails unless the request is,
// before snappy, byte for byte referenceV2's in gogo's encoding.
func checkReferenceV2(t testing.TB, e *encoderV2, batch []sample) {
	t.Helper()
	if _, err := e.encode(batch); err != nil {
		t.Fatal(err)
	}
	want, err := referenceV2(batch).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.pb, want) {
		var got writev2.Request
		_ = got.Unmarshal(e.pb)
		t.Fatalf("request differs from the reference:\n got %v\nwant %v", got.Symbols, referenceV2(batch).Symbols)
	}
}

// TestEncodeV2Reference checks encoderV2's requests against referenceV2,
// byte for byte, on batches whose series repeat in and out of order,
// share some pairs (and some strings across pairs: a value that is also
// a name) and not others, with metadata and exemplars; each batch twice
// with a new encoder, then with one shared by all, so that nothing of a
// request leaks into the next.
func TestEncodeV2Reference(t *testing.T) {
	st := newSeriesTable(testPairs, labels.FromStrings("cluster", "c1"), nil)
	fams := newFamilies()
	var all []*series
	for i := range 40 {
		ref := refOf(i)
		st.store([]record.RefSeries{{Ref: ref, Labels: labels.FromStrings(
			"__name__", fmt.Sprint("m", i%3), "code", fmt.Sprint(200+i%2), "mode", []string{"idle", "code", "user"}[i%3],
			"pod", fmt.Sprint("p", i/4))}})
		if i%5 != 0 {
			fams.update(st, []record.RefMetadata{{Ref: ref, Type: uint8(record.Counter), Help: fmt.Sprint("help ", i%2), Unit: "seconds"}})
		}
		s, _ := st.get(ref)
		all = append(all, s)
	}
	// Series each of whose labels but the first its predecessor had: the
	// pairs named before sit at positions no new pair had yet.
	var growing []sample
	for i, name := range []string{"e", "d", "c", "b", "a"} {
		b := labels.NewBuilder(labels.FromStrings(name, "v"))
		for _, n := range []string{"e", "d", "c", "b", "a"}[:i] {
			b.Set(n, "v")
		}
		if i == 4 {
			b.Set("f", "v")
		}
		ref := refOf(100 + i)
		st.store([]record.RefSeries{{Ref: ref, Labels: b.Labels()}})
		s, _ := st.get(ref)
		growing = append(growing, sample{series: s, t: 1, v: 1})
	}
	ex := func(v string) *exemplar {
		return &exemplar{labels: []prompb.Label{{Name: "trace_id", Value: v}, {Name: "pod", Value: "p1"}}}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	cases := map[string][]sample{
		"in order":     nil,
		"shuffled":     nil,
		"exemplars":    nil,
		"node series":  withMetadata(benchBatch(2000)),
		"one sample":   {{series: all[3], t: 5, v: 1}},
		"labels grow":  growing,
		"st and zeros": {{series: all[1], t: 5, st: 2}, {series: all[1], t: 6, st: 2, v: 1}, {series: all[2]}},
	}
	for i := range 3 * len(all) {
		cases["in order"] = append(cases["in order"], sample{series: all[i%len(all)], t: int64(i), v: float64(i)})
		cases["shuffled"] = append(cases["shuffled"], sample{series: all[rng.IntN(len(all))], t: int64(i), v: float64(i)})
		s := sample{series: all[rng.IntN(8)], t: int64(i), v: 1}
		if i%3 == 0 {
			s.x = ex(fmt.Sprint(i % 5))
		}
		cases["exemplars"] = append(cases["exemplars"], s)
	}
	shared := encoderV2{pairs: testPairs} // every case, in random order
	for name, batch := range cases {
		t.Run(name, func(t *testing.T) {
			e := encoderV2{pairs: testPairs}
			for range 2 {
				checkReferenceV2(t, &e, batch)
			}
			checkReferenceV2(t, &shared, batch)
		})
	}
}
