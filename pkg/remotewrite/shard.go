package remotewrite

import (
	"context"
	"errors"
	"math"
	"math/bits"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
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
	// Per batch, see refused: requests left to isolate series refused
	// with 400; the depth of 413 splits under way; whether a 413 stopped
	// splitting.
	isolateBudget int
	split413      int
	stop413       bool
	scratch       []sample // partitionSeries' buffer
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
		s.q.metrics.enqueueRetries.Inc() // Prometheus' name for waiting on a full shard
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
// since the shard saw a partial batch, or when draining. As it returns it
// frees what its encoders hold off the Go heap: run is called once.
func (s *shard) run(ctx context.Context) {
	defer s.enc2.named.free()
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
	s.isolateBudget = isolateBudget(len(s.batch))
	s.stop413 = false
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

// isolateBudget is how many requests a batch of n samples may spend
// isolating the series a receiver refuses with 400: each refused series
// costs about 2·log2(n) requests (both halves at every level of a binary
// search), and the budget is twice that, so a bad series or two are
// isolated while a receiver that refuses most of a batch costs a bounded
// delay for the batch's good series (at 2,000 samples, 44 requests).
func isolateBudget(n int) int {
	return max(4*bits.Len(uint(n)), 4)
}

// sendPart encodes and sends part, a stretch of the batch, retrying
// recoverable errors. Before each attempt it drops what the receiver would
// refuse for its timestamp (dropOutOfWindow). A part that encodes larger
// than the request size limit is sent as two halves, in order; one the
// receiver refuses with 413 or 400 is handled by refused. A 2.0 request that
// the receiver refuses with 415, or answers with a 2xx but no written counts
// (a 1.0 receiver), switches the queue to 1.0 and is sent again as 1.0. It
// returns false if ctx was done before part was delivered or dropped.
func (s *shard) sendPart(ctx context.Context, part []sample) bool {
	m := s.q.metrics
	var (
		c       counts // what the last attempt sent
		orphans counts // exemplars 2.0 cannot carry, dropped once part is done
		size    int    // the last attempt's body length
		ok      = true // false if ctx ended while a split or a resend as 1.0 sent part
		// The last encoding of part, kept across retries: the body is
		// encoded again only when dropOutOfWindow shortened part or the
		// queue fell back to 1.0. It stays valid because nothing else
		// encodes with this shard's encoders between two attempts.
		body       []byte
		highest    int64
		encodedLen = -1
		encodedV2  bool
	)
	err := s.q.sendWithBackoff(ctx, "remote write batch", func(ctx context.Context, attempt int) error {
		// Samples age while a receiver is down: check at every attempt.
		part = s.dropOutOfWindow(part)
		if len(part) == 0 {
			return nil
		}
		v2 := s.q.v2.Load()
		if len(part) != encodedLen || v2 != encodedV2 {
			c, orphans = counts{}, counts{}
			for i := range part {
				c.add(&part[i])
			}
			var err error
			if v2 {
				var r v2Result
				r, err = s.enc2.encode(part)
				body, highest, orphans.exemplars = r.body, r.highest, r.orphans
				c.exemplars -= r.orphans
			} else {
				body, highest, err = s.enc.encode(part)
			}
			size = len(body)
			if err != nil {
				// Marshalling our own well-formed request cannot fail; if
				// it does, the batch can never be sent, so drop it.
				s.q.logger.Error("encode remote write request", "err", err)
				c.exemplars += orphans.exemplars
				s.account(c, reasonEncode)
				return nil
			}
			encodedLen, encodedV2 = len(part), v2
		}
		if v2 && c == (counts{}) {
			// Only exemplars whose samples went earlier: nothing to send.
			s.dropOrphans(orphans)
			return nil
		}
		if len(body) > s.q.maxBytes && len(part) > 1 {
			ok = s.split(ctx, part)
			return nil
		}
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
				ok = s.sendPart(ctx, part)
				return nil
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
			return nil
		}
		if _, re := errors.AsType[*recoverableError](err); re && ctx.Err() == nil {
			s.q.rates.retrying.Store(true)
		}
		return err
	}, func() {
		m.samplesRetried.Add(float64(c.samples))
		m.histogramsRetried.Add(float64(c.histograms))
		m.exemplarsRetried.Add(float64(c.exemplars))
	})
	if err == nil {
		return ok
	}
	if ctx.Err() != nil {
		// Given up while retrying (errGaveUp), or refused as ctx ended.
		return false
	}
	if !s.refused(ctx, part, c, size, err) {
		return false
	}
	s.dropOrphans(orphans)
	return true
}

// refused handles a part (counted in c, size its encoded length) that the
// receiver refused without asking for a retry, with err.
//
// A 400 whose message names a problem of the data (out of order, too old,
// too many labels, ...) usually concerns one series of many: the part is
// split in halves, and each half sent, until the refused series is alone
// in a part; that part is dropped, counted by the reason and logged with the
// series and the receiver's message. isolateBudget bounds the requests per
// batch; past it, a refused part is dropped whole. A 400 without such a
// reason (a receiver that refuses everything) drops the part whole, as
// Prometheus does.
//
// A 413 splits the part in halves while its body is at least
// split413Floor: the receiver's limit may lie between that and ours. A body
// under it refused with 413 (a small batch, or a half of a split one
// refused again) means the receiver refuses even small requests: it and the
// rest of the batch refused with 413 are dropped, the halves of a split
// under way unsent, rather than halved down to single samples (2N-1
// requests for N samples).
//
// Any other refusal drops the part. refused returns false if ctx was done
// before the part was delivered or dropped.
func (s *shard) refused(ctx context.Context, part []sample, c counts, size int, err error) bool {
	reason := reasonRejected
	se, _ := errors.AsType[*statusError](err)
	if se != nil {
		switch se.code {
		case http.StatusRequestEntityTooLarge:
			reason = reasonTooLarge
			if size < s.q.split413Floor {
				s.stop413 = true
			}
			if len(part) > 1 && !s.stop413 {
				s.split413++
				defer func() { s.split413-- }()
				return s.split(ctx, part)
			}
		case http.StatusBadRequest:
			reason = rejectReason(se.body)
			if reason == reasonRejected {
				break
			}
			if one := oneSeries(part); one != nil {
				s.q.rejectLog[reason].Log(s.q.logger, "remote write receiver refused a series, dropping its samples",
					"reason", reason, "series", s.describe(one), "samples", c.samples, "histograms", c.histograms,
					"exemplars", c.exemplars, "err", err)
				s.account(c, reason)
				return true
			}
			if s.isolateBudget >= 2 {
				s.isolateBudget -= 2 // both halves are sent
				mid := s.partitionSeries(part)
				return s.sendPart(ctx, part[:mid]) && s.sendPart(ctx, part[mid:])
			}
		}
	}
	// The receiver's message names the series and why; once per reason
	// and interval is enough.
	s.q.rejectLog[reason].Log(s.q.logger, "remote write batch rejected, dropping it",
		"reason", reason, "samples", c.samples, "histograms", c.histograms, "exemplars", c.exemplars, "err", err)
	s.account(c, reason)
	return true
}

// partitionSeries reorders part so that the items of the first half of its
// series (in order of first appearance) come first, each half keeping its
// order, and returns where the second half starts. Per-series order holds
// when the halves are sent in turn, and a series refused in a half is in
// that half only. part holds at least two series.
func (s *shard) partitionSeries(part []sample) int {
	seen := map[*series]bool{}
	var distinct int
	for i := range part {
		if _, ok := seen[part[i].series]; !ok {
			seen[part[i].series] = false
			distinct++
		}
	}
	left := distinct / 2
	for i := 0; left > 0 && i < len(part); i++ {
		if first, ok := seen[part[i].series]; ok && !first {
			seen[part[i].series] = true
			left--
		}
	}
	s.scratch = s.scratch[:0]
	k := 0
	for i := range part {
		if seen[part[i].series] {
			part[k] = part[i]
			k++
		} else {
			s.scratch = append(s.scratch, part[i])
		}
	}
	copy(part[k:], s.scratch)
	clear(s.scratch) // keep no series or histograms alive
	return k
}

// oneSeries returns the series of part if all of its items belong to one,
// else nil.
func oneSeries(part []sample) *series {
	first := part[0].series
	for i := 1; i < len(part); i++ {
		if part[i].series != first {
			return nil
		}
	}
	return first
}

// maxLoggedLabels bounds the labels of a series written to a log line.
const maxLoggedLabels = 512

// describe returns se's labels as Prometheus prints them, cut to
// maxLoggedLabels bytes.
func (s *shard) describe(se *series) string {
	var b labels.ScratchBuilder
	it := se.labels(s.q.series.pairs)
	for name, value, ok := it.next(); ok; name, value, ok = it.next() {
		b.Add(name, value)
	}
	return truncate(b.Labels().String(), maxLoggedLabels)
}

// dropOutOfWindow drops, counts and logs the items of part that the
// receiver would refuse for their timestamp: older than sample_age_limit
// (reason too_old) or further in the future than Options.Limits.MaxFuture
// (reason too_far_in_future). It returns the items kept, moved to the front
// of part in their order.
func (s *shard) dropOutOfWindow(part []sample) []sample {
	q := s.q
	if q.ageLimit <= 0 && q.futureLimit <= 0 {
		return part
	}
	now := time.Now()
	minT, maxT := int64(math.MinInt64), int64(math.MaxInt64)
	if q.ageLimit > 0 {
		minT = now.Add(-q.ageLimit).UnixMilli()
	}
	if q.futureLimit > 0 {
		maxT = now.Add(q.futureLimit).UnixMilli()
	}
	var old, future counts
	k := 0
	for i := range part {
		switch t := part[i].t; {
		case t < minT:
			old.add(&part[i])
		case t > maxT:
			future.add(&part[i])
		default:
			part[k] = part[i]
			k++
		}
	}
	for _, d := range [...]struct {
		reason string
		c      counts
		limit  time.Duration
	}{{reasonTooOld, old, q.ageLimit}, {reasonTooNew, future, q.futureLimit}} {
		if d.c == (counts{}) {
			continue
		}
		q.rejectLog[d.reason].Log(q.logger, "dropping samples the receiver would refuse for their timestamp",
			"reason", d.reason, "limit", d.limit, "samples", d.c.samples, "histograms", d.c.histograms, "exemplars", d.c.exemplars)
		s.account(d.c, d.reason)
	}
	return part[:k]
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

// split sends the halves of part in order. Once a 413 has stopped
// splitting (stop413), a second half that is part of a 413 split is
// dropped unsent: the receiver refused the first.
func (s *shard) split(ctx context.Context, part []sample) bool {
	mid := len(part) / 2
	if !s.sendPart(ctx, part[:mid]) {
		return false
	}
	if s.stop413 && s.split413 > 0 {
		var c counts
		for i := range part[mid:] {
			c.add(&part[mid+i])
		}
		s.q.rejectLog[reasonTooLarge].Log(s.q.logger, "remote write receiver refuses even small requests with 413, dropping the rest of the batch unsent",
			"reason", reasonTooLarge, "samples", c.samples, "histograms", c.histograms, "exemplars", c.exemplars)
		s.account(c, reasonTooLarge)
		return true
	}
	return s.sendPart(ctx, part[mid:])
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
