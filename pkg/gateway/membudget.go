package gateway

import (
	"fmt"
	"sync/atomic"
	"time"
)

// memBudget is the memory the gateway's requests in flight share
// (receive.max_memory_in_flight): each request reserves from it what it
// is about to hold (its body, its decompressed body, its decoding's
// bookkeeping) before allocating it, through a reservation, and gives it
// all back when it ends. The bounds of each request (max_request_bytes,
// the decoded-size bound, config.MaxDecodeCost) multiply by the requests
// in flight; the budget does not. It is safe for concurrent use; its zero
// value is an empty budget.
type memBudget struct {
	used atomic.Int64 // bytes reserved by the requests in flight
}

// reserve takes n bytes if the budget, of size bytes, has them free, and
// reports whether it did. It never waits: a request refused its memory
// holds nothing else of the budget's that it would wait with.
func (b *memBudget) reserve(n, size int64) bool {
	for {
		u := b.used.Load()
		if u+n > size {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// release gives back n bytes reserve took.
func (b *memBudget) release(n int64) { b.used.Add(-n) }

// inUse is the bytes reserved now.
func (b *memBudget) inUse() int64 { return b.used.Load() }

// reserveChunk is the least a reservation takes from the budget at once,
// so that the decoders' many small charges touch the shared counter about
// once a MiB.
const reserveChunk = 1 << 20

// memoryRetryAfter is the Retry-After of a request refused for the
// budget: the requests holding it take well under a second to decode.
const memoryRetryAfter = time.Second

// reservation is one request's share of a memBudget of size bytes. A
// nil *reservation reserves nothing and refuses nothing (decoders used
// without a gateway: tests, fuzzing). It is not safe for concurrent use:
// one request's handler owns it, and must call release when the request
// ends, whatever path it takes.
type reservation struct {
	b    *memBudget
	size int64 // the budget's size, as of the request's start
	held int64 // reserved from b
	want int64 // what the request has asked for; at most held
}

// newReservation starts a request's reservation on b, of size bytes.
func newReservation(b *memBudget, size int64) *reservation {
	return &reservation{b: b, size: size}
}

// take reserves n more bytes for the request, from what it holds already
// or else from the budget, at least reserveChunk at a time. When the
// budget cannot cover them it returns a *decodeError: 503 with
// Retry-After when other requests hold the rest (the request would fit
// later), 413 when the request alone needs more than the whole budget.
// Nothing is reserved then.
func (r *reservation) take(n int64) error {
	if r != nil { // inlined, for the decoders' many small charges
		if r.want += n; r.want > r.held {
			return r.grow(n)
		}
	}
	return nil
}

// grow reserves from the budget what r.want, which take has just raised
// by n, needs beyond what r holds, as take says; refused, it takes n back
// off r.want.
func (r *reservation) grow(n int64) error {
	want := r.want
	r.want -= n
	if want > r.size {
		return &decodeError{status: 413, reason: reasonDecodeTooLarge, msg: fmt.Sprintf(
			"the request needs more than max_memory_in_flight (%d MiB) to decode, even alone: send less per request", r.size>>20)}
	}
	need := want - r.held
	grab := max(need, reserveChunk)
	switch {
	case r.b.reserve(grab, r.size):
	case grab > need && r.b.reserve(need, r.size):
		grab = need
	default:
		return &decodeError{status: 503, reason: reasonMemoryBudget, retryAfter: memoryRetryAfter, msg: fmt.Sprintf(
			"the gateway is decoding too much at once: the requests in flight hold its max_memory_in_flight (%d MiB); nothing written, retry later", r.size>>20)}
	}
	r.held += grab
	r.want = want
	return nil
}

// release gives everything the request reserved back to the budget. It
// may be called more than once.
func (r *reservation) release() {
	if r == nil || r.held == 0 {
		return
	}
	r.b.release(r.held)
	r.held, r.want = 0, 0
}
