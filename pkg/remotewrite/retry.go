package remotewrite

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// errGaveUp wraps the last error of sendWithBackoff when ctx ended while
// that error was still being retried.
var errGaveUp = errors.New("still failing when sending stopped")

// sendWithBackoff is the one retry loop of remote write: batches of samples
// and metadata both send through it. It calls attempt with try
// 0, 1, 2, ... until attempt returns nil or an error that is not a
// *recoverableError, and returns that. After a recoverable error it waits
// (retryWait: the backoff, doubling from min_backoff up to max_backoff, or
// the receiver's Retry-After capped at max_backoff), calls onRetry, and
// tries again. If ctx ends while a recoverable error is being retried, it
// returns that error wrapped in errGaveUp. what names the request in the
// log lines of retries ("remote write batch").
//
// attempt and onRetry are called on the caller's goroutine and are not
// retained.
func (q *Queue) sendWithBackoff(ctx context.Context, what string, attempt func(ctx context.Context, try int) error, onRetry func()) error {
	backoff := q.minBackoff
	for try := 0; ; try++ {
		err := attempt(ctx, try)
		if err == nil {
			return nil
		}
		re, ok := errors.AsType[*recoverableError](err)
		if !ok {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", errGaveUp, err)
		}
		t := time.NewTimer(q.retryWait(backoff, re, what, err))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %w", errGaveUp, err)
		}
		onRetry()
		backoff = min(2*backoff, q.maxBackoff)
	}
}

// retryWait logs a recoverable err of what (the batch or metadata) and
// returns how long to wait before the next attempt: backoff, or the
// receiver's Retry-After capped at max_backoff, so a shard asked to wait a
// day is back within max_backoff of the receiver's recovery. A misconfig
// (a redirect not followed; 401, 403 or 404 from a signed endpoint) is
// logged as an error: the data waits in the WAL for the config or the
// receiver to be fixed.
func (q *Queue) retryWait(backoff time.Duration, re *recoverableError, what string, err error) time.Duration {
	sleep := backoff
	if re.retryAfter > 0 {
		sleep = min(re.retryAfter, q.maxBackoff)
	}
	if re.misconfig {
		q.misconfigLog.Log(q.logger, what+" refused for a configuration problem (credentials, permissions, workspace or URL); the data stays in the WAL and is retried",
			"retry_in", sleep, "err", err)
	} else {
		q.retryLog.Log(q.logger, what+" failed, retrying", "retry_in", sleep, "err", err)
	}
	return sleep
}
