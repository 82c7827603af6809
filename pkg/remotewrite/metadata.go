package remotewrite

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/tsdb/record"
)

// family is the metadata of one metric family, as the WAL's Metadata
// records last gave it. It is immutable: a change makes a new family, so
// shards may read one without locking.
type family struct {
	name       string // the family name, see familyName
	typ        model.MetricType
	help, unit string
	v1Type     prompb.MetricMetadata_MetricType
	v2Type     writev2.Metadata_MetricType
}

// families keeps the latest metadata of every metric family the WAL has
// described: one entry per family, however many series it has, each
// series pointing at its family's entry (series.meta). The reader goroutine
// updates it; snapshot may be called from any goroutine.
type families struct {
	mu sync.Mutex
	m  map[string]*family // by name; mu
}

func newFamilies() *families { return &families{m: map[string]*family{}} }

// update applies a Metadata record: each known series gets its family's
// entry, which is replaced if its type, help or unit changed. Metadata of a
// ref not in a Series record, or of a series dropped by relabeling, is
// skipped. The strings in ms are kept only when they are new.
func (f *families) update(t *seriesTable, ms []record.RefMetadata) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range ms {
		m := &ms[i]
		s, _ := t.get(m.Ref)
		if s == nil {
			continue
		}
		typ := record.ToMetricType(m.Type)
		name := familyName(s.metricName(t.pairs), typ)
		if name == "" {
			continue
		}
		cur := f.m[name]
		if cur == nil || cur.typ != typ || cur.help != m.Help || cur.unit != m.Unit {
			if cur != nil {
				name = cur.name // the key's string, not a new copy
			} else {
				name = strings.Clone(name) // not a slice of a pair, which may be freed
			}
			cur = &family{
				name: name, typ: typ, help: m.Help, unit: m.Unit,
				v1Type: prompb.FromMetadataType(typ), v2Type: writev2.FromMetadataType(typ),
			}
			f.m[name] = cur
		}
		s.meta.Store(cur)
	}
}

// snapshot returns every family's metadata for a 1.0 request, sorted by
// name. It is safe for concurrent use with update.
func (f *families) snapshot() []prompb.MetricMetadata {
	f.mu.Lock()
	out := make([]prompb.MetricMetadata, 0, len(f.m))
	for _, fm := range f.m {
		out = append(out, prompb.MetricMetadata{Type: fm.v1Type, MetricFamilyName: fm.name, Help: fm.help, Unit: fm.unit})
	}
	f.mu.Unlock()
	slices.SortFunc(out, func(a, b prompb.MetricMetadata) int { return strings.Compare(a.MetricFamilyName, b.MetricFamilyName) })
	return out
}

// familyName returns the family a series named name belongs to, given its
// type. A Metadata record carries no family name, so it is derived by
// stripping the suffix the type adds to its series: _bucket, _sum, _count
// of histograms and summaries (_gsum, _gcount of gauge histograms), _info,
// and _created. A counter keeps its _total: that is its family name in the
// Prometheus text format, which most targets expose (OpenMetrics would name
// the family without it).
func familyName(name string, typ model.MetricType) string {
	var suffixes []string
	switch typ {
	case model.MetricTypeCounter:
		suffixes = []string{"_created"}
	case model.MetricTypeHistogram:
		suffixes = []string{"_bucket", "_sum", "_count", "_created"}
	case model.MetricTypeSummary:
		suffixes = []string{"_sum", "_count", "_created"}
	case model.MetricTypeGaugeHistogram:
		suffixes = []string{"_bucket", "_gsum", "_gcount"}
	case model.MetricTypeInfo:
		suffixes = []string{"_info"}
	}
	for _, s := range suffixes {
		if f, ok := strings.CutSuffix(name, s); ok && f != "" {
			return f
		}
	}
	return name
}

// metadataSender sends the families' metadata as remote-write 1.0 every
// metadata_config.send_interval, the way Prometheus' metadata watcher does
// (2.0 carries it with each series instead). It is not in the WAL position
// accounting: what fails is counted, logged and sent again at the next
// interval.
type metadataSender struct {
	q        *Queue
	every    time.Duration
	perSend  int
	families *families
}

func newMetadataSender(q *Queue, mc config.MetadataConfig) *metadataSender {
	ms := &metadataSender{q: q, every: time.Duration(mc.SendInterval), perSend: mc.MaxSamplesPerSend, families: q.families}
	if ms.every <= 0 {
		ms.every = time.Duration(config.DefaultMetadataConfig.SendInterval)
	}
	if ms.perSend <= 0 {
		ms.perSend = config.DefaultMetadataConfig.MaxSamplesPerSend
	}
	return ms
}

// run sends every interval until ctx is done. A round sends nothing while
// the queue speaks 2.0, or when no family is known.
func (ms *metadataSender) run(ctx context.Context) {
	tick := time.NewTicker(ms.every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		if ms.q.v2.Load() {
			continue
		}
		// A round gives up at the next tick: that one sends fresher
		// metadata.
		rctx, cancel := context.WithTimeout(ctx, ms.every)
		ms.round(rctx)
		cancel()
	}
}

// round sends every family's metadata in requests of at most perSend
// entries. What it has not delivered when ctx is done (the next interval,
// or shutdown) counts as failed.
func (ms *metadataSender) round(ctx context.Context) {
	all := ms.families.snapshot()
	var (
		req  prompb.WriteRequest
		body []byte
	)
	for len(all) > 0 {
		n := min(len(all), ms.perSend)
		req.Metadata = all[:n]
		all = all[n:]
		pb, err := req.Marshal()
		if err != nil {
			ms.q.metrics.metadataFailed.Add(float64(n))
			ms.q.logger.Error("encode remote write metadata request", "err", err)
			continue
		}
		body = s2.EncodeSnappy(body[:cap(body)], pb)
		if err := ms.send(ctx, body, n); err != nil {
			if errors.Is(err, errGaveUp) {
				n += len(all) // the rest of the round would only fail too
				all = nil
			}
			ms.q.metrics.metadataFailed.Add(float64(n))
			ms.q.metadataLog.Log(ms.q.logger, "send metadata to remote storage, giving up until the next send_interval",
				"metadata", n, "err", err)
		}
	}
}

// send posts one metadata request of n entries, retrying recoverable
// errors with backoff (and Retry-After) until ctx is done; then it returns
// the last error wrapped in errGaveUp.
func (ms *metadataSender) send(ctx context.Context, body []byte, n int) error {
	q, m := ms.q, ms.q.metrics
	return q.sendWithBackoff(ctx, "remote write metadata", func(ctx context.Context, attempt int) error {
		begin := time.Now()
		_, err := q.client.store(ctx, body, attempt, false)
		m.sentBatchDuration.Observe(time.Since(begin).Seconds())
		if err == nil {
			m.metadataTotal.Add(float64(n))
			m.metadataBytes.Add(float64(len(body)))
		}
		return err
	}, func() { m.metadataRetried.Add(float64(n)) })
}
