package wal

import (
	"errors"
	"fmt"
	"testing"

	"github.com/prometheus/prometheus/tsdb/chunks"
)

func BenchmarkLog(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		b.Run(fmt.Sprintf("samples=%d", n), func(b *testing.B) {
			w := openWAL(b, Options{Dir: b.TempDir()}, nil, nil)
			refs := make([]chunks.HeadSeriesRef, n)
			for i := range refs {
				refs[i] = w.NewRef()
			}
			mustLog(b, w, batch(refs, true, 0, 0))
			r := batch(refs, false, 1, 0)
			b.ReportAllocs()
			for b.Loop() {
				for i := range r.Samples {
					r.Samples[i].T += 15000
				}
				if err := w.Log(r); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
		})
	}
}

func BenchmarkReader(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("samples=%d", n), func(b *testing.B) {
			w := openWAL(b, Options{Dir: b.TempDir()}, nil, nil)
			refs := make([]chunks.HeadSeriesRef, n)
			for i := range refs {
				refs[i] = w.NewRef()
			}
			mustLog(b, w, batch(refs, true, 0, 0))
			r := batch(refs, false, 1, 0)
			const batches = 2_000_000
			for range batches / n { // the same number of samples for each n
				for i := range r.Samples {
					r.Samples[i].T += 15000
				}
				mustLog(b, w, r)
			}
			must(w.Close())
			b.ReportAllocs()
			var samples int
			for b.Loop() {
				rd, err := w.NewReader(Position{})
				must(err)
				for {
					err := rd.Next(b.Context())
					if errors.Is(err, ErrClosed) {
						break
					}
					must(err)
					samples += len(rd.Samples())
				}
				must(rd.Close())
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(samples), "ns/sample")
		})
	}
}
