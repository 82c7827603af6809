package gateway

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/rwagent/rwagent/pkg/wal"
)

// BenchmarkReceive is the receive path of one request of 2,000 samples
// (2,000 series of one sample each, as Prometheus sends by default):
// authentication, decode, validation, tenant label, series cache, and the
// WAL write (fsync never, so the disk does not dominate), for remote
// write 1.0 and 2.0. The series are cached after the first request, as a
// steady sender's are. It reports ns/sample.
func BenchmarkReceive(b *testing.B) {
	const series = 2000
	pairs := func(i int) []string {
		return []string{"__name__", fmt.Sprintf("metric_%d", i%50), "instance", "host-1:9100", "job", "node", "series", fmt.Sprint(i)}
	}
	v1Req := prompb.WriteRequest{}
	st := writev2.NewSymbolTable()
	v2Req := writev2.Request{}
	for i := range series {
		p := pairs(i)
		ts := prompb.TimeSeries{Samples: []prompb.Sample{{Timestamp: 1700000000000, Value: float64(i)}}}
		for j := 0; j < len(p); j += 2 {
			ts.Labels = append(ts.Labels, prompb.Label{Name: p[j], Value: p[j+1]})
		}
		v1Req.Timeseries = append(v1Req.Timeseries, ts)
		v2Req.Timeseries = append(v2Req.Timeseries, writev2.TimeSeries{
			LabelsRefs: st.SymbolizeLabels(labels.FromStrings(p...), nil),
			Samples:    []writev2.Sample{{Timestamp: 1700000000000, Value: float64(i)}},
		})
	}
	v2Req.Symbols = st.Symbols()
	raw1, err := v1Req.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	raw2, err := v2Req.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name, ct string
		body     []byte
	}{
		{"rw1", ctV1, snappy.Encode(nil, raw1)},
		{"rw2", ctV2, snappy.Encode(nil, raw2)},
	} {
		b.Run(c.name, func(b *testing.B) {
			w, err := wal.Open(wal.Options{Dir: b.TempDir(), Fsync: wal.FsyncNever}, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			g, err := New(Options{
				Keys:        []Key{{Digest: sha256.Sum256([]byte(keyA)), Tenant: &Tenant{Name: "team-a"}}},
				TenantLabel: "tenant",
				Storage:     w,
				SeriesIdle:  time.Hour,
			})
			if err != nil {
				b.Fatal(err)
			}
			defer g.Close()
			h := g.Handler()
			post := func() {
				req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(c.body))
				req.Header.Set("Authorization", "Bearer "+keyA)
				req.Header.Set("Content-Encoding", "snappy")
				req.Header.Set("Content-Type", c.ct)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusNoContent {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
			post() // the series records, once
			b.ReportAllocs()
			b.SetBytes(int64(len(c.body)))
			b.ResetTimer()
			for b.Loop() {
				post()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*series), "ns/sample")
		})
	}
}
