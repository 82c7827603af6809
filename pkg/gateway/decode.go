package gateway

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/s2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/ampquota"
	"github.com/rwagent/rwagent/pkg/wal"
)

// Series limits, AMP's (package ampquota says where they come from): the
// same the sender drops series over (remotewrite.AMPLimits). A series the
// gateway accepts is one AMP takes, so it is refused here, where the
// sender can hear about it, not dropped later.
const (
	maxLabels     = ampquota.LabelsPerSeries
	maxNameBytes  = ampquota.LabelNameBytes
	maxValueBytes = ampquota.LabelValueBytes
)

// protocol is the message a request carries, as the metric label says it.
type protocol string

const (
	protoV1 protocol = "prometheus.WriteRequest"        // remote write 1.0
	protoV2 protocol = "io.prometheus.write.v2.Request" // remote write 2.0
)

// limits bound what decode accepts.
type limits struct {
	maxDecodedBytes int    // snappy-decoded body
	maxSeries       int    // series per request, the tenant's; zero: no limit
	tenantLabel     string // set on every series; "" none
	tenant          string // its value
	route           string // wal.RouteLabel set on every series; "" none
	// The gateway's bounds of a request (budget.go); zero:
	// config.MaxSeriesPerRequest and maxDecodeCost.
	maxRequestSeries, maxDecodeCost int
	// mem is the request's share of the gateway's memory budget: the
	// decoders reserve from it what they are about to hold. Nil: no
	// shared budget, only the bounds above.
	mem *reservation
}

// decodeError is a request decode refuses: the status to answer and the
// reason label it is counted under. Its message names the limit or the
// problem, and is sent to the client.
type decodeError struct {
	status     int
	reason     string
	msg        string
	retryAfter time.Duration // the answer's Retry-After; zero: none
}

func (e *decodeError) Error() string { return e.msg }

func badRequest(reason, format string, a ...any) *decodeError {
	return &decodeError{status: 400, reason: reason, msg: fmt.Sprintf(format, a...)}
}

// Reasons a request is refused, the reason label of rejected requests.
const (
	reasonUnauthorized   = "unauthorized"   // no key
	reasonForbidden      = "forbidden"      // unknown key
	reasonBodyTooLarge   = "body_too_large" // max_request_bytes
	reasonDecodedTooBig  = "decoded_too_large"
	reasonDecodeTooLarge = "decode_too_large" // maxDecodeCost
	reasonMemoryBudget   = "memory_in_flight" // max_memory_in_flight held by the requests in flight
	reasonTooManySeries  = "too_many_series"
	reasonTooManyLabels  = "too_many_labels"
	reasonLabelTooLong   = "label_too_long"
	reasonInvalidLabels  = "invalid_labels" // UTF-8, empty, unsorted, duplicate, no name
	reasonInvalidSample  = "invalid_sample" // histogram, exemplar
	reasonMalformed      = "malformed"      // snappy, protobuf
	reasonUnsupported    = "unsupported_media_type"
	reasonRateLimited    = "rate_limited"
	reasonBurstExceeded  = "burst_exceeded"
	reasonWALFull        = "wal_full"
	reasonWALError       = "wal_error"
	reasonMethodNotAllow = "method_not_allowed"
	reasonTooManySamples = "too_many_samples" // an OTLP request translating into more than its size allows
	reasonUntranslatable = "untranslatable"   // OTLP the translator refuses (delta temporality, ...)
)

// batch is a decoded request: its series and what they carry. The Ref of
// each sample, histogram, exemplar and metadata entry is the index of its
// series in series until resolve replaces it with the series' WAL ref.
type batch struct {
	series []labels.Labels
	// keys and hints, if set, are per series: the hash of the key of its
	// labels as the request gave them (decoder), if the cache does not
	// know it (zero: it does, or no key), and the cache's entry of that
	// key when the decoder found one (nil: none, look up the labels).
	keys            []keyHash
	hints           []*cachedSeries
	refs            []chunks.HeadSeriesRef // resolve's scratch, by series
	fresh           []bool                 // resolve's scratch, by series
	samples         []record.RefSample
	histograms      []record.RefHistogramSample
	floatHistograms []record.RefFloatHistogramSample
	exemplars       []record.RefExemplar
	metadata        []record.RefMetadata
}

// samplesCount is what the rate limit and the metrics count: float
// samples and histograms.
func (b *batch) samplesCount() int {
	return len(b.samples) + len(b.histograms) + len(b.floatHistograms)
}

// decompressInto checks the decoded length of the snappy body against
// the bound and reserves it from mem before growing dst, then decodes it
// into dst (s2 reads snappy's block format) and returns it.
func decompressInto(dst, body []byte, maxDecoded int, mem *reservation) ([]byte, error) {
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return nil, badRequest(reasonMalformed, "body is not snappy-compressed: %v", err)
	}
	if n > maxDecoded {
		return nil, &decodeError{status: 413, reason: reasonDecodedTooBig, msg: fmt.Sprintf("decompressed body of %d bytes is over the limit of %d bytes", n, maxDecoded)}
	}
	if err := mem.take(int64(n)); err != nil {
		return nil, err
	}
	out, err := s2.Decode(slices.Grow(dst[:0], n)[:n], body)
	if err != nil {
		return nil, badRequest(reasonMalformed, "body is not snappy-compressed: %v", err)
	}
	return out, nil
}

// wireHistogram is a histogram as remote write 1.0 (prompb.Histogram) and
// 2.0 (writev2.Histogram) carry it.
type wireHistogram interface {
	IsFloatHistogram() bool
	ToIntHistogram() *histogram.Histogram
	ToFloatHistogram() *histogram.FloatHistogram
}

// addWireHistogram adds h, converted, as addHistogram does.
func (b *batch) addWireHistogram(ref chunks.HeadSeriesRef, ls labels.Labels, st, t int64, h wireHistogram) error {
	if h.IsFloatHistogram() {
		return b.addHistogram(ref, ls, st, t, nil, h.ToFloatHistogram())
	}
	return b.addHistogram(ref, ls, st, t, h.ToIntHistogram(), nil)
}

// addHistogram validates and adds a histogram sample of the series ref
// (whose labels ls name it in the error): fh, or else h. Its error is a
// *decodeError.
func (b *batch) addHistogram(ref chunks.HeadSeriesRef, ls labels.Labels, st, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) error {
	if fh != nil {
		if err := fh.Validate(); err != nil {
			return badRequest(reasonInvalidSample, "series %s: invalid histogram: %v", name(ls), err)
		}
		b.floatHistograms = append(b.floatHistograms, record.RefFloatHistogramSample{Ref: ref, ST: st, T: t, FH: fh})
		return nil
	}
	if err := h.Validate(); err != nil {
		return badRequest(reasonInvalidSample, "series %s: invalid histogram: %v", name(ls), err)
	}
	b.histograms = append(b.histograms, record.RefHistogramSample{Ref: ref, ST: st, T: t, H: h})
	return nil
}

func tooManySeries(n, limit int) *decodeError {
	return &decodeError{status: 413, reason: reasonTooManySeries, msg: fmt.Sprintf("%d series in the request, over max_series_per_request %d: send fewer per request", n, limit)}
}

// seriesBuilder turns the labels of a series, or of an exemplar, as a
// sender gave them into labels.Labels, built once: a decoder calls reset,
// add for each label, then checkLabels or checkExemplarLabels. It is not
// safe for concurrent use.
type seriesBuilder struct {
	ls []labels.Label // as given, until a check sorts or completes them
	sb labels.ScratchBuilder
}

func (s *seriesBuilder) reset() { s.ls = s.ls[:0] }

func (s *seriesBuilder) add(name, value string) {
	s.ls = append(s.ls, labels.Label{Name: name, Value: value})
}

// set sets name to value in s.ls, which must be sorted.
func (s *seriesBuilder) set(name, value string) {
	i, found := slices.BinarySearchFunc(s.ls, name, func(lb labels.Label, n string) int { return strings.Compare(lb.Name, n) })
	if found {
		s.ls[i].Value = value
		return
	}
	s.ls = slices.Insert(s.ls, i, labels.Label{Name: name, Value: value})
}

// build returns s.ls, which must be sorted, as labels.Labels.
func (s *seriesBuilder) build() labels.Labels {
	s.sb.Reset()
	for _, lb := range s.ls {
		s.sb.Add(lb.Name, lb.Value)
	}
	return s.sb.Labels()
}

// checkLabels validates the labels added to s in the order the sender
// gave them (sorted by name, no name twice, valid UTF-8, AMP's lengths, a
// metric name, not wal.RouteLabel), drops those with an empty value (no
// label, to Prometheus), sets the tenant label, checks AMP's label count,
// sets the route label (it is removed before sending, so it does not
// count), and returns the labels.
func checkLabels(s *seriesBuilder, l limits) (labels.Labels, error) {
	metric := ""
	for _, lb := range s.ls {
		if lb.Name == model.MetricNameLabel {
			metric = lb.Value
			break
		}
	}
	for i, lb := range s.ls {
		prev := ""
		if i > 0 {
			prev = s.ls[i-1].Name
		}
		switch {
		case lb.Name == "":
			return labels.EmptyLabels(), badRequest(reasonInvalidLabels, "empty label name in series %s", quoteName(metric))
		case lb.Name == wal.RouteLabel:
			return labels.EmptyLabels(), badRequest(reasonInvalidLabels, "label %s of series %s is reserved: rwagent routes by its tenants' remote_write_names", wal.RouteLabel, quoteName(metric))
		case !utf8.ValidString(lb.Name) || !utf8.ValidString(lb.Value):
			return labels.EmptyLabels(), badRequest(reasonInvalidLabels, "label %q of series %s is not valid UTF-8", lb.Name, quoteName(metric))
		case i > 0 && lb.Name == prev:
			return labels.EmptyLabels(), badRequest(reasonInvalidLabels, "label %q twice in series %s", lb.Name, quoteName(metric))
		case i > 0 && lb.Name < prev:
			return labels.EmptyLabels(), badRequest(reasonInvalidLabels, "labels of series %s are not sorted by name (%q after %q)", quoteName(metric), lb.Name, prev)
		case len(lb.Name) > maxNameBytes:
			return labels.EmptyLabels(), badRequest(reasonLabelTooLong, "label name %.64q... of series %s is %d bytes, over the limit of %d", lb.Name, quoteName(metric), len(lb.Name), maxNameBytes)
		case len(lb.Value) > maxValueBytes:
			return labels.EmptyLabels(), badRequest(reasonLabelTooLong, "value of label %q of series %s is %d bytes, over the limit of %d", lb.Name, quoteName(metric), len(lb.Value), maxValueBytes)
		}
	}
	if metric == "" {
		return labels.EmptyLabels(), badRequest(reasonInvalidLabels, "series %.200s has no metric name", s.build().String())
	}
	s.ls = slices.DeleteFunc(s.ls, func(lb labels.Label) bool { return lb.Value == "" })
	if l.tenantLabel != "" {
		s.set(l.tenantLabel, l.tenant)
	}
	if n := len(s.ls); n > maxLabels {
		return labels.EmptyLabels(), badRequest(reasonTooManyLabels, "series %s has %d labels, over the limit of %d", quoteName(metric), n, maxLabels)
	}
	if l.route != "" {
		s.set(wal.RouteLabel, l.route)
	}
	return s.build(), nil
}

// checkExemplarLabels sorts the labels added to s by name, validates them
// as Prometheus does (valid UTF-8 and at most 128 runes in all), and
// returns them.
func checkExemplarLabels(s *seriesBuilder) (labels.Labels, error) {
	slices.SortFunc(s.ls, func(a, b labels.Label) int { return strings.Compare(a.Name, b.Name) })
	runes := 0
	var err error
	for _, lb := range s.ls {
		if !utf8.ValidString(lb.Name) || !utf8.ValidString(lb.Value) {
			err = errors.New("exemplar labels are not valid UTF-8")
		}
		runes += utf8.RuneCountInString(lb.Name) + utf8.RuneCountInString(lb.Value)
	}
	if err == nil && runes > maxExemplarRunes {
		err = fmt.Errorf("exemplar labels have %d runes, over the limit of %d", runes, maxExemplarRunes)
	}
	if err != nil {
		return labels.EmptyLabels(), badRequest(reasonInvalidSample, "%v", err)
	}
	return s.build(), nil
}

// maxExemplarRunes is Prometheus' exemplar.ExemplarMaxLabelSetLength.
const maxExemplarRunes = 128

// name is a series' metric name for messages, bounded and quoted.
func name(ls labels.Labels) string { return quoteName(ls.Get(model.MetricNameLabel)) }

// quoteName is the metric name n for messages, bounded and quoted.
func quoteName(n string) string {
	if len(n) > 64 {
		n = n[:64] + "..."
	}
	return fmt.Sprintf("%q", n)
}
