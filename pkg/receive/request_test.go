package receive

import (
	"net/http"
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
