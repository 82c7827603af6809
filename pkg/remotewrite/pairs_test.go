package remotewrite

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
)

// TestPairTable: interning and releasing in random order keeps one id per
// distinct pair, every held pair findable (the index's backward-shift
// deletion), ids reused once released, and nothing held once all is
// released.
func TestPairTable(t *testing.T) {
	pt := newPairTable()
	rng := rand.New(rand.NewPCG(1, 2))
	type held struct {
		id   uint32
		refs int
	}
	model := map[string]*held{}
	var keys []string
	intern := func(enc []byte) uint32 {
		id, stored := pt.intern(enc)
		if stored != string(enc) {
			t.Fatalf("interned %q, stored %q", enc, stored)
		}
		return id
	}
	release := func(id uint32) {
		pt.release(id)
	}
	maxID := uint32(0)
	for step := range 200_000 {
		if len(keys) > 0 && rng.IntN(100) < 45+len(keys)/400 {
			i := rng.IntN(len(keys))
			k := keys[i]
			h := model[k]
			release(h.id)
			if h.refs--; h.refs == 0 {
				delete(model, k)
				keys[i] = keys[len(keys)-1]
				keys = keys[:len(keys)-1]
			}
		} else {
			k := fmt.Sprintf("v%d", rng.IntN(20_000))
			id := intern(appendEncodedLabel(nil, "n", k))
			h := model[k]
			if h == nil {
				h = &held{id: id}
				model[k] = h
				keys = append(keys, k)
			} else if h.id != id {
				t.Fatalf("step %d: %s interned as %d, held as %d", step, k, id, h.id)
			}
			h.refs++
			maxID = max(maxID, id)
		}
		if step%10_000 == 0 || step == 199_999 {
			if pt.len() != len(model) {
				t.Fatalf("step %d: table holds %d pairs, want %d", step, pt.len(), len(model))
			}
			pages := pt.pages()
			for k, h := range model {
				// Interning again finds the same id.
				if id := intern(appendEncodedLabel(nil, "n", k)); id != h.id {
					t.Fatalf("step %d: %s found as %d, held as %d", step, k, id, h.id)
				}
				release(h.id)
				name, value, _, ok := decodeLabel(pages[h.id>>pairBits].enc[h.id&(1<<pairBits-1)])
				if !ok || name != "n" || value != k {
					t.Fatalf("step %d: id %d decodes to %q=%q, want n=%q", step, h.id, name, value, k)
				}
			}
		}
	}
	if maxID >= 20_000 {
		t.Errorf("ids went up to %d for at most 20000 distinct pairs: released ids are not reused", maxID)
	}
	for _, k := range keys {
		for h := model[k]; h.refs > 0; h.refs-- {
			release(h.id)
		}
	}
	if n := pt.len(); n != 0 || pt.index.Slots() != 1024 {
		t.Errorf("after releasing everything: %d pairs held, index of %d slots", n, pt.index.Slots())
	}
}

// pairsHeld counts the pairs of pt whose encoding contains substr.
func pairsHeld(pt *pairTable, substr string) int {
	n := 0
	for _, p := range pt.pages() {
		for k := range p.enc {
			if p.refs[k] > 0 && strings.Contains(p.enc[k], substr) {
				n++
			}
		}
	}
	return n
}

// TestSeriesTableRelease: a forgotten series keeps its labels until release
// is told no sample of it can be queued, then gives up the pairs no other
// series holds.
func TestSeriesTableRelease(t *testing.T) {
	st := newSeriesTable(testPairs, labels.EmptyLabels(), nil)
	defer st.close()
	st.store([]record.RefSeries{
		{Ref: 1, Labels: labels.FromStrings("__name__", "release_test", "pod", "release-a")},
		{Ref: 2, Labels: labels.FromStrings("__name__", "release_test", "pod", "release-b")},
	})
	a, _ := st.get(1)
	st.forget([]chunks.HeadSeriesRef{1}, 5)
	if _, known := st.get(1); known {
		t.Fatal("forgotten series still known")
	}
	st.release(4)
	if got, want := labelsString(protoLabels(t, a)), `{__name__="release_test", pod="release-a"}`; got != want {
		t.Errorf("forgotten series before release: %s, want %s", got, want)
	}
	if n := pairsHeld(testPairs, "release-a"); n != 1 {
		t.Errorf("before release: %d pairs of the forgotten series' pod, want 1", n)
	}
	st.release(5)
	if n := pairsHeld(testPairs, "release-a"); n != 0 {
		t.Errorf("after release: %d pairs of the forgotten series' pod, want 0", n)
	}
	if n := pairsHeld(testPairs, "release_test"); n != 1 {
		t.Errorf("after release: %d pairs of the name both series share, want 1", n)
	}
	b, _ := st.get(2)
	if got, want := labelsString(protoLabels(t, b)), `{__name__="release_test", pod="release-b"}`; got != want {
		t.Errorf("the other series after release: %s, want %s", got, want)
	}
	st.close()
	if n := pairsHeld(testPairs, "release"); n != 0 {
		t.Errorf("after close: %d pairs of the table's series held", n)
	}
}
