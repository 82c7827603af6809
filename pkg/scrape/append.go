package scrape

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/exposition"
	"github.com/rwagent/rwagent/pkg/wal"
)

// Errors that fail a whole scrape (its samples are rolled back and up is 0),
// as in Prometheus. They are wrapped with the numbers involved; test with
// errors.Is.
var (
	ErrSampleLimit    = errors.New("scrape: sample_limit exceeded")
	ErrBucketLimit    = errors.New("scrape: native_histogram_bucket_limit exceeded")
	ErrLabelLimit     = errors.New("scrape: label limit exceeded")
	ErrBodySizeLimit  = errors.New("scrape: body_size_limit exceeded")
	ErrTargetLimit    = errors.New("scrape: target_limit exceeded")
	errNameMandatory  = errors.New("missing metric name (__name__ label)")
	errInvalidLabels  = errors.New("invalid metric name or label names")
	errParseMediaType = errors.New("unusable Content-Type")
)

// ErrDuplicateLabelNames fails a scrape with a series that has a label name
// twice, after target labels and metric relabelling: Prometheus' storage
// refuses such a series ("label name is not unique"), failing the scrape,
// and remote write would send the label twice.
var ErrDuplicateLabelNames = errors.New("scrape: duplicate label name")

// maxAheadTime is how far in the future a sample timestamp may be; later
// samples are dropped as out of bounds, as in Prometheus.
const maxAheadTime = 10 * time.Minute

// appendOptions is what the appender needs from the scrape config and the
// target. It is immutable once built.
type appendOptions struct {
	targetLabels             []labels.Label // public target labels, sorted by name
	honorLabels              bool
	honorTimestamps          bool
	trackTimestampsStaleness bool
	sampleLimit              int
	bucketLimit              int
	maxSchema                int32
	labelLimit               int
	labelNameLengthLimit     int
	labelValueLengthLimit    int
	metricRelabel            []*relabel.Config
	validation               model.ValidationScheme
	parser                   textparse.ParserOptions
	extraMetrics             bool
	startTimestamps          bool // ManagerOptions.StartTimestamps
}

// appendResult counts one exposition's samples.
type appendResult struct {
	total       int // samples parsed (scrape_samples_scraped)
	added       int // samples after metric relabelling (scrape_samples_post_metric_relabeling)
	seriesAdded int // raw series new to the cache (scrape_series_added)
	duplicates  int
	outOfOrder  int
	outOfBounds int
}

// appender turns expositions of one target into WAL records in recs. It owns
// the cache it is given; recs is its own unless the loop lends it a pooled
// batch for the duration of a scrape. It is not safe for concurrent use.
type appender struct {
	opts    *appendOptions
	storage Storage
	cache   *seriesCache
	metrics *scrapeMetrics
	recs    *wal.Records

	parsers   *parserPool
	knownKey  func([]byte) int // cache.knownKey, made once
	symbols   *labels.SymbolTable
	lb        *labels.Builder
	lset      labels.Labels
	ex        exemplar.Exemplar
	conflicts []labels.Label
}

func newAppender(opts *appendOptions, s Storage, c *seriesCache, m *scrapeMetrics, ps *parserPool) *appender {
	return &appender{
		opts:     opts,
		parsers:  ps,
		storage:  s,
		cache:    c,
		knownKey: c.knownKey,
		metrics:  m,
		recs:     new(wal.Records),
		symbols:  labels.NewSymbolTable(),
		lb:       labels.NewBuilder(labels.EmptyLabels()),
	}
}

// append parses the exposition b of media type contentType scraped at t (ms)
// into a.recs: new series, samples, exemplars and metadata. now (ms) bounds
// sample timestamps. On error what it appended to a.recs is taken out again
// and the caller must treat the scrape as failed (finish(false), which also
// forgets the series it created). res counts what was parsed up to the
// error. b is not retained: everything kept is copied.
func (a *appender) append(b []byte, contentType string, t, now int64) (res appendResult, err error) {
	mark := a.recsLen()
	defer func() {
		if err != nil {
			a.truncate(mark)
		}
	}()
	ps := a.parsers.get()
	ps.KnownKey = a.knownKey
	defer func() {
		// Neither the pool nor the cache keeps this target's cache or
		// body alive.
		ps.KnownKey, a.cache.knownAt = nil, nil
		a.parsers.put(ps)
	}()
	p, perr := ps.New(b, contentType, a.symbols, a.opts.parser)
	if p == nil {
		return res, fmt.Errorf("%w: %w", errParseMediaType, perr)
	}
	var (
		c        = a.cache
		opts     = a.opts
		maxT     = now + maxAheadTime.Milliseconds()
		meta     *metaEntry
		limitErr error
		appended int
	)
	for {
		et, err := p.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return res, fmt.Errorf("parse exposition: %w", err)
		}
		var (
			met    []byte
			ts     *int64
			v      float64
			h      *histogram.Histogram
			fh     *histogram.FloatHistogram
			isHist bool
		)
		switch et {
		case textparse.EntryType:
			meta = c.setType(p.Type())
			continue
		case textparse.EntryHelp:
			meta = c.setHelp(p.Help())
			continue
		case textparse.EntryUnit:
			meta = c.setUnit(p.Unit())
			continue
		case textparse.EntryComment:
			continue
		case textparse.EntryHistogram:
			isHist = true
			met, ts, h, fh = p.Histogram()
		default:
			met, ts, v = p.Series()
		}
		res.total++

		st, tracked := t, true
		if ts != nil && opts.honorTimestamps {
			st, tracked = *ts, opts.trackTimestampsStaleness
		}

		ei, dropped := c.lookup(met)
		if dropped {
			continue
		}
		isNew := ei < 0
		if isNew {
			var keep bool
			if ei, keep, err = a.resolve(p, met); err != nil {
				return res, err
			}
			if !keep {
				continue
			}
		}
		res.added++
		e := &c.entries.Elems()[ei]
		if !e.has(flagMarked) {
			// First sight in this scrape: the series is present (kept in
			// the cache) even if its sample turns out unusable.
			e.mark(tracked)
		} else if tracked {
			// Same series twice in one exposition.
			res.duplicates++
			continue
		}
		if pend := e.pending(t); st <= pend {
			// A repeated timestamp (an exporter's cached value) is skipped
			// silently; an older one is out of order.
			if st < pend {
				res.outOfOrder++
			}
			continue
		}
		if st > maxT {
			res.outOfBounds++
			continue
		}
		if opts.sampleLimit > 0 && appended >= opts.sampleLimit {
			if limitErr == nil {
				limitErr = ErrSampleLimit
			}
			continue
		}
		if isHist {
			if err := a.limitHistogram(h, fh); err != nil {
				if limitErr == nil {
					limitErr = err
				}
				continue
			}
		}
		appended++
		if isNew {
			res.seriesAdded++
		}
		c.appended(ei, st, t)
		var start int64
		if opts.startTimestamps {
			start = p.StartTimestamp() // a look-ahead in OpenMetrics 1.0: only when asked
		}
		switch {
		case h != nil:
			e.kind = kindHistogram
			a.recs.Histograms = append(a.recs.Histograms, record.RefHistogramSample{Ref: e.ref, ST: start, T: st, H: h})
		case fh != nil:
			e.kind = kindFloatHistogram
			a.recs.FloatHistograms = append(a.recs.FloatHistograms, record.RefFloatHistogramSample{Ref: e.ref, ST: start, T: st, FH: fh})
		default:
			e.kind = kindFloat
			a.recs.Samples = append(a.recs.Samples, record.RefSample{Ref: e.ref, ST: start, T: st, V: v})
		}
		a.appendExemplars(p, ei, st, isHist)
		if meta != nil && (isNew || meta.changed == c.iter) {
			a.appendMetadata(e, meta)
		}
	}
	if limitErr != nil {
		if errors.Is(limitErr, ErrSampleLimit) {
			a.metrics.sampleLimit.Inc()
			return res, fmt.Errorf("%w: limit %d", ErrSampleLimit, opts.sampleLimit)
		}
		a.metrics.bucketLimit.Inc()
		return res, limitErr
	}
	return res, nil
}

// recsLen is the length of each slice of a.recs.
type recsLen [6]int

func (a *appender) recsLen() recsLen {
	r := a.recs
	return recsLen{len(r.Series), len(r.Samples), len(r.Histograms), len(r.FloatHistograms), len(r.Exemplars), len(r.Metadata)}
}

// truncate drops what was appended to a.recs since l was taken.
func (a *appender) truncate(l recsLen) {
	r := a.recs
	clear(r.Series[l[0]:])
	clear(r.Histograms[l[2]:])
	clear(r.FloatHistograms[l[3]:])
	clear(r.Exemplars[l[4]:])
	clear(r.Metadata[l[5]:])
	r.Series, r.Samples, r.Histograms = r.Series[:l[0]], r.Samples[:l[1]], r.Histograms[:l[2]]
	r.FloatHistograms, r.Exemplars, r.Metadata = r.FloatHistograms[:l[3]], r.Exemplars[:l[4]], r.Metadata[:l[5]]
}

// resolve builds the labels of a raw series text not in the cache (target
// labels, metric relabelling, validation, limits), finds or creates its entry
// and points the text at it. keep is false if relabelling dropped it.
func (a *appender) resolve(p textparse.Parser, met []byte) (ei int32, keep bool, err error) {
	c := a.cache
	p.Labels(&a.lset)
	lset := a.mutate(a.lset)
	if lset.IsEmpty() {
		c.setKey(met, -1, false)
		return -1, false, nil
	}
	if !lset.Has(model.MetricNameLabel) {
		return -1, false, errNameMandatory
	}
	if !lset.IsValid(a.opts.validation) {
		return -1, false, fmt.Errorf("%w: %s", errInvalidLabels, lset.String())
	}
	if name, dup := lset.HasDuplicateLabelNames(); dup {
		return -1, false, fmt.Errorf("%w: label name %.50q is not unique in metric %.50s", ErrDuplicateLabelNames, name, lset.Get(model.MetricNameLabel))
	}
	if err := a.checkLimits(lset); err != nil {
		a.metrics.labelLimits.Inc()
		return -1, false, err
	}
	h := c.labelsHash(lset)
	ei = c.find(h)
	if ei < 0 {
		ref := a.storage.NewRef()
		ei = c.add(ref, lset, h)
		a.recs.Series = append(a.recs.Series, record.RefSeries{Ref: ref, Labels: lset})
	}
	c.setKey(met, ei, exposition.FastSeries(p))
	return ei, true, nil
}

// mutate adds the target labels to lset (honor_labels decides conflicts, the
// losers of which are kept under exported_ names) and applies
// metric_relabel_configs, then removes wal.RouteLabel. An empty result
// means drop.
func (a *appender) mutate(lset labels.Labels) labels.Labels {
	lb := a.lb
	lb.Reset(lset)
	if a.opts.honorLabels {
		for _, l := range a.opts.targetLabels {
			if !lset.Has(l.Name) {
				lb.Set(l.Name, l.Value)
			}
		}
	} else {
		a.conflicts = a.conflicts[:0]
		for _, l := range a.opts.targetLabels {
			if v := lset.Get(l.Name); v != "" {
				a.conflicts = append(a.conflicts, labels.Label{Name: l.Name, Value: v})
			}
			lb.Set(l.Name, l.Value)
		}
		// Shorter names first, so exported_exported_x never shadows exported_x.
		slices.SortStableFunc(a.conflicts, func(x, y labels.Label) int { return len(x.Name) - len(y.Name) })
		for _, l := range a.conflicts {
			name := l.Name
			for {
				name = model.ExportedLabelPrefix + name
				if lb.Get(name) == "" {
					lb.Set(name, l.Value)
					break
				}
			}
		}
	}
	if !relabel.ProcessBuilder(lb, a.opts.metricRelabel...) {
		return labels.EmptyLabels()
	}
	// Only the gateway routes: a target or a relabeling that makes the
	// route label would send its series to some endpoints only.
	lb.Del(wal.RouteLabel)
	return lb.Labels()
}

func (a *appender) checkLimits(lset labels.Labels) error {
	o := a.opts
	if o.labelLimit > 0 {
		if n := lset.Len(); n > o.labelLimit {
			return fmt.Errorf("%w: label_limit %d, metric %.50s has %d labels", ErrLabelLimit, o.labelLimit, lset.Get(model.MetricNameLabel), n)
		}
	}
	if o.labelNameLengthLimit == 0 && o.labelValueLengthLimit == 0 {
		return nil
	}
	return lset.Validate(func(l labels.Label) error {
		if o.labelNameLengthLimit > 0 && len(l.Name) > o.labelNameLengthLimit {
			return fmt.Errorf("%w: label_name_length_limit %d, metric %.50s has label name %.50s of length %d",
				ErrLabelLimit, o.labelNameLengthLimit, lset.Get(model.MetricNameLabel), l.Name, len(l.Name))
		}
		if o.labelValueLengthLimit > 0 && len(l.Value) > o.labelValueLengthLimit {
			return fmt.Errorf("%w: label_value_length_limit %d, metric %.50s has label %.50s with value of length %d",
				ErrLabelLimit, o.labelValueLengthLimit, lset.Get(model.MetricNameLabel), l.Name, len(l.Value))
		}
		return nil
	})
}

// limitHistogram lowers the resolution of a native histogram to the schema
// native_histogram_min_bucket_factor allows and then until it has no more
// than native_histogram_bucket_limit buckets. It changes h or fh in place
// (the parser hands out a fresh one per sample).
func (a *appender) limitHistogram(h *histogram.Histogram, fh *histogram.FloatHistogram) error {
	maxSchema, limit := a.opts.maxSchema, a.opts.bucketLimit
	if h != nil {
		if histogram.IsExponentialSchemaReserved(h.Schema) && h.Schema > maxSchema {
			if err := h.ReduceResolution(maxSchema); err != nil {
				return fmt.Errorf("reduce histogram resolution: %w", err)
			}
		}
		for limit > 0 && len(h.PositiveBuckets)+len(h.NegativeBuckets) > limit {
			if !histogram.IsExponentialSchema(h.Schema) || h.Schema <= histogram.ExponentialSchemaMin {
				return fmt.Errorf("%w: limit %d", ErrBucketLimit, limit)
			}
			if err := h.ReduceResolution(h.Schema - 1); err != nil {
				return fmt.Errorf("reduce histogram resolution: %w", err)
			}
		}
	}
	if fh != nil {
		if histogram.IsExponentialSchemaReserved(fh.Schema) && fh.Schema > maxSchema {
			if err := fh.ReduceResolution(maxSchema); err != nil {
				return fmt.Errorf("reduce histogram resolution: %w", err)
			}
		}
		for limit > 0 && len(fh.PositiveBuckets)+len(fh.NegativeBuckets) > limit {
			if !histogram.IsExponentialSchema(fh.Schema) || fh.Schema <= histogram.ExponentialSchemaMin {
				return fmt.Errorf("%w: limit %d", ErrBucketLimit, limit)
			}
			if err := fh.ReduceResolution(fh.Schema - 1); err != nil {
				return fmt.Errorf("reduce histogram resolution: %w", err)
			}
		}
	}
	return nil
}

// maxSchemaFor returns the highest native histogram schema whose bucket
// growth factor is at least factor (native_histogram_min_bucket_factor).
func maxSchemaFor(factor float64) int32 {
	if factor <= 1 {
		return histogram.ExponentialSchemaMax
	}
	s := math.Floor(-math.Log2(math.Log2(factor)))
	switch {
	case s >= float64(histogram.ExponentialSchemaMax):
		return histogram.ExponentialSchemaMax
	case s <= float64(histogram.ExponentialSchemaMin):
		return histogram.ExponentialSchemaMin
	}
	return int32(s)
}

// appendExemplars logs the exemplars of the current sample that are newer
// than the last one logged for the series (repeats of an unchanged exemplar
// are skipped, as Prometheus' exemplar storage does). Exemplars without a
// timestamp take the sample's, except on native histograms where they are
// dropped.
func (a *appender) appendExemplars(p textparse.Parser, ei int32, t int64, isHist bool) {
	var (
		c      = a.cache
		ref    = c.entries.Elems()[ei].ref
		last   int64
		newest int64
		read   bool
	)
	for a.ex = (exemplar.Exemplar{}); p.Exemplar(&a.ex); a.ex = (exemplar.Exemplar{}) {
		if !a.ex.HasTs {
			if isHist {
				continue
			}
			a.ex.Ts = t
		}
		if !read {
			last = c.exemplarT(ei)
			newest, read = last, true
		}
		if a.ex.Ts <= last {
			continue
		}
		newest = max(newest, a.ex.Ts)
		a.recs.Exemplars = append(a.recs.Exemplars, record.RefExemplar{Ref: ref, T: a.ex.Ts, V: a.ex.Value, Labels: a.ex.Labels})
	}
	if newest > last {
		c.setExemplarT(ei, newest)
	}
}

// appendMetadata logs the family metadata for series e if e belongs to it
// (a text exposition may lack TYPE lines, so the last family seen may be
// another one).
func (a *appender) appendMetadata(e *cacheEntry, m *metaEntry) {
	if !inFamily(a.cache.name(e), m.name, m.typ) {
		return
	}
	a.recs.Metadata = append(a.recs.Metadata, record.RefMetadata{
		Ref:  e.ref,
		Type: record.GetMetricType(m.typ),
		Unit: m.unit,
		Help: m.help,
	})
}

// inFamily says whether a series named name belongs to the family family of
// type typ, allowing the suffixes each type adds.
func inFamily(name, family string, typ model.MetricType) bool {
	rest, ok := strings.CutPrefix(name, family)
	if !ok {
		// A counter family may be declared with its _total suffix.
		return typ == model.MetricTypeCounter && name == strings.TrimSuffix(family, "_total")
	}
	switch rest {
	case "":
		return true
	case "_total":
		return typ == model.MetricTypeCounter
	case "_created":
		return typ == model.MetricTypeCounter || typ == model.MetricTypeHistogram || typ == model.MetricTypeSummary
	case "_sum", "_count":
		return typ == model.MetricTypeHistogram || typ == model.MetricTypeSummary
	case "_bucket":
		return typ == model.MetricTypeHistogram || typ == model.MetricTypeGaugeHistogram
	case "_gsum", "_gcount":
		return typ == model.MetricTypeGaugeHistogram
	case "_info":
		return typ == model.MetricTypeInfo
	}
	return false
}
