package sigv4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"
)

// The refresh windows of credentialCache, for credentials of an hour (STS,
// IMDS, container endpoints hand out between 15 minutes and 12 hours).
// Shorter-lived credentials get windows in proportion: a refresh starts
// halfway through their life and they are not signed with in their last
// quarter.
const (
	// maxRefreshAhead: a refresh in the background starts this long before
	// credentials expire. Five minutes is the lead time IMDS and the
	// container endpoints give before they rotate, and leaves room for
	// several attempts against a slow STS.
	maxRefreshAhead = 5 * time.Minute
	// maxMinValidity: credentials are never signed with when they expire
	// sooner than this. Ten seconds covers a request's time on the wire
	// and a receiver's clock a few seconds behind ours.
	maxMinValidity = 10 * time.Second
	// refreshTimeout bounds one background refresh.
	refreshTimeout = time.Minute
	// maxRetryAfterFailure bounds the wait between background refreshes
	// that failed.
	maxRetryAfterFailure = 30 * time.Second
)

// credentialCache hands out credentials without waiting on the request
// path: while the cached ones are fresh Retrieve returns them (one atomic
// load); once they enter their refresh window the first Retrieve starts one
// background refresh and every caller keeps signing with the cached ones,
// which are still valid for at least the min-validity window; only when no
// refresh has succeeded by then does Retrieve wait for one.
//
// aws.CredentialsCache alone refreshes on the request path, holding every
// concurrent caller until the provider answers, and for EC2 instance
// credentials with less than 15 minutes left it applies no expiry window at
// all (ec2rolecreds.AdjustExpiresBy), so a request signed in the last
// instant reaches the receiver expired. It is kept underneath as the SDK's
// single-flight and failure handling; credentialCache invalidates it before
// each refresh.
//
// credentialCache is safe for concurrent use. The background refresh is the
// only goroutine it starts; it ends within refreshTimeout.
type credentialCache struct {
	src    *aws.CredentialsCache
	logger *slog.Logger
	redact func(error) error // hides secrets the process knows of
	now    func() time.Time  // real time; credential expiry is not skew-corrected

	cur atomic.Pointer[cachedCredentials]

	// refreshes counts refreshes by result ("success", "failure"); set
	// before the cache is shared, nil: not counted.
	refreshes *prometheus.CounterVec

	mu         sync.Mutex
	refreshing chan struct{} // non-nil while a refresh runs; closed when it ends
	lastErr    error         // of the last refresh, nil after a success
}

// cachedCredentials are credentials with the times that govern them.
type cachedCredentials struct {
	creds     aws.Credentials
	refreshAt time.Time // start a background refresh from here on
	mustAt    time.Time // from here on wait for a refresh rather than sign
}

func newCredentialCache(src *aws.CredentialsCache, logger *slog.Logger, redact func(error) error) *credentialCache {
	return &credentialCache{src: src, logger: logger, redact: redact, now: time.Now}
}

// schedule computes the refresh times of creds fetched at now.
func schedule(creds aws.Credentials, now time.Time) *cachedCredentials {
	c := &cachedCredentials{creds: creds}
	if !creds.CanExpire {
		return c
	}
	life := creds.Expires.Sub(now)
	ahead := min(maxRefreshAhead, life/2)
	c.refreshAt = creds.Expires.Add(-ahead)
	c.mustAt = creds.Expires.Add(-min(maxMinValidity, life/4))
	return c
}

// Retrieve returns credentials valid for at least the min-validity window,
// starting or waiting for a refresh as described on credentialCache. It
// waits only when the cached credentials are about to expire, bounded by ctx.
func (c *credentialCache) Retrieve(ctx context.Context) (aws.Credentials, error) {
	cur := c.cur.Load()
	if cur == nil {
		return c.wait(ctx)
	}
	if !cur.creds.CanExpire {
		return cur.creds, nil
	}
	now := c.now()
	if now.Before(cur.refreshAt) {
		return cur.creds, nil
	}
	if now.Before(cur.mustAt) {
		c.start()
		return cur.creds, nil
	}
	return c.wait(ctx)
}

// load retrieves credentials synchronously (at construction), so that a
// chain without credentials fails there with its own error.
func (c *credentialCache) load(ctx context.Context) (aws.Credentials, error) {
	creds, err := c.src.Retrieve(ctx)
	if err != nil {
		return aws.Credentials{}, err
	}
	now := c.now()
	if creds.CanExpire && !creds.Expires.After(now) {
		return aws.Credentials{}, fmt.Errorf("credentials from %s expired at %s", creds.Source,
			creds.Expires.UTC().Format(time.RFC3339))
	}
	c.cur.Store(schedule(creds, now))
	return creds, nil
}

// start begins a background refresh unless one runs, and returns its done
// channel.
func (c *credentialCache) start() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refreshing != nil {
		return c.refreshing
	}
	done := make(chan struct{})
	c.refreshing = done
	go c.refresh(done)
	return done
}

// wait starts a refresh if none runs and waits for it (or ctx), then
// returns the credentials if they are usable.
func (c *credentialCache) wait(ctx context.Context) (aws.Credentials, error) {
	if creds, ok := c.usable(); ok {
		return creds, nil
	}
	select {
	case <-c.start():
	case <-ctx.Done():
		return aws.Credentials{}, fmt.Errorf("wait for AWS credentials: %w", ctx.Err())
	}
	if creds, ok := c.usable(); ok {
		return creds, nil
	}
	c.mu.Lock()
	err := c.lastErr
	c.mu.Unlock()
	if err == nil {
		err = errors.New("the refreshed AWS credentials expire too soon to sign with")
	}
	return aws.Credentials{}, err
}

// usable returns the cached credentials if they may be signed with now.
func (c *credentialCache) usable() (aws.Credentials, bool) {
	cur := c.cur.Load()
	if cur != nil && (!cur.creds.CanExpire || c.now().Before(cur.mustAt)) {
		return cur.creds, true
	}
	return aws.Credentials{}, false
}

// refresh fetches new credentials from src and publishes them. A failure
// keeps the current credentials and pushes the next attempt back by a
// quarter of their remaining usable time, at most maxRetryAfterFailure.
func (c *credentialCache) refresh(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout)
	defer cancel()
	c.src.Invalidate()
	creds, err := c.src.Retrieve(ctx)
	now := c.now()

	c.mu.Lock()
	if err != nil {
		err = c.redact(fmt.Errorf("refresh AWS credentials: %w", err))
	}
	c.lastErr = err
	if err == nil {
		c.cur.Store(schedule(creds, now))
	} else if cur := c.cur.Load(); cur != nil && cur.creds.CanExpire {
		next := *cur
		next.refreshAt = now.Add(min(maxRetryAfterFailure, max(cur.mustAt.Sub(now)/4, 0)))
		c.cur.Store(&next)
	}
	c.refreshing = nil
	c.mu.Unlock()
	close(done)
	if c.refreshes != nil {
		result := "success"
		if err != nil {
			result = "failure"
		}
		c.refreshes.WithLabelValues(result).Inc()
	}

	if err != nil {
		c.logger.Warn("sigv4: signing with the current AWS credentials until a refresh succeeds", "err", err)
		return
	}
	c.logger.Debug("sigv4 credentials refreshed", "source", creds.Source,
		"access_key_id", keyIDPrefix(creds.AccessKeyID), "expires", creds.Expires)
}

// keyIDPrefix shows enough of an access key id to tell keys apart in a log
// (the first 8 of its 20 characters: the type prefix and 4 more) and never
// the whole id.
func keyIDPrefix(id string) string {
	const n = 8
	if len(id) <= n {
		return id
	}
	return id[:n] + "…"
}
