package remotewrite

import (
	"sync/atomic"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwagent/rwagent/pkg/wal"
)

// series is one WAL series as it is sent: its labels after external labels
// and write_relabel_configs, as references into the pair table (labels.go).
// It is shared by the reader and the shards without locking: all but meta
// is immutable after creation, and meta is atomic.
//
// A series is 24 bytes: a series the receiver would refuse (more labels
// than its limit, a label name or value too long) is not a series of its
// own but one of the table's sentinels (seriesTable.refusal), as one
// dropped by relabeling is.
type series struct {
	// ids is the size of the labels in a 1.0 TimeSeries (the sum of the
	// pairs' encodings) and then the label pairs, sorted by name, as
	// varint ids into pairs; empty for a sentinel.
	ids string
	// meta is the series' family metadata, nil until a Metadata record
	// names the series (or when metadata_config.send is false). The
	// reader stores it; a 2.0 encoder loads it.
	meta atomic.Pointer[family]
}

// labels returns an iterator over the series' labels, whose pairs are in
// pt (the pair table of the seriesTable that made s).
func (s *series) labels(pt *pairTable) labelIter {
	_, ids := s.size()
	return labelIter{ids: ids, pages: pt.pages()}
}

// size returns the size of the series' labels in a 1.0 TimeSeries, and
// its pair ids.
func (s *series) size() (int, string) {
	n, ids, _ := cutUvarint(s.ids)
	return int(n), ids
}

// seriesTable maps WAL series refs to what is sent for them. It is owned by
// the reader goroutine and not safe for concurrent use; the *series values it
// hands out are immutable and may be read by any goroutine.
//
// The WAL hands out refs counting up from one (wal.NewRef), so the table is
// a slice of fixed-size pages indexed by ref rather than a map: a lookup is
// two loads, a slot costs 8 bytes, and a page all of whose series are
// forgotten is freed, so churn does not grow it without bound.
type seriesTable struct {
	// pairs holds the label pairs of the table's series, shared with the
	// encoders of the queue's shards, which read it without locking.
	pairs *pairTable
	pages []*seriesPage // pages[i] holds refs from (base+i) << pageBits; nil: none live
	base  uint64
	// dropped marks, in a slot, a series dropped by relabeling, so that
	// its samples are skipped cheaply; refused[i] a series the receiver
	// would refuse for drop reason refusedReasons[i].
	dropped *series
	refused [len(refusedReasons)]*series
	// unrouted marks a series whose wal.RouteLabel does not name this
	// endpoint (route): it was never meant for it, so its samples are
	// skipped without being counted as dropped.
	unrouted *series
	route    string // the endpoint's name: as routes name it; "": routed to by none
	// notRouted is how many new series the last store found unrouted.
	notRouted int
	external  labels.Labels
	relabel   []*relabel.Config
	builder   labels.Builder
	buf       []byte // scratch for encoding a label
	ids       []byte // scratch for a series' pair ids
	// limits are the receiver's per-series limits; zero: none.
	limits seriesLimits
	// overLimit lists the series the last store found over a limit, for
	// the caller to log; valid until the next store.
	overLimit []refusal
	// retired are forgotten series whose pairs are released once no
	// sample of theirs is queued (release).
	retired []retiredSeries
	closed  bool
}

// retiredSeries are series forgotten when the next record to queue samples
// was to get sequence number seq (see acks): samples queued with a lower
// one may still hold them.
type retiredSeries struct {
	seq    uint64
	series []*series
}

// pageBits sets the refs per page: 4096, a 32 KiB page.
const pageBits = 12

type seriesPage struct {
	slots [1 << pageBits]*series
	live  int
}

// refusedReasons are the drop* reasons a receiver's limits refuse a
// series for.
var refusedReasons = [...]int{dropTooManyLabels, dropLabelTooLong}

// refusal returns the drop* reason for which the receiver would refuse s,
// or -1.
func (t *seriesTable) refusal(s *series) int {
	for i, r := range t.refused {
		if s == r {
			return refusedReasons[i]
		}
	}
	return -1
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
func newSeriesTable(pt *pairTable, external labels.Labels, rcfgs []*relabel.Config) *seriesTable {
	t := &seriesTable{
		pairs:    pt,
		dropped:  &series{},
		unrouted: &series{},
		external: external,
		relabel:  rcfgs,
		builder:  *labels.NewBuilder(labels.EmptyLabels()),
	}
	for i := range t.refused {
		t.refused[i] = &series{}
	}
	return t
}

// store adds the series of a Series record. A ref already known is skipped:
// the WAL may repeat Series records, but never changes a ref's labels. A
// series with a wal.RouteLabel not naming t.route is marked unrouted (and
// counted in t.notRouted); the label is removed from the others before
// anything else. It returns how many new series were dropped by
// relabeling. The labels in rs are copied.
func (t *seriesTable) store(rs []record.RefSeries) (dropped int) {
	t.overLimit = t.overLimit[:0]
	t.notRouted = 0
	for i := range rs {
		slot := t.slot(rs[i].Ref, true)
		if *slot != nil {
			continue
		}
		t.pages[uint64(rs[i].Ref)>>pageBits-t.base].live++
		t.builder.Reset(rs[i].Labels)
		if route := rs[i].Labels.Get(wal.RouteLabel); route != "" {
			if !wal.Routed(route, t.route) {
				*slot = t.unrouted
				t.notRouted++
				continue
			}
			t.builder.Del(wal.RouteLabel)
		}
		t.external.Range(func(l labels.Label) {
			if t.builder.Get(l.Name) == "" {
				t.builder.Set(l.Name, l.Value)
			}
		})
		if !relabel.ProcessBuilder(&t.builder, t.relabel...) {
			*slot = t.dropped
			dropped++
			continue
		}
		ls := t.builder.Labels()
		if o, over := t.limits.check(ls); over {
			for i, r := range refusedReasons {
				if r == o.reason {
					*slot = t.refused[i]
				}
			}
			t.overLimit = append(t.overLimit, o)
			continue
		}
		*slot = t.intern(ls)
	}
	return dropped
}

// intern returns a new series of ls, its pairs interned in t.pairs.
func (t *seriesTable) intern(ls labels.Labels) *series {
	t.ids = t.ids[:0]
	size := 0
	ls.Range(func(l labels.Label) {
		t.buf = appendEncodedLabel(t.buf[:0], l.Name, l.Value)
		id, _ := t.pairs.intern(t.buf)
		t.ids = protowire.AppendVarint(t.ids, uint64(id))
		size += len(t.buf)
	})
	t.buf = protowire.AppendVarint(t.buf[:0], uint64(size))
	t.buf = append(t.buf, t.ids...)
	return &series{ids: string(t.buf)}
}

// get returns the series for ref. known is false for a ref never seen in a
// Series record, or forgotten; s is nil for a known series dropped by
// relabeling.
func (t *seriesTable) get(ref chunks.HeadSeriesRef) (s *series, known bool) {
	p := uint64(ref)>>pageBits - t.base // wraps for refs below base: out of range
	if p >= uint64(len(t.pages)) || t.pages[p] == nil {
		return nil, false
	}
	s = t.pages[p].slots[ref&(1<<pageBits-1)]
	switch s {
	case nil:
		return nil, false
	case t.dropped:
		return nil, true
	}
	return s, true
}

// forget drops refs the WAL says get no more samples; unknown refs are
// ignored. Samples already queued keep their *series: next is the sequence
// number the next record to queue samples gets, and the series keep their
// labels until release is told that no sample below it is queued.
func (t *seriesTable) forget(refs []chunks.HeadSeriesRef, next uint64) {
	var gone []*series
	for _, ref := range refs {
		p := uint64(ref)>>pageBits - t.base
		if p >= uint64(len(t.pages)) || t.pages[p] == nil {
			continue
		}
		pg := t.pages[p]
		slot := &pg.slots[ref&(1<<pageBits-1)]
		if *slot == nil {
			continue
		}
		if (*slot).ids != "" {
			gone = append(gone, *slot)
		}
		*slot = nil
		if pg.live--; pg.live == 0 {
			t.pages[p] = nil
		}
	}
	for len(t.pages) > 0 && t.pages[0] == nil {
		t.pages = t.pages[1:]
		t.base++
	}
	if len(t.pages) == 0 {
		t.pages, t.base = nil, 0
	}
	if len(gone) == 0 {
		return
	}
	if n := len(t.retired); n > 0 && t.retired[n-1].seq == next {
		t.retired[n-1].series = append(t.retired[n-1].series, gone...)
		return
	}
	t.retired = append(t.retired, retiredSeries{seq: next, series: gone})
}

// release gives up the pairs of the series forgotten before sequence number
// oldest: no sample queued or in flight has a lower one.
func (t *seriesTable) release(oldest uint64) {
	n := 0
	for n < len(t.retired) && t.retired[n].seq <= oldest {
		n++
	}
	if n == 0 {
		return
	}
	for _, r := range t.retired[:n] {
		for _, s := range r.series {
			t.releaseIDs(s.ids)
		}
	}
	clear(t.retired[:n])
	t.retired = t.retired[n:]
	if len(t.retired) == 0 {
		t.retired = nil
	}
}

// close gives up the pairs of every series, live or retired. No series of
// the table may be read afterwards: their labels are gone. The slots stay,
// so the table can still count them.
func (t *seriesTable) close() {
	if t.closed {
		return
	}
	t.closed = true
	for _, p := range t.pages {
		if p == nil {
			continue
		}
		for _, s := range p.slots {
			if s != nil {
				t.releaseIDs(s.ids)
			}
		}
	}
	for _, r := range t.retired {
		for _, s := range r.series {
			t.releaseIDs(s.ids)
		}
	}
	t.retired = nil
}

// releaseIDs drops a reference to each pair of ids.
func (t *seriesTable) releaseIDs(ids string) {
	if ids == "" {
		return
	}
	_, ids, _ = cutUvarint(ids) // the size
	for ids != "" {
		var id uint32
		id, ids = nextPairID(ids)
		t.pairs.release(id)
	}
}

// slot returns the slot of ref, adding its page if add is set (otherwise
// nil when there is none).
func (t *seriesTable) slot(ref chunks.HeadSeriesRef, add bool) **series {
	p := uint64(ref) >> pageBits
	if len(t.pages) == 0 {
		if !add {
			return nil
		}
		t.base = p
	}
	if p < t.base {
		if !add {
			return nil
		}
		// A ref below every page held (refs from an earlier process, read
		// after newer ones): move the pages up.
		grown := make([]*seriesPage, len(t.pages)+int(t.base-p))
		copy(grown[t.base-p:], t.pages)
		t.pages, t.base = grown, p
	}
	i := p - t.base
	for uint64(len(t.pages)) <= i {
		if !add {
			return nil
		}
		t.pages = append(t.pages, nil)
	}
	if t.pages[i] == nil {
		if !add {
			return nil
		}
		t.pages[i] = &seriesPage{}
	}
	return &t.pages[i].slots[ref&(1<<pageBits-1)]
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
