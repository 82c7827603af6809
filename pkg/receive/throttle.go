package receive

import (
	"math"
	"sync"
	"time"
)

// tokenBucket is AMP's ingestion throttle: "Amazon Managed Service for
// Prometheus uses the token bucket algorithm to implement ingestion
// throttling" (AMP_quotas.html, Ingestion throttling). The bucket holds at
// most burst tokens, starts full and refills at rate tokens per second; each
// sample takes one. A request takes all its samples' tokens or none, as
// Cortex's distributor does (rate.Limiter.AllowN), so a throttled request
// stores nothing and a sender may resend it whole.
//
// It is safe for concurrent use. The clock is the caller's: take is given
// the time, so tests step it.
type tokenBucket struct {
	rate  float64 // tokens per second; <= 0: no throttling
	burst float64

	mu     sync.Mutex
	tokens float64   // guarded by mu
	last   time.Time // guarded by mu; zero until the first take
}

func newTokenBucket(rate float64, burst int) *tokenBucket {
	return &tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// take takes n tokens at now and reports whether there were enough. A clock
// that steps back refills nothing.
func (b *tokenBucket) take(n int, now time.Time) bool {
	if b.rate <= 0 || n <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		if d := now.Sub(b.last); d > 0 {
			b.tokens = math.Min(b.burst, b.tokens+d.Seconds()*b.rate)
		}
	}
	if b.last.IsZero() || now.After(b.last) {
		b.last = now
	}
	if float64(n) > b.tokens {
		return false
	}
	b.tokens -= float64(n)
	return true
}
