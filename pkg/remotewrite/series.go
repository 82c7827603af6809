package remotewrite

import (
	"sync/atomic"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
)

// series is one WAL series as it is sent: its labels after external labels
// and write_relabel_configs, converted to prompb once. It is shared by the
// reader and the shards without locking: all but meta is immutable after
// creation, and meta is atomic.
type series struct {
	// labels are sorted by name. Their strings point into one buffer
	// owned by this series.
	labels []prompb.Label
	// refused is the drop* reason the receiver would refuse the series
	// for (more labels than its limit, a label name or value too long),
	// or -1: the samples of a refused series are dropped, not sent.
	refused int8
	// meta is the series' family metadata, nil until a Metadata record
	// names the series (or when metadata_config.send is false). The
	// reader stores it; a 2.0 encoder loads it.
	meta atomic.Pointer[family]
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
	// limits are the receiver's per-series limits; zero: none.
	limits seriesLimits
	// overLimit lists the series the last store found over a limit, for
	// the caller to log; valid until the next store.
	overLimit []refusal
}

// seriesLimits are what a receiver refuses a series for. A zero field
// means no limit.
type seriesLimits struct {
	maxLabels     int // labels per series
	maxNameBytes  int // bytes in a label name
	maxValueBytes int // bytes in a label value
}

// refusal is a series over one of the seriesLimits.
type refusal struct {
	labels labels.Labels
	reason int    // dropTooManyLabels or dropLabelTooLong
	label  string // the label too long, for dropLabelTooLong
	size   int    // its length, or the number of labels
}

// check returns the first limit ls is over, and false if none.
func (l seriesLimits) check(ls labels.Labels) (o refusal, over bool) {
	if l.maxLabels > 0 && ls.Len() > l.maxLabels {
		return refusal{labels: ls, reason: dropTooManyLabels, size: ls.Len()}, true
	}
	if l.maxNameBytes <= 0 && l.maxValueBytes <= 0 {
		return o, false
	}
	ls.Range(func(lb labels.Label) {
		switch {
		case over:
		case l.maxNameBytes > 0 && len(lb.Name) > l.maxNameBytes:
			o, over = refusal{labels: ls, reason: dropLabelTooLong, label: lb.Name, size: len(lb.Name)}, true
		case l.maxValueBytes > 0 && len(lb.Value) > l.maxValueBytes:
			o, over = refusal{labels: ls, reason: dropLabelTooLong, label: lb.Name, size: len(lb.Value)}, true
		}
	})
	return o, over
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
		s := &series{labels: t.protoLabels(ls), refused: -1}
		if o, over := t.limits.check(ls); over {
			s.refused = int8(o.reason)
			t.overLimit = append(t.overLimit, o)
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
