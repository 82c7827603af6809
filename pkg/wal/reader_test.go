package wal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"
)

func TestPositionCompare(t *testing.T) {
	for _, tc := range []struct {
		a, b Position
		want int
	}{
		{Position{}, Position{}, 0},
		{Position{1, 5}, Position{1, 5}, 0},
		{Position{1, 5}, Position{1, 6}, -1},
		{Position{2, 0}, Position{1, 99}, 1},
		{Position{0, 99}, Position{1, 0}, -1},
	} {
		if got := tc.a.Compare(tc.b); got != tc.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		want := tc.a
		if tc.want < 0 {
			want = tc.b
		}
		if got := tc.a.Max(tc.b); got != want {
			t.Errorf("%v.Max(%v) = %v, want %v", tc.a, tc.b, got, want)
		}
		if got := tc.b.Max(tc.a); got != want {
			t.Errorf("%v.Max(%v) = %v, want %v", tc.b, tc.a, got, want)
		}
	}
}

// TestReaderTailsWriters has two writers log concurrently across many
// segment rotations while a Reader tails: it must see every record exactly
// once, each writer's in order, every series before its samples.
func TestReaderTailsWriters(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, Options{Dir: dir, SegmentSize: 2 * pageSize}, nil, nil)
	const writers, batches, perBatch = 2, 400, 40

	r, err := w.NewReader(Position{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			var rec Records
			for i := range batches {
				rec.Reset()
				ref := chunks.HeadSeriesRef(g*batches + i + 1) // a new series each batch
				rec.Series = append(rec.Series, record.RefSeries{Ref: ref, Labels: seriesLabels(ref)})
				for j := range perBatch {
					rec.Samples = append(rec.Samples, record.RefSample{Ref: ref, T: int64(i), V: float64(j)})
				}
				if err := w.Log(&rec); err != nil {
					t.Errorf("log: %v", err)
					return
				}
			}
		})
	}

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	known := map[chunks.HeadSeriesRef]bool{}
	next := make([]int, writers) // next batch expected from each writer
	var prev Position
	for seen := 0; seen < writers*batches; {
		if err := r.Next(ctx); err != nil {
			t.Fatalf("next after %d sample records: %v", seen, err)
		}
		if p := r.Position(); p.Compare(prev) <= 0 {
			t.Fatalf("position went from %v to %v", prev, p)
		}
		prev = r.Position()
		switch r.Type() {
		case record.Series:
			for _, s := range r.Series() {
				if known[s.Ref] {
					t.Fatalf("series %d seen twice", s.Ref)
				}
				known[s.Ref] = true
			}
		case record.Samples:
			s := r.Samples()
			ref := s[0].Ref
			if !known[ref] {
				t.Fatalf("samples of ref %d before its series", ref)
			}
			g, i := int(ref-1)/batches, int(ref-1)%batches
			if i != next[g] || len(s) != perBatch || s[0].T != int64(i) {
				t.Fatalf("writer %d: got batch %d (%d samples), want batch %d", g, i, len(s), next[g])
			}
			next[g]++
			seen++
		default:
			t.Fatalf("unexpected record type %v", r.Type())
		}
	}
	wg.Wait()
	if _, last, _ := wlog.Segments(dir); last < 5 {
		t.Errorf("writers filled %d segments, want the test to cross at least 5", last+1)
	}
	// Nothing more: the Reader waits until ctx is done.
	short, cancelShort := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancelShort()
	if err := r.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("next at the end: got %v, want deadline exceeded", err)
	}
}

func TestReaderResume(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, Options{Dir: dir, SegmentSize: 2 * pageSize}, nil, nil)
	const batches = 60
	for i := range batches {
		ref := chunks.HeadSeriesRef(i + 1)
		mustLog(t, w, batch([]chunks.HeadSeriesRef{ref}, true, 300, int64(i)*1000))
		if i%7 == 6 {
			// also a series without samples, to be resolvable when its samples come later
			mustLog(t, w, &Records{Series: seriesFor(ref + 1000)})
		}
	}
	must(w.Close())
	all := readToEnd(t, w, Position{})
	var sampleRecords []int // index in all of each samples record
	for i, typ := range all.types {
		if typ == record.Samples {
			sampleRecords = append(sampleRecords, i)
		}
	}
	if all.positions[len(all.positions)-1].Segment < 3 {
		t.Fatalf("want the WAL to span several segments, it ends at %v", all.positions[len(all.positions)-1])
	}

	for _, k := range []int{0, 1, 17, 33, batches - 1, batches} { // sample records read before resuming
		t.Run(fmt.Sprintf("after %d sample batches", k), func(t *testing.T) {
			from := Position{}
			if k > 0 {
				from = all.positions[sampleRecords[k-1]]
			}
			got := readToEnd(t, w, from)
			known := map[chunks.HeadSeriesRef]bool{}
			var batchesSeen []int64
			for i, typ := range got.types {
				if got.positions[i].Compare(from) < 0 {
					t.Fatalf("record %d at %v, before %v", i, got.positions[i], from)
				}
				switch typ {
				case record.Series:
				case record.Samples:
				default:
					t.Fatalf("unexpected type %v", typ)
				}
			}
			for _, s := range got.Series {
				known[s.Ref] = true
			}
			for _, s := range got.Samples {
				if !known[s.Ref] {
					t.Fatalf("sample of unresolvable ref %d", s.Ref)
				}
				if s.T%1000 == 0 {
					batchesSeen = append(batchesSeen, s.T/1000)
				}
			}
			if len(batchesSeen) != batches-k {
				t.Fatalf("got %d batches of samples, want %d", len(batchesSeen), batches-k)
			}
			for i, b := range batchesSeen {
				if b != int64(k+i) {
					t.Fatalf("batch %d: got %d, want %d (duplicate or gap)", i, b, k+i)
				}
			}
		})
	}
}

func seriesFor(ref chunks.HeadSeriesRef) []record.RefSeries {
	return []record.RefSeries{{Ref: ref, Labels: seriesLabels(ref)}}
}

func TestReaderEmptyWAL(t *testing.T) {
	w := openWAL(t, Options{Dir: t.TempDir()}, nil, nil)
	r, err := w.NewReader(Position{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Position() != (Position{}) || r.Type() != record.Unknown {
		t.Fatalf("fresh reader: position %v, type %v", r.Position(), r.Type())
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := r.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("next on an empty WAL with a cancelled context: got %v", err)
	}

	got := make(chan error, 1)
	go func() { got <- r.Next(t.Context()) }()
	mustLog(t, w, batch([]chunks.HeadSeriesRef{1}, true, 1, 0))
	select {
	case err := <-got:
		if err != nil || r.Type() != record.Series {
			t.Fatalf("next after log: %v, type %v", err, r.Type())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("reader was not woken by Log")
	}
	if err := r.Next(t.Context()); err != nil || r.Type() != record.Samples {
		t.Fatalf("second record: %v, type %v", err, r.Type())
	}

	must(w.Close())
	if err := r.Next(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("next at the end of a closed WAL: got %v, want ErrClosed", err)
	}
	must(r.Close())
	if err := r.Next(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("next after reader close: got %v, want ErrClosed", err)
	}
}

func TestReaderPositionTruncatedAway(t *testing.T) {
	var logs logBuffer
	dir := t.TempDir()
	w := openWAL(t, Options{Dir: dir}, logs.logger(), nil)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{1}, true, 5, 0)) // segment 0
	rotate(t, w)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{1}, false, 5, 100)) // segment 1
	rotate(t, w)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{1}, false, 5, 200)) // segment 2
	if err := w.Truncate(Position{Segment: 2}); err != nil {
		t.Fatal(err)
	}
	must(w.Close())

	got := readToEnd(t, w, Position{Segment: 1, Offset: 40})
	if !strings.Contains(logs.String(), "reader position was truncated away") {
		t.Errorf("no log line about the truncated position:\n%s", logs.String())
	}
	if len(got.Series) != 1 || got.Series[0].Ref != 1 {
		t.Errorf("series from the checkpoint: got %v", got.Series)
	}
	if len(got.Samples) != 5 || got.Samples[0].T != 200 {
		t.Errorf("samples: got %v, want the 5 of segment 2", got.Samples)
	}
	// Past the newest segment: starts at the newest, logged.
	got = readToEnd(t, w, Position{Segment: 9})
	if !strings.Contains(logs.String(), "reader position is past the newest segment") {
		t.Errorf("no log line about the position past the end:\n%s", logs.String())
	}
	if len(got.Samples) != 5 {
		t.Errorf("samples from the newest segment: got %d, want 5", len(got.Samples))
	}
}

// TestReaderSkipsDamagedSegment damages a finished segment of an open WAL:
// the Reader reports it and goes on with the next segment.
func TestReaderSkipsDamagedSegment(t *testing.T) {
	dir := t.TempDir()
	w := openWAL(t, Options{Dir: dir}, nil, nil)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{1}, true, 5, 0))
	mustLog(t, w, batch([]chunks.HeadSeriesRef{1}, false, 5, 100))
	rotate(t, w)
	mustLog(t, w, batch([]chunks.HeadSeriesRef{1}, false, 5, 200))
	must(w.Close())
	all := readToEnd(t, w, Position{})

	// Flip a byte inside the second samples record of segment 0.
	f, err := os.OpenFile(wlog.SegmentName(dir, 0), os.O_RDWR, 0)
	must(err)
	off := all.positions[2].Offset - 3
	b := []byte{0}
	_, err = f.ReadAt(b, off)
	must(err)
	_, err = f.WriteAt([]byte{b[0] ^ 0xff}, off)
	must(err)
	must(f.Close())

	r, err := w.NewReader(Position{})
	must(err)
	defer r.Close()
	var samples []record.RefSample
	var damage int
	for {
		err := r.Next(t.Context())
		if errors.Is(err, ErrClosed) {
			break
		}
		if cerr, ok := errors.AsType[*wlog.CorruptionErr](err); ok {
			if cerr.Segment != 0 || !strings.Contains(err.Error(), wlog.SegmentName(dir, 0)) {
				t.Errorf("damage error does not name segment 0: %v", err)
			}
			damage++
			continue
		}
		must(err)
		samples = append(samples, r.Samples()...)
	}
	if damage != 1 {
		t.Errorf("damage errors: got %d, want 1", damage)
	}
	if len(samples) != 10 || samples[0].T != 0 || samples[5].T != 200 {
		t.Errorf("samples around the damage: got %v", samples)
	}
}

// TestReaderTailsSplitLog: a Reader waiting at the end of a segment reads
// a Log call whose first record went into that segment and whose second
// started the next one, though nothing is logged after it (it does not
// look for the next segment right after reading fresh records, but at the
// next wake-up or poll that finds nothing new).
func TestReaderTailsSplitLog(t *testing.T) {
	w := openWAL(t, Options{Dir: t.TempDir(), SegmentSize: 2 * pageSize}, nil, nil)
	r, err := w.NewReader(Position{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	batch := func(ref chunks.HeadSeriesRef, samples int) *Records {
		rec := &Records{Series: []record.RefSeries{{Ref: ref, Labels: seriesLabels(ref)}}}
		for i := range samples {
			rec.Samples = append(rec.Samples, record.RefSample{Ref: ref, T: int64(i), V: float64(i) + 0.5})
		}
		return rec
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	want := func(typ record.Type, ref chunks.HeadSeriesRef) Position {
		t.Helper()
		if err := r.Next(ctx); err != nil {
			t.Fatalf("next, want a %v record of ref %d: %v", typ, ref, err)
		}
		if r.Type() != typ {
			t.Fatalf("got a %v record, want %v", r.Type(), typ)
		}
		switch typ {
		case record.Series:
			if got := r.Series()[0].Ref; got != ref {
				t.Fatalf("series of ref %d, want %d", got, ref)
			}
		case record.Samples:
			if got := r.Samples()[0].Ref; got != ref {
				t.Fatalf("samples of ref %d, want %d", got, ref)
			}
		}
		return r.Position()
	}

	// About 40 KiB into the first 64 KiB segment; the reader then waits.
	if err := w.Log(batch(1, 4000)); err != nil {
		t.Fatal(err)
	}
	want(record.Series, 1)
	want(record.Samples, 1)
	short, cancelShort := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancelShort()
	if err := r.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("next at the end: got %v, want deadline exceeded", err)
	}
	// The series record fits in what is left of the segment, its ~30 KiB
	// of samples do not: they start the next segment.
	if err := w.Log(batch(2, 3000)); err != nil {
		t.Fatal(err)
	}
	ps := want(record.Series, 2)
	pm := want(record.Samples, 2)
	if pm.Segment != ps.Segment+1 {
		t.Fatalf("series record at %v, samples at %v: want them in consecutive segments", ps, pm)
	}
}
