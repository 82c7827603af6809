package remotewrite

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rwagent/rwagent/pkg/metricset"
	"github.com/rwagent/rwagent/pkg/wal"
)

// PositionWriter records how far a Queue has got, so that a restart after
// a crash resumes from the acknowledged position and knows what it may
// send twice.
type PositionWriter interface {
	// WritePositions records acked, the acknowledged position (see
	// Queue.Acked), and sent, the sent high-water mark: no sample of a
	// record at or after sent has been handed to an HTTP send. Both only
	// move forward, and sent is never before acked. The Queue calls it
	// from its shard goroutines, never two at once: after every batch
	// that moves acked, and before every send of a sample from a record
	// past the last sent mark written, which waits for it. It must be
	// cheap (no fsync): it is on the send path. A write it cannot make
	// must not be reported back as sent; it should invalidate what it
	// keeps instead, so that a restart assumes the worst.
	WritePositions(acked, sent wal.Position)
}

// progress reports a Queue's positions to its PositionWriter.
type progress struct {
	w PositionWriter // nil: nothing is reported
	// reserved is the highest record sequence number (plus one) that the
	// last written sent mark covers; a send of a later record must write
	// a new mark first. Read without mu, written under it.
	reserved atomic.Uint64

	// mu serialises the writes. Lock order: mu before acks.mu.
	mu          sync.Mutex
	acked, sent wal.Position // last written; mu
}

// reserve makes sure the sent mark written covers the record of sequence
// number seq before a sample of it is sent: if not, it writes the position
// after the last record the reader has read as the new mark. Safe for
// concurrent use.
func (q *Queue) reserve(seq uint64) {
	p := &q.progress
	if p.w == nil || seq < p.reserved.Load() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if seq < p.reserved.Load() {
		return // another shard reserved it meanwhile
	}
	a := q.acks
	a.mu.Lock()
	read, next := a.read, a.next
	a.mu.Unlock()
	if p.sent.Compare(read) < 0 {
		p.sent = read
	}
	p.acked = q.Acked()
	p.w.WritePositions(p.acked, p.sent)
	p.reserved.Store(next)
}

// written writes the acknowledged position if it moved. Safe for
// concurrent use.
func (q *Queue) written() {
	p := &q.progress
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if acked := q.Acked(); acked != p.acked {
		p.acked = acked
		// Acked never passes what the reader has read, so never sent.
		p.sent = p.sent.Max(acked)
		p.w.WritePositions(p.acked, p.sent)
	}
}

// resent counts, in the resent metric, the items of a record that the
// last run may have sent already (Options.ResendUntil). Only the reader
// goroutine may call it; items come from one record.
func (q *Queue) resent(items []sample) {
	if len(items) == 0 || items[0].seq >= q.acks.resendBelow {
		return
	}
	n := 0
	for i := range items {
		if _, ok := items[i].x.(*exemplar); !ok {
			n++
		}
	}
	q.resendMetrics.resent.Add(float64(n))
}

// resendMetrics count what a restart sends again.
type resendMetrics struct {
	reg    prometheus.Registerer
	all    metricset.Set // resent
	resent prometheus.Counter
}

func newResendMetrics(reg prometheus.Registerer, name, url string) *resendMetrics {
	m := &resendMetrics{reg: reg, resent: prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "rwagent", Subsystem: "remote_write", Name: "resent_samples_total",
		ConstLabels: prometheus.Labels{"remote_name": name, "url": url},
		Help: "Samples and native histograms queued again after a restart from WAL records that may have reached the receiver before it " +
			"(acknowledged after the last position written, or in flight): an upper bound on the duplicates a restart causes.",
	})}
	m.all.Add(m.resent)
	return m
}

// register registers the metrics on the Registerer given to
// newResendMetrics; the error names the metric that failed.
func (m *resendMetrics) register() error { return m.all.Register(m.reg) }

// unregister removes what register registered.
func (m *resendMetrics) unregister() { m.all.Unregister() }
