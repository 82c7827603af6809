// Package hashindex is rwagent's one open-addressing hash table: an index
// of positions in a slice the caller owns, found by a hash of the element
// at each position. The scrape cache finds series by it, the remote-write
// pair table label pairs.
//
// It holds 4 bytes a slot, at most three quarters full, where a
// map[uint64]int32 holds about 30 bytes an entry, and it keeps neither
// keys nor hashes: the caller's elements carry them. Probing is linear and
// removal shifts the following entries back (no tombstones), so a table
// with churn never degrades.
//
// What equality means is the caller's: a caller whose 64-bit hash is the
// key (accepting a hash collision) uses Find, Set and Remove; one that
// must compare the keys themselves probes (Home, At, Next), checks each
// candidate, and then calls Insert, Replace or Delete on the slot where it
// stopped. Home, At and Next inline, so the caller's loop costs what a
// hand-written probe does.
//
// A large table lives off the Go heap (package offheap): its owner calls
// Free when done with it.
package hashindex

import "github.com/rwagent/rwagent/pkg/offheap"

// Index maps hashes to positions (0 to 2³²-2) in the caller's slice. Every
// method that may move entries takes hashOf, which returns the hash of the
// element at a position; an element's hash must not change while the
// index holds its position. It is not safe for concurrent use. The zero
// value is not usable; New makes an Index, and Free releases it. An Index
// must not be copied once in use, but moved: the copies would share a
// table that one of them may free. (A table that is never empty spares
// the probe loop a check: a lookup took a quarter less time.)
type Index struct {
	slots    offheap.Slice[uint32] // position+1; 0 is empty; never shorter than minSlots
	n        int                   // positions held
	minSlots int                   // a power of two
}

// New returns an empty index of minSlots slots (rounded up to a power of
// two, at least 2), which it never shrinks below.
func New(minSlots int) Index {
	m := 2
	for m < minSlots {
		m *= 2
	}
	return Index{slots: offheap.Make[uint32](m), minSlots: m}
}

// Free releases the table. The Index is not usable afterwards (every
// method but Free and Len panics); New makes a new one.
func (x *Index) Free() {
	x.slots.Free()
	x.n = 0
}

// Len returns the number of positions held.
func (x *Index) Len() int { return x.n }

// Slots returns the size of the table, for tests and memory accounting.
func (x *Index) Slots() int { return x.slots.Len() }

// OffHeap returns the bytes of the table held off the Go heap (see
// package offheap); 0 for a small table, which is on the heap.
func (x *Index) OffHeap() int { return x.slots.OffHeap() }

// Reset forgets every position, keeping the table.
func (x *Index) Reset() {
	clear(x.slots.Elems())
	x.n = 0
}

// Slot is a slot of the table. The positions that may be held for a hash
// h are in the slots from Home(h) on, following Next, up to the first free
// slot. A Slot is valid until the index changes (one Insert, Replace or
// Delete at it included).
type Slot uint64

// Home returns the slot where the probe for h starts.
func (x *Index) Home(h uint64) Slot {
	return Slot(h & uint64(x.slots.Len()-1))
}

// At returns the position held in slot i, or -1 if i is free: the end of
// a probe, where Insert puts a position for the probe's hash. (An int64
// rather than a position and a bool, which the probe loop would test
// twice.)
func (x *Index) At(i Slot) int64 {
	return int64(x.slots.Elems()[i]) - 1
}

// Next returns the slot after i in a probe.
func (x *Index) Next(i Slot) Slot {
	return Slot((uint64(i) + 1) & uint64(x.slots.Len()-1))
}

// Insert holds pos in i, the free slot that ended a probe from Home. pos
// must not be held already.
func (x *Index) Insert(i Slot, pos uint32, hashOf func(uint32) uint64) {
	x.slots.Elems()[i] = pos + 1
	if x.n++; x.n > x.slots.Len()/4*3 {
		x.resize(2*x.slots.Len(), hashOf)
	}
}

// Replace holds pos in slot i, instead of the position At returned for it.
func (x *Index) Replace(i Slot, pos uint32) {
	x.slots.Elems()[i] = pos + 1
}

// Delete forgets the position held in slot i.
func (x *Index) Delete(i Slot, hashOf func(uint32) uint64) {
	slots := x.slots.Elems()
	mask := uint64(len(slots) - 1)
	hole := uint64(i)
	// Shift the entries after the hole back, so that each stays reachable
	// from its hash's home slot.
	for j := (hole + 1) & mask; slots[j] != 0; j = (j + 1) & mask {
		home := hashOf(slots[j]-1) & mask
		// Move entry j to the hole unless its home lies in (hole, j].
		if (j-home)&mask >= (j-hole)&mask {
			slots[hole] = slots[j]
			hole = j
		}
	}
	slots[hole] = 0
	if x.n--; len(slots) > x.minSlots && x.n < len(slots)/8 {
		x.resize(len(slots)/2, hashOf)
	}
}

func (x *Index) resize(size int, hashOf func(uint32) uint64) {
	grown := offheap.Make[uint32](size)
	slots := grown.Elems()
	mask := uint64(size - 1)
	for _, s := range x.slots.Elems() {
		if s == 0 {
			continue
		}
		i := hashOf(s-1) & mask
		for slots[i] != 0 {
			i = (i + 1) & mask
		}
		slots[i] = s
	}
	x.slots.Free()
	x.slots = grown
}

// Find returns the position held for h, for a caller whose hash is the
// key: the first candidate whose hashOf is h.
func (x *Index) Find(h uint64, hashOf func(uint32) uint64) (pos uint32, ok bool) {
	_, pos, ok = x.find(h, hashOf)
	return pos, ok
}

// find returns the slot holding h's position, or the free slot where it
// would go.
func (x *Index) find(h uint64, hashOf func(uint32) uint64) (Slot, uint32, bool) {
	i := x.Home(h)
	for {
		p := x.At(i)
		if p < 0 {
			return i, 0, false
		}
		if hashOf(uint32(p)) == h {
			return i, uint32(p), true
		}
		i = x.Next(i)
	}
}

// Set makes h lead to pos, replacing the position held for h, if any, for
// a caller whose hash is the key.
func (x *Index) Set(h uint64, pos uint32, hashOf func(uint32) uint64) {
	if i, _, ok := x.find(h, hashOf); ok {
		x.Replace(i, pos)
	} else {
		x.Insert(i, pos, hashOf)
	}
}

// Remove forgets h, if held, for a caller whose hash is the key.
func (x *Index) Remove(h uint64, hashOf func(uint32) uint64) {
	if i, _, ok := x.find(h, hashOf); ok {
		x.Delete(i, hashOf)
	}
}
