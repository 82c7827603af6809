package sigv4

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rwagent/rwagent/pkg/metricset"
)

// Metrics are the series of the SigV4 round trippers: the clock offset
// learnt from receivers (the clock is the host's) and the credential
// refreshes. Their owner builds them once, registers them, and hands them to
// every round tripper it builds (Options.Metrics), so that several endpoints
// share one registry; the owner unregisters them when it stops using those
// round trippers, so that a reload can register them again. Safe for
// concurrent use once registered.
type Metrics struct {
	clockSkew prometheus.Gauge
	refreshes *prometheus.CounterVec
	all       metricset.Set // both above
}

// NewMetrics builds the metrics, registered nowhere.
func NewMetrics() *Metrics {
	m := &Metrics{
		clockSkew: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rwagent_sigv4_clock_offset_seconds",
			Help: "Offset added to the local clock when signing with SigV4, learnt from a receiver that refused a signature as expired or not yet current.",
		}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rwagent_sigv4_credential_refreshes_total",
			Help: "Refreshes of expiring AWS credentials used for SigV4, by result; a failure keeps signing with the current credentials until they expire.",
		}, []string{"result"}),
	}
	m.all.Add(m.clockSkew, m.refreshes)
	return m
}

// Register registers every metric on reg, or none: on error it unregisters
// what it registered and returns the error naming the metric. A nil reg
// registers nothing. Call it once, before the first round tripper uses m.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	if err := m.all.Register(reg); err != nil {
		return fmt.Errorf("sigv4: %w", err)
	}
	return nil
}

// Unregister removes the metrics from the registry Register put them on. It
// is idempotent.
func (m *Metrics) Unregister() { m.all.Unregister() }
