package scrape

import (
	"math/rand/v2"
	"testing"
)

// TestHashIndex: setting, replacing and removing in random order, with
// hashes that collide in their low bits, keeps every held hash findable at
// its latest position (the backward-shift removal), and the table shrinks
// back once emptied.
func TestHashIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var x hashIndex
	var hashes []uint64 // by position
	hashOf := func(p int32) uint64 { return hashes[p] }
	want := map[uint64]int32{}
	var held []uint64
	for step := range 100_000 {
		if len(held) > 0 && rng.IntN(100) < 40+len(held)/200 {
			k := rng.IntN(len(held))
			h := held[k]
			x.remove(h, hashOf)
			delete(want, h)
			held[k] = held[len(held)-1]
			held = held[:len(held)-1]
		} else {
			// Few distinct low bits, so probes run long and wrap.
			h := uint64(rng.IntN(8000))<<40 | uint64(rng.IntN(16))
			pos := int32(len(hashes))
			hashes = append(hashes, h)
			if _, ok := want[h]; !ok {
				held = append(held, h)
			}
			x.set(h, pos, hashOf)
			want[h] = pos
		}
		if step%5000 == 0 || step == 99_999 {
			if x.len() != len(want) {
				t.Fatalf("step %d: index holds %d, want %d", step, x.len(), len(want))
			}
			for h, pos := range want {
				if got := x.find(h, hashOf); got != pos {
					t.Fatalf("step %d: find(%x) = %d, want %d", step, h, got, pos)
				}
			}
			if got := x.find(1<<63, hashOf); got != -1 {
				t.Fatalf("step %d: find of a hash never set = %d", step, got)
			}
		}
	}
	for _, h := range held {
		x.remove(h, hashOf)
	}
	if x.len() != 0 || len(x.slots) != minIndexSlots {
		t.Errorf("emptied index: %d held in %d slots, want 0 in %d", x.len(), len(x.slots), minIndexSlots)
	}
}
