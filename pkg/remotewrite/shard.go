package remotewrite

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/prometheus/prompb"
)

// sample is one queued item: a float sample (x == nil), a native histogram
// (x is the reader's *histogram.Histogram or *histogram.FloatHistogram, never
// modified) or an exemplar (x is an *exemplar; t and v are the exemplar's).
// st is the start (created) timestamp the WAL gave a sample or histogram,
// zero if none; only 2.0 can send it.
type sample struct {
	series *series
	seq    uint64 // sequence number of the WAL record it came from, see acks
	t, st  int64
	v      float64
	x      any
}

// exemplar holds an exemplar's labels, copied out of the WAL record.
type exemplar struct {
	labels []prompb.Label
}

// counts counts queued items by kind.
type counts struct {
	samples, histograms, exemplars int
}

func (c *counts) add(s *sample) {
	switch s.x.(type) {
	case nil:
		c.samples++
	case *exemplar:
		c.exemplars++
	default:
		c.histograms++
	}
}

// shard sends the samples of the series hashed to it, in order, one batch at
// a time. The reader goroutine calls push; the shard's own goroutine runs
// run; oldest and drain may be called from any goroutine.
type shard struct {
	q *Queue

	// mu guards the fields below it. Lock order: acks.mu before mu.
	mu sync.Mutex
	// ring holds queued samples: n of them from head, wrapping.
	ring    []sample
	head, n int
	// inflight is set while batch holds samples not yet delivered or
	// dropped; inflightSeq is batch[0].seq. It stays set when sending is
	// cancelled, so Acked stays behind the unsent batch.
	inflight    bool
	inflightSeq uint64
	// draining is set once the reader has stopped: send what is queued
	// without waiting for full batches, then return.
	draining bool

	ready chan struct{} // reader to shard: a batch is full, the ring became non-empty, or draining
	space chan struct{} // shard to reader: samples left the ring

	// Owned by the shard goroutine.
	batch []sample
	enc   encoder
	enc2  encoderV2
}

func newShard(q *Queue, capacity int) *shard {
	return &shard{
		q:     q,
		ring:  make([]sample, capacity),
		ready: make(chan struct{}, 1),
		space: make(chan struct{}, 1),
		batch: make([]sample, 0, q.maxPerSend),
		enc:   encoder{pairs: q.series.pairs},
		enc2:  encoderV2{pairs: q.series.pairs},
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push appends items to the ring in order, blocking while it is full
// (backpressure: nothing is dropped for being full). It returns ctx.Err() if
// ctx is done first; then only a prefix of items was queued. Only the reader
// goroutine may call push. items is not retained.
func (s *shard) push(ctx context.Context, items []sample) error {
	s.q.resent(items)
	for len(items) > 0 {
		s.mu.Lock()
		wasEmpty := s.n == 0
		k := min(len(items), len(s.ring)-s.n)
		tail := (s.head + s.n) % len(s.ring)
		c := copy(s.ring[tail:], items[:k])
		copy(s.ring, items[c:k])
		s.n += k
		full := s.n >= s.q.maxPerSend
		s.mu.Unlock()
		items = items[k:]
		if k > 0 && (wasEmpty || full) {
			signal(s.ready)
		}
		if len(items) == 0 {
			return nil
		}
		begin := time.Now()
		select {
		case <-s.space:
			s.q.rates.blocked.add(int64(time.Since(begin)))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// oldest returns the sequence number of the oldest sample not yet delivered
// or dropped, and false if there is none.
func (s *shard) oldest() (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight {
		return s.inflightSeq, true
	}
	if s.n > 0 {
		return s.ring[s.head].seq, true
	}
	return 0, false
}

// pending returns the number of samples queued or in flight.
func (s *shard) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.n
	if s.inflight {
		n += len(s.batch)
	}
	return n
}

// drain tells the shard that no more samples will come.
func (s *shard) drain() {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	signal(s.ready)
}

// takeLocked moves up to maxPerSend samples from the ring into batch and
// marks them in flight; s.mu must be held.
func (s *shard) takeLocked() {
	k := min(s.n, s.q.maxPerSend)
	s.batch = s.batch[:k]
	c := copy(s.batch, s.ring[s.head:min(s.head+k, len(s.ring))])
	copy(s.batch[c:], s.ring[:k-c])
	s.head = (s.head + k) % len(s.ring)
	s.n -= k
	s.inflight = true
	s.inflightSeq = s.batch[0].seq
}

// run sends batches until drained or ctx is done. A batch is sent when it
// holds max_samples_per_send samples, when batch_send_deadline has passed
// since the shard saw a partial batch, or when draining.
func (s *shard) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	armed, expired := false, false
	for {
		s.mu.Lock()
		if s.n == 0 {
			expired = false
		}
		if s.n >= s.q.maxPerSend || (s.n > 0 && (expired || s.draining)) {
			s.takeLocked()
			s.mu.Unlock()
			signal(s.space)
			expired = false
			if !s.sendBatch(ctx) {
				return
			}
			continue
		}
		if s.draining {
			s.mu.Unlock()
			return
		}
		partial := s.n > 0
		s.mu.Unlock()
		if partial && !armed {
			timer.Reset(s.q.batchDeadline)
			armed = true
		}
		select {
		case <-s.ready:
		case <-timer.C:
			armed, expired = false, true
		case <-ctx.Done():
			return
		}
	}
}

// sendBatch sends batch, then marks it done. It returns false if ctx was
// done before the whole batch was delivered or dropped; the batch then stays
// in flight, so Acked stays behind it (a part already delivered is sent
// again after a restart: at least once, never lost).
func (s *shard) sendBatch(ctx context.Context) bool {
	s.q.reserve(s.batch[len(s.batch)-1].seq) // a shard's samples are in record order
	if !s.sendPart(ctx, s.batch) {
		return false
	}
	s.mu.Lock()
	s.inflight = false
	s.batch = s.batch[:0]
	s.mu.Unlock()
	s.q.written()
	return true
}

// sendPart encodes and sends part, a stretch of the batch, retrying
// recoverable errors. A part that encodes larger than the request size limit,
// or that the receiver refuses with 413, is sent as two halves, in order. A
// 2.0 request that the receiver refuses with 415, or answers with a 2xx but
// no written counts (a 1.0 receiver), switches the queue to 1.0 and is sent
// again as 1.0. It returns false if ctx was done before part was delivered
// or dropped.
func (s *shard) sendPart(ctx context.Context, part []sample) bool {
	m := s.q.metrics
	var c counts
	for i := range part {
		c.add(&part[i])
	}
	v2 := s.q.v2.Load()
	var (
		body    []byte
		highest int64
		orphans counts // exemplars 2.0 cannot carry, dropped once part is done
		err     error
	)
	if v2 {
		var r v2Result
		r, err = s.enc2.encode(part)
		body, highest, orphans.exemplars = r.body, r.highest, r.orphans
		c.exemplars -= r.orphans
	} else {
		body, highest, err = s.enc.encode(part)
	}
	if err != nil {
		// Marshalling our own well-formed request cannot fail; if it
		// does, the batch can never be sent, so drop it.
		s.q.logger.Error("encode remote write request", "err", err)
		c.exemplars += orphans.exemplars
		s.account(c, reasonEncode)
		return true
	}
	if v2 && c == (counts{}) {
		// Only exemplars whose samples went earlier: nothing to send.
		s.dropOrphans(orphans)
		return true
	}
	if len(body) > s.q.maxBytes && len(part) > 1 {
		return s.split(ctx, part)
	}
	backoff := s.q.minBackoff
	for attempt := 0; ; attempt++ {
		m.samplesTotal.Add(float64(c.samples))
		m.histogramsTotal.Add(float64(c.histograms))
		m.exemplarsTotal.Add(float64(c.exemplars))
		begin := time.Now()
		w, err := s.q.client.store(ctx, body, attempt, v2)
		took := time.Since(begin)
		m.sentBatchDuration.Observe(took.Seconds())
		s.q.rates.busy.add(int64(took))
		if v2 {
			// 415, or a 2xx without written counts (the spec's sign of
			// a 1.0 receiver that ignored the content type): resend
			// as 1.0.
			var why string
			switch {
			case err == nil && !w.confirmed:
				why = "2xx without X-Prometheus-Remote-Write-*-Written headers"
			case isStatus(err, http.StatusUnsupportedMediaType):
				why = err.Error()
			}
			if why != "" {
				s.q.fallBackToV1(why)
				return s.sendPart(ctx, part)
			}
		}
		if err == nil {
			s.q.rates.lastSend.Store(time.Now().UnixNano())
			m.bytesTotal.Add(float64(len(body)))
			m.highestSent.set(float64(highest) / 1000)
			if v2 {
				// The receiver wrote w of c; the rest it refused
				// (a partial write), so count it dropped.
				short := counts{
					samples:    max(c.samples-w.samples, 0),
					histograms: max(c.histograms-w.histograms, 0),
					exemplars:  max(c.exemplars-w.exemplars, 0),
				}
				if short != (counts{}) {
					s.q.rejectLog[reasonPartial].Log(s.q.logger, "remote write 2.0 receiver wrote less than sent, counting the rest dropped",
						"reason", reasonPartial, "samples", short.samples, "histograms", short.histograms, "exemplars", short.exemplars)
					c.samples -= short.samples
					c.histograms -= short.histograms
					c.exemplars -= short.exemplars
					s.account(short, reasonPartial)
				}
			}
			s.account(c, "")
			s.dropOrphans(orphans)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		var re *recoverableError
		if !errors.As(err, &re) {
			reason := reasonRejected
			if se, ok := errors.AsType[*statusError](err); ok {
				switch se.code {
				case http.StatusRequestEntityTooLarge:
					if len(part) > 1 {
						return s.split(ctx, part)
					}
					reason = reasonTooLarge
				case http.StatusBadRequest:
					reason = rejectReason(se.body)
				}
			}
			// The receiver's message names the series and why; once
			// per reason and interval is enough.
			s.q.rejectLog[reason].Log(s.q.logger, "remote write batch rejected, dropping it",
				"reason", reason, "samples", c.samples, "histograms", c.histograms, "exemplars", c.exemplars, "err", err)
			s.account(c, reason)
			s.dropOrphans(orphans)
			return true
		}
		s.q.rates.retrying.Store(true)
		sleep := backoff
		if re.retryAfter > 0 {
			sleep = re.retryAfter
		}
		s.q.retryLog.Log(s.q.logger, "remote write batch failed, retrying", "retry_in", sleep, "err", err)
		t := time.NewTimer(sleep)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false
		}
		m.samplesRetried.Add(float64(c.samples))
		m.histogramsRetried.Add(float64(c.histograms))
		m.exemplarsRetried.Add(float64(c.exemplars))
		backoff = min(2*backoff, s.q.maxBackoff)
	}
}

func isStatus(err error, code int) bool {
	se, ok := errors.AsType[*statusError](err)
	return ok && se.code == code
}

// dropOrphans counts the exemplars a 2.0 request left out as dropped.
func (s *shard) dropOrphans(o counts) {
	if o.exemplars == 0 {
		return
	}
	s.q.rejectLog[reasonOrphanExemplar].Log(s.q.logger, "remote write 2.0 cannot send an exemplar without a sample of its series in the same request, dropping it",
		"reason", reasonOrphanExemplar, "exemplars", o.exemplars)
	s.account(o, reasonOrphanExemplar)
}

// split sends the halves of part in order.
func (s *shard) split(ctx context.Context, part []sample) bool {
	mid := len(part) / 2
	return s.sendPart(ctx, part[:mid]) && s.sendPart(ctx, part[mid:])
}

// account counts part of the in-flight batch delivered (reason "") or
// dropped.
func (s *shard) account(c counts, reason string) {
	m := s.q.metrics
	total := int64(c.samples + c.histograms + c.exemplars)
	if reason == "" {
		s.q.rates.out.add(total)
	} else {
		s.q.rates.dropped.add(total)
		m.samplesFailed.Add(float64(c.samples))
		m.histogramsFailed.Add(float64(c.histograms))
		m.exemplarsFailed.Add(float64(c.exemplars))
		m.dropped(reason, c)
	}
	m.pending(-c.samples, -c.histograms, -c.exemplars)
}
