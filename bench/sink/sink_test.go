package sink

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const v2ContentType = "application/x-protobuf;proto=io.prometheus.write.v2.Request"

func v1Request(t *testing.T, name, pod string, ts []int64, vals ...float64) []byte {
	t.Helper()
	series := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: name}, {Name: "pod", Value: pod}}}
	for i, v := range vals {
		series.Samples = append(series.Samples, prompb.Sample{Timestamp: ts[i], Value: v})
	}
	raw, err := (&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{series}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

func v2Request(t *testing.T, name, pod string, ts []int64, vals ...float64) []byte {
	t.Helper()
	series := writev2.TimeSeries{LabelsRefs: []uint32{1, 2, 3, 4}}
	for i, v := range vals {
		series.Samples = append(series.Samples, writev2.Sample{Timestamp: ts[i], Value: v})
	}
	req := &writev2.Request{Symbols: []string{"", "__name__", name, "pod", pod}, Timeseries: []writev2.TimeSeries{series}}
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

func TestSinkCounts(t *testing.T) {
	base := time.UnixMilli(1_000_000)
	ms := func(d time.Duration) int64 { return base.Add(d).UnixMilli() }
	type post struct {
		v2   bool
		body []byte
	}
	for _, tc := range []struct {
		name    string
		posts   func(t *testing.T) []post
		want    Counts // WireBytes is checked apart
		winN    int64
		series  int
		p99     time.Duration
		latency time.Duration // arrival = base + latency
	}{
		{
			name: "v1 duplicate and out of order",
			posts: func(t *testing.T) []post {
				return []post{
					{false, v1Request(t, "a", "p1", []int64{ms(0), ms(time.Second)}, 1, 2)},
					{false, v1Request(t, "a", "p1", []int64{ms(time.Second), ms(500 * time.Millisecond)}, 2, 3)},
					{false, v1Request(t, "up", "p1", []int64{ms(0)}, 1)},
				}
			},
			want:    Counts{Requests: 3, V1: 3, Samples: 5, Report: 1, Duplicates: 1, OutOfOrder: 1},
			winN:    4,
			series:  1,
			latency: 2 * time.Second,
			p99:     2 * time.Second,
		},
		{
			name: "v2 with staleness marker",
			posts: func(t *testing.T) []post {
				return []post{
					{true, v2Request(t, "b", "p1", []int64{ms(0)}, 1)},
					{true, v2Request(t, "b", "p2", []int64{ms(0), ms(time.Second)}, 1, math.Float64frombits(value.StaleNaN))},
				}
			},
			want:    Counts{Requests: 2, V2: 2, Samples: 2, Stale: 1},
			winN:    2,
			series:  2,
			latency: 3 * time.Second,
			p99:     3 * time.Second,
		},
		{
			name: "garbage",
			posts: func(t *testing.T) []post {
				return []post{{false, []byte("not snappy")}, {true, snappy.Encode(nil, []byte{0xff, 0xff})}}
			},
			want: Counts{Rejected: 2},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSink(func() time.Time { return base.Add(tc.latency) })
			s.SetWindow(base, base.Add(time.Minute))
			var wire int64
			for _, p := range tc.posts(t) {
				req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(p.body))
				if p.v2 {
					req.Header.Set("Content-Type", v2ContentType)
				}
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, req)
				if tc.want.Rejected == 0 {
					if rec.Code != http.StatusNoContent {
						t.Fatalf("status %d: %s", rec.Code, rec.Body)
					}
					wire += int64(len(p.body))
				}
			}
			got := s.Counts()
			tc.want.WireBytes = wire
			if got != tc.want {
				t.Errorf("Counts() = %+v\nwant       %+v", got, tc.want)
			}
			w := s.Window()
			if w.Samples != tc.winN || w.Series != tc.series || w.P99 > tc.p99 || (tc.winN > 0 && w.P50 <= 0) {
				t.Errorf("Window() = %+v, want %d samples, %d series, p99 ≤ %s", w, tc.winN, tc.series, tc.p99)
			}
		})
	}
}

func TestSinkServes(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	now := time.Now().UnixMilli()
	client := &http.Client{Transport: &http.Transport{}}
	resp, err := client.Post(s.URL(), v2ContentType, bytes.NewReader(v2Request(t, "c", "p", []int64{now}, 1)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	client.CloseIdleConnections()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("X-Prometheus-Remote-Write-Samples-Written") != "1" {
		t.Errorf("status %d, samples written %q", resp.StatusCode, resp.Header.Get("X-Prometheus-Remote-Write-Samples-Written"))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c := s.Counts(); c.Samples != 1 || c.V2 != 1 {
		t.Errorf("Counts() = %+v", c)
	}
}

// FuzzServeHTTP feeds arbitrary bodies of both protocols to the sink:
// it must answer, never panic.
func FuzzServeHTTP(f *testing.F) {
	f.Add(false, []byte("x"))
	f.Add(true, snappy.Encode(nil, []byte{0x22, 0x01, 0x00}))
	s := newSink(time.Now)
	f.Fuzz(func(t *testing.T, v2 bool, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(snappy.Encode(nil, body)))
		if v2 {
			req.Header.Set("Content-Type", v2ContentType)
		}
		s.ServeHTTP(httptest.NewRecorder(), req)
	})
}
