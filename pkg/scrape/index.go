package scrape

// hashIndex finds elements of a slice by a 64-bit hash that each element
// carries itself (keySlot.hash, cacheEntry.hash): an open-addressing table
// of positions with linear probing, at most three quarters full. It holds 4
// bytes a slot where a map[uint64]int32 holds about 30 bytes an entry, and
// a lookup reads the element, which the caller reads anyway. One hash maps
// to at most one position. The zero value is an empty index.
//
// Every method takes hashOf, which returns the hash of the element at a
// position; an element's hash must not change while the index holds it.
type hashIndex struct {
	slots []int32 // position+1; 0 is empty
	n     int     // positions held
}

const minIndexSlots = 64

// find returns the position held for h, or -1.
func (x *hashIndex) find(h uint64, hashOf func(int32) uint64) int32 {
	if x.n == 0 {
		return -1
	}
	mask := uint64(len(x.slots) - 1)
	for i := h & mask; x.slots[i] != 0; i = (i + 1) & mask {
		if p := x.slots[i] - 1; hashOf(p) == h {
			return p
		}
	}
	return -1
}

// set makes h lead to pos, replacing the position held for h, if any.
func (x *hashIndex) set(h uint64, pos int32, hashOf func(int32) uint64) {
	if len(x.slots) == 0 {
		x.slots = make([]int32, minIndexSlots)
	}
	mask := uint64(len(x.slots) - 1)
	i := h & mask
	for ; x.slots[i] != 0; i = (i + 1) & mask {
		if hashOf(x.slots[i]-1) == h {
			x.slots[i] = pos + 1
			return
		}
	}
	x.slots[i] = pos + 1
	if x.n++; x.n > len(x.slots)/4*3 {
		x.resize(2*len(x.slots), hashOf)
	}
}

// remove forgets h, if held.
func (x *hashIndex) remove(h uint64, hashOf func(int32) uint64) {
	if x.n == 0 {
		return
	}
	mask := uint64(len(x.slots) - 1)
	i := h & mask
	for ; ; i = (i + 1) & mask {
		if x.slots[i] == 0 {
			return
		}
		if hashOf(x.slots[i]-1) == h {
			break
		}
	}
	// Shift the entries after the hole back, so that each stays reachable
	// from its hash's home slot.
	for j := (i + 1) & mask; x.slots[j] != 0; j = (j + 1) & mask {
		home := hashOf(x.slots[j]-1) & mask
		// Move entry j to the hole at i unless its home lies in (i, j].
		if (j-home)&mask >= (j-i)&mask {
			x.slots[i] = x.slots[j]
			i = j
		}
	}
	x.slots[i] = 0
	if x.n--; len(x.slots) > minIndexSlots && x.n < len(x.slots)/8 {
		x.resize(len(x.slots)/2, hashOf)
	}
}

// reset forgets every position, keeping the table.
func (x *hashIndex) reset() {
	clear(x.slots)
	x.n = 0
}

// len returns the number of positions held.
func (x *hashIndex) len() int { return x.n }

func (x *hashIndex) resize(size int, hashOf func(int32) uint64) {
	slots := make([]int32, size)
	mask := uint64(size - 1)
	for _, s := range x.slots {
		if s == 0 {
			continue
		}
		i := hashOf(s-1) & mask
		for slots[i] != 0 {
			i = (i + 1) & mask
		}
		slots[i] = s
	}
	x.slots = slots
}
