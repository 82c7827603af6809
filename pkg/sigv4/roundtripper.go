// Package sigv4 signs outgoing HTTP requests with AWS Signature Version 4
// (NewRoundTripper: an http.RoundTripper over the AWS SDK's signer, with
// credentials from the SDK's chain) and checks signed requests the way AWS
// does (Verifier, for the AMP stand-in and tests).
//
// Both sides are held to AWS's own test suite (aws-c-auth's
// aws-signing-test-suite/v4, in testdata/sigv4-suite with its LICENSE and
// NOTICE). The SDK signer alone departs from it in two ways, which signRequest
// corrects before signing: it signs the path as sent where AWS normalises it
// first for every service but S3 (the "*-normalized" cases: "/./", "//",
// "/a/..") and it signs a folded multi-line header value with its line breaks
// (the "get-header-value-multiline" case). Two further differences change
// nothing a receiver checks and are left as they are: the SDK re-sends the
// query in canonical order and encoding (the same parameters), and a request is
// always signed with X-Amz-Content-Sha256, as AMP expects, so the suite's cases
// that do not sign the body are run through signRequest, the round tripper's
// signing step, rather than RoundTrip.
package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/rwagent/rwagent/pkg/lograte"
)

// Options are the collaborators of a round tripper. The zero value logs
// nothing and uses the system clock.
type Options struct {
	Logger *slog.Logger     // zero: discard
	Now    func() time.Time // signing clock before skew correction; zero: time.Now
	// Metrics count what the round tripper learns and refreshes; the
	// caller registers them and may share them among round trippers
	// (NewMetrics). Nil: not exported.
	Metrics *Metrics
}

// NewRoundTripper loads credentials for cfg and returns an http.RoundTripper
// that signs every request with SigV4 and passes it to next.
//
// Credentials come from config.LoadDefaultConfig: the static keys of cfg when
// set, else the environment, the shared files (cfg.Profile), web identity,
// the container endpoint or EC2 instance metadata; sts:AssumeRole of
// cfg.RoleARN on top when set; all cached and refreshed in the background
// halfway through their life, at most maxRefreshAhead before they expire
// (cache.go). The region is cfg.Region, else the SDK's. Credentials are retrieved
// once here, bounded by ctx, so that missing credentials fail now with the
// chain's error (which never holds a secret). NewRoundTripper starts no
// goroutine.
//
// The round tripper is safe for concurrent use. RoundTrip does not modify the
// caller's request: it clones it, sets X-Amz-Content-Sha256 to the hex SHA-256
// of the body, signs the clone for cfg.Service (default "aps") at opts.Now()
// and hands it to next, changing nothing after signing. A body with GetBody
// (as http.NewRequest sets for a *bytes.Reader) is hashed from a GetBody copy
// without buffering; any other body is read into memory once.
//
// Where the AWS SDK signer departs from AWS's signing test suite, the round
// tripper prepares the clone so that the signature is the one the suite
// expects: the canonical path is normalised ("/a/./b//" → "/a/b/") for every
// service but S3 while the path sent stays the caller's, folded (multi-line)
// header values become one line, and header names of non-canonical case are
// merged into their canonical name in the order they are sent.
func NewRoundTripper(ctx context.Context, cfg Config, next http.RoundTripper, opts Options) (http.RoundTripper, error) {
	if next == nil {
		return nil, errors.New("sigv4: next round tripper is nil")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	creds, region, err := loadCredentials(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	metrics := opts.Metrics
	if metrics == nil {
		metrics = NewMetrics()
	}
	creds.refreshes = metrics.refreshes
	service := cfg.service()
	return &roundTripper{
		next:    next,
		creds:   creds,
		signer:  v4.NewSigner(),
		now:     now,
		logger:  logger,
		skew:    newClockSkew(metrics.clockSkew, logger),
		secrets: []string{cfg.SecretKey},
		// A refused signature repeats on every request: once a minute
		// says it, with the count of the ones in between.
		denied: &lograte.Limiter{Interval: time.Minute, Level: slog.LevelWarn},
		params: signParams{
			service:          service,
			region:           region,
			setContentSHA256: true,
			normalizePath:    service != serviceS3,
		},
	}, nil
}

// roundTripper signs requests. Its fields are set once by NewRoundTripper.
type roundTripper struct {
	next    http.RoundTripper
	creds   aws.CredentialsProvider // a cache, safe for concurrent use
	signer  *v4.Signer
	now     func() time.Time
	logger  *slog.Logger
	skew    *clockSkew
	secrets []string // configured secrets, hidden from logged receiver messages
	params  signParams
	denied  *lograte.Limiter // nil: 403s are not logged
}

func (rt *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	out := req.Clone(req.Context())
	payloadHash, err := hashBody(req, out)
	if err != nil {
		return nil, err
	}
	resp, creds, offset, err := rt.signAndSend(out, payloadHash)
	if err != nil || resp.StatusCode != http.StatusForbidden {
		return resp, err
	}
	msg := peekMessage(resp)
	if rt.skew.observe(resp, msg, rt.now(), offset) && out.GetBody != nil {
		// Signed with a clock the receiver disagrees with: sign the
		// same request again at the receiver's time, once.
		retry := req.Clone(req.Context())
		body, berr := out.GetBody()
		if berr == nil {
			drainClose(resp)
			retry.Body, retry.GetBody, retry.ContentLength = body, out.GetBody, out.ContentLength
			resp, creds, _, err = rt.signAndSend(retry, payloadHash)
			if err != nil || resp.StatusCode != http.StatusForbidden {
				return resp, err
			}
			msg = peekMessage(resp)
		}
	}
	rt.reportDenied(req, resp, msg, creds)
	return resp, nil
}

// signAndSend signs out (the round tripper's own clone) with current
// credentials at the skew-corrected time and hands it to next. It returns
// the credentials used, for reporting a refusal, and the clock offset the
// request was signed with.
func (rt *roundTripper) signAndSend(out *http.Request, payloadHash string) (*http.Response, aws.Credentials, time.Duration, error) {
	ctx := out.Context()
	creds, err := rt.creds.Retrieve(ctx)
	if err != nil {
		closeBody(out.Body)
		return nil, aws.Credentials{}, 0, fmt.Errorf("sigv4: retrieve AWS credentials: %w", err)
	}
	offset := rt.skew.current()
	if err := signRequest(ctx, rt.signer, out, payloadHash, creds, rt.now().Add(offset), rt.params); err != nil {
		closeBody(out.Body)
		return nil, creds, offset, err
	}
	resp, err := rt.next.RoundTrip(out)
	return resp, creds, offset, err
}

func closeBody(b io.ReadCloser) {
	if b != nil {
		_ = b.Close()
	}
}

// hashBody returns the hex SHA-256 of req's body and leaves out (a clone of
// req) with a body that sends the same bytes. With GetBody, the body is
// hashed from a GetBody copy (a *bytes.Reader copy is hashed in place, without
// copying) and out keeps req.Body. Otherwise req.Body is read once, into a
// buffer sized by ContentLength, and closed, and out gets a replayable
// in-memory body. On error req.Body is closed.
func hashBody(req, out *http.Request) (string, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return emptyPayloadHash, nil
	}
	if req.GetBody == nil {
		body, err := readBody(req.Body, req.ContentLength)
		if err != nil {
			return "", err
		}
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		out.ContentLength = int64(len(body))
		sum := sha256.Sum256(body)
		return hex.EncodeToString(sum[:]), nil
	}
	rc, err := req.GetBody()
	if err != nil {
		closeBody(req.Body)
		return "", fmt.Errorf("sigv4: get request body: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, rc)
	closeBody(rc)
	if err != nil {
		closeBody(req.Body)
		return "", fmt.Errorf("sigv4: read request body: %w", err)
	}
	if out.ContentLength <= 0 && n > 0 {
		out.ContentLength = n
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])), nil
}

// readBody reads and closes b, sizing the buffer by contentLength when known
// so that a body of the announced length is read without growing it.
func readBody(b io.ReadCloser, contentLength int64) ([]byte, error) {
	defer closeBody(b)
	size := 512
	if contentLength > 0 {
		size = int(contentLength) + 1 // +1 leaves room to read io.EOF without growing
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := b.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, fmt.Errorf("sigv4: read request body: %w", err)
		}
	}
}

// signParams say how signRequest prepares a request for the SDK signer.
type signParams struct {
	service, region  string
	setContentSHA256 bool // set X-Amz-Content-Sha256 to the payload hash before signing
	normalizePath    bool // sign the normalised path (every service but S3)
}

// signRequest signs req in place (req must be the caller's own clone) with the
// AWS SDK signer, after preparing it so that the signature is the one AWS's
// test suite expects (see NewRoundTripper). optFns go to SignHTTP after ours;
// tests use them to log the canonical request.
func signRequest(ctx context.Context, signer *v4.Signer, req *http.Request, payloadHash string,
	creds aws.Credentials, t time.Time, p signParams, optFns ...func(*v4.SignerOptions),
) error {
	prepareHeader(req.Header)
	// A token header left by the caller must not be signed with credentials
	// that have none; the signer sets the current one.
	delete(req.Header, "X-Amz-Security-Token")
	if p.setContentSHA256 {
		req.Header["X-Amz-Content-Sha256"] = []string{payloadHash}
	}

	// The SDK signs the path as sent. AWS normalises it first, for every
	// service but S3 (AWS test suite, "*-normalized" cases): the SDK takes
	// the path from URL.Opaque when set, so the normalised one is put there
	// while signing and the caller's path is restored to be sent.
	opaque := req.URL.Opaque
	if p.normalizePath {
		if sent := urlPath(req.URL); normalizePath(sent) != sent {
			req.URL.Opaque = "//" + req.URL.Host + normalizePath(sent)
		}
	}
	opts := append([]func(*v4.SignerOptions){func(o *v4.SignerOptions) {
		o.DisableURIPathEscaping = p.service == serviceS3
	}}, optFns...)
	err := signer.SignHTTP(ctx, creds, req, payloadHash, p.service, p.region, t, opts...)
	req.URL.Opaque = opaque
	if err != nil {
		return fmt.Errorf("sigv4: sign request: %w", err)
	}
	return nil
}

// prepareHeader makes h (a clone's header) sign the way it is received:
// folded values become one line (net/http would refuse to send them, and a
// receiver unfolds them), and names not in canonical case are merged into the
// canonical name, in sorted order as net/http writes them, so the order of
// repeated values is fixed.
func prepareHeader(h http.Header) {
	var odd []string
	for k, vs := range h {
		for i, v := range vs {
			if strings.ContainsAny(v, "\r\n") {
				vs[i] = foldLines(v)
			}
		}
		if textproto.CanonicalMIMEHeaderKey(k) != k {
			odd = append(odd, k)
		}
	}
	slices.Sort(odd)
	for _, k := range odd {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		h[ck] = append(h[ck], h[k]...)
		delete(h, k)
	}
}
