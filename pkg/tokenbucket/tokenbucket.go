// Package tokenbucket is the token bucket behind the gateway's per-tenant
// rate limits and ampemu's ingestion throttle (AMP: "Amazon Managed
// Service for Prometheus uses the token bucket algorithm to implement
// ingestion throttling", AMP_quotas.html).
package tokenbucket

import (
	"math"
	"sync"
	"time"
)

// Bucket holds at most its burst of tokens, starts full, and gains rate
// tokens a second. A Take takes all the tokens it asks for or none, as
// Cortex's distributor does (rate.Limiter.AllowN), so a request refused
// stores nothing and may be sent again whole.
//
// A Bucket is safe for concurrent use. Its clock is the caller's: each
// call is given the time, so tests step it; a clock that steps back
// refills nothing.
type Bucket struct {
	rate  float64 // tokens a second; <= 0: no limit
	burst float64 // capacity; >= 1 when rate > 0

	mu     sync.Mutex
	tokens float64   // mu
	last   time.Time // the latest time tokens was brought up to; mu
}

// New returns a full bucket at now. Rate <= 0 means no limit: every Take
// succeeds. Burst <= 0 means one second's worth (rate, at least 1).
func New(rate float64, burst int, now time.Time) *Bucket {
	b := float64(burst)
	if b <= 0 {
		b = math.Max(1, rate)
	}
	return &Bucket{rate: rate, burst: b, tokens: b, last: now}
}

// Burst is the bucket's capacity: a Take of more never succeeds.
func (b *Bucket) Burst() float64 { return b.burst }

// Take takes n tokens at now if the bucket holds them, and returns 0.
// Otherwise it takes none and returns how long until the bucket would
// hold n (for n over Burst, it never will: the wait is then only a
// measure of how far over).
func (b *Bucket) Take(n int, now time.Time) time.Duration {
	if b.rate <= 0 || n <= 0 {
		return 0
	}
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

// Give puts back n tokens taken for a request that was then not stored,
// up to the burst.
func (b *Bucket) Give(n int) {
	if b.rate <= 0 || n <= 0 {
		return
	}
	b.mu.Lock()
	b.tokens = math.Min(b.burst, b.tokens+float64(n))
	b.mu.Unlock()
}
