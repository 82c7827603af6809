package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"

	"github.com/rwagent/rwagent/pkg/config"
)

// hostileRequest is a decoded request of n series of the fewest bytes
// each: remote write 1.0's empty TimeSeries (2 bytes), or 2.0's series
// of one label pair of refs 0 and 1 (6 bytes, after 2 symbols).
func hostileRequest(n int, isV2 bool) []byte {
	if !isV2 {
		return bytes.Repeat([]byte{0x0a, 0x00}, n)
	}
	raw := []byte{0x22, 0x08, '_', '_', 'n', 'a', 'm', 'e', '_', '_', 0x22, 0x01, 'm'}
	return append(raw, bytes.Repeat([]byte{0x2a, 0x04, 0x0a, 0x02, 0x00, 0x01}, n)...)
}

// oneSeries is a 1.0 request of one series whose content is part
// repeated n times: minimal labels, samples, histograms or exemplars.
func oneSeries(part []byte, n int) []byte {
	return field(0x0a, bytes.Repeat(part, n))
}

// field is a length-delimited field of tag tag holding b.
func field(tag byte, b []byte) []byte {
	return append(appendUvarint([]byte{tag}, uint64(len(b))), b...)
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// allocatedBytes is how many bytes f allocates, garbage included.
func allocatedBytes(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestDecodeHostileSeriesMemory: a request of millions of minimal series
// is refused, naming the gateway's bound, before its bookkeeping is
// allocated. The decoder allocates about 100 bytes per series it reads
// and a series can take 2 bytes of the body: without the bound these 4
// million series cost 2.5 GB (1.0) and 4 GB (2.0) to decode, and a
// request at the default decoded-size bound (80 MiB) ten times that.
func TestDecodeHostileSeriesMemory(t *testing.T) {
	l := limits{maxDecodedBytes: 80 << 20, tenantLabel: "tenant", tenant: "t"}
	for _, isV2 := range []bool{false, true} {
		raw := hostileRequest(4_000_000, isV2)
		var d decoder
		var err error
		got := allocatedBytes(func() { _, err = decodeWith(&d, raw, isV2, l, nil) })
		t.Logf("v2=%t: 4,000,000 series in %d bytes: %d MiB allocated", isV2, len(raw), got>>20)
		de, ok := errors.AsType[*decodeError](err)
		if !ok || de.status != 413 || de.reason != reasonTooManySeries {
			t.Fatalf("v2=%t: got %v, want a 413 %s", isV2, err, reasonTooManySeries)
		}
		if want := fmt.Sprint(config.MaxSeriesPerRequest); !bytes.Contains([]byte(de.msg), []byte(want)) {
			t.Errorf("v2=%t: message %q does not name the bound %s", isV2, de.msg, want)
		}
		// The series read up to the bound, their slice grown step by
		// step (garbage included).
		if max := uint64(96 << 20); got > max {
			t.Errorf("v2=%t: %d bytes allocated, want at most %d", isV2, got, max)
		}
	}
}

// TestDecodeCostBound: each part of a request whose bookkeeping is much
// larger than its bytes on the wire (labels, samples, histograms,
// exemplars, 2.0 symbols and refs, the label sets built from 2.0's
// symbols) is charged before it is allocated, and a request over the
// bound is refused with 413 having allocated a small multiple of it.
func TestDecodeCostBound(t *testing.T) {
	const bound = 4 << 20
	bigSym := bytes.Repeat([]byte{'v'}, 2000)
	v2BigLabels := []byte{0x22, 0x08, '_', '_', 'n', 'a', 'm', 'e', '_', '_', 0x22, 0x01, 'm', 0x22, 0x01, 'a', 0x22, 0x01, 'b'}
	v2BigLabels = append(v2BigLabels, 0x22, 0xd0, 0x0f) // 2000
	v2BigLabels = append(v2BigLabels, bigSym...)
	// Series of __name__="m", a=<2000 bytes>, b=<2000 bytes>: 10 bytes
	// on the wire, 8 kB of key and labels each.
	v2BigLabels = append(v2BigLabels, bytes.Repeat([]byte{0x2a, 0x08, 0x0a, 0x06, 0x00, 0x01, 0x02, 0x04, 0x03, 0x04}, 5_000)...)
	for _, c := range []struct {
		name string
		raw  []byte
		isV2 bool
	}{
		{"1.0 labels", oneSeries([]byte{0x0a, 0x00}, 1_000_000), false},
		{"1.0 samples", oneSeries([]byte{0x12, 0x00}, 1_000_000), false},
		{"1.0 exemplars", oneSeries([]byte{0x1a, 0x02, 0x0a, 0x00}, 500_000), false},
		{"1.0 histograms", oneSeries([]byte{0x22, 0x00}, 500_000), false},
		{"1.0 histogram buckets", oneSeries(field(0x22, field(0x52, make([]byte, 1_000_000))), 1), false},
		{"2.0 symbols", bytes.Repeat([]byte{0x22, 0x00}, 1_000_000), true},
		{"2.0 refs", append([]byte{0x22, 0x00}, field(0x2a, field(0x0a, make([]byte, 2_000_000)))...), true},
		{"2.0 label sets from symbols", v2BigLabels, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := limits{maxDecodedBytes: 80 << 20, tenantLabel: "tenant", tenant: "t", maxDecodeCost: bound}
			var d decoder
			var err error
			got := allocatedBytes(func() { _, err = decodeWith(&d, c.raw, c.isV2, l, nil) })
			de, ok := errors.AsType[*decodeError](err)
			if !ok || de.status != 413 || de.reason != reasonDecodeTooLarge {
				t.Fatalf("got %v, want a 413 %s", err, reasonDecodeTooLarge)
			}
			t.Logf("%d bytes: %d KiB allocated: %s", len(c.raw), got>>10, de.msg)
			if max := uint64(8 * bound); got > max {
				t.Errorf("%d bytes allocated, want at most %d", got, max)
			}
		})
	}
}

// TestDecodeOrdinaryLargeRequest: a large request of an ordinary sender
// (20,000 series of 15 labels and a sample each, ten times Prometheus'
// default) is charged under half the bound, and a request of
// config.MaxSeriesPerRequest series is taken whole.
func TestDecodeOrdinaryLargeRequest(t *testing.T) {
	l := limits{maxDecodedBytes: 80 << 20, tenantLabel: "tenant", tenant: "t"}
	for _, c := range []struct {
		series, labels int
		maxCost        int
	}{
		{20_000, 15, maxDecodeCost / 2},
		{config.MaxSeriesPerRequest, 3, maxDecodeCost},
	} {
		req := prompb.WriteRequest{}
		for i := range c.series {
			ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "http_requests_total"}}, Samples: []prompb.Sample{{Timestamp: 1700000000000, Value: 1}}}
			for j := 1; j < c.labels; j++ {
				ts.Labels = append(ts.Labels, prompb.Label{Name: fmt.Sprintf("label_%02d", j), Value: fmt.Sprintf("value-%d-%d", j, i)})
			}
			req.Timeseries = append(req.Timeseries, ts)
		}
		raw, err := req.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		{
			var d decoder
			b, err := decodeWith(&d, raw, false, l, nil)
			if err != nil {
				t.Fatalf("%d series: %v", c.series, err)
			}
			if len(b.series) != c.series {
				t.Errorf("%d series decoded, want %d", len(b.series), c.series)
			}
			t.Logf("%d series of %d labels, %d bytes: charged %d MiB", c.series, c.labels, len(raw), d.cost>>20)
			if d.cost > c.maxCost {
				t.Errorf("%d series of %d labels: charged %d bytes, want at most %d", c.series, c.labels, d.cost, c.maxCost)
			}
		}
	}
}

// TestHostileRequestRefused: over HTTP, a request of more series than
// the gateway takes, and one of too much to decode, are refused 413
// naming the bound and counted by reason, and the gateway then takes an
// ordinary request.
func TestHostileRequestRefused(t *testing.T) {
	e := newEnv(t, Tenant{}, nil)
	exemplars := oneSeries([]byte{0x1a, 0x02, 0x0a, 0x00}, 4_000_000) // 16 MB decoded, 640 MB of bookkeeping
	for _, c := range []struct {
		name, ct string
		raw      []byte
		reason   string
		msg      string
	}{
		{"1.0 series", ctV1, hostileRequest(10_000_000, false), reasonTooManySeries, "more than 100000 series"},
		{"2.0 series", ctV2, hostileRequest(5_000_000, true), reasonTooManySeries, "more than 100000 series"},
		{"1.0 exemplars", ctV1, exemplars, reasonDecodeTooLarge, "over 64 MiB"},
	} {
		resp, msg := e.post(keyA, c.ct, snappy.Encode(nil, c.raw))
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(msg, c.msg) {
			t.Errorf("%s: %d %q, want 413 naming %q", c.name, resp.StatusCode, msg, c.msg)
		}
		if v := testutil.ToFloat64(e.g.metrics.rejected.WithLabelValues("team-a", c.reason)); v == 0 {
			t.Errorf("%s: not counted as rejected for %s", c.name, c.reason)
		}
	}
	if resp, msg := e.post(keyA, ctV1, v1(ts([]string{"__name__", "up"}, 1, 1))); resp.StatusCode != http.StatusNoContent {
		t.Errorf("an ordinary request after them: %d %s", resp.StatusCode, msg)
	}
}

// TestTenantSeriesLimitOverGateway: a tenant's max_series_per_request
// above the gateway's own limit cannot be honoured, so New and Reload
// refuse it by name.
func TestTenantSeriesLimitOverGateway(t *testing.T) {
	e := newEnv(t, Tenant{MaxSeriesPerRequest: config.MaxSeriesPerRequest}, nil)
	opts := e.opts
	opts.Keys = []Key{{Digest: e.opts.Keys[0].Digest, Tenant: &Tenant{Name: "team-a", MaxSeriesPerRequest: config.MaxSeriesPerRequest + 1}}}
	err := e.g.Reload(opts)
	if err == nil || !strings.Contains(err.Error(), "max_series_per_request 100001") || !strings.Contains(err.Error(), `"team-a"`) {
		t.Errorf("reload: %v, want max_series_per_request refused by name", err)
	}
	opts.Registerer = nil
	if _, err := New(opts); err == nil || !strings.Contains(err.Error(), "max_series_per_request") {
		t.Errorf("New: %v, want max_series_per_request refused by name", err)
	}
}
