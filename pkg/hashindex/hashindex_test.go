package hashindex

import (
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/rwagent/rwagent/pkg/offheap"
)

// TestHashKeyed: setting, replacing and removing in random order, with
// hashes that collide in their low bits, keeps every held hash findable at
// its latest position (the backward-shift removal), and the table shrinks
// back once emptied.
func TestHashKeyed(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	x := New(64)
	var hashes []uint64 // by position
	hashOf := func(p uint32) uint64 { return hashes[p] }
	want := map[uint64]uint32{}
	var held []uint64
	for step := range 100_000 {
		if len(held) > 0 && rng.IntN(100) < 40+len(held)/200 {
			k := rng.IntN(len(held))
			h := held[k]
			x.Remove(h, hashOf)
			delete(want, h)
			held[k] = held[len(held)-1]
			held = held[:len(held)-1]
		} else {
			// Few distinct low bits, so probes run long and wrap.
			h := uint64(rng.IntN(8000))<<40 | uint64(rng.IntN(16))
			pos := uint32(len(hashes))
			hashes = append(hashes, h)
			if _, ok := want[h]; !ok {
				held = append(held, h)
			}
			x.Set(h, pos, hashOf)
			want[h] = pos
		}
		if step%5000 == 0 || step == 99_999 {
			if x.Len() != len(want) {
				t.Fatalf("step %d: index holds %d, want %d", step, x.Len(), len(want))
			}
			for h, pos := range want {
				if got, ok := x.Find(h, hashOf); !ok || got != pos {
					t.Fatalf("step %d: Find(%x) = %d, %v, want %d", step, h, got, ok, pos)
				}
			}
			if got, ok := x.Find(1<<63, hashOf); ok {
				t.Fatalf("step %d: Find of a hash never set = %d", step, got)
			}
		}
	}
	for _, h := range held {
		x.Remove(h, hashOf)
	}
	if x.Len() != 0 || x.Slots() != 64 {
		t.Errorf("emptied index: %d held in %d slots, want 0 in 64", x.Len(), x.Slots())
	}
}

// TestKeyCompared: a caller that compares keys as it probes holds
// distinct keys of one hash side by side, finds each, and removes one
// without losing the others; the table keeps its minimum size.
func TestKeyCompared(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	x := New(1000) // rounded up to 1024
	var keys []string
	var free []uint32
	hashOf := func(p uint32) uint64 { return uint64(len(keys[p])) } // many keys share a hash
	find := func(k string) (Slot, uint32, bool) {
		for i := x.Home(uint64(len(k))); ; i = x.Next(i) {
			p := x.At(i)
			if p < 0 {
				return i, 0, false
			}
			if keys[p] == k {
				return i, uint32(p), true
			}
		}
	}
	want := map[string]uint32{}
	for step := range 20_000 {
		k := string(rune('a'+rng.IntN(26))) + string(make([]byte, rng.IntN(40)))
		k += string(rune('a' + rng.IntN(26)))
		c, p, ok := find(k)
		if wp, held := want[k]; ok != held || (ok && p != wp) {
			t.Fatalf("step %d: find(%q) = %d, %v, want %d, %v", step, k, p, ok, wp, held)
		}
		if ok {
			x.Delete(c, hashOf)
			delete(want, k)
			keys[p] = ""
			free = append(free, p)
			continue
		}
		if n := len(free); n > 0 {
			p, free = free[n-1], free[:n-1]
			keys[p] = k
		} else {
			p = uint32(len(keys))
			keys = append(keys, k)
		}
		x.Insert(c, p, hashOf)
		want[k] = p
		if x.Len() != len(want) {
			t.Fatalf("step %d: index holds %d, want %d", step, x.Len(), len(want))
		}
	}
	for k, p := range want {
		c, got, ok := find(k)
		if !ok || got != p {
			t.Fatalf("find(%q) = %d, %v, want %d", k, got, ok, p)
		}
		x.Delete(c, hashOf)
	}
	if x.Len() != 0 || x.Slots() != 1024 {
		t.Errorf("emptied index: %d held in %d slots, want 0 in 1024", x.Len(), x.Slots())
	}
}

// TestReplace: Set on a held hash (Replace) points the hash at the new
// position without changing the count.
func TestReplace(t *testing.T) {
	hashes := []uint64{7, 7 + 64, 7}
	hashOf := func(p uint32) uint64 { return hashes[p] }
	x := New(64)
	x.Set(7, 0, hashOf)
	x.Set(7+64, 1, hashOf) // same home slot, probes past position 0
	x.Set(7, 2, hashOf)
	if p, ok := x.Find(7, hashOf); !ok || p != 2 {
		t.Errorf("Find(7) = %d, %v after Set replaced it, want 2", p, ok)
	}
	if p, ok := x.Find(7+64, hashOf); !ok || p != 1 {
		t.Errorf("Find(%d) = %d, %v, want 1", 7+64, p, ok)
	}
	if x.Len() != 2 {
		t.Errorf("Len = %d, want 2", x.Len())
	}
	x.Reset()
	if _, ok := x.Find(7, hashOf); ok || x.Len() != 0 {
		t.Errorf("Reset left %d positions", x.Len())
	}
}

// TestFree: indexes grown into mappings (package offheap) and shrunk
// again, made and freed many times, give back every mapped byte.
func TestFree(t *testing.T) {
	base := offheap.Mapped()
	var hashes []uint64
	hashOf := func(p uint32) uint64 { return hashes[p] }
	for round := range 20 {
		x := New(64)
		for i := range 50_000 { // 65,536 slots, 256 KiB: mapped
			if round == 0 {
				hashes = append(hashes, uint64(i)*0x9e3779b97f4a7c15)
			}
			x.Set(hashes[i], uint32(i), hashOf)
		}
		if runtime.GOOS == "linux" && offheap.Mapped() == base {
			t.Fatalf("round %d: an index of %d slots mapped nothing", round, x.Slots())
		}
		if round%2 == 0 { // shrink back through every size
			for i := range 50_000 {
				x.Remove(hashes[i], hashOf)
			}
		}
		x.Free()
		if got := offheap.Mapped(); got != base {
			t.Fatalf("round %d: %d bytes mapped after Free, want %d", round, got, base)
		}
	}
}
