package wal

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/tombstones"
	"github.com/prometheus/prometheus/tsdb/wlog"
	"github.com/prometheus/prometheus/util/compression"
)

// checkpointContent is what a checkpoint holds, decoded.
type checkpointContent struct {
	series     []record.RefSeries
	tombstones []tombstones.Stone
	metadata   map[chunks.HeadSeriesRef]record.RefMetadata
	other      int // records of any other kind
}

func readCheckpoint(t *testing.T, dir string) checkpointContent {
	t.Helper()
	src, err := wlog.NewSegmentsReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	c := checkpointContent{metadata: map[chunks.HeadSeriesRef]record.RefMetadata{}}
	dec := record.NewDecoder(labels.NewSymbolTable(), promslog.NewNopLogger())
	r := wlog.NewReader(src)
	for r.Next() {
		rec := r.Record()
		switch dec.Type(rec) {
		case record.Series:
			s, err := dec.Series(rec, nil)
			if err != nil {
				t.Fatalf("%s: %v", dir, err)
			}
			c.series = append(c.series, s...)
		case record.Tombstones:
			s, err := dec.Tombstones(rec, nil)
			if err != nil {
				t.Fatalf("%s: %v", dir, err)
			}
			c.tombstones = append(c.tombstones, s...)
		case record.Metadata:
			ms, err := dec.Metadata(rec, nil)
			if err != nil {
				t.Fatalf("%s: %v", dir, err)
			}
			for _, m := range ms {
				c.metadata[m.Ref] = m
			}
		default:
			c.other++
		}
	}
	if err := r.Err(); err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	return c
}

// randomRecords encodes a mix of every record kind checkpoints see, refs
// from lo to hi.
func randomRecords(rng *rand.Rand, lo, hi int) [][]byte {
	var enc record.Encoder
	str := func(max int) string {
		const alphabet = "abcXYZ_09 \"\\\n{}=,é✓"
		var b strings.Builder
		for range rng.IntN(max + 1) {
			b.WriteString(string([]rune(alphabet)[rng.IntN(len([]rune(alphabet)))]))
		}
		return b.String()
	}
	ref := func() chunks.HeadSeriesRef { return chunks.HeadSeriesRef(lo + rng.IntN(hi-lo+1)) }
	var recs [][]byte
	for ser := lo; ser <= hi; {
		switch rng.IntN(6) {
		case 0, 1: // new series, in order
			var ss []record.RefSeries
			for range 1 + rng.IntN(30) {
				if ser > hi {
					break
				}
				b := labels.NewScratchBuilder(0)
				b.Add("__name__", fmt.Sprintf("metric_%d", rng.IntN(7)))
				for j := range rng.IntN(5) {
					v := str(12)
					if rng.IntN(20) == 0 {
						v = strings.Repeat("long", 100)
					}
					if v != "" {
						b.Add(fmt.Sprintf("l%d", j), v)
					}
				}
				b.Sort()
				ss = append(ss, record.RefSeries{Ref: chunks.HeadSeriesRef(ser), Labels: b.Labels()})
				ser++
			}
			recs = append(recs, enc.Series(ss, nil))
		case 2:
			var s []record.RefSample
			for range 1 + rng.IntN(100) {
				s = append(s, record.RefSample{Ref: ref(), T: rng.Int64N(1e12), V: rng.Float64()})
			}
			recs = append(recs, enc.Samples(s, nil))
		case 3:
			var ms []record.RefMetadata
			for range 1 + rng.IntN(20) {
				ms = append(ms, record.RefMetadata{Ref: ref(), Type: uint8(rng.IntN(8)), Unit: str(3), Help: str(30)})
			}
			recs = append(recs, enc.Metadata(ms, nil))
		case 4:
			var st []tombstones.Stone
			for range 1 + rng.IntN(10) {
				iv := tombstones.Interval{Mint: math.MinInt64, Maxt: math.MaxInt64}
				if rng.IntN(3) == 0 {
					iv = tombstones.Interval{Mint: rng.Int64N(1e6), Maxt: 1e6 + rng.Int64N(1e6)}
				}
				st = append(st, tombstones.Stone{Ref: storage.SeriesRef(ref()), Intervals: tombstones.Intervals{iv}})
			}
			recs = append(recs, enc.Tombstones(st, nil))
		case 5:
			recs = append(recs, enc.Exemplars([]record.RefExemplar{{Ref: ref(), T: 1, V: 2, Labels: labels.FromStrings("trace_id", str(8))}}, nil))
		}
	}
	return recs
}

// TestCheckpointMatchesWlog: the checkpoint of the same segments, and then
// of more segments after it (each side reading its own first checkpoint),
// holds what wlog.Checkpoint's holds: the same series and tombstones in
// the same order, the same newest metadata of each kept ref, nothing else.
func TestCheckpointMatchesWlog(t *testing.T) {
	for _, comp := range []compression.Type{compression.None, compression.Snappy} {
		for seed := range uint64(3) {
			t.Run(fmt.Sprintf("%s/%d", comp, seed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, 42))
				ours, theirs := t.TempDir(), t.TempDir()
				open := func(dir string) *wlog.WL {
					wl, err := wlog.NewSize(nil, nil, dir, 2*pageSize, comp)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { wl.Close() })
					return wl
				}
				wo, wt := open(ours), open(theirs)
				keep := func(ref chunks.HeadSeriesRef) bool { return ref%3 != 0 }
				lo := 1
				for round := range 2 {
					hi := lo + 4000
					for _, rec := range randomRecords(rng, lo, hi) {
						for _, wl := range []*wlog.WL{wo, wt} {
							if err := wl.Log(rec); err != nil {
								t.Fatal(err)
							}
						}
					}
					lo = hi + 1
					for _, wl := range []*wlog.WL{wo, wt} {
						if _, err := wl.NextSegment(); err != nil {
							t.Fatal(err)
						}
					}
					first, last, err := wlog.Segments(ours)
					if err != nil {
						t.Fatal(err)
					}
					to := last - 1
					if to-first < 1 {
						t.Fatalf("round %d: segments %d to %d, want the test to span more", round, first, to)
					}
					logger := promslog.NewNopLogger()
					if _, err := wlog.Checkpoint(logger, wt, first, to, keep, math.MaxInt64, false, false); err != nil {
						t.Fatal(err)
					}
					stats, err := checkpoint(logger, wo, first, to, keep)
					if err != nil {
						t.Fatal(err)
					}
					got, want := readCheckpoint(t, wlog.CheckpointDir(ours, to)), readCheckpoint(t, wlog.CheckpointDir(theirs, to))
					if len(want.series) == 0 || len(want.tombstones) == 0 || len(want.metadata) == 0 {
						t.Fatalf("round %d: wlog's checkpoint has %d series, %d tombstones, %d metadata: the test should give it each", round, len(want.series), len(want.tombstones), len(want.metadata))
					}
					if !slices.EqualFunc(got.series, want.series, func(a, b record.RefSeries) bool { return a.Ref == b.Ref && labels.Equal(a.Labels, b.Labels) }) {
						t.Errorf("round %d: %d series, want %d (or they differ)", round, len(got.series), len(want.series))
					}
					if fmt.Sprint(got.tombstones) != fmt.Sprint(want.tombstones) {
						t.Errorf("round %d: tombstones\n%v\nwant\n%v", round, got.tombstones, want.tombstones)
					}
					if fmt.Sprint(got.metadata) != fmt.Sprint(want.metadata) {
						t.Errorf("round %d: metadata differ: %d refs, want %d", round, len(got.metadata), len(want.metadata))
					}
					if got.other != 0 || want.other != 0 {
						t.Errorf("round %d: %d and %d records of other kinds, want none", round, got.other, want.other)
					}
					if kept := stats.Series - stats.DroppedSeries; kept != len(got.series) {
						t.Errorf("round %d: stats say %d series kept, the checkpoint has %d", round, kept, len(got.series))
					}
					for _, wl := range []*wlog.WL{wo, wt} {
						if err := wl.Truncate(to + 1); err != nil {
							t.Fatal(err)
						}
						if err := wlog.DeleteCheckpoints(wl.Dir(), to); err != nil {
							t.Fatal(err)
						}
					}
				}
			})
		}
	}
}

// FuzzCheckpointRecord feeds records to the checkpoint's filter, keeping
// every ref: it must not panic, and what it accepts must be what
// Prometheus' decoder reads from the same record (the series and the
// whole-series tombstones copied as they are, the newest metadata of each
// ref).
func FuzzCheckpointRecord(f *testing.F) {
	for _, rec := range randomRecords(rand.New(rand.NewPCG(1, 2)), 1, 40) {
		f.Add(rec)
	}
	f.Add([]byte{byte(record.Series)})
	f.Add([]byte{byte(record.Series), 0, 0, 0, 0, 0, 0, 0, 1, 0xff})
	dec := record.NewDecoder(labels.NewSymbolTable(), promslog.NewNopLogger())
	f.Fuzz(func(t *testing.T, rec []byte) {
		var stats checkpointStats
		w := checkpointWriter{keep: func(chunks.HeadSeriesRef) bool { return true }, stats: &stats,
			metaIDs: map[string]uint32{}, latest: map[chunks.HeadSeriesRef]uint32{}}
		if err := w.add(rec); err != nil || len(rec) == 0 {
			return
		}
		switch record.Type(rec[0]) {
		case record.Series:
			want, err := dec.Series(rec, nil)
			if err != nil {
				t.Fatalf("accepted a series record Prometheus does not decode: %v", err)
			}
			if len(want) == 0 {
				if len(w.recs) != 0 {
					t.Fatalf("an empty series record became %d records", len(w.recs))
				}
				return
			}
			if len(w.recs) != 1 || string(w.recs[0]) != string(rec) {
				t.Fatalf("kept every series but changed the record")
			}
		case record.Tombstones:
			stones, err := dec.Tombstones(rec, nil)
			if err != nil {
				t.Fatalf("accepted a tombstones record Prometheus does not decode: %v", err)
			}
			var want []tombstones.Stone
			for _, s := range stones {
				if s.Intervals[0].Maxt == math.MaxInt64 {
					want = append(want, s)
				}
			}
			var got []tombstones.Stone
			for _, r := range w.recs {
				s, err := dec.Tombstones(r, nil)
				if err != nil {
					t.Fatalf("wrote a tombstones record Prometheus does not decode: %v", err)
				}
				got = append(got, s...)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("tombstones %v, want %v", got, want)
			}
		case record.Metadata:
			ms, err := dec.Metadata(rec, nil)
			if err != nil {
				t.Fatalf("accepted a metadata record Prometheus does not decode: %v", err)
			}
			want := map[chunks.HeadSeriesRef]record.RefMetadata{}
			for _, m := range ms {
				want[m.Ref] = m
			}
			if err := w.appendMetadata(); err != nil { // no flush: far below its threshold
				t.Fatal(err)
			}
			got := map[chunks.HeadSeriesRef]record.RefMetadata{}
			for _, r := range w.recs {
				ms, err := dec.Metadata(r, nil)
				if err != nil {
					t.Fatalf("wrote a metadata record Prometheus does not decode: %v", err)
				}
				for _, m := range ms {
					got[m.Ref] = m
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("metadata %v, want %v", got, want)
			}
		}
	})
}

// BenchmarkCheckpoint checkpoints 100,000 series with their metadata, a
// third of them released, with wlog's Checkpoint and with ours: B/op is
// what each allocates, the garbage that raised the heap at checkpoints.
func BenchmarkCheckpoint(b *testing.B) {
	const n = 100_000
	var enc record.Encoder
	var recs [][]byte
	var ss []record.RefSeries
	var ms []record.RefMetadata
	var st []tombstones.Stone
	for i := 1; i <= n; i++ {
		ref := chunks.HeadSeriesRef(i)
		ss = append(ss, record.RefSeries{Ref: ref, Labels: labels.FromStrings(
			"__name__", fmt.Sprintf("kube_pod_container_resource_requests_%d", i%20), "container", "app",
			"instance", "10.0.0.1:8080", "job", "kube-state-metrics", "namespace", "default",
			"pod", fmt.Sprintf("svc-%d-7d9f8b6c4-%05x", i%41, i*7919), "uid", fmt.Sprintf("%08x-1c2d-4e5f-8a9b-%012x", i, i))})
		ms = append(ms, record.RefMetadata{Ref: ref, Type: 2, Unit: "", Help: fmt.Sprintf("The number of requested request resource by a container, family %d.", i%20)})
		if i%3 == 0 {
			st = append(st, tombstones.Stone{Ref: storage.SeriesRef(ref), Intervals: tombstones.Intervals{{Mint: math.MinInt64, Maxt: math.MaxInt64}}})
		}
		if len(ss) == 1000 {
			recs = append(recs, enc.Series(ss, nil), enc.Metadata(ms, nil))
			ss, ms = ss[:0], ms[:0]
		}
	}
	recs = append(recs, enc.Tombstones(st, nil))
	keep := func(ref chunks.HeadSeriesRef) bool { return ref%3 != 0 }
	for _, impl := range []string{"wlog", "rwagent"} {
		b.Run(impl, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				dir := b.TempDir()
				wl, err := wlog.NewSize(nil, nil, dir, 8<<20, compression.None)
				if err != nil {
					b.Fatal(err)
				}
				if err := wl.Log(recs...); err != nil {
					b.Fatal(err)
				}
				if _, err := wl.NextSegment(); err != nil {
					b.Fatal(err)
				}
				_, last, err := wlog.Segments(dir)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				logger := promslog.NewNopLogger()
				if impl == "wlog" {
					_, err = wlog.Checkpoint(logger, wl, 0, last-1, keep, math.MaxInt64, false, false)
				} else {
					_, err = checkpoint(logger, wl, 0, last-1, keep)
				}
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				wl.Close()
				b.StartTimer()
			}
		})
	}
}
