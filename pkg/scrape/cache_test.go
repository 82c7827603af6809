package scrape

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/tsdb/chunks"

	"github.com/rwagent/rwagent/bench/loadgen"
	"github.com/rwagent/rwagent/pkg/hashindex"
	"github.com/rwagent/rwagent/pkg/offheap"
)

func TestCache_Staleness(t *testing.T) {
	s := newMemStorage()
	a := newTestAppender(testOptions(), s)
	mustStep := func(body string, ts int64) {
		t.Helper()
		if _, err := step(a, s, body, ctText, ts); err != nil {
			t.Fatalf("scrape at %d: %v", ts, err)
		}
	}
	mustStep("a 1\nb 1\n", 1000)
	refA, refB := s.find("__name__", "a"), s.find("__name__", "b")
	mustStep("a 2\n", 2000)
	if got := s.samples[refB[0]]; len(got) != 2 || got[1].T != 2000 || !value.IsStaleNaN(got[1].V) {
		t.Fatalf("b samples = %v, want a stale marker at 2000", got)
	}
	mustStep("a 3\n", 3000)
	if got := s.samples[refB[0]]; len(got) != 2 {
		t.Fatalf("b got %d samples, want no second stale marker", len(got))
	}
	if !s.released[refB[0]] {
		t.Error("b's ref was not released after two scrapes without it")
	}
	if s.released[refA[0]] {
		t.Error("a's ref released while a is exposed")
	}

	// A failed scrape stales everything; a's ref survives one failure.
	if _, err := step(a, s, "", "", 4000); err == nil {
		t.Fatal("failed scrape reported no error")
	}
	if got := s.samples[refA[0]]; !value.IsStaleNaN(got[len(got)-1].V) || got[len(got)-1].T != 4000 {
		t.Fatalf("a samples = %v, want a stale marker at 4000", got)
	}
	if v, _ := s.last("__name__", "up"); v != 0 {
		t.Errorf("up = %v after a failed scrape, want 0", v)
	}
	mustStep("a 5\n", 5000)
	if got := s.find("__name__", "a"); !slices.Equal(got, refA) {
		t.Errorf("a refs = %v after recovery, want %v", got, refA)
	}
	// b comes back: new ref (the old one was released).
	mustStep("a 6\nb 6\n", 6000)
	if got := s.find("__name__", "b"); len(got) != 2 {
		t.Errorf("b refs = %v, want a new ref beside the released one", got)
	}
	if s.orphans != 0 {
		t.Errorf("%d samples for refs without series record", s.orphans)
	}
}

func TestCache_Bounded(t *testing.T) {
	s := newMemStorage()
	a := newTestAppender(testOptions(), s)
	const perScrape = 50
	var body strings.Builder
	for i := range 40 {
		body.Reset()
		for j := range perScrape {
			body.WriteString("m{i=\"")
			body.WriteString(strings.Repeat("x", i%3))
			body.WriteString(string(rune('a'+i%26)) + string(rune('a'+j%26)) + string(rune('a'+j/26)))
			body.WriteString("\"} 1\n")
		}
		if _, err := step(a, s, body.String(), ctText, int64(i+1)*1000); err != nil {
			t.Fatal(err)
		}
		if n := a.cache.series(); n > 3*perScrape {
			t.Fatalf("scrape %d: cache holds %d series, want at most %d", i, n, 3*perScrape)
		}
		if n := a.cache.keys.Len(); n > 3*perScrape {
			t.Fatalf("scrape %d: cache holds %d keys, want at most %d", i, n, 3*perScrape)
		}
	}
	if len(s.released) < 30*perScrape {
		t.Errorf("released %d refs, want churned series released", len(s.released))
	}
}

func TestCache_HandoverKeepsRefs(t *testing.T) {
	s := newMemStorage()
	a := newTestAppender(testOptions(), s)
	if _, err := step(a, s, "a 1\nb 1\n", ctText, 1000); err != nil {
		t.Fatal(err)
	}
	refA := s.find("__name__", "a")
	upRef := s.find("__name__", "up")

	// The successor relabels differently: keys are reset, entries found by labels.
	c := a.cache
	c.resetKeys()
	opts := testOptions()
	opts.metricRelabel = []*relabel.Config{{
		SourceLabels: model.LabelNames{"__name__"}, Regex: relabel.MustNewRegexp("b"), Action: relabel.Drop,
		Separator: ";", NameValidationScheme: model.UTF8Validation,
	}}
	b := newAppender(opts, s, c, newScrapeMetrics(nil), newParserPool(1))
	if _, err := step(b, s, "a 2\nb 2\n", ctText, 2000); err != nil {
		t.Fatal(err)
	}
	if got := s.find("__name__", "a"); !slices.Equal(got, refA) {
		t.Errorf("a refs = %v, want %v kept", got, refA)
	}
	if got := s.find("__name__", "up"); !slices.Equal(got, upRef) {
		t.Errorf("up refs = %v, want %v kept", got, upRef)
	}
	if !s.staleAll("__name__", "b") {
		t.Error("b, now dropped by relabelling, got no stale marker")
	}
	if s.staleCount() != 1 {
		t.Errorf("%d stale markers, want 1 (b only)", s.staleCount())
	}
}

func TestCache_EndOfRun(t *testing.T) {
	s := newMemStorage()
	a := newTestAppender(testOptions(), s)
	if _, err := step(a, s, "a 1\nb 1 500\n", ctText, 1000); err != nil {
		t.Fatal(err)
	}
	a.recs.Reset()
	a.cache.end(2000, a.recs)
	if err := s.Log(a.recs); err != nil {
		t.Fatal(err)
	}
	s.Release(a.cache.released)
	for _, name := range []string{"a", "up"} {
		if !s.staleAll("__name__", name) {
			t.Errorf("%s not staled at end of run", name)
		}
	}
	if s.staleAll("__name__", "b") {
		t.Error("series with explicit timestamps staled")
	}
	if len(s.released) != len(s.series) {
		t.Errorf("released %d of %d refs", len(s.released), len(s.series))
	}
}

// TestSeriesCache_KeyHashes: a raw text is found by its 128-bit hash; a
// text whose first half matches another's but whose second half does not
// is a miss, not a wrong hit; both then live side by side, and forgetting
// one leaves the other found. The same holds for label sets.
func TestSeriesCache_KeyHashes(t *testing.T) {
	c := newSeriesCache()
	a := []byte(`up{job="a"}`)
	la := labels.FromStrings("__name__", "up", "job", "a")
	e := c.add(1, la, c.labelsHash(la))
	c.setKey(a, e, false)
	if entry, dropped := c.lookup(a); entry != e || dropped {
		t.Fatalf("lookup of a known text: entry %d dropped %v, want entry %d", entry, dropped, e)
	}
	if entry, _ := c.lookup([]byte(`up{job="b"}`)); entry >= 0 {
		t.Fatalf("lookup of an unknown text hit entry %d", entry)
	}

	// Another text with a's first half: pretend e's own text is that one.
	c.entries.Elems()[e].text.x++
	if entry, dropped := c.lookup(a); entry >= 0 || dropped {
		t.Fatalf("lookup with a text of the same first half: entry %d dropped %v, want a miss", entry, dropped)
	}
	lb := labels.FromStrings("__name__", "up", "job", "b")
	hb := c.labelsHash(lb)
	hb.h = c.entries.Elems()[e].lbls.h // a label set of the same first half too
	f := c.add(2, lb, hb)
	if got := c.find(hb); got != f {
		t.Fatalf("find of a label hash sharing its first half: %d, want %d", got, f)
	}
	if got := c.find(c.labelsHash(la)); got != e {
		t.Fatalf("find of the first label hash: %d, want %d", got, e)
	}
	c.setKey(a, f, false)
	if entry, _ := c.lookup(a); entry != f {
		t.Fatalf("lookup after the text was set beside its namesake: entry %d, want %d", entry, f)
	}
	if c.keys.Len() != 2 {
		t.Fatalf("keys holds %d texts, want 2", c.keys.Len())
	}

	// Forgetting the impostor leaves a found, by text and by labels.
	c.free(e)
	if entry, _ := c.lookup(a); entry != f {
		t.Fatalf("lookup after the other text was forgotten: entry %d, want %d", entry, f)
	}
	if got := c.find(hb); got != f {
		t.Fatalf("find after the other label set was forgotten: %d, want %d", got, f)
	}
	if c.keys.Len() != 1 || c.byHash.Len() != 1 {
		t.Fatalf("after free: %d texts and %d label sets indexed, want 1 and 1", c.keys.Len(), c.byHash.Len())
	}
}

// TestCache_LookupTriesNext: lookup tries the entry after the last one it
// found before the index, and returns it only when that entry's own text
// has b's full 128-bit hash: out of order, an impostor sharing the first
// half, a freed entry and an alias are each answered as the index answers.
func TestCache_LookupTriesNext(t *testing.T) {
	c := newSeriesCache()
	var texts [][]byte
	var ents []int32
	for i := range 3 {
		lset := labels.FromStrings("__name__", "up", "job", fmt.Sprint(i))
		e := c.add(chunks.HeadSeriesRef(i+1), lset, c.labelsHash(lset))
		texts = append(texts, []byte(fmt.Sprintf(`up{job="%d"}`, i)))
		c.setKey(texts[i], e, false)
		ents = append(ents, e)
	}
	want := func(what string, b []byte, entry int32) {
		t.Helper()
		if got, dropped := c.lookup(b); got != entry || dropped {
			t.Fatalf("%s: lookup(%s) = %d (dropped %v), want %d", what, b, got, dropped, entry)
		}
	}
	// In order (the first from the index, the rest as next), then out of
	// order.
	for i := range 3 {
		want("in order", texts[i], ents[i])
		if c.next != ents[i]+1 {
			t.Fatalf("after entry %d next is %d, want %d", ents[i], c.next, ents[i]+1)
		}
	}
	c.next = ents[1]
	want("out of order", texts[0], ents[0])
	want("out of order", texts[2], ents[2])

	// An entry at next whose text shares the first half of b's hash only.
	own := c.entries.Elems()[ents[1]].text
	c.entries.Elems()[ents[1]].text = hash128{h: c.textHash(texts[0]).h, x: own.x}
	c.next = ents[1]
	want("impostor at next", texts[0], ents[0])
	c.entries.Elems()[ents[1]].text = own

	// A text keyed as an alias of entry 0: next follows the entry.
	alias := []byte(`up{job="0",}`)
	c.setKey(alias, ents[0], false)
	c.next = ents[2]
	want("alias", alias, ents[0])
	if c.next != ents[0]+1 {
		t.Fatalf("after an alias of entry %d next is %d, want %d", ents[0], c.next, ents[0]+1)
	}

	// A freed entry at next is not found.
	c.free(ents[1])
	c.next = ents[1]
	want("freed", texts[1], -1)
}

// TestCache_AnotherSpelling: a series whose labels come written in another
// order is found by its labels, keeps its ref and gets no stale marker;
// both spellings in one scrape are a duplicate; the second spelling is
// forgotten once unseen for two scrapes, and the series with its text once
// gone for two.
func TestCache_AnotherSpelling(t *testing.T) {
	s := newMemStorage()
	a := newTestAppender(testOptions(), s)
	c := a.cache
	mustStep := func(body string, ts int64) appendResult {
		t.Helper()
		res, err := step(a, s, body, ctText, ts)
		if err != nil {
			t.Fatalf("scrape at %d: %v", ts, err)
		}
		return res
	}
	mustStep("m{a=\"1\",b=\"2\"} 1\n", 1000)
	ref := s.find("__name__", "m")
	mustStep("m{b=\"2\",a=\"1\"} 2\n", 2000)
	if got := s.find("__name__", "m"); len(ref) != 1 || !slices.Equal(got, ref) {
		t.Fatalf("m refs = %v after the labels were reordered, want %v", got, ref)
	}
	if n := s.staleCount(); n != 0 {
		t.Fatalf("%d stale markers after the labels were reordered, want none", n)
	}
	if res := mustStep("m{a=\"1\",b=\"2\"} 3\nm{b=\"2\",a=\"1\"} 3\n", 3000); res.duplicates != 1 {
		t.Errorf("both spellings in one scrape: %d duplicates, want 1", res.duplicates)
	}
	if got := s.floats(t, "__name__", "m"); len(got) != 3 {
		t.Fatalf("m samples = %v, want 3", got)
	}
	mustStep("m{a=\"1\",b=\"2\"} 4\n", 4000)
	mustStep("m{a=\"1\",b=\"2\"} 5\n", 5000)
	if n := len(c.aliases) - len(c.freeA); n != 0 || c.keys.Len() != 1 {
		t.Errorf("after two scrapes without the second spelling: %d aliases and %d keys, want 0 and 1", n, c.keys.Len())
	}
	mustStep("x 6\n", 6000)
	if !s.endsStale(ref[0]) {
		t.Error("m got no stale marker when it disappeared")
	}
	mustStep("x 7\n", 7000)
	if !s.released[ref[0]] {
		t.Error("m's ref was not released after two scrapes without it")
	}
	if c.series() != 1 || c.keys.Len() != 1 || c.byHash.Len() != 1 {
		t.Errorf("after m was forgotten: %d series, %d keys, %d label hashes; want 1 each (x)", c.series(), c.keys.Len(), c.byHash.Len())
	}
	if s.orphans != 0 {
		t.Errorf("%d samples for refs without series record", s.orphans)
	}
}

// checkIndexes fails t unless c's indexes hold exactly its live entries
// and aliases, each found by its hash.
func checkIndexes(t *testing.T, c *seriesCache) {
	t.Helper()
	texts, aliases := 0, 0
	for i := range c.entries.Elems() {
		e := &c.entries.Elems()[i]
		if !e.has(flagLive) {
			if *e != (cacheEntry{}) {
				t.Fatalf("freed entry %d not cleared: %+v", i, *e)
			}
			continue
		}
		if got := c.find(e.lbls); got != int32(i) {
			t.Fatalf("entry %d found by its labels as %d", i, got)
		}
		if e.text != (hash128{}) {
			texts++
			if _, ok := holding(&c.keys, e.text.h, uint32(i)); !ok {
				t.Fatalf("entry %d's text is not indexed", i)
			}
		}
	}
	for i := range c.aliases {
		a := &c.aliases[i]
		if a.seen == 0 {
			continue
		}
		aliases++
		if a.entry >= 0 && !c.entries.Elems()[a.entry].has(flagLive) {
			t.Fatalf("alias %d leads to freed entry %d", i, a.entry)
		}
		if _, ok := holding(&c.keys, a.text.h, aliasBit|uint32(i)); !ok {
			t.Fatalf("alias %d is not indexed", i)
		}
	}
	if c.byHash.Len() != c.series() {
		t.Fatalf("%d label hashes indexed for %d series", c.byHash.Len(), c.series())
	}
	if c.keys.Len() != texts+aliases {
		t.Fatalf("%d texts indexed for %d own texts and %d aliases", c.keys.Len(), texts, aliases)
	}
}

// holding returns the slot of x that holds pos, probing from h's home.
func holding(x *hashindex.Index, h uint64, pos uint32) (hashindex.Slot, bool) {
	for i := x.Home(h); ; i = x.Next(i) {
		switch p := x.At(i); {
		case p < 0:
			return 0, false
		case uint32(p) == pos:
			return i, true
		}
	}
}

// TestCache_Churn: series come and go, some spelled two ways and some
// dropped by relabelling, some scrapes fail; after every scrape the
// indexes hold exactly the live series and texts, every sample logged has
// its series record, and every series that disappeared got its stale
// marker and its ref released.
func TestCache_Churn(t *testing.T) {
	s := newMemStorage()
	opts := testOptions()
	opts.metricRelabel = []*relabel.Config{{
		SourceLabels: model.LabelNames{"drop"}, Regex: relabel.MustNewRegexp("yes"), Action: relabel.Drop,
		Separator: ";", NameValidationScheme: model.UTF8Validation,
	}}
	a := newTestAppender(opts, s)
	rng := rand.New(rand.NewPCG(1, 2))
	var body strings.Builder
	for i := range 60 {
		body.Reset()
		base := i * 7 // a sliding window of 40 series: 7 new ones each scrape
		for j := base; j < base+40; j++ {
			switch {
			case j%11 == 0:
				fmt.Fprintf(&body, "m{drop=\"yes\",i=\"%d\"} 1\n", j)
			case j%5 == 0 && rng.IntN(2) == 0:
				fmt.Fprintf(&body, "m{k=\"v\",i=\"%d\"} 1\n", j) // the other spelling
			default:
				fmt.Fprintf(&body, "m{i=\"%d\",k=\"v\"} 1\n", j)
			}
		}
		ts := int64(i+1) * 1000
		if i%13 == 12 {
			step(a, s, "", "", ts) // a failed scrape
		} else if _, err := step(a, s, body.String(), ctText, ts); err != nil {
			t.Fatal(err)
		}
		checkIndexes(t, a.cache)
	}
	if s.orphans != 0 {
		t.Errorf("%d samples for refs without series record", s.orphans)
	}
	for ref, ok := range s.released {
		if ok && !s.endsStale(ref) {
			t.Errorf("released ref %d (%v) has no stale marker", ref, s.series[ref])
		}
	}
	if len(s.released) < 300 {
		t.Errorf("released %d refs, want the churned series released", len(s.released))
	}
}

// TestCache_BytesPerSeries holds the cache to what its doc comments claim:
// a 56-byte entry, and about 72 bytes a series in all for a target of
// 10,000 series (entries, indexes, free lists, at most 1/16 spare).
func TestCache_BytesPerSeries(t *testing.T) {
	if n := unsafe.Sizeof(cacheEntry{}); n != 56 {
		t.Errorf("cacheEntry is %d bytes, want 56", n)
	}
	body, _ := loadgen.NewTarget(10_000, 1).Scrape()
	a := newTestAppender(testOptions(), &nopStorage{})
	for i := range 3 {
		appendOnce(t, a, body, ctText, int64(1_000_000+i*15_000))
	}
	c := a.cache
	perSeries := float64(cacheBytes(c)) / float64(c.series())
	t.Logf("%d series, %.1f bytes a series", c.series(), perSeries)
	if perSeries > 74 {
		t.Errorf("the cache holds %.1f bytes a series, want at most 74", perSeries)
	}
}

// TestCache_FailedScrapeKeepsTimestamps: the samples of a failed scrape
// are not logged, so they must not count as logged: afterwards a sample
// with the timestamp of one of them is appended, not skipped as a repeat,
// and one older than the last logged is out of order; a series without
// timestamps is staled by the failure and goes on.
func TestCache_FailedScrapeKeepsTimestamps(t *testing.T) {
	s := newMemStorage()
	a := newTestAppender(testOptions(), s)
	mustStep := func(body string, ts int64) appendResult {
		t.Helper()
		res, err := step(a, s, body, ctText, ts)
		if err != nil {
			t.Fatalf("scrape at %d: %v", ts, err)
		}
		return res
	}
	times := func(name string) []int64 {
		var ts []int64
		for _, x := range s.floats(t, "__name__", name) {
			ts = append(ts, x.T)
		}
		return ts
	}
	mustStep("m 1 1000\nk 1\n", 10_000)
	// m twice with its own timestamps (both kept), then a line that fails the scrape.
	if _, err := step(a, s, "m 2 2000\nm 3 3000\nk 2\nbad 1 x\n", ctText, 20_000); err == nil {
		t.Fatal("a malformed exposition did not fail the scrape")
	}
	if res := mustStep("m 2 2000\nk 3\n", 30_000); res.outOfOrder != 0 {
		t.Errorf("%d samples out of order after the failed scrape, want 0", res.outOfOrder)
	}
	if res := mustStep("m 1 1500\nk 4\n", 40_000); res.outOfOrder != 1 {
		t.Errorf("a sample older than the last logged: %d out of order, want 1", res.outOfOrder)
	}
	if got, want := times("m"), []int64{1000, 2000}; !slices.Equal(got, want) {
		t.Errorf("m logged at %v, want %v", got, want)
	}
	if got, want := times("k"), []int64{10_000, 20_000, 30_000, 40_000}; !slices.Equal(got, want) {
		t.Errorf("k logged at %v, want %v (a stale marker at the failure)", got, want)
	}
	if !value.IsStaleNaN(s.floats(t, "__name__", "k")[1].V) {
		t.Error("k not staled by the failed scrape")
	}
}

// TestCache_ScrapeTimestamps: a sample without a timestamp counts as
// logged at the scrape's time, within the scrape and after it: a sample of
// the same series with an older timestamp of its own is out of order, and
// so is the next scrape's when the clock stepped back.
func TestCache_ScrapeTimestamps(t *testing.T) {
	s := newMemStorage()
	a := newTestAppender(testOptions(), s)
	for _, tc := range []struct {
		body string
		ts   int64
		ooo  int
	}{
		{"k 1\n", 10_000, 0},
		{"k 2\n", 9_000, 1},             // the clock stepped back
		{"k 3\nk 4 15000\n", 20_000, 1}, // its own timestamp, older than the scrape's
		{"k 5\nk 6 25000\n", 20_500, 0}, // its own timestamp, newer: appended too
		{"k 7 25000\nk 8\n", 30_000, 0}, // the second sighting is a duplicate
	} {
		res, err := step(a, s, tc.body, ctText, tc.ts)
		if err != nil {
			t.Fatalf("scrape at %d: %v", tc.ts, err)
		}
		if res.outOfOrder != tc.ooo {
			t.Errorf("scrape at %d: %d out of order, want %d", tc.ts, res.outOfOrder, tc.ooo)
		}
	}
	var got []int64
	for _, x := range s.floats(t, "__name__", "k") {
		got = append(got, x.T)
	}
	if want := []int64{10_000, 20_000, 20_500, 25_000}; !slices.Equal(got, want) {
		t.Errorf("k logged at %v, want %v", got, want)
	}
}

// cacheBytes is what c's slices and indexes hold, capacity included
// (but for the untouched capacity of the entries' mapping, which costs no
// memory).
func cacheBytes(c *seriesCache) int {
	return c.entries.Bytes() + int(unsafe.Sizeof(alias{}))*cap(c.aliases) +
		int(unsafe.Sizeof(undoT{}))*cap(c.undo) + 8*cap(c.released) +
		4*(c.keys.Slots()+c.byHash.Slots()+cap(c.freeE)+cap(c.freeA)+cap(c.created))
}

// TestCache_ChurnBounded: with a tenth of a target's series replaced at
// every scrape, some spelled one way and then another, some with
// timestamps of their own, the cache holds no more after ten cycles than
// after the first: freed entries and aliases are reused, and the indexes
// do not grow.
func TestCache_ChurnBounded(t *testing.T) {
	const n, churn = 2000, 200
	a := newTestAppender(testOptions(), &nopStorage{})
	var body []byte
	scrape := func(i int) {
		body = body[:0]
		for j := i * churn; j < i*churn+n; j++ {
			switch (j + i) % 7 {
			case 0:
				body = fmt.Appendf(body, "m{k=\"v\",i=\"%d\"} 1\n", j) // the other spelling
			case 1:
				body = fmt.Appendf(body, "m{i=\"%d\",k=\"v\"} 1 %d\n", j, 1000*i) // own timestamp
			default:
				body = fmt.Appendf(body, "m{i=\"%d\",k=\"v\"} 1\n", j)
			}
		}
		appendOnce(t, a, body, ctText, int64(1_000_000+i*1000))
	}
	cycle := n / churn
	for i := range cycle {
		scrape(i)
	}
	first := cacheBytes(a.cache)
	for i := cycle; i < 10*cycle; i++ {
		scrape(i)
		if got := cacheBytes(a.cache); got > first {
			t.Fatalf("scrape %d: the cache holds %d bytes, more than the %d after the first cycle", i, got, first)
		}
	}
	if got := a.cache.series(); got > n+churn {
		t.Errorf("%d series cached, want at most %d", got, n+churn)
	}
}

// TestCache_LogFailureForgetsAliases: when the WAL refuses a scrape's
// records, the series created in it are forgotten (their series records
// are lost), and so must the other spellings that lead to them: otherwise
// the next scrape, reusing the freed entry for another series, would file
// a sample of the first under the ref of the second.
func TestCache_LogFailureForgetsAliases(t *testing.T) {
	s := newMemStorage()
	a := newTestAppender(testOptions(), s)
	s.setFail(errTestLog)
	if _, err := step(a, s, "m{a=\"1\",b=\"2\"} 1\nm{b=\"2\",a=\"1\"} 1\n", ctText, 1000); err != nil {
		t.Fatal(err)
	}
	s.setFail(nil)
	checkIndexes(t, a.cache)
	if _, err := step(a, s, "n 2\nm{b=\"2\",a=\"1\"} 2\n", ctText, 2000); err != nil {
		t.Fatal(err)
	}
	checkIndexes(t, a.cache)
	for _, name := range []string{"m", "n"} {
		refs := s.find("__name__", name)
		if len(refs) != 1 {
			t.Fatalf("%s has refs %v, want one", name, refs)
		}
		if got := s.samples[refs[0]]; len(got) != 1 || got[0].V != 2 {
			t.Errorf("%s samples = %v, want one of 2", name, got)
		}
	}
}

// TestCache_Close: caches of 10,000 series, made, scraped with churn and
// closed twenty times, leave the bytes mapped off the heap where they
// were; a closed cache panics rather than touching freed memory.
func TestCache_Close(t *testing.T) {
	bodies := make([][]byte, 5)
	for k := range bodies { // two targets' series in turn: all but a few churn
		body, _ := loadgen.NewTarget(10_000, uint64(k%2+1)).Scrape()
		bodies[k] = append([]byte(nil), body...)
	}
	base := offheap.Mapped()
	var a *appender
	for round := range 20 {
		a = newTestAppender(testOptions(), &nopStorage{})
		for i, body := range bodies {
			appendOnce(t, a, body, ctText, int64(1_000_000+i*15_000))
		}
		if runtime.GOOS == "linux" && offheap.Mapped() == base {
			t.Fatalf("round %d: nothing mapped for a cache of %d series", round, a.cache.series())
		}
		a.cache.close()
		if got := offheap.Mapped(); got != base {
			t.Fatalf("round %d: %d bytes mapped after close, want %d", round, got, base)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("lookup in a closed cache did not panic")
		}
	}()
	a.cache.find(hash128{h: 1})
}
