package gateway

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
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
// authentication, snappy decompression, decode, validation, tenant label,
// series cache, and the WAL write (fsync never, so the disk does not
// dominate), for remote write 1.0 and 2.0, through the handler. It does
// not measure the HTTP server and its connection, nor the sender's
// snappy compression, nor sending on from the WAL. The series are cached
// after the first request, as a steady sender's are. It reports
// ns/sample.
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

// BenchmarkDecodeLargeCache is BenchmarkDecode's "known" with a cache of
// 100,000 series, as a gateway in front of many targets holds: requests of
// 2,000 of them in turn, so each lookup finds its entry cold, as it is
// when a request arrives. It reports ns/sample, and the live heap the
// cache and the decoder's buffers take per series.
func BenchmarkDecodeLargeCache(b *testing.B) {
	const series, requests = 2000, 50
	l := limits{maxDecodedBytes: 64 << 20, tenantLabel: "tenant", tenant: "team-a"}
	for _, v := range []struct {
		name string
		isV2 bool
	}{{"rw1", false}, {"rw2", true}} {
		b.Run(v.name, func(b *testing.B) {
			c := newSeriesCache(openWAL(b), time.Hour)
			var d decoder
			raws := make([][]byte, requests)
			for i := range raws {
				raws[i] = benchRequestFrom(b, series, i*series, v.isV2)
			}
			heap := heapInUse()
			for i := range raws {
				first, err := decodeWith(&d, raws[i], v.isV2, l, c)
				if err != nil {
					b.Fatal(err)
				}
				c.done(c.resolve(first, &wal.Records{}, time.Now()), true)
				d.release()
			}
			perSeries := float64(heapInUse()-heap) / (series * requests)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if _, err := decodeWith(&d, raws[n%requests], v.isV2, l, c); err != nil {
					b.Fatal(err)
				}
				d.release()
				n++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*series), "ns/sample")
			b.ReportMetric(perSeries, "cache-B/series")
		})
	}
}

// BenchmarkDecode is the decoder alone on a request of 2,000 series of
// one sample (2.0 with metadata on every series, as Prometheus sends it):
// "known" with every series in the cache, as a steady sender's are;
// "new" with no cache, so every series' labels are built and checked, as
// for a series received for the first time (without its series record or
// cache insert). It reports ns/sample.
func BenchmarkDecode(b *testing.B) {
	const series = 2000
	l := limits{maxDecodedBytes: 64 << 20, tenantLabel: "tenant", tenant: "team-a"}
	for _, v := range []struct {
		name string
		isV2 bool
	}{{"rw1", false}, {"rw2", true}} {
		raw := benchRequest(b, series, v.isV2)
		w := openWAL(b)
		c := newSeriesCache(w, time.Hour)
		var d decoder
		first, err := decodeWith(&d, raw, v.isV2, l, c)
		if err != nil {
			b.Fatal(err)
		}
		c.done(c.resolve(first, &wal.Records{}, time.Now()), true)
		d.release()
		for _, cached := range []struct {
			name  string
			cache *seriesCache
		}{{"known", c}, {"new", nil}} {
			b.Run(v.name+"/"+cached.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(raw)))
				for b.Loop() {
					if _, err := decodeWith(&d, raw, v.isV2, l, cached.cache); err != nil {
						b.Fatal(err)
					}
					d.release()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*series), "ns/sample")
			})
		}
	}
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
