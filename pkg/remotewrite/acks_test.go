package remotewrite

import (
	"testing"

	"github.com/rwagent/rwagent/pkg/wal"
)

func TestAcks(t *testing.T) {
	pos := func(o int64) wal.Position { return wal.Position{Segment: 1, Offset: o} }
	a := newAcks(pos(10), wal.Position{})
	acked := func(oldest uint64, ok bool) wal.Position {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.positionLocked(oldest, ok)
	}
	if got := acked(0, false); got != pos(10) {
		t.Fatalf("empty: %+v, want start", got)
	}
	// A replayed record before the start must not move it back.
	a.end(pos(5))
	if got := acked(0, false); got != pos(10) {
		t.Fatalf("after replay: %+v, want start", got)
	}
	s0, _ := a.begin() // record at 10..20
	if got := acked(0, false); got != pos(10) {
		t.Errorf("record 0 being queued: %+v, want its start", got)
	}
	a.end(pos(20))
	s1, _ := a.begin() // record at 20..30
	a.end(pos(30))
	a.end(pos(40)) // a series record
	if got := acked(s0, true); got != pos(10) {
		t.Errorf("record 0 pending: %+v, want 10", got)
	}
	if got := acked(s1, true); got != pos(20) {
		t.Errorf("record 1 pending: %+v, want 20", got)
	}
	if got := acked(0, false); got != pos(40) {
		t.Errorf("nothing pending: %+v, want 40", got)
	}
	// Trimmed entries are gone; a later one still resolves.
	s2, _ := a.begin()
	a.end(pos(50))
	if got := acked(s2, true); got != pos(40) {
		t.Errorf("record 2 pending: %+v, want 40", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("asking for a trimmed record did not panic")
		}
	}()
	acked(s0, true)
}

func TestAcks_TrimBounded(t *testing.T) {
	a := newAcks(wal.Position{}, wal.Position{})
	trims := 0
	for i := range 100_000 {
		seq, trim := a.begin()
		a.end(wal.Position{Offset: int64(i + 1)})
		if trim {
			trims++
			a.mu.Lock()
			a.positionLocked(seq, true)
			a.mu.Unlock()
		}
	}
	if trims == 0 {
		t.Fatal("begin never asked to trim")
	}
	if n := len(a.start) - a.head; n > 2*minTrimAt {
		t.Errorf("%d live entries after trimming, want at most %d", n, 2*minTrimAt)
	}
}
