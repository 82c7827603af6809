package remotewrite

import (
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
)

// series is one WAL series as it is sent: its labels after external labels
// and write_relabel_configs, converted to prompb once. It is immutable after
// creation and shared by the reader and the shards without locking.
type series struct {
	// labels are sorted by name. Their strings point into one buffer
	// owned by this series.
	labels []prompb.Label
	// overLimit is set when the receiver would refuse the series (more
	// labels than its limit): its samples are dropped, not sent.
	overLimit bool
}

// seriesTable maps WAL series refs to what is sent for them. It is owned by
// the reader goroutine and not safe for concurrent use; the *series values it
// hands out are immutable and may be read by any goroutine.
type seriesTable struct {
	// m holds every ref seen in a Series record. A nil value marks a
	// series dropped by relabeling, so its samples are skipped cheaply.
	m        map[chunks.HeadSeriesRef]*series
	external labels.Labels
	relabel  []*relabel.Config
	builder  labels.Builder
	buf      []byte // scratch for packing label strings
	// maxLabels is the receiver's labels-per-series limit; zero: none.
	maxLabels int
	// overLimit lists the series the last store found over maxLabels, for
	// the caller to log; valid until the next store.
	overLimit []labels.Labels
}

// newSeriesTable returns an empty table that merges external (external
// labels do not override a series' own labels, as in Prometheus) and then
// applies relabel.
func newSeriesTable(external labels.Labels, rcfgs []*relabel.Config) *seriesTable {
	return &seriesTable{
		m:        make(map[chunks.HeadSeriesRef]*series),
		external: external,
		relabel:  rcfgs,
		builder:  *labels.NewBuilder(labels.EmptyLabels()),
	}
}

// store adds the series of a Series record. A ref already known is skipped:
// the WAL may repeat Series records, but never changes a ref's labels. It
// returns how many new series were dropped by relabeling. The labels in rs
// are copied.
func (t *seriesTable) store(rs []record.RefSeries) (dropped int) {
	t.overLimit = t.overLimit[:0]
	for i := range rs {
		if _, ok := t.m[rs[i].Ref]; ok {
			continue
		}
		t.builder.Reset(rs[i].Labels)
		t.external.Range(func(l labels.Label) {
			if t.builder.Get(l.Name) == "" {
				t.builder.Set(l.Name, l.Value)
			}
		})
		if !relabel.ProcessBuilder(&t.builder, t.relabel...) {
			t.m[rs[i].Ref] = nil
			dropped++
			continue
		}
		ls := t.builder.Labels()
		s := &series{labels: t.protoLabels(ls)}
		if t.maxLabels > 0 && ls.Len() > t.maxLabels {
			s.overLimit = true
			t.overLimit = append(t.overLimit, ls)
		}
		t.m[rs[i].Ref] = s
	}
	return dropped
}

// get returns the series for ref. known is false for a ref never seen in a
// Series record; s is nil for a known series dropped by relabeling.
func (t *seriesTable) get(ref chunks.HeadSeriesRef) (s *series, known bool) {
	s, known = t.m[ref]
	return s, known
}

// protoLabels converts ls to prompb labels whose strings share one new
// allocation, so a series costs two allocations however many labels it has.
func (t *seriesTable) protoLabels(ls labels.Labels) []prompb.Label {
	t.buf = t.buf[:0]
	ls.Range(func(l labels.Label) {
		t.buf = append(t.buf, l.Name...)
		t.buf = append(t.buf, l.Value...)
	})
	packed := string(t.buf)
	out := make([]prompb.Label, 0, ls.Len())
	off := 0
	ls.Range(func(l labels.Label) {
		name := packed[off : off+len(l.Name)]
		off += len(l.Name)
		value := packed[off : off+len(l.Value)]
		off += len(l.Value)
		out = append(out, prompb.Label{Name: name, Value: value})
	})
	return out
}

// exemplarLabels converts ls, which the WAL reader gave us to keep, to
// prompb labels sharing its strings. Exemplars are rare: one allocation each
// is accepted.
func exemplarLabels(ls labels.Labels) []prompb.Label {
	if ls.IsEmpty() {
		return nil
	}
	out := make([]prompb.Label, 0, ls.Len())
	ls.Range(func(l labels.Label) {
		out = append(out, prompb.Label{Name: l.Name, Value: l.Value})
	})
	return out
}
