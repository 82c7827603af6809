package receive

import (
	"sync"
	"time"
)

// activeSeries enforces AMP's "Active series per workspace" quota: a series is
// active while it had a sample in the last ActiveSeriesWindow, and a new series
// past the limit is refused with AMP's message ("per-user series limit of
// 10000000 exceeded, please contact administrator to raise it"). Series are
// known by the hash of their labels (labels.Labels.Hash); a collision, at 64
// bits, would let a new series pass as known. The set is in memory: after a
// restart every series is new.
//
// It is safe for concurrent use.
type activeSeries struct {
	limit int // <= 0: no limit

	mu        sync.Mutex
	lastSeen  map[uint64]time.Time // guarded by mu
	lastPrune time.Time            // guarded by mu
}

func newActiveSeries(limit int) *activeSeries {
	return &activeSeries{limit: limit, lastSeen: map[uint64]time.Time{}}
}

// admit marks the series with hash h as seen at now and reports whether it
// may be stored: a known series always may; a new one while fewer than the
// limit are active.
func (a *activeSeries) admit(h uint64, now time.Time) bool {
	if a.limit <= 0 {
		return true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.lastSeen[h]; ok {
		a.lastSeen[h] = now
		return true
	}
	if len(a.lastSeen) >= a.limit && now.Sub(a.lastPrune) >= time.Minute {
		// Forget series idle for the window, at most once a minute: a
		// sweep costs one pass over the map.
		a.lastPrune = now
		for k, t := range a.lastSeen {
			if now.Sub(t) >= ActiveSeriesWindow {
				delete(a.lastSeen, k)
			}
		}
	}
	if len(a.lastSeen) >= a.limit {
		return false
	}
	a.lastSeen[h] = now
	return true
}
