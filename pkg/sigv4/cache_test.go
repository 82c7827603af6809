package sigv4

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// gatedProvider hands out credentials expiring life after now(); each
// Retrieve after the first waits for a value on gate.
type gatedProvider struct {
	now   func() time.Time
	life  time.Duration
	gate  chan error
	calls atomic.Int32
}

func (p *gatedProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	if p.calls.Add(1) > 1 {
		select {
		case err := <-p.gate:
			if err != nil {
				return aws.Credentials{}, err
			}
		case <-ctx.Done():
			return aws.Credentials{}, ctx.Err()
		}
	}
	n := p.calls.Load()
	return aws.Credentials{AccessKeyID: "AKID" + string(rune('A'+n)), SecretAccessKey: "s", CanExpire: true,
		Expires: p.now().Add(p.life), Source: "gated"}, nil
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestCredentialCache_RefreshDoesNotBlock checks the refresh windows: fresh
// credentials are served without a call; in the refresh window a
// background refresh starts and callers keep the current credentials while
// it is stuck; a failed refresh keeps them; only in the last quarter of
// their life does Retrieve wait, and it gets the refreshed ones.
func TestCredentialCache_RefreshDoesNotBlock(t *testing.T) {
	clock := &fakeClock{t: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := &gatedProvider{now: clock.now, life: time.Hour, gate: make(chan error)}
	c := newCredentialCache(aws.NewCredentialsCache(p), slog.New(slog.NewTextHandler(io.Discard, nil)), func(err error) error { return err })
	c.now = clock.now
	c.refreshes = NewMetrics().refreshes
	ctx := context.Background()
	first, err := c.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	get := func() aws.Credentials {
		t.Helper()
		creds, err := c.Retrieve(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return creds
	}
	clock.add(54 * time.Minute) // 6 minutes left: fresh
	if got := get(); got.AccessKeyID != first.AccessKeyID || p.calls.Load() != 1 {
		t.Fatalf("fresh credentials: got %s after %d calls", got.AccessKeyID, p.calls.Load())
	}
	clock.add(2 * time.Minute) // 4 minutes left: refresh in the background
	for range 3 {
		if got := get(); got.AccessKeyID != first.AccessKeyID {
			t.Fatalf("in the refresh window: got %s, want the current ones", got.AccessKeyID)
		}
	}
	p.gate <- errors.New("sts unavailable") // the refresh fails
	waitFor(t, "the refresh to finish", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.refreshing == nil })
	if got := get(); got.AccessKeyID != first.AccessKeyID {
		t.Fatalf("after a failed refresh: got %s", got.AccessKeyID)
	}
	clock.add(3*time.Minute + 55*time.Second) // 5 s left: must wait
	got := make(chan aws.Credentials)
	go func() {
		creds, _ := c.Retrieve(ctx)
		got <- creds
	}()
	p.gate <- nil
	if creds := <-got; creds.AccessKeyID == first.AccessKeyID || !creds.Expires.After(clock.now().Add(time.Minute)) {
		t.Fatalf("after expiry: got %s expiring %s", creds.AccessKeyID, creds.Expires)
	}
	waitFor(t, "one successful refresh", func() bool { return testutil.ToFloat64(c.refreshes.WithLabelValues("success")) == 1 })
	if f := testutil.ToFloat64(c.refreshes.WithLabelValues("failure")); f != 1 {
		t.Errorf("refreshes{result=failure} = %v, want 1", f)
	}
}

// waitDeadline bounds every waitFor in this package. The rule, the same in
// every package: long enough that a loaded 2-core CI machine never hits it
// while a test is merely slow, short enough that a hang fails inside the
// package's go test -timeout with the name of what it waited for.
const waitDeadline = 30 * time.Second

// waitFor polls cond every 10ms until it holds, and fails the test if it
// does not within waitDeadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitDeadline, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
