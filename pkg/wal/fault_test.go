package wal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"
	"github.com/prometheus/prometheus/util/compression"
)

var errDiskFull = errors.New("no space left on device (injected)")

// TestWriteErrorRecovery injects write errors: Log fails while the disk is
// "full", keeps failing while it stays full, and recovers by itself when it
// clears. A Reader tailing throughout and one reading after a restart see
// every batch logged before and after, in order, and no damage; a failed
// batch is seen only where the fault wrote it before failing.
func TestWriteErrorRecovery(t *testing.T) {
	cases := []struct {
		name string
		// fault is the failing write; ghost says whether the failed batch's
		// samples reached the WAL (wlog wrote them before the error).
		fault func(wl *wlog.WL, recs [][]byte) error
		ghost bool
	}{
		{"nothing written", func(*wlog.WL, [][]byte) error { return errDiskFull }, false},
		{"series written", func(wl *wlog.WL, recs [][]byte) error {
			if err := wl.Log(recs[0]); err != nil {
				return err
			}
			return errDiskFull
		}, false},
		{"batch written", func(wl *wlog.WL, recs [][]byte) error {
			if err := wl.Log(recs...); err != nil {
				return err
			}
			return errDiskFull
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			logs := &logBuffer{}
			w := openWAL(t, Options{Dir: dir, SegmentSize: 4 * pageSize}, logs.logger(), nil)
			refs := []chunks.HeadSeriesRef{w.NewRef(), w.NewRef()}

			tailed := make(chan *collected, 1)
			tailErr := make(chan error, 1)
			r, err := w.NewReader(Position{})
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				defer r.Close()
				c := &collected{}
				for {
					err := r.Next(context.Background())
					if errors.Is(err, ErrClosed) {
						tailed <- c
						return
					}
					if err != nil {
						tailErr <- err
						return
					}
					c.add(r)
				}
			}()

			mustLog(t, w, batch(refs, true, 2, 100))
			mustLog(t, w, batch(refs, false, 2, 200))
			_, segBefore, err := wlog.Segments(dir)
			if err != nil {
				t.Fatal(err)
			}

			var mu sync.Mutex
			full := true
			isFull := func() bool {
				mu.Lock()
				defer mu.Unlock()
				return full
			}
			w.mu.Lock()
			w.logTo = func(wl *wlog.WL, recs [][]byte) error {
				if isFull() {
					return tc.fault(wl, recs)
				}
				return wl.Log(recs...)
			}
			w.replaceErr = func() error {
				if isFull() {
					return errDiskFull
				}
				return nil
			}
			w.mu.Unlock()
			failed := []*Records{batch(refs, true, 2, 300), batch(refs, false, 2, 400), batch(refs, false, 2, 500)}
			for _, b := range failed {
				if err := w.Log(b); !errors.Is(err, errDiskFull) {
					t.Fatalf("log on a full disk: got %v, want %v", err, errDiskFull)
				}
			}
			if got := testutil.ToFloat64(w.metrics.writeFailures); got != 3 {
				t.Errorf("write failures: got %v, want 3", got)
			}

			mu.Lock()
			full = false
			mu.Unlock()
			mustLog(t, w, batch(refs, true, 2, 600))
			mustLog(t, w, batch(refs, false, 2, 700))
			_, segAfter, err := wlog.Segments(dir)
			if err != nil {
				t.Fatal(err)
			}
			if segAfter <= segBefore {
				t.Errorf("recovered writes went to segment %d, want one after %d", segAfter, segBefore)
			}
			if err := w.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			for _, want := range []string{"write WAL; dropping", "WAL writes recovered", "failed_writes=3"} {
				if !strings.Contains(logs.String(), want) {
					t.Errorf("log lacks %q:\n%s", want, logs)
				}
			}

			want := []int64{100, 101, 200, 201}
			if tc.ghost {
				want = append(want, 300, 301)
			}
			want = append(want, 600, 601, 700, 701)
			select {
			case err := <-tailErr:
				t.Fatalf("tailing reader: %v", err)
			case c := <-tailed:
				checkTimes(t, "tailing reader", c, refs, want)
			}

			// After a restart the WAL replays without repair and reads the same.
			w2 := openWAL(t, Options{Dir: dir, SegmentSize: 4 * pageSize}, logs.logger(), nil)
			if got := testutil.ToFloat64(w2.metrics.repairs); got != 0 {
				t.Errorf("reopen repaired the WAL %v times:\n%s", got, logs)
			}
			if err := w2.Close(); err != nil {
				t.Fatal(err)
			}
			checkTimes(t, "reader after restart", readToEnd(t, w2, Position{}), refs, want)
		})
	}
}

// checkTimes checks that c holds, for each ref, samples at exactly the
// times want, in order, each after its series.
func checkTimes(t *testing.T, who string, c *collected, refs []chunks.HeadSeriesRef, want []int64) {
	t.Helper()
	got := map[chunks.HeadSeriesRef][]int64{}
	for _, s := range c.Samples {
		got[s.Ref] = append(got[s.Ref], s.T)
	}
	seen := map[chunks.HeadSeriesRef]bool{}
	for _, s := range c.Series {
		seen[s.Ref] = true
	}
	for _, ref := range refs {
		if !seen[ref] {
			t.Errorf("%s: no series record for ref %d", who, ref)
		}
		if !slices.Equal(got[ref], want) {
			t.Errorf("%s: ref %d samples at %v, want %v", who, ref, got[ref], want)
		}
	}
}

// TestCutTornTail cuts a record whose last page never reached the segment
// (a write failed after its first pages): the segment then ends after its
// last whole record, and reads on into the next segment without error, as
// a checkpoint reads it.
func TestCutTornTail(t *testing.T) {
	dir := t.TempDir()
	wl, err := wlog.NewSize(nil, nil, dir, 8*pageSize, compression.None)
	if err != nil {
		t.Fatal(err)
	}
	small := bytes.Repeat([]byte{1}, 100)
	big := bytes.Repeat([]byte{2}, 2*pageSize+1000) // three pages
	must(wl.Log(small))
	must(wl.Log(big))
	must(wl.Close())
	name := wlog.SegmentName(dir, 0)
	must(os.Truncate(name, 2*pageSize)) // the big record's last page is lost

	w := &WAL{dir: dir, logger: (&logBuffer{}).logger()}
	w.metrics = newWALMetrics(nil, w)
	if err := w.cutTornTail(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 100+7 {
		t.Errorf("segment is %d bytes after the cut, want the small record and its header, %d", fi.Size(), 100+7)
	}
	if got := testutil.ToFloat64(w.metrics.repairCutBytes); got != 2*pageSize-(100+7) {
		t.Errorf("cut bytes counted: %v, want %d", got, 2*pageSize-(100+7))
	}
	if err := w.cutTornTail(); err != nil { // a whole segment is left alone
		t.Fatal(err)
	}

	next, err := wlog.NewSize(nil, nil, dir, 8*pageSize, compression.None) // segment 1
	if err != nil {
		t.Fatal(err)
	}
	after := bytes.Repeat([]byte{3}, 50)
	must(next.Log(after))
	must(next.Close())
	sr, err := wlog.NewSegmentsRangeReader(wlog.SegmentRange{Dir: dir, First: 0, Last: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sr.Close()
	r := wlog.NewReader(sr)
	var got [][]byte
	for r.Next() {
		got = append(got, slices.Clone(r.Record()))
	}
	if err := r.Err(); err != nil {
		t.Fatalf("read segments 0 and 1 after the cut: %v", err)
	}
	if len(got) != 2 || !bytes.Equal(got[0], small) || !bytes.Equal(got[1], after) {
		t.Errorf("read %d records after the cut, want the small one and the one after", len(got))
	}
}

// TestCloseWhileFailing: Close after a failed write, once the disk takes
// what the writer kept, leaves a WAL that opens without repair.
func TestCloseWhileFailing(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(Options{Dir: dir, Fsync: FsyncNever}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	refs := []chunks.HeadSeriesRef{w.NewRef()}
	mustLog(t, w, batch(refs, true, 1, 10))
	w.mu.Lock()
	w.logTo = func(*wlog.WL, [][]byte) error { return errDiskFull }
	w.mu.Unlock()
	if err := w.Log(batch(refs, false, 1, 20)); !errors.Is(err, errDiskFull) {
		t.Fatalf("log: got %v, want %v", err, errDiskFull)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w2 := openWAL(t, Options{Dir: dir}, nil, nil)
	if got := testutil.ToFloat64(w2.metrics.repairs); got != 0 {
		t.Errorf("reopen repaired the WAL %v times", got)
	}
	must(w2.Close())
	c := readToEnd(t, w2, Position{})
	if len(c.Samples) != 1 || c.Samples[0].T != 10 || c.Samples[0].Ref != refs[0] {
		t.Errorf("samples after restart: %+v, want the one at 10", c.Samples)
	}
	if slices.Contains(c.types, record.Unknown) {
		t.Errorf("reader yielded an unknown record")
	}
}
