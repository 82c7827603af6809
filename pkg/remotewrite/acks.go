package remotewrite

import (
	"sync"

	"github.com/rwagent/rwagent/pkg/wal"
)

// acks maps record sequence numbers to WAL positions so that a queued sample
// carries only a uint64 and the acknowledged position can still be computed.
//
// Every record that queues samples gets the next sequence number; its entry
// is the position where the record starts (the position after the previous
// record). Entries below the oldest sequence still pending are trimmed.
//
// All fields are guarded by mu. Lock order: acks.mu before shard.mu.
type acks struct {
	mu sync.Mutex
	// base is the sequence number of starts[head].
	base  uint64
	head  int
	start []wal.Position
	// next is the sequence number the next sample record gets.
	next uint64
	// busy is set while the reader is queueing the samples of record
	// next-1; such a record is not yet fully in the shards.
	busy bool
	// done is the position after the last record the reader has fully
	// handled; it never goes below the queue's start position.
	done wal.Position
	// trimAt is the number of live entries at which begin asks the reader
	// to trim.
	trimAt int
	// read is the position after the last record the reader has read,
	// whether or not it is handled yet: no queued sample comes from a
	// record after it (see reading).
	read wal.Position
	// resendUntil is Options.ResendUntil: records that start before it
	// may have been sent before a restart.
	resendUntil wal.Position
	// resendBelow is one more than the sequence number of the last such
	// record. Only the reader goroutine touches it, without mu.
	resendBelow uint64
}

const minTrimAt = 1024

func newAcks(start, resendUntil wal.Position) *acks {
	return &acks{done: start, read: start, resendUntil: resendUntil, trimAt: minTrimAt}
}

// begin registers a sample record that starts at the current done position
// and marks it busy. It returns the record's sequence number and whether the
// table has grown enough that the caller should trim it (through Acked).
func (a *acks) begin() (seq uint64, trim bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seq = a.next
	a.next++
	if a.done.Compare(a.resendUntil) < 0 {
		a.resendBelow = seq + 1
	}
	a.start = append(a.start, a.done)
	a.busy = true
	return seq, len(a.start)-a.head >= a.trimAt
}

// nextSeq returns the sequence number the next sample record gets.
func (a *acks) nextSeq() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.next
}

// reading records pos, the position after the record the reader has just
// read, before it handles it.
func (a *acks) reading(pos wal.Position) {
	a.mu.Lock()
	if a.read.Compare(pos) < 0 {
		a.read = pos
	}
	a.mu.Unlock()
}

// end marks the current record handled: done becomes pos (if later) and the
// reader is no longer busy.
func (a *acks) end(pos wal.Position) {
	a.mu.Lock()
	if a.done.Compare(pos) < 0 {
		a.done = pos
	}
	a.busy = false
	a.mu.Unlock()
}

// positionLocked returns the acknowledged position given the oldest pending
// sequence number; a.mu must be held. It trims the entries before oldest.
func (a *acks) positionLocked(oldest uint64, ok bool) wal.Position {
	if a.busy && (!ok || a.next-1 < oldest) {
		oldest, ok = a.next-1, true
	}
	if !ok {
		a.trimLocked(a.next)
		return a.done
	}
	if oldest < a.base {
		panic("remotewrite: pending sample older than the trimmed ack table")
	}
	a.trimLocked(oldest)
	return a.start[a.head]
}

// trimLocked drops the entries of sequence numbers below seq; a.mu must be
// held.
func (a *acks) trimLocked(seq uint64) {
	if seq > a.base {
		a.head += int(seq - a.base)
		a.base = seq
		if a.head > len(a.start)/2 {
			n := copy(a.start, a.start[a.head:])
			a.start = a.start[:n]
			a.head = 0
		}
	}
	// Ask again once the live entries have doubled, so trimming costs
	// O(1) per record however far the shards lag.
	a.trimAt = max(minTrimAt, 2*(len(a.start)-a.head))
}
