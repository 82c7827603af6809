package receive

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// registry forwards registrations to reg and remembers them, so Close can
// unregister what the TSDB and the PromQL engine registered: neither
// unregisters its metrics when closed. It is safe for concurrent use.
type registry struct {
	reg prometheus.Registerer

	mu         sync.Mutex
	collectors []prometheus.Collector // guarded by mu
}

var _ prometheus.Registerer = (*registry)(nil)

func (r *registry) Register(c prometheus.Collector) error {
	if err := r.reg.Register(c); err != nil {
		return err
	}
	r.mu.Lock()
	r.collectors = append(r.collectors, c)
	r.mu.Unlock()
	return nil
}

func (r *registry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// Unregister forwards to reg. c stays remembered (collectors need not be
// comparable); unregistering it again in unregisterAll is harmless.
func (r *registry) Unregister(c prometheus.Collector) bool {
	return r.reg.Unregister(c)
}

// unregisterAll unregisters everything registered through r.
func (r *registry) unregisterAll() {
	r.mu.Lock()
	cs := r.collectors
	r.collectors = nil
	r.mu.Unlock()
	for _, c := range cs {
		r.reg.Unregister(c)
	}
}
