package receive

import (
	"context"
	"errors"
	"net/http"

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

// serveRemoteWrite hands a verified request to Prometheus' handler. AMP
// answers a stored write with 200 (AMP-APIReference-RemoteWrite.html) where
// Prometheus answers 204, so 204 becomes 200.
func (s *Server) serveRemoteWrite(w http.ResponseWriter, r *http.Request, body []byte) {
	s.metrics.receivedBytes.Add(float64(len(body)))
	s.write.ServeHTTP(&noContentAsOK{ResponseWriter: w}, r)
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
