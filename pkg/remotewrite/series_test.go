package remotewrite

import (
	"fmt"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
)

func TestSeriesTable(t *testing.T) {
	st := newSeriesTable(testPairs, labels.FromStrings("cluster", "c1", "job", "ext"), []*relabel.Config{
		{
			SourceLabels: model.LabelNames{"__name__"}, Regex: relabel.MustNewRegexp("go_.*"),
			Action: relabel.Drop, NameValidationScheme: model.UTF8Validation,
		},
		{
			SourceLabels: model.LabelNames{"cluster"}, Regex: relabel.MustNewRegexp("(.*)"), Separator: ";",
			TargetLabel: "region", Replacement: "eu-$1", Action: relabel.Replace, NameValidationScheme: model.UTF8Validation,
		},
	})
	dropped := st.store([]record.RefSeries{
		{Ref: 1, Labels: labels.FromStrings("__name__", "up", "job", "node")},
		{Ref: 2, Labels: labels.FromStrings("__name__", "go_goroutines", "job", "node")},
		{Ref: 3, Labels: labels.FromStrings("__name__", "up")},
	})
	if dropped != 1 {
		t.Errorf("dropped %d series, want 1", dropped)
	}
	cases := []struct {
		ref   int
		known bool
		want  string // "" for dropped
	}{
		// External labels do not override the series' own; relabeling
		// sees them.
		{1, true, `{__name__="up", cluster="c1", job="node", region="eu-c1"}`},
		{2, true, ""},
		{3, true, `{__name__="up", cluster="c1", job="ext", region="eu-c1"}`},
		{4, false, ""},
	}
	for _, tc := range cases {
		s, known := st.get(refOf(tc.ref - 1))
		if known != tc.known {
			t.Errorf("ref %d: known = %v, want %v", tc.ref, known, tc.known)
			continue
		}
		switch {
		case tc.want == "" && s != nil:
			t.Errorf("ref %d: got %s, want dropped", tc.ref, labelsString(protoLabels(t, s)))
		case tc.want != "" && (s == nil || labelsString(protoLabels(t, s)) != tc.want):
			t.Errorf("ref %d: got %v, want %s", tc.ref, s, tc.want)
		}
	}
}

// testPairs is the pair table of the tables and encoders tests make, so
// that series of one test table can be encoded or stored in another.
var testPairs = newPairTable()

// put stores s for ref as store would, for tests that build series by hand.
func (t *seriesTable) put(ref chunks.HeadSeriesRef, s *series) {
	slot := t.slot(ref, true)
	if *slot == nil {
		t.pages[uint64(ref)>>pageBits-t.base].live++
	}
	*slot = s
}

// protoLabels returns s's labels.
func protoLabels(t testing.TB, s *series) []prompb.Label {
	t.Helper()
	var ls []prompb.Label
	it := s.labels(testPairs)
	for name, value, ok := it.next(); ok; name, value, ok = it.next() {
		ls = append(ls, prompb.Label{Name: name, Value: value})
	}
	if it.ids != "" || s.ids == "" {
		t.Fatalf("series pair ids %x do not decode", s.ids)
	}
	return ls
}

// TestSeriesTablePages: refs map to their series across pages, in any
// order (refs of an earlier process may come after newer ones); forgotten
// refs are unknown again, and a page whose refs are all forgotten is freed.
func TestSeriesTablePages(t *testing.T) {
	st := newSeriesTable(testPairs, labels.EmptyLabels(), nil)
	page := chunks.HeadSeriesRef(1 << pageBits)
	refs := []chunks.HeadSeriesRef{5*page + 3, 5*page + 4, 7 * page, 2*page + 1, 1, page - 1}
	for _, ref := range refs {
		st.store([]record.RefSeries{{Ref: ref, Labels: labels.FromStrings("__name__", "m", "ref", fmt.Sprint(uint64(ref)))}})
	}
	check := func(when string, gone map[chunks.HeadSeriesRef]bool) {
		t.Helper()
		for _, ref := range refs {
			s, known := st.get(ref)
			if gone[ref] {
				if known || s != nil {
					t.Errorf("%s: ref %d still known", when, ref)
				}
				continue
			}
			if !known || s == nil {
				t.Fatalf("%s: ref %d unknown", when, ref)
			}
			if got, want := labelsString(protoLabels(t, s)), fmt.Sprintf(`{__name__="m", ref="%d"}`, ref); got != want {
				t.Errorf("%s: ref %d has %s, want %s", when, ref, got, want)
			}
		}
		for _, ref := range []chunks.HeadSeriesRef{0, 2, 5 * page, 6 * page, 100 * page} {
			if _, known := st.get(ref); known {
				t.Errorf("%s: ref %d, never stored, is known", when, ref)
			}
		}
		if st.len() != len(refs)-len(gone) {
			t.Errorf("%s: len %d, want %d", when, st.len(), len(refs)-len(gone))
		}
	}
	check("stored", nil)
	if len(st.pages) != 8 || st.base != 0 {
		t.Fatalf("%d pages from %d, want 8 from 0", len(st.pages), st.base)
	}

	gone := map[chunks.HeadSeriesRef]bool{1: true, page - 1: true, 2*page + 1: true, 5*page + 3: true}
	st.forget([]chunks.HeadSeriesRef{1, page - 1, 2*page + 1, 5*page + 3, 9 * page /* unknown */}, 0)
	check("forgotten", gone)
	if st.base != 5 || len(st.pages) != 3 {
		t.Errorf("after forgetting pages 0 to 2: %d pages from %d, want 3 from 5", len(st.pages), st.base)
	}
	// Storing below the pages held moves them up.
	st.store([]record.RefSeries{{Ref: 1, Labels: labels.FromStrings("__name__", "m", "ref", "1")}})
	delete(gone, 1)
	check("stored again below", gone)
	st.forget(refs, 0)
	if len(st.pages) != 0 || st.len() != 0 {
		t.Errorf("after forgetting everything: %d pages, len %d", len(st.pages), st.len())
	}
}

// len returns how many refs the table holds, dropped ones included.
func (t *seriesTable) len() int {
	n := 0
	for _, p := range t.pages {
		if p != nil {
			n += p.live
		}
	}
	return n
}
