package scrape

import (
	"slices"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/model/value"
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

// TestSeriesCache_KeyHashes: a raw text is found by its hash; a slot of the
// same hash but another length (another text) is a miss, not a wrong hit,
// and a sweep of the slot it displaced leaves the new one.
func TestSeriesCache_KeyHashes(t *testing.T) {
	c := newSeriesCache()
	a := []byte(`up{job="a"}`)
	e := c.add(1, labels.FromStrings("__name__", "up", "job", "a"), 1)
	c.setKey(-1, a, e)
	if slot, entry, _ := c.lookup(a); slot < 0 || entry != e {
		t.Fatalf("lookup of a known text: slot %d entry %d, want entry %d", slot, entry, e)
	}
	if slot, _, _ := c.lookup([]byte(`up{job="b"}`)); slot >= 0 {
		t.Fatalf("lookup of an unknown text hit slot %d", slot)
	}
	// Another text with a's hash: pretend a's slot holds a longer text.
	old, _ := c.keys.Find(xxhash.Sum64(a), c.slotHash)
	c.slots[old].size++
	slot, entry, _ := c.lookup(a)
	if slot >= 0 || entry >= 0 {
		t.Fatalf("lookup with a same-hash text of another length: slot %d entry %d, want a miss", slot, entry)
	}
	c.iter += 2 // the old slot is now unseen for two iterations
	c.setKey(slot, a, e)
	c.sweepKeys()
	if c.slots[old].seen != 0 {
		t.Errorf("the displaced slot was not swept")
	}
	if slot, entry, _ := c.lookup(a); slot < 0 || entry != e {
		t.Fatalf("after sweeping the displaced slot: slot %d entry %d, want entry %d", slot, entry, e)
	}
}
