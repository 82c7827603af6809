// Package lograte keeps a repeated log line from flooding the log: a
// Limiter lets one line through per interval and counts the ones it held
// back, reporting the count with the next line it lets through.
package lograte

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Limiter lets one line through per Interval. It is safe for concurrent
// use. The zero value logs every line at Info. Set the fields before the
// first Log and do not change them after.
type Limiter struct {
	// Interval is the least time between two lines; zero lets every line
	// through.
	Interval time.Duration
	// Level is the level lines are logged at; zero is Info.
	Level slog.Level

	mu         sync.Mutex
	last       time.Time // guarded by mu
	suppressed int       // lines held back since last; guarded by mu
}

// Log logs msg with args unless a line went through less than Interval
// ago, in which case it only counts it. A line that follows held-back ones
// carries suppressed_since_last=N.
func (l *Limiter) Log(logger *slog.Logger, msg string, args ...any) {
	l.mu.Lock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.Interval {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	l.last = now
	n := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed_since_last", n)
	}
	logger.Log(context.Background(), l.Level, msg, args...)
}
