package receive

import (
	"net/http"
	"strings"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

const rw2Type = "application/x-protobuf;proto=io.prometheus.write.v2.Request"

// FuzzWriteRequest feeds decodeWriteRequest any body, 1.0 or 2.0, and checks
// that what it decodes survives ampemu's rewrite: dropping the replica label
// and a series, encoding and decoding again gives the rewritten labels.
func FuzzWriteRequest(f *testing.F) {
	v1, err := testRequest(1000).Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(snappy.Encode(nil, v1), false)
	st := writev2.NewSymbolTable()
	req := &writev2.Request{Timeseries: []writev2.TimeSeries{{
		LabelsRefs: st.SymbolizeLabels(labels.FromStrings("__name__", "m", "__replica__", "r", "cluster", "c"), nil),
		Samples:    []writev2.Sample{{Value: 1, Timestamp: 1}},
	}}}
	req.Symbols = st.Symbols()
	v2, err := req.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(snappy.Encode(nil, v2), true)
	f.Add([]byte("not snappy"), false)

	f.Fuzz(func(t *testing.T, body []byte, isV2 bool) {
		r, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1/", nil)
		r.Header.Set("Content-Type", rw1Type)
		if isV2 {
			r.Header.Set("Content-Type", rw2Type)
		}
		wr, err := decodeWriteRequest(r, body)
		if err != nil {
			return
		}
		wr.dropLabel("__replica__")
		keep := make([]bool, len(wr.labels))
		for i := range keep {
			keep[i] = i != 0
		}
		wr.filter(keep)
		want := wr.labels
		again, err := wr.encode()
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		wr2, err := decodeWriteRequest(r, again)
		if err != nil {
			t.Fatalf("decode what we encoded: %v", err)
		}
		if len(wr2.labels) != len(want) {
			t.Fatalf("%d series after the round trip, want %d", len(wr2.labels), len(want))
		}
		for i := range want {
			if want[i].Has("__replica__") {
				t.Fatalf("series %d kept __replica__: %s", i, want[i])
			}
			if !labels.Equal(wr2.labels[i], want[i]) {
				t.Fatalf("series %d: %s after the round trip, want %s", i, wr2.labels[i], want[i])
			}
		}
	})
}

func TestDecodeWriteRequest_LeavesOthersToPrometheus(t *testing.T) {
	body := encode(t, &prompb.WriteRequest{})
	for _, c := range []struct{ ct, enc string }{
		{"text/plain", ""},
		{"application/x-protobuf;proto=io.prometheus.write.v9.Request", ""},
		{rw1Type, "gzip"},
	} {
		r, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1/", nil)
		r.Header.Set("Content-Type", c.ct)
		r.Header.Set("Content-Encoding", c.enc)
		if _, err := decodeWriteRequest(r, body); err == nil {
			t.Errorf("%s %s: decoded, want it left to Prometheus' handler", c.ct, c.enc)
		}
	}
}

// TestRemoteWrite_SnappyHeaderLies sends a tiny body whose snappy header
// claims 4 GiB: it is refused without allocating that (Prometheus' handler
// would snappy.Decode it whole).
func TestRemoteWrite_SnappyHeaderLies(t *testing.T) {
	ts := newTestServer(t, Options{Limits: Limits{MaxLabelValueLength: -1}}) // for the padding below
	body := []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x00}                       // varint 2^32-1, then a literal tag
	resp, b := ts.post(t, ts.url("/api/v1/remote_write"), rw1Type, bodyOf(body))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "snappy-decoded length larger than the body can hold") {
		t.Fatalf("answer %s %q, want 400 naming the snappy length", resp.Status, b)
	}
	// A real body that compresses well still passes.
	zeros := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "z"}, {Name: "pad", Value: strings.Repeat("0", 100_000)}},
		Samples: []prompb.Sample{{Value: 0, Timestamp: base()}},
	}}}
	raw, err := zeros.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	enc := snappy.Encode(nil, raw)
	if len(raw) < 10*len(enc) {
		t.Fatalf("test body compresses only %d → %d", len(raw), len(enc))
	}
	if resp, b := ts.post(t, ts.url("/api/v1/remote_write"), rw1Type, bodyOf(enc)); resp.StatusCode != http.StatusOK {
		t.Errorf("well-compressed body: %s %q, want 200", resp.Status, b)
	}
}
