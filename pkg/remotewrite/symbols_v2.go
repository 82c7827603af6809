package remotewrite

import (
	"cmp"
	"slices"

	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/rwagent/rwagent/pkg/hashindex"
)

// symbolTable is the symbols table of one 2.0 request, ordered by use: the
// strings the request refers to most get the smallest refs, so the 127
// most used (label names, metric names, help texts, common values) take a
// 1-byte varint in every reference, and the references of one metric
// family repeat byte for byte, which snappy finds. The spec leaves the
// order to the sender ("the receiver should not assume any particular
// encoding"); only the empty string must come first.
//
// symbolize hands out provisional refs in first-seen order and counts
// uses; finish renumbers every reference of the request. It is not safe
// for concurrent use; its zero value is ready to use and it keeps its
// buffers across requests.
type symbolTable struct {
	refs    map[string]uint32 // provisional ref by string, "" excluded
	strings []string          // by provisional ref; strings[0] is ""
	uses    []uint32          // by provisional ref
	order   []uint32          // scratch: provisional refs in final order
	final   []uint32          // final ref by provisional ref
	out     []string          // by final ref
}

// reset empties the table for a new request.
func (t *symbolTable) reset() {
	if t.refs == nil {
		t.refs = map[string]uint32{}
	}
	clear(t.refs)
	t.strings = append(t.strings[:0], "")
	t.uses = append(t.uses[:0], 0)
}

// symbolize returns the provisional ref of s, adding it if new, and counts
// one use. The empty string is always ref 0, final and provisional.
func (t *symbolTable) symbolize(s string) uint32 {
	if s == "" {
		return 0
	}
	ref, ok := t.refs[s]
	if !ok {
		ref = uint32(len(t.strings))
		t.strings = append(t.strings, s)
		t.uses = append(t.uses, 0)
		t.refs[s] = ref
	}
	t.uses[ref]++
	return ref
}

// use counts one more use of ref, a provisional ref symbolize returned
// since the last reset.
func (t *symbolTable) use(ref uint32) {
	t.uses[ref]++
}

// finish orders the symbols by uses, most used first (first seen first
// among equals; strings used once keep their first-seen order after the
// others), rewrites every provisional ref in ts (labels, exemplar labels,
// metadata) to its final ref, and returns the symbols in final order. The
// slice is owned by the table and valid until the next reset.
func (t *symbolTable) finish(ts []writev2.TimeSeries) []string {
	n := len(t.strings)
	t.order = t.order[:0]
	for ref := 1; ref < n; ref++ {
		if t.uses[ref] > 1 {
			t.order = append(t.order, uint32(ref))
		}
	}
	slices.SortStableFunc(t.order, func(a, b uint32) int { return cmp.Compare(t.uses[b], t.uses[a]) })
	for ref := 1; ref < n; ref++ {
		if t.uses[ref] <= 1 {
			t.order = append(t.order, uint32(ref))
		}
	}
	t.final = slices.Grow(t.final[:0], n)[:n]
	t.out = append(t.out[:0], "")
	for i, ref := range t.order {
		t.final[ref] = uint32(i + 1)
		t.out = append(t.out, t.strings[ref])
	}
	t.final[0] = 0
	for i := range ts {
		s := &ts[i]
		t.rewrite(s.LabelsRefs)
		for j := range s.Exemplars {
			t.rewrite(s.Exemplars[j].LabelsRefs)
		}
		s.Metadata.HelpRef = t.final[s.Metadata.HelpRef]
		s.Metadata.UnitRef = t.final[s.Metadata.UnitRef]
	}
	return t.out
}

func (t *symbolTable) rewrite(refs []uint32) {
	for i, r := range refs {
		refs[i] = t.final[r]
	}
}

// pairRefs maps the label pairs (pair table ids) one 2.0 request has
// symbolized so far to their provisional symbol refs, so that a pair the
// request names again costs a lookup by its id: no string read, compared
// or hashed. It is emptied with the request's symbolTable, keeps its
// buffers, and holds at most the request's distinct pairs, whatever the
// size of the pair table. It is not safe for concurrent use.
type pairRefs struct {
	index   hashindex.Index // positions in refs by pairRefHash of the id
	refs    []pairRef
	hashOfF func(uint32) uint64 // hashOf, bound once
}

// pairRef is one pair's provisional refs.
type pairRef struct {
	id          uint32
	name, value uint32
}

// minPairRefSlots is the smallest index: a request of 2,000 samples of
// node_exporter-like series names some thousands of distinct pairs.
const minPairRefSlots = 4096

// reset empties m for a new request.
func (m *pairRefs) reset() {
	if m.hashOfF == nil {
		m.index = hashindex.New(minPairRefSlots)
		m.hashOfF = m.hashOf
	}
	m.index.Reset()
	m.refs = m.refs[:0]
}

// free gives back the index's table, which a request of many thousand
// distinct pairs grows off the Go heap (package offheap). Its owner calls
// it when done with m (shard.run, as it returns); a reset makes m usable
// again.
func (m *pairRefs) free() {
	m.index.Free()
	m.hashOfF = nil
}

// pairRefHash spreads pair ids, which come in runs of consecutive ones,
// over the index (Fibonacci hashing: the product's high half).
func pairRefHash(id uint32) uint64 {
	return uint64(id) * 0x9e3779b97f4a7c15 >> 32
}

func (m *pairRefs) hashOf(pos uint32) uint64 { return pairRefHash(m.refs[pos].id) }

// find returns the refs of pair id, or nil if the request has not named
// it since the last reset; then at is where insert records it.
func (m *pairRefs) find(id uint32) (r *pairRef, at hashindex.Slot) {
	for i := m.index.Home(pairRefHash(id)); ; i = m.index.Next(i) {
		p := m.index.At(i)
		if p < 0 {
			return nil, i
		}
		if r := &m.refs[p]; r.id == id {
			return r, i
		}
	}
}

// insert records r at the slot find returned for r.id, with no insert
// since.
func (m *pairRefs) insert(at hashindex.Slot, r pairRef) {
	m.refs = append(m.refs, r)
	m.index.Insert(at, uint32(len(m.refs)-1), m.hashOfF)
}
