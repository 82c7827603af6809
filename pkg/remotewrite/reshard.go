package remotewrite

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Resharding follows Prometheus' calculateDesiredShards: every
// shardUpdateEvery the queue compares the rate at which samples come in with
// the time it takes to send one, and runs as many shards as keep up with the
// input plus a share of the backlog. Three things damp it so it does not
// oscillate: rates are EWMAs, a change within shardTolerance of the current
// count is ignored, and going down needs downshardTicks ticks in a row that
// all want fewer shards (going up happens at once: a queue that falls behind
// grows the WAL).
//
// Prometheus sees the backlog as the gap between the newest sample appended
// to storage and the newest sent. Our reader only sees what it has read, and
// when the shards are full it stops reading, so the backlog stays in the WAL
// where neither the input rate nor that gap shows it. The time the reader
// spends blocked on full shards shows it instead: blocked a fraction b of
// the time, it could have read 1/(1-b) times as much, so that is the input
// rate planned for (b capped at maxBlocked), and the shards never go down
// while the reader is blocked more than idleBlocked.
const (
	// shardUpdateEvery is how often the desired shard count is computed
	// (Prometheus' shardUpdateDuration).
	shardUpdateEvery = 10 * time.Second
	// ewmaWeight is the weight of the newest interval in each rate.
	ewmaWeight = 0.2
	// shardTolerance is the fraction by which the desired count must
	// differ from the current one before shards change.
	shardTolerance = 0.3
	// backlogCatchup is the share of the backlog to send per second on
	// top of the input rate.
	backlogCatchup = 0.05
	// maxDownshardDelay: no fewer shards while the newest sent sample is
	// further behind the newest queued one than this.
	maxDownshardDelay = 10 * time.Second
	// downshardTicks is how many updates in a row must want fewer shards
	// before they go down.
	downshardTicks = 3
	// maxBlocked caps the blocked fraction: the input rate planned for is
	// at most ten times the one measured, per update.
	maxBlocked = 0.9
	// idleBlocked is the blocked fraction below which the reader counts
	// as keeping up: a shard's ring is full now and then between batches.
	idleBlocked = 0.05
)

// ewmaRate is an exponentially weighted rate of events. add is safe for
// concurrent use; tick and rate belong to the resharding goroutine.
type ewmaRate struct {
	n    atomic.Int64
	r    float64
	init bool
}

func (e *ewmaRate) add(n int64) { e.n.Add(n) }

// tick folds the events since the last tick, over interval, into the rate.
func (e *ewmaRate) tick(interval time.Duration) {
	inst := float64(e.n.Swap(0)) / interval.Seconds()
	switch {
	case e.init:
		e.r += ewmaWeight * (inst - e.r)
	case inst > 0:
		e.r, e.init = inst, true
	}
}

// shardRates is what the queue measures for resharding. Items are samples,
// histograms and exemplars alike. Safe for concurrent use.
type shardRates struct {
	in      ewmaRate // items queued to shards
	out     ewmaRate // items delivered
	dropped ewmaRate // items dropped after reading
	busy    ewmaRate // nanoseconds spent in send attempts, all shards
	blocked ewmaRate // nanoseconds the reader waited for room in a shard
	// lastSend is the time of the last delivered batch, UnixNano.
	lastSend atomic.Int64
	// retrying is set when a send failed with a recoverable error since
	// the last update: more shards would only press a receiver that is
	// down or throttling.
	retrying atomic.Bool
}

// shardInputs are the measurements one update decides on.
type shardInputs struct {
	inRate, outRate, droppedRate float64 // items per second
	busy                         float64 // seconds spent sending per second
	blocked                      float64 // seconds per second the reader waited on full shards
	delay                        float64 // seconds the newest sent sample is behind the newest queued
}

// shardPlanner decides the shard count from shardInputs. It is owned by the
// resharding goroutine; its zero value is not usable, set min and max.
type shardPlanner struct {
	min, max int
	// down counts consecutive updates that wanted fewer shards.
	down int
}

// plan returns the number of shards the inputs call for (unrounded, for the
// shards_desired gauge) and the number to run, which is cur unless a change
// passes the damping rules.
func (p *shardPlanner) plan(cur int, in shardInputs) (desired float64, n int) {
	if in.outRate <= 0 {
		p.down = 0
		return float64(cur), cur
	}
	kept := in.outRate / (in.outRate + in.droppedRate)
	inRate := in.inRate / (1 - min(in.blocked, maxBlocked))
	backlog := in.delay * inRate * kept
	perItem := in.busy / in.outRate
	desired = perItem * (inRate*kept + backlogCatchup*backlog)
	want := math.Ceil(desired)
	if lo, hi := float64(cur)*(1-shardTolerance), float64(cur)*(1+shardTolerance); lo <= want && want <= hi {
		p.down = 0
		return desired, cur
	}
	n = min(p.max, max(p.min, int(want)))
	switch {
	case n > cur:
		p.down = 0
		return desired, n
	case n < cur:
		if in.delay > maxDownshardDelay.Seconds() || in.blocked > idleBlocked {
			p.down = 0
			return desired, cur
		}
		p.down++
		if p.down < downshardTicks {
			return desired, cur
		}
		p.down = 0
		return desired, n
	}
	p.down = 0
	return desired, cur
}

// reshardLoop computes the desired shard count every q.reshardEvery and
// hands a changed count to the reader through q.reshardCh, until ctx is done.
func (q *Queue) reshardLoop(ctx context.Context) {
	t := time.NewTicker(q.reshardEvery)
	defer t.Stop()
	p := &shardPlanner{min: q.minShards, max: q.maxShards}
	r := &q.rates
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			interval := now.Sub(last)
			last = now
			if interval <= 0 {
				continue
			}
			for _, e := range []*ewmaRate{&r.in, &r.out, &r.dropped, &r.busy, &r.blocked} {
				e.tick(interval)
			}
			in := shardInputs{
				inRate: r.in.r, outRate: r.out.r, droppedRate: r.dropped.r,
				busy:    r.busy.r / float64(time.Second),
				blocked: r.blocked.r / float64(time.Second),
				delay:   max(q.metrics.highestEnqueued.get()-q.metrics.highestSent.get(), 0),
			}
			cur := int(q.numShards.Load())
			desired, n := p.plan(cur, in)
			q.metrics.shardsDesired.Set(desired)
			retrying := r.retrying.Swap(false)
			sentRecently := now.Sub(time.Unix(0, r.lastSend.Load())) <= interval
			if n == cur || retrying || !sentRecently {
				continue
			}
			q.logger.Info("remote write resharding", "from", cur, "to", n, "desired", desired,
				"in_per_second", in.inRate, "out_per_second", in.outRate, "delay_seconds", in.delay, "reader_blocked", in.blocked)
			select {
			case <-q.reshardCh: // replace a count the reader has not taken yet
			default:
			}
			q.reshardCh <- n
		}
	}
}

// generation is one set of shards and their goroutines.
type generation struct {
	shards []*shard
	done   chan struct{} // closed when every shard's run has returned
}

// installShards makes a generation of n new shards current; they are not
// running yet (see runShards). Only New and the reader goroutine may call
// it, and the old generation, if any, must be drained and done.
func (q *Queue) installShards(n int) {
	g := &generation{shards: make([]*shard, n), done: make(chan struct{})}
	for i := range g.shards {
		g.shards[i] = newShard(q, q.capacity)
	}
	for len(q.stage) < n {
		q.stage = append(q.stage, staging{})
	}
	q.stage = q.stage[:n]
	q.acks.mu.Lock()
	q.shards = g.shards
	q.acks.mu.Unlock()
	q.gen = g
	q.numShards.Store(int32(n))
	q.metrics.shards.Set(float64(n))
}

// runShards starts the current generation's shard goroutines, sending with
// ctx; its done channel closes when they have all returned.
func (q *Queue) runShards(ctx context.Context) {
	g := q.gen
	var wg sync.WaitGroup
	for _, s := range g.shards {
		wg.Go(func() { s.run(ctx) })
	}
	go func() {
		wg.Wait()
		close(g.done)
	}()
}

// stopShards tells the current generation that no more samples come and
// returns its done channel: it closes once every queued sample is delivered
// or dropped, or sending is cancelled.
func (q *Queue) stopShards() <-chan struct{} {
	for _, s := range q.shards {
		s.drain()
	}
	return q.gen.done
}

// reshard replaces the shards with n new ones. Per-series order holds because
// the old generation sends everything it holds before the new one gets its
// first sample; the reader (the caller) queues nothing meanwhile, so the WAL
// holds the input back. It returns ctx.Err() if ctx is done first; the old
// generation, draining, stays current then, and Run's flush takes over.
func (q *Queue) reshard(ctx context.Context, sendCtx context.Context, n int) error {
	if n == len(q.shards) {
		return nil
	}
	select {
	case <-q.stopShards():
	case <-ctx.Done():
		return ctx.Err()
	}
	q.installShards(n)
	q.runShards(sendCtx)
	return nil
}
