package gateway

import (
	"math"
	"sync"
	"time"

	"github.com/rwagent/rwagent/pkg/wal"
)

// tenantState is what the gateway keeps per tenant: its rate limit and
// its route.
type tenantState struct {
	t      *Tenant
	bucket *bucket // nil: no rate limit
	route  string  // the wal.RouteLabel value; "": every endpoint
}

func newTenantState(t *Tenant, now time.Time) *tenantState {
	ts := &tenantState{t: t}
	if t.SamplesPerSecond > 0 {
		ts.bucket = newBucket(t.SamplesPerSecond, t.Burst, now)
	}
	if len(t.RemoteWriteNames) > 0 {
		ts.route = wal.RouteValue(t.RemoteWriteNames)
	}
	return ts
}

// bucket is a token bucket: it holds at most burst tokens and gains rate
// a second. It is safe for concurrent use.
type bucket struct {
	rate  float64 // tokens a second; > 0
	burst float64 // capacity; >= 1

	mu     sync.Mutex
	tokens float64   // mu
	last   time.Time // when tokens was computed; mu
}

func newBucket(rate float64, burst int, now time.Time) *bucket {
	b := float64(burst)
	if b <= 0 {
		b = math.Max(1, rate)
	}
	return &bucket{rate: rate, burst: b, tokens: b, last: now}
}

// take takes n tokens if the bucket holds them and returns 0; otherwise it
// takes none and returns how long until it would hold them. n must not be
// over the burst.
func (b *bucket) take(n int, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = math.Min(b.burst, b.tokens+dt*b.rate)
		b.last = now
	}
	need := float64(n)
	if b.tokens >= need {
		b.tokens -= need
		return 0
	}
	return time.Duration((need - b.tokens) / b.rate * float64(time.Second))
}

// give puts back n tokens taken for a request that was then not written.
func (b *bucket) give(n int) {
	b.mu.Lock()
	b.tokens = math.Min(b.burst, b.tokens+float64(n))
	b.mu.Unlock()
}
