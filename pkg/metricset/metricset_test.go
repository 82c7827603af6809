package metricset_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/rwagent/rwagent/pkg/metricset"
)

func newSet() (*metricset.Set, prometheus.Counter, *prometheus.GaugeVec) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_a_total", Help: "a"})
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "test_b", Help: "b"}, []string{"l"})
	var s metricset.Set
	s.Add(c, g)
	return &s, c, g
}

func TestSet(t *testing.T) {
	tests := []struct {
		name    string
		blocker prometheus.Collector // registered first under one of the names
		wantErr string
	}{
		{name: "free registry"},
		{
			name:    "second name taken",
			blocker: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "test_b", Help: "b"}, []string{"l"}),
			wantErr: "register metric test_b: ",
		},
		{
			name:    "first name taken",
			blocker: prometheus.NewCounter(prometheus.CounterOpts{Name: "test_a_total", Help: "a"}),
			wantErr: "register metric test_a_total: ",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			if tc.blocker != nil {
				reg.MustRegister(tc.blocker)
			}
			s, c, g := newSet()
			c.Inc()
			g.WithLabelValues("x").Set(1)
			err := s.Register(reg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if n, err := testutil.GatherAndCount(reg, "test_a_total", "test_b"); err != nil || n != 2 {
					t.Errorf("registered: %d series (err %v), want 2", n, err)
				}
				s.Unregister()
				s.Unregister()
			} else {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("Register = %v, want %q...", err, tc.wantErr)
				}
				s.Unregister() // nothing to do after a failure
				reg.Unregister(tc.blocker)
			}
			// Nothing of s is left: a new set registers again.
			if n, err := testutil.GatherAndCount(reg, "test_a_total", "test_b"); err != nil || n != 0 {
				t.Errorf("left registered: %d series (err %v), want 0", n, err)
			}
			s2, _, _ := newSet()
			if err := s2.Register(reg); err != nil {
				t.Errorf("register a new set on the same registry: %v", err)
			}
		})
	}
}

func TestSet_NilRegisterer(t *testing.T) {
	s, _, _ := newSet()
	if err := s.Register(nil); err != nil {
		t.Fatal(err)
	}
	s.Unregister()
}
