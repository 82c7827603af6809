package scrape

import (
	"math"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/hashindex"
	"github.com/rwagent/rwagent/pkg/wal"
)

// seriesCache remembers, for one target, which WAL series ref each exposed
// series was given and in which scrape it was last seen.
//
// Two indexes lead to an entry: keys, by a 64-bit hash of the raw series
// text of the exposition (p.Series() bytes: a hit costs a hash, one map
// lookup and no labels; the text itself is not kept), and byHash, by the
// hash of the final label set (so the same series written two ways, or
// handed over from a loop whose relabelling changed, keeps its ref). The
// label sets are not kept either: they go to the WAL once, in the series
// record. Two series of one target with the same 64-bit label hash would
// share a ref, a chance of about n²/2⁶⁵ for n series (3·10⁻¹² at 10,000);
// keeping every label set to rule it out would cost about 150 bytes a series.
//
// Iterations: each scrape attempt, failed or not, is one iteration. A sample
// appended in an iteration marks its entry; finish commits the marks of a
// successful scrape, writes a stale marker for every tracked entry that was
// committed in the previous iteration but not in this one, and forgets (and
// releases the ref of) every entry unseen for two iterations.
//
// A seriesCache is owned by one loop at a time and is not safe for
// concurrent use. The zero value is not usable; use newSeriesCache.
type seriesCache struct {
	iter uint32 // current iteration; starts at 2 so that 0 means "never"

	keys  hashindex.Index // hash of the raw series text -> index in slots
	slots []keySlot
	freeS []int32

	entries []cacheEntry
	freeE   []int32
	byHash  hashindex.Index   // label hash -> first entry of its chain
	names   []string          // metric names of the entries, by cacheEntry.name
	nameIDs map[string]uint32 // index of each name in names

	meta map[string]*metaEntry // metric family name -> metadata

	// Synthetic series (up, scrape_duration_seconds, ...), by reportSeries index.
	reportRefs   [numReportSeries]chunks.HeadSeriesRef
	reportLogged [numReportSeries]bool

	// Scratch for one iteration, reused.
	created  []int32                // entries created in this iteration, freed on rollback
	released []chunks.HeadSeriesRef // refs to release after this iteration's Log; reset by finish and end

	// Stale histogram values, shared by every stale marker of this cache and
	// never modified.
	staleH  *histogram.Histogram
	staleFH *histogram.FloatHistogram
}

// keySlot is one raw series text, known by its hash and length: two texts
// of one target with the same hash and length would share a slot, which at
// 64 bits is a chance of about n²/2⁶⁵ for n series (3·10⁻¹² at 10,000); a
// same-hash text of another length only costs resolving its labels again.
// entry is -1 for text whose series metric relabelling dropped.
type keySlot struct {
	hash  uint64
	size  uint32 // length of the text
	entry int32
	gen   uint32 // gen of the entry when the slot was filled; a mismatch means the entry is gone
	seen  uint32 // last iteration the text was exposed; 0 for a free slot
}

type valueKind uint8

const (
	kindFloat valueKind = iota
	kindHistogram
	kindFloatHistogram
)

// cacheEntry is one series: the hash of its label set and its WAL ref. It
// is 64 bytes.
type cacheEntry struct {
	ref   chunks.HeadSeriesRef
	hash  uint64 // of the label set
	lastT int64  // timestamp of the last committed sample; math.MinInt64 if none
	pendT int64  // timestamp of the sample marked in this iteration
	exT   int64  // timestamp of the newest exemplar logged
	mark  uint32
	last  uint32 // last committed iteration; 0 if none
	next  int32  // next entry with the same label hash, -1 if none
	gen   uint32 // incremented when the entry is freed
	name  uint32 // the series' metric name: seriesCache.names[name]
	kind  valueKind
	live  bool
	// tracked says whether the committed sample takes part in staleness
	// (false for samples with their own timestamp, like Prometheus);
	// markTracked is the same for the sample marked in this iteration.
	tracked, markTracked bool
}

// metaEntry is the metadata of one metric family.
type metaEntry struct {
	name    string
	typ     model.MetricType
	help    string
	unit    string
	seen    uint32 // last iteration the family was exposed
	changed uint32 // last iteration any field changed
}

// minIndexSlots is the smallest table of a cache's indexes: 512 bytes a
// target for both.
const minIndexSlots = 64

// metaRetention is how many iterations the metadata of a vanished family is
// kept, as Prometheus does.
const metaRetention = 10

func newSeriesCache() *seriesCache {
	return &seriesCache{
		iter:    2,
		keys:    hashindex.New(minIndexSlots),
		byHash:  hashindex.New(minIndexSlots),
		nameIDs: map[string]uint32{},
		meta:    map[string]*metaEntry{},
		staleH:  &histogram.Histogram{Sum: math.Float64frombits(value.StaleNaN)},
		staleFH: &histogram.FloatHistogram{Sum: math.Float64frombits(value.StaleNaN)},
	}
}

// lookup returns the entry for the raw series text b. slot is the index of
// the text's slot, or -1 if the text is unknown. dropped says relabelling
// dropped the series. entry is -1 when the text is unknown or its series is
// gone; then the caller resolves the labels and calls setKey.
// lookup does not allocate.
func (c *seriesCache) lookup(b []byte) (slot, entry int32, dropped bool) {
	// Probing here rather than calling c.keys.Find: with hashOf, lookup
	// took about 5% longer.
	h := xxhash.Sum64(b)
	si := int32(-1)
	for i := c.keys.Home(h); ; i = c.keys.Next(i) {
		p := c.keys.At(i)
		if p < 0 {
			break
		}
		if c.slots[p].hash == h {
			si = int32(p)
			break
		}
	}
	if si < 0 {
		return -1, -1, false
	}
	s := &c.slots[si]
	if s.size != uint32(len(b)) {
		return -1, -1, false // another text with the same hash
	}
	s.seen = c.iter
	if s.entry < 0 {
		return si, -1, true
	}
	if c.entries[s.entry].gen != s.gen {
		return si, -1, false
	}
	return si, s.entry, false
}

// setKey points the raw text b at entry (or at "dropped" when entry is -1).
// slot is what lookup returned for b.
func (c *seriesCache) setKey(slot int32, b []byte, entry int32) {
	var gen uint32
	if entry >= 0 {
		gen = c.entries[entry].gen
	}
	if slot >= 0 {
		s := &c.slots[slot]
		s.entry, s.gen, s.seen = entry, gen, c.iter
		return
	}
	h := xxhash.Sum64(b)
	s := keySlot{hash: h, size: uint32(len(b)), entry: entry, gen: gen, seen: c.iter}
	if n := len(c.freeS); n > 0 {
		slot = c.freeS[n-1]
		c.freeS = c.freeS[:n-1]
		c.slots[slot] = s
	} else {
		slot = int32(len(c.slots))
		c.slots = append(c.slots, s)
	}
	c.keys.Set(h, uint32(slot), c.slotHash) // a same-hash text of another length loses its slot
}

func (c *seriesCache) slotHash(i uint32) uint64  { return c.slots[i].hash }
func (c *seriesCache) entryHash(i uint32) uint64 { return c.entries[i].hash }

// find returns the live entry whose label set has hash h, or -1.
func (c *seriesCache) find(h uint64) int32 {
	if i, ok := c.byHash.Find(h, c.entryHash); ok {
		return int32(i)
	}
	return -1
}

// add creates an entry for a new series with ref. It is recorded as created
// in this iteration until finish or rollback.
func (c *seriesCache) add(ref chunks.HeadSeriesRef, lset labels.Labels, h uint64) int32 {
	var i int32
	if n := len(c.freeE); n > 0 {
		i = c.freeE[n-1]
		c.freeE = c.freeE[:n-1]
	} else {
		i = int32(len(c.entries))
		c.entries = append(c.entries, cacheEntry{})
	}
	e := &c.entries[i]
	head := c.find(h)
	*e = cacheEntry{
		ref:   ref,
		hash:  h,
		name:  c.intern(lset.Get(model.MetricNameLabel)),
		lastT: math.MinInt64,
		exT:   math.MinInt64,
		next:  head,
		gen:   e.gen,
		live:  true,
	}
	c.byHash.Set(h, uint32(i), c.entryHash)
	c.created = append(c.created, i)
	return i
}

// intern returns the index of name in c.names, adding it if new. Names are
// kept for the cache's life, as few as the target's metric names.
func (c *seriesCache) intern(name string) uint32 {
	if id, ok := c.nameIDs[name]; ok {
		return id
	}
	name = strings.Clone(name) // not a view that keeps its label set alive
	id := uint32(len(c.names))
	c.names = append(c.names, name)
	c.nameIDs[name] = id
	return id
}

// name returns the metric name of entry e.
func (c *seriesCache) name(e *cacheEntry) string { return c.names[e.name] }

// free forgets entry i. Key slots pointing at it become misses.
func (c *seriesCache) free(i int32) {
	e := &c.entries[i]
	h := e.hash
	if head := c.find(h); head == i {
		if e.next >= 0 {
			c.byHash.Set(h, uint32(e.next), c.entryHash)
		} else {
			c.byHash.Remove(h, c.entryHash)
		}
	} else {
		for p := head; p >= 0; p = c.entries[p].next {
			if c.entries[p].next == i {
				c.entries[p].next = e.next
				break
			}
		}
	}
	*e = cacheEntry{gen: e.gen + 1, next: -1}
	c.freeE = append(c.freeE, i)
}

// rollback forgets the entries created in this iteration: their series
// records were never logged.
func (c *seriesCache) rollback() {
	for _, i := range c.created {
		c.free(i)
	}
	c.clearCreated()
}

// clearCreated empties c.created. A long list (a target's first scrape, or
// heavy churn) is dropped rather than kept for the next such scrape: it
// would cost 4 bytes a series for the cache's life.
func (c *seriesCache) clearCreated() {
	if cap(c.created) > 1024 {
		c.created = nil
		return
	}
	c.created = c.created[:0]
}

// finish ends the iteration at timestamp t. If ok, the marks of this
// iteration are committed; otherwise the scrape counts as empty and the
// entries created in it are forgotten. Stale markers go into recs. The refs
// of the forgotten entries are put in c.released (to which report adds), to
// be released once recs is logged. The entries created in this iteration
// stay revocable (rollback) until the outcome of logging is known.
func (c *seriesCache) finish(ok bool, t int64, recs *wal.Records) {
	if !ok {
		c.rollback()
	}
	c.released = c.released[:0]
	stale := math.Float64frombits(value.StaleNaN)
	for i := range c.entries {
		e := &c.entries[i]
		if !e.live {
			continue
		}
		if ok && e.mark == c.iter {
			e.last, e.lastT, e.tracked = c.iter, e.pendT, e.markTracked
			continue
		}
		switch {
		case e.last == c.iter-1:
			if e.tracked && t > e.lastT {
				c.appendStale(recs, e, t, stale)
			}
		case e.last+1 < c.iter:
			c.released = append(c.released, e.ref)
			c.free(int32(i))
		}
	}
	c.sweepKeys()
	c.entries = clip(c.entries)
	c.slots = clip(c.slots)
	if ok {
		for name, m := range c.meta {
			if m.seen+metaRetention < c.iter {
				delete(c.meta, name)
			}
		}
	}
	c.iter++
}

func (c *seriesCache) appendStale(recs *wal.Records, e *cacheEntry, t int64, stale float64) {
	switch e.kind {
	case kindHistogram:
		recs.Histograms = append(recs.Histograms, record.RefHistogramSample{Ref: e.ref, T: t, H: c.staleH})
	case kindFloatHistogram:
		recs.FloatHistograms = append(recs.FloatHistograms, record.RefFloatHistogramSample{Ref: e.ref, T: t, FH: c.staleFH})
	default:
		recs.Samples = append(recs.Samples, record.RefSample{Ref: e.ref, T: t, V: stale})
	}
}

// clip returns s, reallocated to its length if append left more than a
// sixteenth of it spare (up to a quarter, for a slice of thousands). The
// cache's slices grow in a target's first scrapes and then rarely: the
// entries freed by churn are reused.
func clip[E any](s []E) []E {
	if len(s) < 1024 || cap(s)-len(s) <= len(s)/16 {
		return s
	}
	return append(make([]E, 0, len(s)), s...)
}

// sweepKeys forgets raw texts unseen for two iterations and texts whose
// entry is gone.
func (c *seriesCache) sweepKeys() {
	for i := range c.slots {
		s := &c.slots[i]
		if s.seen == 0 {
			continue
		}
		if s.seen+1 < c.iter || (s.entry >= 0 && c.entries[s.entry].gen != s.gen) {
			if p, ok := c.keys.Find(s.hash, c.slotHash); ok && p == uint32(i) {
				c.keys.Remove(s.hash, c.slotHash)
			}
			*s = keySlot{}
			c.freeS = append(c.freeS, int32(i))
		}
	}
}

// resetKeys forgets every raw text, keeping the entries: used when the
// mapping from text to labels changed (metric relabelling, honor_labels,
// label limits), so each text is resolved again and finds its entry by labels.
func (c *seriesCache) resetKeys() {
	c.keys.Reset()
	c.slots = c.slots[:0]
	c.freeS = c.freeS[:0]
}

// end writes stale markers at t for every tracked series committed in the
// last iteration and for the synthetic series, and puts every ref held in
// c.released. The cache must not be used afterwards.
func (c *seriesCache) end(t int64, recs *wal.Records) {
	stale := math.Float64frombits(value.StaleNaN)
	c.released = c.released[:0]
	for i := range c.entries {
		e := &c.entries[i]
		if !e.live {
			continue
		}
		if e.last == c.iter-1 && e.tracked && t > e.lastT {
			c.appendStale(recs, e, t, stale)
		}
		c.released = append(c.released, e.ref)
	}
	for i, ref := range c.reportRefs {
		if ref == 0 {
			continue
		}
		if c.reportLogged[i] {
			recs.Samples = append(recs.Samples, record.RefSample{Ref: ref, T: t, V: stale})
		}
		c.released = append(c.released, ref)
	}
}

// series returns the number of live entries.
func (c *seriesCache) series() int {
	return len(c.entries) - len(c.freeE)
}

// family returns the metadata entry of family name, marked seen. setType,
// setHelp and setUnit update one field; they allocate only when the family is
// new or a value changed.
func (c *seriesCache) family(name []byte) *metaEntry {
	m, ok := c.meta[string(name)]
	if !ok {
		m = &metaEntry{name: string(name), typ: model.MetricTypeUnknown, changed: c.iter}
		c.meta[m.name] = m
	}
	m.seen = c.iter
	return m
}

func (c *seriesCache) setType(name []byte, t model.MetricType) *metaEntry {
	m := c.family(name)
	if m.typ != t {
		m.typ, m.changed = t, c.iter
	}
	return m
}

func (c *seriesCache) setHelp(name, help []byte) *metaEntry {
	m := c.family(name)
	if m.help != string(help) {
		m.help, m.changed = string(help), c.iter
	}
	return m
}

func (c *seriesCache) setUnit(name, unit []byte) *metaEntry {
	m := c.family(name)
	if m.unit != string(unit) {
		m.unit, m.changed = string(unit), c.iter
	}
	return m
}
