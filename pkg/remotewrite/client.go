package remotewrite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/prometheus/config"
)

const (
	// maxErrBody is how much of a failed response's body is kept for the
	// log: enough for a receiver's one-line reason and the series it
	// names.
	maxErrBody = 1024
	// maxDrain is how much of a successful response's body is read so the
	// connection can be reused; the rest is discarded by closing it.
	maxDrain = 64 << 10
	// maxRetryAfter bounds what parseRetryAfter returns, so a garbage
	// header cannot overflow a duration. The wait a shard actually takes
	// is further capped by max_backoff (Queue.retryWait).
	maxRetryAfter = 10 * time.Minute
	// maxRedirects is how many same-host 307/308 redirects one attempt
	// follows, as net/http's default policy.
	maxRedirects = 10
)

// client posts encoded remote-write requests to one endpoint. It is safe for
// concurrent use.
type client struct {
	url        string // as configured, used for requests only
	redacted   string // for errors and logs
	hc         *http.Client
	headers    map[string]string
	userAgent  string
	timeout    time.Duration
	retryOn429 bool
	// signed is set when requests are signed with SigV4: then 401, 403
	// and 404 mean credentials, a role or a workspace not ready yet, and
	// are retried (see store).
	signed bool
	follow bool // follow_redirects; even then only checkRedirect's
	now    func() time.Time
}

// newClient builds the client for cfg. rt sends the requests, signing
// included; nil means an unsigned one built from cfg.HTTPClientConfig.
// signed says rt signs them (see store).
func newClient(ctx context.Context, cfg *config.RemoteWriteConfig, rt http.RoundTripper, userAgent string, signed bool) (*client, error) {
	redacted := cfg.URL.Redacted()
	if rt == nil {
		var err error
		rt, err = config_util.NewRoundTripperFromConfigWithContext(ctx, cfg.HTTPClientConfig, "remote_storage_write_client")
		if err != nil {
			return nil, fmt.Errorf("build http transport for %s: %w", redacted, err)
		}
	}
	follow := cfg.HTTPClientConfig.FollowRedirects
	hc := &http.Client{Transport: rt, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if !follow {
			return http.ErrUseLastResponse // store turns the 3xx into a *redirectError
		}
		return checkRedirect(req, via)
	}}
	return &client{
		url:        cfg.URL.String(),
		redacted:   redacted,
		hc:         hc,
		headers:    cfg.Headers,
		userAgent:  userAgent,
		timeout:    time.Duration(cfg.RemoteTimeout),
		retryOn429: cfg.QueueConfig.RetryOnRateLimit,
		signed:     signed,
		follow:     follow,
		now:        time.Now,
	}, nil
}

// statusError is a response the receiver rejected without asking for a
// retry.
type statusError struct {
	code   int
	status string
	body   string // first maxErrBody bytes
}

func (e *statusError) Error() string {
	return fmt.Sprintf("server returned HTTP status %s: %s", e.status, e.body)
}

// redirectError is a redirect remote write refuses to follow: to another
// host or scheme (the request would carry the configured headers, and a
// SigV4 signature and session token made for a host the config did not
// name), one that turns the POST into a GET (301, 302, 303), any redirect
// when follow_redirects is false, or too many of them. location is
// redacted.
type redirectError struct {
	code     int
	location string
	why      string
}

func (e *redirectError) Error() string {
	return fmt.Sprintf("receiver redirected with HTTP status %d to %s, not followed: %s; configure that URL if it is right",
		e.code, e.location, e.why)
}

// checkRedirect is the http.Client's CheckRedirect when follow_redirects is
// true. It runs before the redirected request is sent, so before the SigV4
// round tripper can sign it: only a 307 or 308 to the same scheme and host
// is followed, which resends the POST with its body.
func checkRedirect(req *http.Request, via []*http.Request) error {
	first := via[0]
	code := 0
	if req.Response != nil {
		code = req.Response.StatusCode
	}
	e := &redirectError{code: code, location: req.URL.Redacted()}
	switch {
	case req.Method != first.Method:
		e.why = "it would turn the POST into a " + req.Method + " without the body"
	case req.URL.Scheme != first.URL.Scheme || req.URL.Host != first.URL.Host:
		e.why = "remote write does not follow a redirect to another host or scheme"
	case len(via) >= maxRedirects:
		e.why = fmt.Sprintf("stopped after %d redirects", len(via))
	default:
		return nil
	}
	return e
}

// recoverableError is a failure worth retrying: a connection error, a
// timeout, a 5xx, a 429 when retry_on_http_429 is set, or a misconfig.
// retryAfter is the receiver's Retry-After, zero if none.
type recoverableError struct {
	err        error
	retryAfter time.Duration
	// misconfig is set for answers that mean the configuration or the
	// receiver's setup is wrong, not the data: a redirect not followed,
	// or 401, 403 and 404 from a SigV4-signed endpoint (a role not yet
	// allowed aps:RemoteWrite, a workspace not yet created). The data
	// stays in the WAL (within wal.max_size and max_age) and is retried
	// with backoff, logged as an error.
	misconfig bool
}

func (e *recoverableError) Error() string { return e.err.Error() }
func (e *recoverableError) Unwrap() error { return e.err }

// Remote-write 2.0 wire constants (Prometheus' remote-write 2.0 spec).
const (
	contentTypeV2      = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
	versionV2          = "2.0.0"
	samplesWritten     = "X-Prometheus-Remote-Write-Samples-Written"
	histogramsWritten  = "X-Prometheus-Remote-Write-Histograms-Written"
	exemplarsWritten   = "X-Prometheus-Remote-Write-Exemplars-Written"
	maxWrittenHeaderSz = 20 // digits of a 64-bit count
)

// written is what a 2.0 receiver says it wrote, from its
// X-Prometheus-Remote-Write-*-Written headers. confirmed is false when the
// answer had none of them (a missing header alone means zero).
type written struct {
	counts
	confirmed bool
}

// store makes one attempt to post body within remote_timeout: a
// snappy-compressed prompb.WriteRequest, or an io.prometheus.write.v2.Request
// when v2 is set. It returns nil on a 2xx, a *recoverableError when the
// attempt may be retried (a network error, 5xx, 429 with retry_on_http_429,
// a redirect it does not follow, and on a signed endpoint 401, 403, 404),
// and another error, wrapping a *statusError, when the batch must be
// dropped.
// attempt counts earlier tries of the same body. On a 2xx, w holds the
// receiver's written counts (2.0 only; w.confirmed is false otherwise).
func (c *client) store(ctx context.Context, body []byte, attempt int, v2 bool) (w written, _ error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return w, fmt.Errorf("build request to %s: %w", c.redacted, err)
	}
	h := req.Header
	for k, v := range c.headers {
		h.Set(k, v)
	}
	h.Set("Content-Encoding", "snappy")
	if v2 {
		h.Set("Content-Type", contentTypeV2)
		h.Set("X-Prometheus-Remote-Write-Version", versionV2)
	} else {
		h.Set("Content-Type", "application/x-protobuf")
		h.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	}
	h.Set("User-Agent", c.userAgent)
	if attempt > 0 {
		h.Set("Retry-Attempt", strconv.Itoa(attempt))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// The transport's error may carry the full URL; name the
		// redacted one instead.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		_, redirect := errors.AsType[*redirectError](err)
		return w, &recoverableError{err: fmt.Errorf("post to %s: %w", c.redacted, err), misconfig: redirect}
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		// A receiver's garbage body does not matter; read a little so
		// the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		if v2 {
			w = parseWritten(resp.Header)
		}
		return w, nil
	}
	if resp.StatusCode/100 == 3 {
		// follow_redirects is false, or a 3xx net/http does not
		// follow (no Location, 300, 304): never dropped for it, the
		// data is not at fault.
		loc := "nowhere (no Location)"
		if u, err := resp.Location(); err == nil {
			loc = u.Redacted()
		}
		why := "not a redirect remote write can follow"
		if !c.follow {
			why = "follow_redirects is false"
		}
		rerr := &redirectError{code: resp.StatusCode, location: loc, why: why}
		return w, &recoverableError{err: fmt.Errorf("post to %s: %w", c.redacted, rerr), misconfig: true}
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrBody))
	serr := &statusError{code: resp.StatusCode, status: resp.Status, body: strings.ToValidUTF8(strings.TrimSpace(string(msg)), "?")}
	err = fmt.Errorf("post to %s: %w", c.redacted, serr)
	switch code := resp.StatusCode; {
	case code/100 == 5, code == http.StatusTooManyRequests && c.retryOn429:
		return w, &recoverableError{err: err, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), c.now())}
	case c.signed && (code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusNotFound):
		return w, &recoverableError{err: err, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), c.now()), misconfig: true}
	}
	return w, err
}

// parseWritten reads a 2.0 receiver's written counts. A header that is not
// a non-negative integer counts as zero written: the receiver confirmed
// nothing for that kind.
func parseWritten(h http.Header) written {
	var w written
	for _, f := range [...]struct {
		name string
		dst  *int
	}{
		{samplesWritten, &w.samples},
		{histogramsWritten, &w.histograms},
		{exemplarsWritten, &w.exemplars},
	} {
		v := strings.TrimSpace(h.Get(f.name))
		if v == "" {
			continue
		}
		w.confirmed = true
		if len(v) <= maxWrittenHeaderSz && isDigits(v) {
			if n, err := strconv.Atoi(v); err == nil {
				*f.dst = n
			}
		}
	}
	return w
}

// parseRetryAfter decodes an HTTP Retry-After value, either delay-seconds or
// an HTTP-date (RFC 9110, section 10.2.3), relative to now. It returns 0 when
// v is empty, malformed or in the past, and at most maxRetryAfter.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if isDigits(v) {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter // only a range error is possible here
		}
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	d := t.Sub(now)
	if d <= 0 {
		return 0
	}
	return min(d, maxRetryAfter)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
