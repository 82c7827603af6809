package gateway

import (
	"hash/maphash"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/wal"
)

// Storage is where received samples go; *wal.WAL implements it. Its
// methods must be safe for concurrent use.
type Storage interface {
	// NewRef returns a series ref unique in the storage, shared with
	// every other writer (the scrapes) so refs never collide.
	NewRef() chunks.HeadSeriesRef
	// Log writes the batch, series records first. It returns once the
	// records are as durable as the storage's fsync policy makes them.
	// It does not retain r.
	Log(r *wal.Records) error
	// Release says the series get no more samples. It does not retain refs.
	Release(refs []chunks.HeadSeriesRef)
}

// seriesCache gives received series their WAL refs, so that a series
// seen again reuses its ref and its series record is logged once. A
// series not seen for idle is released (Storage.Release) and forgotten,
// which bounds the memory to the series received within idle. It is safe
// for concurrent use.
type seriesCache struct {
	storage Storage
	idle    time.Duration

	// gate is held shared by each request from resolve until its Log has
	// returned, and exclusively by gc: no ref is released while a request
	// may still log samples for it. Take gate before mu.
	gate   sync.RWMutex
	mu     sync.Mutex
	byHash map[uint64]*cachedSeries // by labels.Hash; mu
	// byKey finds series by the hash of the key a decoder gives their
	// labels as the sender sent them (hashKey), so a series seen before
	// is neither built nor checked again. Every entry is also in byHash.
	// mu.
	byKey map[keyHash]*cachedSeries
	// seedA and seedB are the cache's own seeds of the two halves of a
	// keyHash. Set once.
	seedA, seedB maphash.Seed
}

// maxKeys bounds the keys a series is found by. A sender writes a series'
// labels the same way every time, so it has one; one that varies them
// (unknown fields, the tenant label set or not) finds the others by
// their labels.
const maxKeys = 4

// keyHash is a 128-bit hash of a series key, which the cache keeps in
// place of the key: a lookup compares 16 bytes held in the map rather
// than a key of a hundred bytes or more held elsewhere, and a series costs
// 16 bytes a key instead of the key. A key with the hash of another would
// take that key's series: the halves are maphash under two seeds of the
// cache's own, chosen at random, so a sender can find such a key only by
// chance, once in 2¹²⁸ pairs (the scrape cache keys series texts the same
// way). The zero keyHash stands for no key.
type keyHash struct{ a, b uint64 }

// hashKey returns the keyHash of key. It is safe for concurrent use.
func (c *seriesCache) hashKey(key []byte) keyHash {
	return keyHash{maphash.Bytes(c.seedA, key), maphash.Bytes(c.seedB, key)}
}

type cachedSeries struct {
	ref    chunks.HeadSeriesRef
	labels labels.Labels
	seen   int64 // Unix nanoseconds of the last request that used it; mu
	// key and more are its keys in byKey: most series have one, or none
	// (zero). mu.
	key  keyHash
	more []keyHash
	// logged is set once a Log holding its series record succeeded;
	// until then every request using it logs the record too (the same
	// ref and labels again), so that no sample is logged before its
	// series whatever order concurrent requests finish in. mu.
	logged bool
	gone   bool // forgotten by gc: a request's hint to it is stale; mu
}

func newSeriesCache(s Storage, idle time.Duration) *seriesCache {
	return &seriesCache{
		storage: s,
		idle:    idle,
		byHash:  map[uint64]*cachedSeries{},
		byKey:   map[keyHash]*cachedSeries{},
		seedA:   maphash.MakeSeed(),
		seedB:   maphash.MakeSeed(),
	}
}

// resolved is what resolve did for one request, for done.
type resolved struct {
	used     []*cachedSeries        // entries whose series record the request logs
	collided []chunks.HeadSeriesRef // one-off refs of hash collisions, released after the Log
}

// lookup sets hints[i] to the series of the key hashed to keys[i], or nil
// if there is none. A hint is checked again by resolve, as gc may forget
// it first.
func (c *seriesCache) lookup(keys []keyHash, hints []*cachedSeries) {
	c.mu.Lock()
	for i, k := range keys {
		hints[i] = c.byKey[k]
	}
	c.mu.Unlock()
}

// resolve replaces the series indexes in b's entries with WAL refs and
// fills recs with b: the series records of series new to the cache (or
// not yet logged), their metadata, and the samples. A series with a
// hint still cached is that entry; a series with a key the cache does
// not know gets it, so the next request finds it by key. The caller
// must hold c.gate shared until done.
func (c *seriesCache) resolve(b *batch, recs *wal.Records, now time.Time) resolved {
	var res resolved
	refs := b.refs[:0]
	fresh := b.fresh[:0] // series record in this batch
	for range b.series {
		refs = append(refs, 0)
		fresh = append(fresh, false)
	}
	b.refs, b.fresh = refs, fresh
	nowNS := now.UnixNano()
	c.mu.Lock()
	for i, ls := range b.series {
		e := (*cachedSeries)(nil)
		if i < len(b.hints) {
			e = b.hints[i]
		}
		if e == nil || e.gone {
			var collided bool
			if e, collided = c.byLabels(ls, b, i); collided {
				// Another series has the hash: a ref for this request only.
				ref := c.storage.NewRef()
				res.collided = append(res.collided, ref)
				refs[i], fresh[i] = ref, true
				recs.Series = append(recs.Series, record.RefSeries{Ref: ref, Labels: ls})
				continue
			}
		}
		e.seen = nowNS
		refs[i] = e.ref
		if !e.logged && !seen(res.used, e) {
			res.used = append(res.used, e)
			fresh[i] = true
			recs.Series = append(recs.Series, record.RefSeries{Ref: e.ref, Labels: ls})
		}
	}
	c.mu.Unlock()

	for i := range b.samples {
		b.samples[i].Ref = refs[b.samples[i].Ref]
	}
	for i := range b.histograms {
		b.histograms[i].Ref = refs[b.histograms[i].Ref]
	}
	for i := range b.floatHistograms {
		b.floatHistograms[i].Ref = refs[b.floatHistograms[i].Ref]
	}
	for i := range b.exemplars {
		b.exemplars[i].Ref = refs[b.exemplars[i].Ref]
	}
	md := b.metadata[:0]
	for _, m := range b.metadata {
		if fresh[m.Ref] { // metadata goes with the series record
			m.Ref = refs[m.Ref]
			md = append(md, m)
		}
	}
	recs.Samples = b.samples
	recs.Histograms = b.histograms
	recs.FloatHistograms = b.floatHistograms
	recs.Exemplars = b.exemplars
	recs.Metadata = md
	return res
}

// byLabels finds or adds the entry of the labels ls of b's series i,
// and adds the series' key, if it has one, to byKey. It returns
// collided, and no entry, if another series has the hash of ls. c.mu
// must be held.
func (c *seriesCache) byLabels(ls labels.Labels, b *batch, i int) (e *cachedSeries, collided bool) {
	h := ls.Hash()
	switch e = c.byHash[h]; {
	case e == nil:
		e = &cachedSeries{ref: c.storage.NewRef(), labels: ls}
		c.byHash[h] = e
	case !labels.Equal(e.labels, ls):
		return nil, true
	}
	if i < len(b.keys) && b.keys[i] != (keyHash{}) {
		if k := b.keys[i]; c.byKey[k] == nil {
			switch {
			case e.key == (keyHash{}):
				e.key = k
				c.byKey[k] = e
			case len(e.more) < maxKeys-1:
				e.more = append(e.more, k)
				c.byKey[k] = e
			}
		}
	}
	return e, false
}

// seen says whether e is in used; a request repeats a series rarely, and
// then it is short.
func seen(used []*cachedSeries, e *cachedSeries) bool {
	for _, u := range used {
		if u == e {
			return true
		}
	}
	return false
}

// done records the outcome of the Log of a resolved request. The caller
// still holds c.gate shared.
func (c *seriesCache) done(res resolved, logged bool) {
	if logged {
		c.mu.Lock()
		for _, e := range res.used {
			e.logged = true
		}
		c.mu.Unlock()
	}
	c.storage.Release(res.collided)
}

// gc releases and forgets the series not seen since now-idle, and returns
// how many are left.
func (c *seriesCache) gc(now time.Time) int {
	c.gate.Lock()
	defer c.gate.Unlock()
	cutoff := now.Add(-c.idle).UnixNano() // seen before it: idle too long
	c.mu.Lock()
	var gone []chunks.HeadSeriesRef
	for h, e := range c.byHash {
		if e.seen < cutoff {
			gone = append(gone, e.ref)
			delete(c.byHash, h)
			delete(c.byKey, e.key)
			for _, k := range e.more {
				delete(c.byKey, k)
			}
			e.gone = true
		}
	}
	n := len(c.byHash)
	c.mu.Unlock()
	c.storage.Release(gone)
	return n
}
