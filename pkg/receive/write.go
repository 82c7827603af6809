package receive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
)

// newWriteHandler returns Prometheus' remote-write handler (1.0 and 2.0
// messages, snappy only) writing into s.db through a counting appender.
func newWriteHandler(s *Server, reg prometheus.Registerer) http.Handler {
	app := &countingAppendable{db: s.db, m: s.metrics}
	accepted := remoteapi.MessageTypes{remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType}
	return remote.NewWriteHandler(s.logger.With("component", "remote_write"), reg, app, accepted, false, false)
}

// serveRemoteWrite applies AMP's ingestion rules to a verified request, in
// the order of Cortex's distributor, then hands what is left to Prometheus'
// handler:
//
//  1. HA deduplication on the first series' cluster and __replica__ labels
//     (Cortex looks at the first series only): a non-elected replica is
//     answered 202 with nothing stored; for the elected one the replica
//     label is removed from every series.
//  2. Per-series limits (labels per series, label name and value length):
//     a series over one is dropped and the request answered 400 with the
//     first such error once the others are stored.
//  3. The ingestion token bucket, over the samples (and 1.0 metadata) left:
//     short of tokens, the request is answered 429 ThrottlingException and
//     nothing of it is stored, so a sender may resend it whole.
//  4. Active series: a new series past the limit is dropped and the request
//     answered 429 once the others are stored.
//
// AMP answers a stored write with 200 (AMP-APIReference-RemoteWrite.html)
// where Prometheus answers 204, so 204 becomes 200. A body the rules cannot
// decode goes to Prometheus' handler unchanged, which refuses it with its own
// message.
func (s *Server) serveRemoteWrite(w http.ResponseWriter, r *http.Request, body []byte) {
	s.metrics.receivedBytes.Add(float64(len(body)))
	wr, err := decodeWriteRequest(r, body)
	if errors.Is(err, errDecodedTooLarge) {
		writeAWSError(w, http.StatusBadRequest, codeValidation, awsError{Message: err.Error()})
		return
	}
	if err != nil {
		s.logger.Debug("Remote write left to Prometheus' handler", "err", err)
		s.write.ServeHTTP(&noContentAsOK{ResponseWriter: w}, r)
		return
	}
	now := s.opts.Now()
	lim := &s.opts.Limits
	rewrite := false

	if len(wr.labels) > 0 {
		cluster, replica := wr.labels[0].Get(lim.HAClusterLabel), wr.labels[0].Get(lim.HAReplicaLabel)
		if cluster != "" && replica != "" {
			switch err := s.ha.check(cluster, replica, now); err.(type) {
			case nil:
				wr.dropLabel(lim.HAReplicaLabel)
				rewrite = true
			case *replicasNotMatchError:
				s.metrics.deduplicated.Add(float64(wr.totalSamples(nil)))
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.WriteHeader(http.StatusAccepted)
				_, _ = io.WriteString(w, err.Error())
				return
			default:
				s.discard(reasonHAClusters, wr.totalSamples(nil), err)
				writeAWSError(w, http.StatusBadRequest, codeValidation, awsError{Message: err.Error()})
				return
			}
		}
	}

	keep := make([]bool, len(wr.labels))
	var invalid *seriesError
	for i, ls := range wr.labels {
		if e := lim.validateSeries(ls); e != nil {
			s.discard(e.reason, wr.samples(i), e)
			if invalid == nil {
				invalid = e
			}
			continue
		}
		keep[i] = true
	}

	samples, md := wr.totalSamples(keep), wr.metadataCount()
	if s.bucket.Take(samples+md, now) > 0 {
		var msg string
		if samples+md > lim.IngestionBurst {
			msg = fmt.Sprintf("ingestion burst size limit (%d) exceeded while adding %d samples and %d metadata", lim.IngestionBurst, samples, md)
		} else {
			msg = fmt.Sprintf("ingestion rate limit (%v) exceeded while adding %d samples and %d metadata", lim.IngestionRate, samples, md)
		}
		s.discard(reasonRateLimited, samples, errors.New(msg))
		// No Retry-After: AMP documents none, so senders must back off on
		// their own, as they have to against AMP.
		writeAWSError(w, http.StatusTooManyRequests, codeThrottling, awsError{Message: msg})
		return
	}

	var overLimit error
	for i, ls := range wr.labels {
		if keep[i] && !s.active.admit(ls.Hash(), now) {
			keep[i] = false
			overLimit = fmt.Errorf("per-user series limit of %d exceeded, please contact administrator to raise it", lim.MaxActiveSeries)
			s.discard(reasonSeriesLimit, wr.samples(i), overLimit)
		}
	}
	if slices.Contains(keep, false) {
		wr.filter(keep)
		rewrite = true
	}
	wr.metadata(func(metric string, md metricMetadata) {
		if !s.meta.add(metric, md) {
			s.metrics.metadataDropped.Inc()
		}
	})

	if rewrite {
		if body, err = wr.encode(); err != nil {
			writeAWSError(w, http.StatusInternalServerError, codeInternal, awsError{Message: err.Error()})
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
	}
	if invalid == nil && overLimit == nil {
		s.write.ServeHTTP(&noContentAsOK{ResponseWriter: w}, r)
		return
	}
	// Store what passed, then answer with the first refusal unless the
	// handler refused the rest itself.
	rec := &recordedAnswer{header: http.Header{}}
	s.write.ServeHTTP(rec, r)
	if rec.code/100 != 2 {
		rec.replay(&noContentAsOK{ResponseWriter: w})
		return
	}
	for k, v := range rec.header {
		if strings.HasPrefix(k, "X-Prometheus-Remote-Write-") {
			w.Header()[k] = v
		}
	}
	if overLimit != nil {
		writeAWSError(w, http.StatusTooManyRequests, codeThrottling, awsError{Message: overLimit.Error()})
		return
	}
	writeAWSError(w, http.StatusBadRequest, codeValidation, awsError{Message: invalid.Error()})
}

// discard counts n samples refused for reason and logs why at debug level.
func (s *Server) discard(reason string, n int, err error) {
	s.metrics.discarded.WithLabelValues(reason).Add(float64(n))
	s.logger.Debug("Remote write samples refused", "reason", reason, "samples", n, "err", err)
}

// recordedAnswer keeps an answer of Prometheus' handler so that ampemu can
// pass it on or answer otherwise.
type recordedAnswer struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (a *recordedAnswer) Header() http.Header { return a.header }

func (a *recordedAnswer) WriteHeader(code int) {
	if a.code == 0 {
		a.code = code
	}
}

func (a *recordedAnswer) Write(p []byte) (int, error) {
	if a.code == 0 {
		a.code = http.StatusOK
	}
	return a.body.Write(p)
}

// replay writes the recorded answer to w.
func (a *recordedAnswer) replay(w http.ResponseWriter) {
	for k, v := range a.header {
		w.Header()[k] = v
	}
	if a.code == 0 {
		a.code = http.StatusOK
	}
	w.WriteHeader(a.code)
	_, _ = w.Write(a.body.Bytes())
}

type noContentAsOK struct{ http.ResponseWriter }

func (w *noContentAsOK) WriteHeader(code int) {
	if code == http.StatusNoContent {
		code = http.StatusOK
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *noContentAsOK) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingAppendable opens TSDB appenders that count what they store.
type countingAppendable struct {
	db interface {
		AppenderV2(ctx context.Context) storage.AppenderV2
	}
	m *serverMetrics
}

func (a *countingAppendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	app := a.db.AppenderV2(ctx)
	ex, ok := app.(storage.ExemplarAppenderV2)
	if !ok {
		// Prometheus' handler refuses an appender without exemplars with a
		// clear error; hand the bare one through so it can.
		return app
	}
	return &countingAppender{ExemplarAppenderV2: ex, m: a.m}
}

// countingAppender counts appended samples and adds them to the accepted or
// rejected counters when the transaction ends. Like every AppenderV2 it is
// used by one goroutine.
type countingAppender struct {
	storage.ExemplarAppenderV2
	m                            *serverMetrics
	floats, histograms, exemplar int
}

func (a *countingAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AOptions) (storage.SeriesRef, error) {
	ref, err := a.ExemplarAppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
	typ := sampleFloat
	if h != nil || fh != nil {
		typ = sampleHistogram
	}
	if err != nil && !isPartial(err) {
		a.m.samples.WithLabelValues(typ, resultRejected).Inc()
		return ref, err
	}
	if typ == sampleFloat {
		a.floats++
	} else {
		a.histograms++
	}
	failed := partialFailures(err)
	a.exemplar += len(opts.Exemplars) - failed
	a.m.samples.WithLabelValues(sampleExemplar, resultRejected).Add(float64(failed))
	return ref, err
}

func (a *countingAppender) AppendExemplars(ref storage.SeriesRef, ls labels.Labels, es []exemplar.Exemplar) (storage.SeriesRef, error) {
	ref, err := a.ExemplarAppenderV2.AppendExemplars(ref, ls, es)
	failed := partialFailures(err)
	if err != nil && !isPartial(err) {
		failed = len(es)
	}
	a.exemplar += len(es) - failed
	a.m.samples.WithLabelValues(sampleExemplar, resultRejected).Add(float64(failed))
	return ref, err
}

func (a *countingAppender) Commit() error {
	err := a.ExemplarAppenderV2.Commit()
	if err != nil {
		a.done(resultRejected)
		return err
	}
	a.done(resultAccepted)
	return nil
}

func (a *countingAppender) Rollback() error {
	err := a.ExemplarAppenderV2.Rollback()
	a.done(resultRejected)
	return err
}

func (a *countingAppender) done(result string) {
	a.m.samples.WithLabelValues(sampleFloat, result).Add(float64(a.floats))
	a.m.samples.WithLabelValues(sampleHistogram, result).Add(float64(a.histograms))
	a.m.samples.WithLabelValues(sampleExemplar, result).Add(float64(a.exemplar))
	a.floats, a.histograms, a.exemplar = 0, 0, 0
}

func isPartial(err error) bool {
	_, ok := errors.AsType[*storage.AppendPartialError](err)
	return ok
}

// partialFailures returns how many exemplars err reports as not written.
func partialFailures(err error) int {
	if pe, ok := errors.AsType[*storage.AppendPartialError](err); ok {
		return len(pe.ExemplarErrors)
	}
	return 0
}
