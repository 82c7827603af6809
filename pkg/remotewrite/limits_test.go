package remotewrite

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/ampquota"
	"github.com/rwagent/rwagent/pkg/offheap"
)

// sizeTransport records the size of every request body and passes it on.
type sizeTransport struct {
	next http.RoundTripper

	mu    sync.Mutex
	sizes []int
}

func (s *sizeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.sizes = append(s.sizes, len(body))
	s.mu.Unlock()
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(bytes.NewReader(body))
	return s.next.RoundTrip(r2)
}

// TestQueue_SplitsLargeRequests lowers the request size limit: every
// request fits, and everything arrives once, in order.
func TestQueue_SplitsLargeRequests(t *testing.T) {
	const nSeries, nRecs, limit = 10, 30, 250
	st := newTestStore()
	tr := &sizeTransport{next: newHandlerTransport(st, remoteapi.MessageTypes{remoteapi.WriteV1MessageType})}
	log, end := floatLog(nSeries, nRecs)
	q, err := New(t.Context(), Options{Config: testConfig(t, "http://127.0.0.1:1/write", nil), Log: log, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	q.maxBytes = limit
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	waitFor(t, "acked at end", func() bool { return q.Acked() == end })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkInOrder(t, st, nSeries, nRecs)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.sizes) < 2 {
		t.Fatalf("%d requests, want the batches split", len(tr.sizes))
	}
	for i, n := range tr.sizes {
		if n > limit {
			t.Errorf("request %d is %d bytes, over the %d limit", i, n, limit)
		}
	}
}

// TestQueue_AMPLabelLimits sends to an AMP URL (served in process): a
// series over one of AMP's per-series limits is dropped, counted under its
// reason and logged; the others arrive.
func TestQueue_AMPLabelLimits(t *testing.T) {
	many := []string{"__name__", "wide"}
	for i := range ampquota.LabelsPerSeries {
		many = append(many, fmt.Sprintf("l%02d", i), "v")
	}
	for _, tc := range []struct {
		name    string
		bad     []string
		reason  string
		wantLog []string
	}{
		{"too many labels", many, reasonTooManyLabels, []string{"more labels than the receiver accepts", "l69"}},
		{"name too long", []string{"__name__", "long_name", strings.Repeat("n", ampquota.LabelNameBytes+1), "v"}, reasonLabelTooLong,
			[]string{"label longer than the receiver accepts", "long_name", "bytes=1025"}},
		{"value too long", []string{"__name__", "long_value", "path", strings.Repeat("v", ampquota.LabelValueBytes+1)}, reasonLabelTooLong,
			[]string{"label longer than the receiver accepts", "long_value", "label=path", "bytes=2049"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newTestStore()
			tr := newHandlerTransport(st, remoteapi.MessageTypes{remoteapi.WriteV1MessageType})
			log := newFakeLog()
			base := nowMs()
			end := log.append(
				seriesRec(rs(1, "__name__", "up"), rs(2, tc.bad...)),
				samplesRec(record.RefSample{Ref: 1, T: base, V: 1}, record.RefSample{Ref: 2, T: base, V: 2}, record.RefSample{Ref: 2, T: base + 1, V: 3}),
			)
			var logs syncBuffer
			r := startQueue(t, Options{
				Config:    testConfig(t, "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write", nil),
				Log:       log,
				Transport: tr,
				Limits:    AMPLimits(), // what cmd/rwagent gives an AMP URL
				Logger:    slog.New(slog.NewTextHandler(&logs, nil)),
			})
			waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			if got := st.get(key("__name__", "up")); len(got) != 1 {
				t.Errorf("series up: got %d samples, want 1", len(got))
			}
			if got := st.count(); got != 1 {
				t.Errorf("receiver stored %d samples, want 1", got)
			}
			if got := testutil.ToFloat64(r.q.metrics.samplesDropped.WithLabelValues(tc.reason)); got != 2 {
				t.Errorf("samples_dropped_total{reason=%s} = %v, want 2", tc.reason, got)
			}
			for _, w := range tc.wantLog {
				if !strings.Contains(logs.String(), w) {
					t.Errorf("log lacks %q: %s", w, logs.String())
				}
			}
		})
	}
}

// TestQueue_LabelLimitsOnlyForAMP: the same long label goes to a receiver
// that is not AMP.
func TestQueue_LabelLimitsOnlyForAMP(t *testing.T) {
	st := newTestStore()
	tr := newHandlerTransport(st, remoteapi.MessageTypes{remoteapi.WriteV1MessageType})
	log := newFakeLog()
	end := log.append(
		seriesRec(rs(1, "__name__", "long", "path", strings.Repeat("v", ampquota.LabelValueBytes+1))),
		samplesRec(record.RefSample{Ref: 1, T: nowMs(), V: 1}),
	)
	r := startQueue(t, Options{Config: testConfig(t, "http://127.0.0.1:1/write", nil), Log: log, Transport: tr})
	waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := st.count(); got != 1 {
		t.Errorf("receiver stored %d samples, want 1", got)
	}
}

func TestSeriesLimits(t *testing.T) {
	lim := seriesLimits{maxLabels: 2, maxNameBytes: 3, maxValueBytes: 4}
	for _, tc := range []struct {
		kv     []string
		over   bool
		reason int
		label  string
	}{
		{[]string{"a", "1234"}, false, 0, ""},
		{[]string{"a", "1", "b", "2", "c", "3"}, true, dropTooManyLabels, ""},
		{[]string{"abcd", "1"}, true, dropLabelTooLong, "abcd"},
		{[]string{"a", "12345"}, true, dropLabelTooLong, "a"},
		{[]string{"a", "1", "b", "12345"}, true, dropLabelTooLong, "b"},
	} {
		o, over := lim.check(labels.FromStrings(tc.kv...))
		if over != tc.over || (over && (o.reason != tc.reason || o.label != tc.label)) {
			t.Errorf("check(%v) = %+v, %v; want reason %d label %q, %v", tc.kv, o, over, tc.reason, tc.label, tc.over)
		}
	}
	if _, over := (seriesLimits{}).check(labels.FromStrings("a", strings.Repeat("x", 1<<16))); over {
		t.Error("zero limits refused a series")
	}
}

// TestQueue_FreesOffHeap: a queue of 20,000 series sending 2.0 requests of
// 10,000 samples grows its pair table's index and its shards' pair-ref
// indexes off the Go heap, and gives every mapped byte back when Run
// returns. (The pair table's index shrinks back onto the heap as the
// series table's close releases every pair; the shards' free theirs as
// they stop.)
func TestQueue_FreesOffHeap(t *testing.T) {
	const nSeries = 20_000
	st := newTestStore()
	tr := newHandlerTransport(st, remoteapi.MessageTypes{remoteapi.WriteV2MessageType})
	log, end := floatLog(nSeries, 2)
	base := offheap.Mapped()
	q, err := New(t.Context(), Options{Config: testConfig(t, "http://127.0.0.1:1/write", func(c *config.RemoteWriteConfig) {
		c.ProtobufMessage = remoteapi.WriteV2MessageType
		c.QueueConfig.MaxSamplesPerSend = nSeries / 2
		c.QueueConfig.Capacity = nSeries
		c.QueueConfig.MinShards = 2
	}), Log: log, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	waitFor(t, "acked at end", func() bool { return q.Acked() == end })
	if runtime.GOOS == "linux" && offheap.Mapped() == base {
		t.Errorf("nothing mapped for %d series", nSeries)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := st.count(); got != 2*nSeries {
		t.Errorf("%d samples arrived, want %d", got, 2*nSeries)
	}
	if got := offheap.Mapped(); got != base {
		t.Errorf("%d bytes mapped after Run returned, want %d", got, base)
	}
}
