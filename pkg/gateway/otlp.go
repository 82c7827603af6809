package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	otlptranslator "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwagent/rwagent/pkg/config"
)

// OTLP/HTTP message types, as the metric label says them.
const (
	protoOTLP     protocol = "otlp+protobuf" // ExportMetricsServiceRequest, binary
	protoOTLPJSON protocol = "otlp+json"     // the same in OTLP's JSON mapping
)

// otlpSettings are the translator's settings: those of Prometheus' OTLP
// receiver with its default otlp: configuration (translation_strategy
// UnderscoreEscapingWithSuffixes, no promote_resource_attributes,
// keep_identifying_resource_attributes false, target_info on, cumulative
// temporality only), so a series is named here as a Prometheus receiving
// the same OTLP would name it. The Gateway builds them once, in New.
func otlpSettings() otlptranslator.Settings {
	c := promconfig.DefaultOTLPConfig
	return otlptranslator.Settings{
		AddMetricSuffixes:                    c.TranslationStrategy.ShouldAddSuffixes(),
		AllowUTF8:                            !c.TranslationStrategy.ShouldEscape(),
		PromoteResourceAttributes:            otlptranslator.NewPromoteResourceAttributes(c),
		KeepIdentifyingResourceAttributes:    c.KeepIdentifyingResourceAttributes,
		ConvertHistogramsToNHCB:              c.ConvertHistogramsToNHCB,
		PromoteScopeMetadata:                 c.PromoteScopeMetadata,
		LabelNameUnderscoreSanitization:      c.LabelNameUnderscoreSanitization,
		LabelNamePreserveMultipleUnderscores: c.LabelNamePreserveMultipleUnderscores,
	}
}

// otlpType reads the OTLP/HTTP message type from Content-Type and checks
// Content-Encoding (gzip or none), as OTLP/HTTP defines them.
func otlpType(h http.Header) (protocol, error) {
	if enc := h.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "gzip") && !strings.EqualFold(enc, "identity") {
		return "", fmt.Errorf("Content-Encoding %q is not supported: send gzip or none", enc)
	}
	ct := h.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	switch {
	case err == nil && mt == "application/x-protobuf":
		return protoOTLP, nil
	case err == nil && mt == "application/json":
		return protoOTLPJSON, nil
	default:
		return "", fmt.Errorf("Content-Type %q is not supported: send application/x-protobuf or application/json", ct)
	}
}

// otlpErrorFormat is the format of an OTLP error answer: JSON when the
// request says it is JSON, else protobuf, even before the request's type
// is checked.
func otlpErrorFormat(h http.Header) protocol {
	if mt, _, err := mime.ParseMediaType(h.Get("Content-Type")); err == nil && mt == "application/json" {
		return protoOTLPJSON
	}
	return protoOTLP
}

// writeOTLPError answers an OTLP request with status and a google.rpc.Status
// carrying msg, in the request's format, as OTLP/HTTP asks.
func writeOTLPError(w http.ResponseWriter, format protocol, status int, msg string) {
	var body []byte
	if format == protoOTLPJSON {
		w.Header().Set("Content-Type", "application/json")
		body, _ = json.Marshal(struct {
			Message string `json:"message"`
		}{msg}) // a string always marshals
	} else {
		w.Header().Set("Content-Type", "application/x-protobuf")
		body = protowire.AppendTag(nil, 2, protowire.BytesType) // Status.message
		body = protowire.AppendString(body, msg)
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeOTLPResponse answers 200 with an ExportMetricsServiceResponse in
// the request's format. Translator warnings, if any, go in its
// partial_success message with no rejected points: everything else of
// the request was written.
func writeOTLPResponse(w http.ResponseWriter, format protocol, warnings []string) {
	resp := pmetricotlp.NewExportResponse()
	if len(warnings) > 0 {
		resp.PartialSuccess().SetErrorMessage(boundedJoin(warnings, 4096))
	}
	var (
		body []byte
		err  error
	)
	if format == protoOTLPJSON {
		w.Header().Set("Content-Type", "application/json")
		body, err = resp.MarshalJSON()
	} else {
		w.Header().Set("Content-Type", "application/x-protobuf")
		body, err = resp.MarshalProto()
	}
	if err != nil {
		// A response of one string cannot fail to marshal; the samples
		// are logged, so the status still says so.
		body = nil
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// boundedJoin joins ss with "; ", cut to at most n bytes.
func boundedJoin(ss []string, n int) string {
	s := strings.Join(ss, "; ")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

// gunzip decompresses a gzip body, reserving what it decodes from mem
// as it goes, and refusing it as soon as it decodes to more than
// maxDecoded bytes, so a gzip bomb costs at most that much.
func gunzip(body []byte, maxDecoded int, mem *reservation) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, badRequest(reasonMalformed, "body is not gzip-compressed: %v", err)
	}
	raw, err := readBody(nil, io.LimitReader(zr, int64(maxDecoded)+1), 0, int64(maxDecoded)+1, mem)
	if de, ok := errors.AsType[*decodeError](err); ok {
		return nil, de
	}
	if err != nil {
		return nil, badRequest(reasonMalformed, "body is not gzip-compressed: %v", err)
	}
	if len(raw) > maxDecoded {
		return nil, &decodeError{status: 413, reason: reasonDecodedTooBig, msg: fmt.Sprintf("decompressed body is over the limit of %d bytes", maxDecoded)}
	}
	return raw, nil
}

// decodeOTLP decompresses (gzipped: within l.maxDecodedBytes), decodes
// and translates an OTLP/HTTP body of format for the tenant of l, with
// conv and set. It returns the translator's warnings. Its errors are
// *decodeError.
func decodeOTLP(ctx context.Context, conv *otlptranslator.PrometheusConverter, set otlptranslator.Settings, body []byte, format protocol, gzipped bool, l limits) (*batch, []string, error) {
	raw := body
	if gzipped {
		var err error
		if raw, err = gunzip(body, l.maxDecodedBytes, l.mem); err != nil {
			return nil, nil, err
		}
	}
	maxCost := l.maxDecodeCost
	if maxCost <= 0 {
		maxCost = maxDecodeCost
	}
	var cost int
	if format == protoOTLPJSON {
		cost = otlpJSONCost(raw)
	} else {
		cost = otlpProtoCost(raw, maxCost)
	}
	if cost > maxCost {
		return nil, nil, otlpTooLarge(maxCost)
	}
	if err := l.mem.take(heldPerCharged * int64(cost)); err != nil {
		return nil, nil, err
	}
	req, err := unmarshalOTLP(raw, format)
	if err != nil {
		return nil, nil, err
	}
	l.maxDecodeCost = maxCost
	return translateOTLP(ctx, conv, set, req, l, maxOTLPSamples(len(raw)), cost)
}

// unmarshalOTLP decodes an ExportMetricsServiceRequest (uncompressed) in
// format.
func unmarshalOTLP(raw []byte, format protocol) (pmetricotlp.ExportRequest, error) {
	req := pmetricotlp.NewExportRequest()
	var err error
	if format == protoOTLPJSON {
		err = req.UnmarshalJSON(raw)
	} else {
		err = req.UnmarshalProto(raw)
	}
	if err != nil {
		return req, badRequest(reasonMalformed, "decode ExportMetricsServiceRequest: %v", err)
	}
	return req, nil
}

// maxOTLPSamples bounds the samples, histograms and exemplars one OTLP
// request of raw bytes may translate into: one for every 8 bytes (a
// float or a bucket count takes at least that on the wire), plus room for
// the series the translator adds (_sum, _count, +Inf buckets, target_info).
// Without it a request of a few bytes could make the translator fill
// memory: it writes a target_info sample every 2.5 minutes between a
// resource's earliest and latest timestamps, however far apart.
func maxOTLPSamples(raw int) int { return raw/8 + 1<<14 }

// translateOTLP translates req with Prometheus' OTLP translator (conv,
// reset here, with settings set) into a batch within l and at most
// maxSamples samples, its bookkeeping within l.maxDecodeCost with cost (the
// unmarshalled request's) charged already.
// Translation errors (a delta temporality, an unsupported type, a name
// it cannot build) refuse the whole request, as Prometheus' receiver
// rolls the request back: nothing of it is written. It returns the
// translator's warnings. Its errors are *decodeError.
func translateOTLP(ctx context.Context, conv *otlptranslator.PrometheusConverter, set otlptranslator.Settings, req pmetricotlp.ExportRequest, l limits, maxSamples, cost int) (*batch, []string, error) {
	app := &otlpAppender{l: l, maxSamples: maxSamples, b: &batch{}, index: map[uint64]int{}, maxSeries: l.maxRequestSeries, cost: cost}
	if app.maxSeries <= 0 {
		app.maxSeries = config.MaxSeriesPerRequest
	}
	conv.Reset(app)
	defer conv.Reset(nil)
	annots, err := conv.FromMetrics(ctx, req.Metrics(), set)
	if app.err != nil {
		return nil, nil, app.err
	}
	if err != nil {
		return nil, nil, badRequest(reasonUntranslatable, "translate OTLP metrics: %.1024s", err.Error())
	}
	warnings, _ := annots.AsStrings("", 0, 0)
	return app.b, warnings, nil
}

// otlpAppender is the storage.AppenderV2 the translator appends to. It
// gathers a batch, checking each new series as the remote-write decoders
// do (checkLabels) and setting the tenant label. Its first refusal stops
// it: every later Append returns the same error. It is not safe for
// concurrent use.
type otlpAppender struct {
	l          limits
	maxSamples int
	b          *batch
	index      map[uint64]int  // series index in b by hash of the translator's labels
	given      []labels.Labels // the translator's labels of each series in b
	sb         seriesBuilder
	err        error // *decodeError
	// The bookkeeping the request and the batch are estimated to hold,
	// bounded by l.maxDecodeCost, and the gateway's series bound.
	cost, maxSeries int
}

// charge adds n bytes to the estimated bookkeeping of the batch, failing
// the translation when that goes over the bound, and reserves what it
// holds from the gateway's memory budget.
func (a *otlpAppender) charge(n int) error {
	a.cost += n
	if a.cost > a.l.maxDecodeCost {
		a.err = otlpTooLarge(a.l.maxDecodeCost)
		return a.err
	}
	if err := a.l.mem.take(heldPerCharged * int64(n)); err != nil {
		a.err = err
	}
	return a.err
}

var _ storage.AppenderV2 = (*otlpAppender)(nil)

// Append adds a sample of the series ls to the batch. The ref it returns
// is the series' index in the batch plus one; the translator passes 0.
func (a *otlpAppender) Append(_ storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	if a.err != nil {
		return 0, a.err
	}
	b := a.b
	if n := b.samplesCount() + len(b.exemplars) + len(opts.Exemplars); n >= a.maxSamples {
		a.err = &decodeError{status: 413, reason: reasonTooManySamples, msg: fmt.Sprintf("the request translates into more than %d samples, the limit for its size: send fewer points per request", a.maxSamples)}
		return 0, a.err
	}
	hash := ls.Hash()
	i, ok := a.index[hash]
	if !ok || !labels.Equal(a.given[i], ls) {
		if a.l.maxSeries > 0 && len(b.series) >= a.l.maxSeries {
			a.err = &decodeError{status: 413, reason: reasonTooManySeries, msg: fmt.Sprintf("the request translates into more than max_series_per_request %d series: send fewer per request", a.l.maxSeries)}
			return 0, a.err
		}
		if len(b.series) >= a.maxSeries {
			a.err = &decodeError{status: 413, reason: reasonTooManySeries, msg: fmt.Sprintf("the request translates into more than %d series, the gateway's limit per request: send fewer per request", a.maxSeries)}
			return 0, a.err
		}
		// Its labels twice (the translator's, kept to compare, and the
		// checked ones), its index entry and its place in the batch.
		if err := a.charge(costSeries + 2*int(ls.ByteSize()) + 48); err != nil {
			return 0, err
		}
		a.sb.reset()
		ls.Range(func(lb labels.Label) { a.sb.add(lb.Name, lb.Value) })
		out, err := checkLabels(&a.sb, a.l)
		if err != nil {
			a.err = err
			return 0, err
		}
		i = len(b.series)
		if !ok {
			a.index[hash] = i
		}
		b.series = append(b.series, out)
		a.given = append(a.given, ls)
		if md := opts.Metadata; !md.IsEmpty() {
			b.metadata = append(b.metadata, record.RefMetadata{Ref: chunks.HeadSeriesRef(i), Type: record.GetMetricType(md.Type), Unit: md.Unit, Help: md.Help})
		}
	}
	cost := len(opts.Exemplars) * (costExemplar + 128) // 128: the most bytes of an exemplar's labels
	switch {
	case h != nil:
		cost += costHistogram + 16*(len(h.PositiveBuckets)+len(h.NegativeBuckets)+len(h.PositiveSpans)+len(h.NegativeSpans)+len(h.CustomValues))
	case fh != nil:
		cost += costHistogram + 16*(len(fh.PositiveBuckets)+len(fh.NegativeBuckets)+len(fh.PositiveSpans)+len(fh.NegativeSpans)+len(fh.CustomValues))
	default:
		cost += costSample
	}
	if err := a.charge(cost); err != nil {
		return 0, err
	}
	ref := chunks.HeadSeriesRef(i)
	if h != nil || fh != nil {
		if err := b.addHistogram(ref, b.series[i], st, t, h, fh); err != nil {
			a.err = err
			return 0, err
		}
	} else {
		b.samples = append(b.samples, record.RefSample{Ref: ref, ST: st, T: t, V: v})
	}
	for _, e := range opts.Exemplars {
		a.sb.reset()
		e.Labels.Range(func(lb labels.Label) { a.sb.add(lb.Name, lb.Value) })
		el, err := checkExemplarLabels(&a.sb)
		if err != nil {
			a.err = err
			return 0, err
		}
		b.exemplars = append(b.exemplars, record.RefExemplar{Ref: ref, T: e.Ts, V: e.Value, Labels: el})
	}
	return storage.SeriesRef(i + 1), nil
}

// Commit does nothing: the gateway logs the batch once translated.
func (*otlpAppender) Commit() error { return nil }

// Rollback does nothing: a refused batch is dropped whole.
func (*otlpAppender) Rollback() error { return nil }
