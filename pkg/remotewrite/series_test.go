package remotewrite

import (
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/tsdb/record"
)

func TestSeriesTable(t *testing.T) {
	st := newSeriesTable(labels.FromStrings("cluster", "c1", "job", "ext"), []*relabel.Config{
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
			t.Errorf("ref %d: got %s, want dropped", tc.ref, labelsString(s.labels))
		case tc.want != "" && (s == nil || labelsString(s.labels) != tc.want):
			t.Errorf("ref %d: got %v, want %s", tc.ref, s, tc.want)
		}
	}
}
