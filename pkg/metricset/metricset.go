// Package metricset registers a component's collectors together: all or
// none, and unregistered together when the component stops, so that a
// rebuilt component registers them again on the same registry.
package metricset

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Set is collectors registered and unregistered together. It is not safe
// for concurrent use: a component registers it once when it starts and
// unregisters it once when it stops. The zero value is an empty set.
type Set struct {
	collectors []prometheus.Collector
	reg        prometheus.Registerer // where they are registered; nil: nowhere
}

// Add adds collectors to s. Call it before Register.
func (s *Set) Add(cs ...prometheus.Collector) {
	s.collectors = append(s.collectors, cs...)
}

// Register registers every collector of s on reg, or none: on error it
// unregisters those it registered and returns the error naming the metric
// that failed. A nil reg registers nothing and succeeds.
func (s *Set) Register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for i, c := range s.collectors {
		if err := reg.Register(c); err != nil {
			for _, r := range s.collectors[:i] {
				reg.Unregister(r)
			}
			return fmt.Errorf("register metric %s: %w", name(c), err)
		}
	}
	s.reg = reg
	return nil
}

// Unregister removes the collectors from the registry Register put them
// on. It is idempotent, and does nothing if Register was not called or
// failed.
func (s *Set) Unregister() {
	if s.reg == nil {
		return
	}
	for _, c := range s.collectors {
		s.reg.Unregister(c)
	}
	s.reg = nil
}

// name returns the fully-qualified name of c's first metric, read from its
// Desc (which exports no accessor).
func name(c prometheus.Collector) string {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	n := "(unnamed)"
	first := true
	for d := range ch {
		if first {
			first = false
			s := d.String()
			const key = `fqName: "`
			if i := strings.Index(s, key); i >= 0 {
				s = s[i+len(key):]
				if j := strings.IndexByte(s, '"'); j >= 0 {
					n = s[:j]
				}
			}
		}
	}
	return n
}
