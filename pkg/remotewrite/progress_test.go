package remotewrite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/wal"
)

// positionLog is a PositionWriter that keeps every write and checks the
// contract: both marks only move forward, sent never before acked, never
// two calls at once.
type positionLog struct {
	t           testing.TB
	mu          sync.Mutex
	busy        bool
	acked, sent wal.Position
	writes      int
}

func (l *positionLog) WritePositions(acked, sent wal.Position) {
	l.mu.Lock()
	if l.busy {
		l.t.Error("WritePositions called concurrently")
	}
	l.busy = true
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.busy = false
		l.mu.Unlock()
	}()
	l.mu.Lock()
	defer l.mu.Unlock()
	if acked.Compare(l.acked) < 0 || sent.Compare(l.sent) < 0 || sent.Compare(acked) < 0 {
		l.t.Errorf("positions went from acked %v sent %v to acked %v sent %v", l.acked, l.sent, acked, sent)
	}
	l.acked, l.sent = acked, sent
	l.writes++
}

func (l *positionLog) get() (acked, sent wal.Position) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked, l.sent
}

// seqWAL logs records sample records into a closed WAL in dir; record i
// holds the value i for each of nSeries series. It returns the WAL and the
// position after each record.
func seqWAL(t *testing.T, records, nSeries int) (*wal.WAL, []wal.Position) {
	t.Helper()
	w, err := wal.Open(wal.Options{Dir: t.TempDir(), SegmentSize: 32 << 10, Fsync: wal.FsyncNever}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var recs wal.Records
	refs := make([]chunks.HeadSeriesRef, nSeries)
	for s := range refs {
		refs[s] = w.NewRef()
		recs.Series = append(recs.Series, record.RefSeries{Ref: refs[s], Labels: labels.FromStrings("__name__", "m", "i", fmt.Sprint(s))})
	}
	if err := w.Log(&recs); err != nil {
		t.Fatal(err)
	}
	base := nowMs() - 60_000
	for i := range records {
		recs.Reset()
		for _, ref := range refs {
			recs.Samples = append(recs.Samples, record.RefSample{Ref: ref, T: base + int64(i), V: float64(i)})
		}
		if err := w.Log(&recs); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := w.NewReader(wal.Position{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var ends []wal.Position
	for {
		err := r.Next(context.Background())
		if errors.Is(err, wal.ErrClosed) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.Type() == record.Samples || r.Type() == record.SamplesV2 {
			ends = append(ends, r.Position())
		}
	}
	if len(ends) != records {
		t.Fatalf("read %d sample records back, logged %d", len(ends), records)
	}
	return w, ends
}

// TestQueue_Positions: before any sample reaches the receiver, the sent
// mark written covers its record; at the end the acknowledged position is
// the end of the WAL; and the writes are far fewer than the samples.
func TestQueue_Positions(t *testing.T) {
	const records, nSeries = 200, 30
	w, ends := seqWAL(t, records, nSeries)
	pl := &positionLog{t: t}
	var received int
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		raw, err := snappy.Decode(nil, body)
		var req prompb.WriteRequest
		if err == nil {
			err = req.Unmarshal(raw)
		}
		if err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		_, sent := pl.get()
		for _, ts := range req.Timeseries {
			for _, s := range ts.Samples {
				if end := ends[int(s.Value)]; sent.Compare(end) < 0 {
					t.Errorf("a sample of record %d (ending at %v) arrived with the sent mark at %v", int(s.Value), end, sent)
				}
			}
			pl.mu.Lock()
			received += len(ts.Samples)
			pl.mu.Unlock()
		}
		rw.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cfg := testConfig(t, srv.URL, func(c *config.RemoteWriteConfig) { c.QueueConfig.MinShards = 3 })
	q, err := New(t.Context(), Options{Config: cfg, Log: WALLog(w), Positions: pl})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := q.Run(ctx); err != nil {
		t.Fatal(err)
	}
	acked, sent := pl.get()
	if want := ends[len(ends)-1]; acked != want || sent != want {
		t.Errorf("last positions written: acked %v, sent %v; want both %v", acked, sent, want)
	}
	t.Logf("%d position writes for %d samples", pl.writes, received)
	if received != records*nSeries {
		t.Errorf("received %d samples, want %d", received, records*nSeries)
	}
	// One write per batch acknowledged and at most one per batch sent.
	if limit := 2 * (records*nSeries/100 + records); pl.writes > limit {
		t.Errorf("%d position writes for %d samples, want at most %d", pl.writes, records*nSeries, limit)
	}
}

// TestQueue_Resent: a queue started at Start counts as resent exactly the
// samples of the records before ResendUntil.
func TestQueue_Resent(t *testing.T) {
	const records, nSeries = 50, 7
	w, ends := seqWAL(t, records, nSeries)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rw.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cfg := testConfig(t, srv.URL, nil)
	for _, tc := range []struct {
		name               string
		start, resendUntil wal.Position
		want               int // records resent
	}{
		{"no mark", ends[9], wal.Position{}, 0},
		{"mark at start", ends[9], ends[9], 0},
		{"mark before start", ends[9], ends[3], 0},
		{"one record", ends[9], ends[10], 1},
		{"twelve records", ends[9], ends[21], 12},
		{"from the beginning", wal.Position{}, ends[4], 5},
		{"mark past the end", ends[39], wal.Position{Segment: ends[49].Segment + 1}, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := New(t.Context(), Options{Config: cfg, Log: WALLog(w), Start: tc.start, ResendUntil: tc.resendUntil})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := q.Run(ctx); err != nil {
				t.Fatal(err)
			}
			if got := testutil.ToFloat64(q.resendMetrics.resent); got != float64(tc.want*nSeries) {
				t.Errorf("resent = %v, want %d records × %d series", got, tc.want, nSeries)
			}
		})
	}
}
