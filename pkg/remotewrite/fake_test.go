package remotewrite

import (
	"context"
	"sync"

	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/wal"
)

// fakeRecord is one record of a fakeLog.
type fakeRecord struct {
	typ       record.Type
	series    []record.RefSeries
	samples   []record.RefSample
	hists     []record.RefHistogramSample
	fhists    []record.RefFloatHistogramSample
	exemplars []record.RefExemplar
	metadata  []record.RefMetadata
	released  []chunks.HeadSeriesRef
}

// fakeLog is an in-memory Log following the wal.Reader contract: record i
// starts at fakeStart(i) and ends at fakeStart(i+1); a reader opened at from
// first replays the Series records before from. Safe for concurrent use.
type fakeLog struct {
	mu      sync.Mutex
	recs    []fakeRecord
	changed chan struct{} // closed when records are appended
	readers int
}

func newFakeLog() *fakeLog { return &fakeLog{changed: make(chan struct{})} }

func fakeStart(i int) wal.Position { return wal.Position{Segment: i / 4, Offset: int64(i%4) * 100} }

func (l *fakeLog) append(recs ...fakeRecord) wal.Position {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, recs...)
	close(l.changed)
	l.changed = make(chan struct{})
	return fakeStart(len(l.recs))
}

func (l *fakeLog) NewReader(from wal.Position) (Reader, error) {
	l.mu.Lock()
	l.readers++
	l.mu.Unlock()
	return &fakeReader{l: l, from: from, i: -1}, nil
}

type fakeReader struct {
	l    *fakeLog
	from wal.Position
	i    int
	rec  fakeRecord
}

func (r *fakeReader) Next(ctx context.Context) error {
	for {
		r.l.mu.Lock()
		for r.i+1 < len(r.l.recs) {
			r.i++
			rec := r.l.recs[r.i]
			if fakeStart(r.i).Compare(r.from) < 0 && rec.typ != record.Series {
				continue
			}
			r.rec = rec
			r.l.mu.Unlock()
			return nil
		}
		ch := r.l.changed
		r.l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (r *fakeReader) Type() record.Type                                 { return r.rec.typ }
func (r *fakeReader) Series() []record.RefSeries                        { return r.rec.series }
func (r *fakeReader) Samples() []record.RefSample                       { return r.rec.samples }
func (r *fakeReader) Histograms() []record.RefHistogramSample           { return r.rec.hists }
func (r *fakeReader) FloatHistograms() []record.RefFloatHistogramSample { return r.rec.fhists }
func (r *fakeReader) Exemplars() []record.RefExemplar                   { return r.rec.exemplars }
func (r *fakeReader) Metadata() []record.RefMetadata                    { return r.rec.metadata }
func (r *fakeReader) Released(dst []chunks.HeadSeriesRef) []chunks.HeadSeriesRef {
	return append(dst, r.rec.released...)
}
func (r *fakeReader) Position() wal.Position { return fakeStart(r.i + 1) }
func (r *fakeReader) Close() error           { return nil }
