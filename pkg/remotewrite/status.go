package remotewrite

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rwagent/rwagent/pkg/wal"
)

// Status is what a status page shows of one queue, read from the queue's
// own counters at one moment. It holds no secret: the URL is redacted.
type Status struct {
	Name     string
	URL      string // password redacted
	Protocol string // "1.0" or "2.0"; a queue that fell back to 1.0 says 1.0
	// Shards: running now, wanted by the last resharding decision, and the
	// bounds of queue_config.
	Shards, DesiredShards, MinShards, MaxShards int
	// Pending is the samples, histograms and exemplars queued in the
	// shards, not yet acknowledged.
	Pending int
	// SamplesSent counts samples and histogram samples sent, per attempt
	// (prometheus_remote_storage_samples_total plus histograms_total).
	SamplesSent float64
	// SamplesDelivered is what the receiver accepted: SamplesSent less
	// the attempts retried and those that failed. This is what AMP bills.
	SamplesDelivered float64
	// SamplesFailed and SamplesDropped count what was given up on
	// (non-recoverable errors) and dropped before sending, every reason.
	SamplesFailed, SamplesDropped float64
	// BytesSent is the compressed bytes of samples sent.
	BytesSent float64
	// LagSeconds is the newest sample time read from the WAL minus the
	// newest delivered, -1 while nothing is delivered; LagBytes the WAL bytes after SendPosition (-1 if
	// the log cannot tell).
	LagSeconds float64
	LagBytes   int64
	// SendPosition is Acked: everything before it is delivered or dropped.
	SendPosition wal.Position
	// NewestSent is the newest sample timestamp delivered; zero if none.
	NewestSent time.Time
}

// Status returns the queue's status. It is safe for concurrent use at any
// time, also before Run and after it has returned.
func (q *Queue) Status() Status {
	m := q.metrics
	proto := "1.0"
	if q.v2.Load() {
		proto = "2.0"
	}
	s := Status{
		Name:           q.name,
		URL:            q.client.redacted,
		Protocol:       proto,
		Shards:         int(q.numShards.Load()),
		DesiredShards:  int(metricValue(m.shardsDesired)),
		MinShards:      q.minShards,
		MaxShards:      q.maxShards,
		Pending:        int(metricValue(m.samplesPending) + metricValue(m.histogramsPending) + metricValue(m.exemplarsPending)),
		SamplesSent:    metricValue(m.samplesTotal) + metricValue(m.histogramsTotal),
		SamplesFailed:  metricValue(m.samplesFailed) + metricValue(m.histogramsFailed),
		SamplesDropped: vecSum(m.samplesDropped) + vecSum(m.histogramsDropped),
		BytesSent:      metricValue(m.bytesTotal),
		LagSeconds:     max(m.highestRead.get()-m.highestSent.get(), 0),
		LagBytes:       -1,
		SendPosition:   q.Acked(),
	}
	retried := metricValue(m.samplesRetried) + metricValue(m.histogramsRetried)
	s.SamplesDelivered = max(s.SamplesSent-retried-s.SamplesFailed, 0)
	if sent := m.highestSent.get(); sent > 0 {
		s.NewestSent = time.UnixMilli(int64(math.Round(sent * 1000)))
	} else {
		s.LagSeconds = -1 // the newest delivered is unknown, not 1970
	}
	if sl, ok := q.log.(SizedLog); ok {
		if n, err := sl.BytesAfter(s.SendPosition); err == nil {
			s.LagBytes = n
		}
	}
	return s
}

// metricValue reads a counter's or gauge's current value.
func metricValue(c prometheus.Metric) float64 {
	var pb dto.Metric
	if err := c.Write(&pb); err != nil {
		return math.NaN()
	}
	switch {
	case pb.Counter != nil:
		return pb.Counter.GetValue()
	case pb.Gauge != nil:
		return pb.Gauge.GetValue()
	}
	return math.NaN()
}

// vecSum sums a counter vector over its label values.
func vecSum(v *prometheus.CounterVec) float64 {
	ch := make(chan prometheus.Metric, 16)
	go func() { v.Collect(ch); close(ch) }()
	var sum float64
	for c := range ch {
		sum += metricValue(c)
	}
	return sum
}

// ErrorLog remembers the last warning or error a queue logged, for a
// status page: wrap the queue's Options.Logger with Logger. Safe for
// concurrent use; the zero value is ready.
type ErrorLog struct {
	mu   sync.Mutex
	last LoggedError
}

// LoggedError is a logged warning or error: its message and "err"
// attribute, and when. The queue's logs carry no secret (URLs are
// redacted), so neither does this.
type LoggedError struct {
	Time    time.Time // zero: none logged
	Message string
	Err     string
}

// Logger returns a logger that logs to next and remembers its warnings and
// errors in e.
func (e *ErrorLog) Logger(next *slog.Logger) *slog.Logger {
	return slog.New(&errorHandler{next: next.Handler(), log: e})
}

// Last returns the last warning or error logged.
func (e *ErrorLog) Last() LoggedError {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last
}

// errorHandler passes records on to next and keeps the last warning or
// error in log, whatever next's level.
type errorHandler struct {
	next  slog.Handler
	log   *ErrorLog
	attrs []slog.Attr // from WithAttrs, to find an "err" set there
}

func (h *errorHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

func (h *errorHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		le := LoggedError{Time: r.Time, Message: r.Message}
		find := func(a slog.Attr) bool {
			if a.Key == "err" {
				le.Err = a.Value.String()
				return false
			}
			return true
		}
		for _, a := range h.attrs {
			find(a)
		}
		r.Attrs(find)
		h.log.mu.Lock()
		h.log.last = le
		h.log.mu.Unlock()
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *errorHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &errorHandler{next: h.next.WithAttrs(as), log: h.log, attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], as...)}
}

func (h *errorHandler) WithGroup(name string) slog.Handler {
	return &errorHandler{next: h.next.WithGroup(name), log: h.log, attrs: h.attrs}
}
