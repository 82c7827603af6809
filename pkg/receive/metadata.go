package receive

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
)

// metricMetadata is one metric's metadata as Prometheus' /api/v1/metadata
// writes it.
type metricMetadata struct {
	Type string `json:"type"`
	Help string `json:"help"`
	Unit string `json:"unit"`
}

// maxMetadataPerMetric is how many different metadata one metric keeps, as
// Cortex's max_metadata_per_metric default (10); later ones are dropped.
const maxMetadataPerMetric = 10

// metadataStore keeps the metadata remote write sent (1.0
// WriteRequest.metadata, 2.0 per-series metadata), by metric, for
// /api/v1/metadata. It holds at most maxMetrics metrics (AMP: "Active metrics
// with metadata per workspace", 20,000: "If the limit is reached, metric
// sample is recorded, but metadata over the limit is dropped"). It is in
// memory only: the TSDB keeps no metadata, so after a restart it is empty
// until senders send it again (rwagent does every metadata_config
// send_interval). It is safe for concurrent use.
type metadataStore struct {
	maxMetrics int // <= 0: no limit

	mu      sync.Mutex
	metrics map[string][]metricMetadata // guarded by mu
}

func newMetadataStore(maxMetrics int) *metadataStore {
	return &metadataStore{maxMetrics: maxMetrics, metrics: map[string][]metricMetadata{}}
}

// add records md for metric and reports whether it was kept or already
// known; false means a limit dropped it.
func (m *metadataStore) add(metric string, md metricMetadata) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	list, ok := m.metrics[metric]
	if !ok && m.maxMetrics > 0 && len(m.metrics) >= m.maxMetrics {
		return false
	}
	if slices.Contains(list, md) {
		return true
	}
	if len(list) >= maxMetadataPerMetric {
		return false
	}
	m.metrics[metric] = append(list, md)
	return true
}

// query returns the metadata of metric (all metrics when ""), at most limit
// metrics and perMetric entries each (<= 0: no limit), as copies.
func (m *metadataStore) query(metric string, limit, perMetric int) map[string][]metricMetadata {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]metricMetadata{}
	names := make([]string, 0, len(m.metrics))
	for name := range m.metrics {
		if metric == "" || name == metric {
			names = append(names, name)
		}
	}
	slices.Sort(names) // so that limit keeps the same metrics each time
	for _, name := range names {
		if limit > 0 && len(out) >= limit {
			break
		}
		list := m.metrics[name]
		if perMetric > 0 && len(list) > perMetric {
			list = list[:perMetric]
		}
		out[name] = slices.Clone(list)
	}
	return out
}

// serveMetadata answers /api/v1/metadata with Prometheus' parameters limit,
// limit_per_metric and metric.
func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request, _ []byte) {
	if err := r.ParseForm(); err != nil {
		writeAPIError(w, badData(fmt.Errorf("parse form: %w", err)))
		return
	}
	limit, err := intParam(r, "limit")
	if err != nil {
		writeAPIError(w, badData(err))
		return
	}
	perMetric, err := intParam(r, "limit_per_metric")
	if err != nil {
		writeAPIError(w, badData(err))
		return
	}
	writeAPIData(w, s.meta.query(r.Form.Get("metric"), limit, perMetric), nil, "")
}

// intParam reads an optional integer parameter; missing means 0, no limit
// (Prometheus takes -1 and 0 alike).
func intParam(r *http.Request, name string) (int, error) {
	v := r.Form.Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("invalid parameter %q: %w", name, errors.Unwrap(err))
	}
	return n, nil
}
