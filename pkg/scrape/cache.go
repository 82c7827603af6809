package scrape

import (
	"hash/maphash"
	"math"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/hashindex"
	"github.com/rwagent/rwagent/pkg/offheap"
	"github.com/rwagent/rwagent/pkg/wal"
)

// seriesCache remembers, for one target, which WAL series ref each exposed
// series was given and when it was last seen. It keeps neither the raw
// series text nor the labels: the labels go to the WAL once, in the series
// record, and staleness needs only the ref.
//
// An entry is one series, found two ways. keys leads from the hash of a raw
// series text of the exposition (the p.Series() bytes: a hit costs a hash,
// a probe and no labels) to the entry whose own text it is, or to an alias:
// another text of a series (its labels written in another order, or made
// equal by relabelling), or a text whose series relabelling dropped. byHash
// leads from the hash of the final label set to the entry, so that a text
// not seen before whose labels are a known series' (or a cache handed over
// to a loop whose relabelling changed) keeps that series' ref.
//
// Both hashes are 128 bits, and a hit trusts them: two texts (or two label
// sets) of one target with the same hash would share a ref, and one
// series' samples would go silently to the other. At 64 bits, 10 million
// series of one target hold such a pair with a chance of n²/2⁶⁵ = 3·10⁻⁶,
// and churn adds up: every text not seen before is checked against every
// live one, and with 10% of the 10 million new each minute that is 5·10¹⁸
// pairs a year, a collision every three or four years (2⁶⁴ = 1.8·10¹⁹). At
// 128 bits it is one in 10²⁰ years. The first half of each hash places it
// in its index, the second is computed only when a first half matches.
// For a label set the first half is labels.Hash (xxhash64), the second
// maphash under the cache's own random seed. For a text, hashed on every
// sample, both halves are maphash, under two seeds of the cache's own: it
// reads a line's bytes at about twice xxhash's speed (AES rounds), and a
// target cannot choose texts that collide in either half, nor texts that
// share a probe sequence to slow the index down. The 16 bytes a series
// this costs beside 64-bit hashes buy that.
//
// Memory: an entry is 56 bytes; with the two indexes (4 bytes a slot, at
// most three quarters full) a series costs about 70 bytes, aliases aside.
// The entries and the indexes of a target of more than about a thousand
// series live off the Go heap (package offheap), where the agent's GOGC of
// 50 does not add half as much again for them: whoever ends a cache's use
// calls close.
//
// Iterations: each scrape attempt, failed or not, is one iteration. A sample
// seen in an iteration marks its entry; finish commits the marks of a
// successful scrape, writes a stale marker for every tracked entry that was
// committed in the previous iteration but not in this one, and forgets (and
// releases the ref of) every entry unseen for two iterations, with its
// text and aliases.
//
// A seriesCache is owned by one loop at a time and is not safe for
// concurrent use. The zero value is not usable; use newSeriesCache, and
// close once done with it.
type seriesCache struct {
	iter uint32 // current iteration; starts at 2 so that 0 means "never"

	keys    hashindex.Index // text hash -> entry, or aliasBit|alias
	aliases []alias
	freeA   []int32

	entries offheap.Slice[cacheEntry]
	freeE   []int32
	byHash  hashindex.Index   // label hash -> entry
	names   []string          // metric names of the entries, by cacheEntry.name
	nameIDs map[string]uint32 // index of each name in names

	hseed maphash.Seed // of the first half of the text hashes
	seed  maphash.Seed // of the second half of the text hashes
	lhash maphash.Hash // of the second half of the label hashes; seeded once

	// next is the entry lookup tries before the index: the one after the
	// entry last found or keyed. Exporters write their series in the same
	// order on every scrape, and the entries of a target's first scrape
	// are created in that order, so it is mostly the one.
	next int32

	// knownKey's answer: the text (its first byte and length) it found to
	// be entry known's, which lookup then returns without hashing again.
	// knownAt is nil when there is none; finish clears it, so that it
	// does not keep a body alive.
	knownAt  *byte
	knownLen int
	known    int32

	// exT is the timestamp of the newest exemplar logged, by entry, for the
	// series that had one (few do; nil until then).
	exT map[int32]int64

	meta map[string]*metaEntry // metric family name -> metadata

	// Synthetic series (up, scrape_duration_seconds, ...), by reportSeries index.
	reportRefs   [numReportSeries]chunks.HeadSeriesRef
	reportLogged [numReportSeries]bool

	// Scratch for one iteration, reused.
	created  []int32                // entries created in this iteration, freed on rollback
	undo     []undoT                // committed timestamps overwritten in this iteration, restored on rollback
	released []chunks.HeadSeriesRef // refs to release after this iteration's Log; reset by finish and end

	// Stale histogram values, shared by every stale marker of this cache and
	// never modified.
	staleH  *histogram.Histogram
	staleFH *histogram.FloatHistogram
}

// hash128 is a 128-bit hash: h places it in an index, x confirms it. The
// zero value stands for no hash.
type hash128 struct{ h, x uint64 }

// aliasBit marks a position in keys as an alias rather than an entry.
// Entries and aliases are each fewer than 2³¹: 2³¹ entries would take
// 120 GB.
const aliasBit = 1 << 31

// alias is a raw text that is not its entry's own (see seriesCache); entry
// is -1 for a text whose series relabelling dropped. Aliases of a freed
// entry are swept by the finish or rollback that frees it, so between
// iterations every alias leads to a live entry (or to none).
type alias struct {
	text  hash128
	entry int32
	seen  uint32 // last iteration the text was exposed; 0 for a free alias
}

type valueKind uint8

const (
	kindFloat valueKind = iota
	kindHistogram
	kindFloatHistogram
)

// cacheEntry is one series: the hashes of its own raw text and of its
// label set, its WAL ref and the timestamp that decides which of its
// samples are logged. It is 56 bytes (textLen fills what was padding).
type cacheEntry struct {
	text hash128 // of the raw text the entry was resolved from; zero after resetKeys
	lbls hash128 // of the label set
	ref  chunks.HeadSeriesRef
	// lastT is the timestamp of the last committed sample (math.MinInt64 if
	// none), or, with flagUndo, of the sample appended in this iteration.
	lastT int64
	name  uint32 // the series' metric name: seriesCache.names[name]
	// textLen is the length of the entry's own text if a fast path of the
	// text formats read it (exposition.FastSeries) and it is shorter than
	// 64 KiB, else 0: knownKey answers for it.
	textLen uint16
	kind    valueKind
	flags   entryFlags
}

// undoT is the committed timestamp of an entry whose lastT a sample with
// its own timestamp overwrote in this iteration.
type undoT struct {
	entry int32
	t     int64
}

// entryFlags are the state bits of an entry. Two bits stand for the
// iterations of its last mark and commit: finish visits every live entry
// in each iteration, and forgets one unseen for two iterations, so an
// entry is marked in this iteration or not, and was committed in the last
// iteration or in the one before.
type entryFlags uint8

const (
	flagLive entryFlags = 1 << iota
	// flagMarked: a sample of the series was seen in this iteration;
	// flagMarkTracked is set.
	flagMarked
	// flagMarkTracked: the sample marked in this iteration takes part in
	// staleness.
	flagMarkTracked
	// flagCommitted: the series was committed in the last finished
	// iteration (else in the one before).
	flagCommitted
	// flagTracked: the committed sample takes part in staleness (not a
	// sample with its own timestamp, as in Prometheus).
	flagTracked
	// flagPendNow: a sample at the scrape's own timestamp was appended in
	// this iteration (the common case, which needs no more than this bit).
	flagPendNow
	// flagUndo: lastT holds the timestamp of a sample with its own
	// timestamp appended in this iteration, and seriesCache.undo the
	// committed one.
	flagUndo
)

// pendingFlags are the flags that hold for one iteration.
const pendingFlags = flagMarked | flagMarkTracked | flagPendNow | flagUndo

// has says whether every flag of f is set.
func (e *cacheEntry) has(f entryFlags) bool { return e.flags&f == f }

// mark records the first sight of the series in this iteration. tracked
// says whether its sample takes part in staleness.
func (e *cacheEntry) mark(tracked bool) {
	e.flags |= flagMarked
	if tracked {
		e.flags |= flagMarkTracked
	}
}

// pending returns the timestamp of the newest sample appended to entry e
// in this iteration, scraped at t, or, if none, of the committed one.
func (e *cacheEntry) pending(t int64) int64 {
	if e.flags&flagPendNow != 0 {
		return t
	}
	return e.lastT
}

// appended records that a sample at st, newer than e's pending one, was
// appended to entry i in this iteration, scraped at t. It stays revocable
// until finish: a sample at t costs a bit; one with its own timestamp
// overwrites lastT and keeps the committed value in c.undo.
func (c *seriesCache) appended(i int32, st, t int64) {
	e := &c.entries.Elems()[i]
	if st == t {
		e.flags |= flagPendNow
		return
	}
	if e.flags&flagUndo == 0 {
		c.undo = append(c.undo, undoT{entry: i, t: e.lastT})
		e.flags |= flagUndo
	}
	e.lastT = st
	e.flags &^= flagPendNow
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
	c := &seriesCache{
		iter:    2,
		keys:    hashindex.New(minIndexSlots),
		byHash:  hashindex.New(minIndexSlots),
		nameIDs: map[string]uint32{},
		hseed:   maphash.MakeSeed(),
		seed:    maphash.MakeSeed(),
		meta:    map[string]*metaEntry{},
		staleH:  &histogram.Histogram{Sum: math.Float64frombits(value.StaleNaN)},
		staleFH: &histogram.FloatHistogram{Sum: math.Float64frombits(value.StaleNaN)},
	}
	c.lhash.SetSeed(maphash.MakeSeed())
	return c
}

// lookup returns the entry for the raw series text b, or -1 when the text
// is unknown or its series was dropped (dropped says which); for an unknown
// text the caller resolves the labels and calls setKey. lookup does not
// allocate.
func (c *seriesCache) lookup(b []byte) (entry int32, dropped bool) {
	// Probing here rather than through a hashOf callback: with one, lookup
	// took about 5% longer. The second half of the hash is computed only
	// when a first half matches. A text's hash is its entry's own text or
	// an alias's, never both (setKey keys only texts lookup missed), so
	// an entry whose own text matches is the index's answer too.
	if at := c.knownAt; at != nil {
		c.knownAt = nil
		if len(b) == c.knownLen && &b[0] == at {
			// The very bytes knownKey hashed.
			c.next = c.known + 1
			return c.known, false
		}
	}
	h := maphash.Bytes(c.hseed, b)
	var x uint64
	if n := c.next; int(n) < c.entries.Len() {
		if e := &c.entries.Elems()[n]; e.text.h == h && e.has(flagLive) {
			x = maphash.Bytes(c.seed, b)
			if e.text.x == x {
				c.next = n + 1
				return n, false
			}
		}
	}
	for i := c.keys.Home(h); ; i = c.keys.Next(i) {
		p := c.keys.At(i)
		if p < 0 {
			return -1, false
		}
		if p&aliasBit == 0 {
			e := &c.entries.Elems()[p]
			if e.text.h != h {
				continue
			}
			if x == 0 {
				x = maphash.Bytes(c.seed, b)
			}
			if e.text.x == x {
				c.next = int32(p) + 1
				return int32(p), false
			}
			continue
		}
		a := &c.aliases[p&^aliasBit]
		if a.text.h != h {
			continue
		}
		if x == 0 {
			x = maphash.Bytes(c.seed, b)
		}
		if a.text.x == x {
			a.seen = c.iter
			if a.entry >= 0 {
				c.next = a.entry + 1
			}
			return a.entry, a.entry < 0
		}
	}
}

// knownKey is exposition.Parsers.KnownKey: if line starts with the own
// text of the entry lookup tries first (c.next), read by a fast path,
// followed by a space, it returns the text's length, and the lookup of
// that text that follows returns the entry without hashing it again. The
// answer rests on the text's 128-bit hash, as lookup's does.
func (c *seriesCache) knownKey(line []byte) int {
	n := c.next
	if int(n) >= c.entries.Len() {
		return 0
	}
	e := &c.entries.Elems()[n]
	l := int(e.textLen)
	if l == 0 || l >= len(line) || line[l] != ' ' || !e.has(flagLive) {
		return 0
	}
	if maphash.Bytes(c.hseed, line[:l]) != e.text.h || maphash.Bytes(c.seed, line[:l]) != e.text.x {
		return 0
	}
	c.knownAt, c.knownLen, c.known = &line[0], l, n
	return l
}

// textHash returns the 128-bit hash of the raw text b.
func (c *seriesCache) textHash(b []byte) hash128 {
	return hash128{maphash.Bytes(c.hseed, b), maphash.Bytes(c.seed, b)}
}

// labelsHash returns the 128-bit hash of a label set.
func (c *seriesCache) labelsHash(lset labels.Labels) hash128 {
	c.lhash.Reset()
	lset.Range(func(l labels.Label) {
		c.lhash.WriteString(l.Name)
		c.lhash.WriteByte(0xff)
		c.lhash.WriteString(l.Value)
		c.lhash.WriteByte(0xff)
	})
	return hash128{lset.Hash(), c.lhash.Sum64()}
}

// setKey makes the raw text b, for which lookup returned -1 and not
// dropped, lead to entry (or to "dropped" when entry is -1): as the
// entry's own text if it has none, else as an alias. fast says whether a
// fast path of the text formats read b (exposition.FastSeries), so that
// knownKey may answer for it.
func (c *seriesCache) setKey(b []byte, entry int32, fast bool) {
	k := c.textHash(b)
	if entry >= 0 {
		c.next = entry + 1
	}
	if entry >= 0 && c.entries.Elems()[entry].text == (hash128{}) && k != (hash128{}) {
		e := &c.entries.Elems()[entry]
		e.text = k
		if fast && len(b) <= math.MaxUint16 {
			e.textLen = uint16(len(b))
		}
		c.keys.Insert(freeSlot(&c.keys, k.h), uint32(entry), c.keyHash)
		return
	}
	a := alias{text: k, entry: entry, seen: c.iter}
	var i int32
	if n := len(c.freeA); n > 0 {
		i = c.freeA[n-1]
		c.freeA = c.freeA[:n-1]
		c.aliases[i] = a
	} else {
		i = int32(len(c.aliases))
		c.aliases = append(c.aliases, a)
	}
	c.keys.Insert(freeSlot(&c.keys, k.h), aliasBit|uint32(i), c.keyHash)
}

// keyHash is the hashOf of keys.
func (c *seriesCache) keyHash(p uint32) uint64 {
	if p&aliasBit != 0 {
		return c.aliases[p&^aliasBit].text.h
	}
	return c.entries.Elems()[p].text.h
}

// labelHash is the hashOf of byHash.
func (c *seriesCache) labelHash(p uint32) uint64 { return c.entries.Elems()[p].lbls.h }

// freeSlot returns the free slot that ends the probe for h in x, where a
// position for h is inserted.
func freeSlot(x *hashindex.Index, h uint64) hashindex.Slot {
	i := x.Home(h)
	for x.At(i) >= 0 {
		i = x.Next(i)
	}
	return i
}

// unindex forgets position pos, held for hash h, in x.
func unindex(x *hashindex.Index, h uint64, pos uint32, hashOf func(uint32) uint64) {
	for i := x.Home(h); ; i = x.Next(i) {
		switch p := x.At(i); {
		case p < 0:
			return
		case uint32(p) == pos:
			x.Delete(i, hashOf)
			return
		}
	}
}

// find returns the live entry whose label set has hash l, or -1.
func (c *seriesCache) find(l hash128) int32 {
	for i := c.byHash.Home(l.h); ; i = c.byHash.Next(i) {
		p := c.byHash.At(i)
		if p < 0 {
			return -1
		}
		if c.entries.Elems()[p].lbls == l {
			return int32(p)
		}
	}
}

// add creates an entry for a new series with ref, whose label set (of hash
// l, not in the cache) is lset. It is recorded as created in this
// iteration until finish or rollback. Its text is set by setKey.
func (c *seriesCache) add(ref chunks.HeadSeriesRef, lset labels.Labels, l hash128) int32 {
	var i int32
	if n := len(c.freeE); n > 0 {
		i = c.freeE[n-1]
		c.freeE = c.freeE[:n-1]
	} else {
		i = int32(c.entries.Len())
		c.entries.Append(cacheEntry{})
	}
	c.entries.Elems()[i] = cacheEntry{
		ref:   ref,
		lbls:  l,
		name:  c.intern(lset.Get(model.MetricNameLabel)),
		lastT: math.MinInt64,
		flags: flagLive,
	}
	c.byHash.Insert(freeSlot(&c.byHash, l.h), uint32(i), c.labelHash)
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

// exemplarT returns the timestamp of the newest exemplar logged for entry
// i, or math.MinInt64.
func (c *seriesCache) exemplarT(i int32) int64 {
	if t, ok := c.exT[i]; ok {
		return t
	}
	return math.MinInt64
}

// setExemplarT records t as the newest exemplar logged for entry i.
func (c *seriesCache) setExemplarT(i int32, t int64) {
	if c.exT == nil {
		c.exT = map[int32]int64{}
	}
	c.exT[i] = t
}

// free forgets entry i and its own text. Its aliases are swept by
// sweepAliases.
func (c *seriesCache) free(i int32) {
	e := &c.entries.Elems()[i]
	unindex(&c.byHash, e.lbls.h, uint32(i), c.labelHash)
	if e.text != (hash128{}) {
		unindex(&c.keys, e.text.h, uint32(i), c.keyHash)
	}
	delete(c.exT, i)
	*e = cacheEntry{}
	c.freeE = append(c.freeE, i)
}

// rollback forgets the entries created in this iteration, with their
// texts: their series records were never logged. It is called by finish
// of a failed scrape, and after finish when logging failed.
func (c *seriesCache) rollback() {
	if len(c.created) == 0 {
		return
	}
	for _, i := range c.created {
		c.free(i)
	}
	c.clearCreated()
	c.sweepAliases()
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

// finish ends the iteration at timestamp t, the scrape timestamp append
// was given in it. If ok, the marks of this iteration are committed;
// otherwise the scrape counts as empty, the timestamps of its samples are
// forgotten and so are the entries created in it. Stale markers go into recs. The refs
// of the forgotten entries are put in c.released (to which report adds), to
// be released once recs is logged. The entries created in this iteration
// stay revocable (rollback) until the outcome of logging is known.
func (c *seriesCache) finish(ok bool, t int64, recs *wal.Records) {
	if !ok {
		for i := len(c.undo) - 1; i >= 0; i-- {
			c.entries.Elems()[c.undo[i].entry].lastT = c.undo[i].t
		}
		c.rollback()
	}
	c.undo = c.undo[:0]
	c.released = c.released[:0]
	stale := math.Float64frombits(value.StaleNaN)
	entries := c.entries.Elems() // free, below, does not grow it
	for i := range entries {
		e := &entries[i]
		if !e.has(flagLive) {
			continue
		}
		if ok && e.has(flagMarked) {
			if e.has(flagPendNow) {
				e.lastT = t
			}
			f := flagLive | flagCommitted
			if e.has(flagMarkTracked) {
				f |= flagTracked
			}
			e.flags = f
			continue
		}
		if e.has(flagCommitted) {
			if e.has(flagTracked) && t > e.lastT {
				c.appendStale(recs, e, t, stale)
			}
			e.flags &^= flagCommitted | pendingFlags
			continue
		}
		c.released = append(c.released, e.ref)
		c.free(int32(i))
	}
	c.sweepAliases()
	c.entries.Clip()
	c.aliases = clip(c.aliases)
	if ok {
		for name, m := range c.meta {
			if m.seen+metaRetention < c.iter {
				delete(c.meta, name)
			}
		}
	}
	c.iter++
	c.next, c.knownAt = 0, nil
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

// sweepAliases forgets aliases unseen for two iterations and those whose
// entry is gone.
func (c *seriesCache) sweepAliases() {
	for i := range c.aliases {
		a := &c.aliases[i]
		if a.seen == 0 {
			continue
		}
		if a.seen+1 < c.iter || (a.entry >= 0 && !c.entries.Elems()[a.entry].has(flagLive)) {
			unindex(&c.keys, a.text.h, aliasBit|uint32(i), c.keyHash)
			*a = alias{}
			c.freeA = append(c.freeA, int32(i))
		}
	}
}

// resetKeys forgets every raw text, keeping the entries: used when the
// mapping from text to labels changed (metric relabelling, honor_labels,
// label limits), so each text is resolved again and finds its entry by labels.
func (c *seriesCache) resetKeys() {
	c.keys.Reset()
	c.aliases = c.aliases[:0]
	c.freeA = c.freeA[:0]
	entries := c.entries.Elems()
	for i := range entries {
		entries[i].text, entries[i].textLen = hash128{}, 0
	}
}

// end writes stale markers at t for every tracked series committed in the
// last iteration and for the synthetic series, and puts every ref held in
// c.released. The cache must not be used afterwards.
func (c *seriesCache) end(t int64, recs *wal.Records) {
	stale := math.Float64frombits(value.StaleNaN)
	c.released = c.released[:0]
	entries := c.entries.Elems()
	for i := range entries {
		e := &entries[i]
		if !e.has(flagLive) {
			continue
		}
		if e.has(flagCommitted|flagTracked) && t > e.lastT {
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

// close gives back the memory of the entries and the indexes, which live
// off the Go heap. The cache must not be used afterwards; close must be
// called once, by the cache's last owner: the loop's manager once the loop
// is done and has not handed the cache over, or whoever ends a cache
// nobody took (see Manager.endCache).
func (c *seriesCache) close() {
	c.entries.Free()
	c.keys.Free()
	c.byHash.Free()
	c.freeE = nil
}

// offHeap returns the bytes of the entries and indexes held off the Go
// heap.
func (c *seriesCache) offHeap() int {
	return c.entries.OffHeap() + c.keys.OffHeap() + c.byHash.OffHeap()
}

// series returns the number of live entries.
func (c *seriesCache) series() int {
	return c.entries.Len() - len(c.freeE)
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
