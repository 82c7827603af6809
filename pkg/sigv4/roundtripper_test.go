package sigv4

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// recorded is a request as a next transport received it, with its body.
type recorded struct {
	req  *http.Request
	body []byte
}

// serverRequest returns the request as a server would see it.
func (rec recorded) serverRequest() *http.Request {
	r := rec.req.Clone(context.Background())
	r.RequestURI = urlPath(r.URL)
	if r.URL.RawQuery != "" {
		r.RequestURI += "?" + r.URL.RawQuery
	}
	if r.Host == "" {
		r.Host = r.URL.Host
	}
	r.Body = io.NopCloser(bytes.NewReader(rec.body))
	return r
}

// recordingTransport keeps every request it gets and answers 200. It is
// safe for concurrent use.
type recordingTransport struct {
	mu   sync.Mutex
	reqs []recorded
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	rt.mu.Lock()
	rt.reqs = append(rt.reqs, recorded{r, body})
	rt.mu.Unlock()
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

func (rt *recordingTransport) last() recorded {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.reqs[len(rt.reqs)-1]
}

func testLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func staticRoundTripper(t testing.TB, next http.RoundTripper, logs io.Writer) http.RoundTripper {
	t.Helper()
	rt, err := NewRoundTripper(context.Background(),
		Config{Region: testRegion, AccessKey: testAccessKey, SecretKey: testSecretKey}, next,
		Options{Logger: testLogger(logs), Now: func() time.Time { return testBase }})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func testVerifier() *Verifier {
	return &Verifier{Region: testRegion, Service: "aps", Now: func() time.Time { return testBase },
		Credentials: []Credential{{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey}}}
}

// TestRoundTrip_DoesNotModifyRequest checks the caller's request is left as
// it was and its body can be sent again.
func TestRoundTrip_DoesNotModifyRequest(t *testing.T) {
	isolateAWSEnv(t)
	next := &recordingTransport{}
	rt := staticRoundTripper(t, next, io.Discard)
	body := []byte("some remote write bytes")
	req := remoteWriteRequest(t, "https://aps-workspaces.us-east-1.amazonaws.com", body)
	req.URL.RawQuery = "b=2&a=1"
	header := req.Header.Clone()
	url := req.URL.String()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !equalHeader(req.Header, header) {
		t.Errorf("caller's header changed: %v, was %v", req.Header, header)
	}
	if req.URL.String() != url {
		t.Errorf("caller's URL changed: %s, was %s", req.URL, url)
	}
	if got := next.last(); !bytes.Equal(got.body, body) || got.req.Header.Get("Authorization") == "" {
		t.Errorf("next got body %q, Authorization %q", got.body, got.req.Header.Get("Authorization"))
	}
	if err := testVerifier().Verify(next.last().serverRequest(), body); err != nil {
		t.Fatal(err)
	}
	// Sent twice (a retry), both are signed and verify.
	resp, err = rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := testVerifier().Verify(next.last().serverRequest(), body); err != nil {
		t.Fatal(err)
	}
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, "\x00") != strings.Join(b[k], "\x00") {
			return false
		}
	}
	return true
}

type closeTracker struct {
	io.Reader
	closed bool
}

func (c *closeTracker) Close() error { c.closed = true; return nil }

// TestRoundTrip_BodyWithoutGetBody reads a one-shot body, of known or
// unknown length, once, sends it whole and closes the caller's body.
func TestRoundTrip_BodyWithoutGetBody(t *testing.T) {
	isolateAWSEnv(t)
	body := bytes.Repeat([]byte{1, 2, 3}, 10000)
	for _, contentLength := range []int64{-1, int64(len(body))} {
		t.Run(strconv.FormatInt(contentLength, 10), func(t *testing.T) {
			next := &recordingTransport{}
			rt := staticRoundTripper(t, next, io.Discard)
			req := remoteWriteRequest(t, "https://aps-workspaces.us-east-1.amazonaws.com", nil)
			tracker := &closeTracker{Reader: bytes.NewReader(body)}
			req.Body, req.GetBody, req.ContentLength = tracker, nil, contentLength
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if !tracker.closed {
				t.Error("caller's body not closed")
			}
			got := next.last()
			if !bytes.Equal(got.body, body) || got.req.ContentLength != int64(len(body)) {
				t.Errorf("next got %d bytes, ContentLength %d, want %d", len(got.body), got.req.ContentLength, len(body))
			}
			if got.req.Header.Get("X-Amz-Content-Sha256") != sha256Hex(body) {
				t.Error("X-Amz-Content-Sha256 is not the body's hash")
			}
			if err := testVerifier().Verify(got.serverRequest(), body); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRoundTrip_GetBodyError returns GetBody's error and closes the body.
func TestRoundTrip_GetBodyError(t *testing.T) {
	isolateAWSEnv(t)
	next := &recordingTransport{}
	rt := staticRoundTripper(t, next, io.Discard)
	req := remoteWriteRequest(t, "https://aps-workspaces.us-east-1.amazonaws.com", []byte("x"))
	tracker := &closeTracker{Reader: strings.NewReader("x")}
	req.Body = tracker
	req.GetBody = func() (io.ReadCloser, error) { return nil, errors.New("body gone") }
	if _, err := rt.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "body gone") {
		t.Fatalf("error %v", err)
	}
	if !tracker.closed || len(next.reqs) != 0 {
		t.Errorf("body closed %v, %d requests sent", tracker.closed, len(next.reqs))
	}
}

// TestRoundTrip_PreparedForAWS covers what the round tripper does so that
// AWS computes the signature it sent: the path is signed normalised but sent
// as given, folded header values are sent on one line, header names of odd
// case are merged, and a caller's stale security token is dropped.
func TestRoundTrip_PreparedForAWS(t *testing.T) {
	isolateAWSEnv(t)
	next := &recordingTransport{}
	rt := staticRoundTripper(t, next, io.Discard)
	req, err := http.NewRequest(http.MethodGet, "https://aps-workspaces.us-east-1.amazonaws.com/a/./b//c/../d/?q=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Folded", "one\r\n  two\n\tthree")
	req.Header["x-odd"] = []string{"2"}
	req.Header["X-Odd"] = []string{"1"}
	req.Header.Set("X-Amz-Security-Token", "stale")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := next.last()
	if p := got.req.URL.EscapedPath(); p != "/a/./b//c/../d/" {
		t.Errorf("path sent %q, want the caller's", p)
	}
	if v := got.req.Header.Get("X-Folded"); v != "one two three" {
		t.Errorf("folded value sent as %q", v)
	}
	if v := got.req.Header.Values("X-Odd"); strings.Join(v, ",") != "1,2" || got.req.Header["x-odd"] != nil {
		t.Errorf("X-Odd sent as %q (x-odd %q)", v, got.req.Header["x-odd"])
	}
	if got.req.Header.Get("X-Amz-Security-Token") != "" {
		t.Error("stale security token sent")
	}
	authz := got.req.Header.Get("Authorization")
	if !strings.Contains(authz, "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-folded;x-odd,") {
		t.Errorf("Authorization %q", authz)
	}
	if err := testVerifier().Verify(got.serverRequest(), nil); err != nil {
		t.Fatal(err)
	}
}

// TestRoundTrip_Concurrent signs from many goroutines at once (run with -race).
func TestRoundTrip_Concurrent(t *testing.T) {
	isolateAWSEnv(t)
	next := &recordingTransport{}
	rt := staticRoundTripper(t, next, io.Discard)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				body := bytes.Repeat([]byte{byte(g), byte(i)}, 100+i)
				resp, err := rt.RoundTrip(remoteWriteRequest(t, "https://aps-workspaces.us-east-1.amazonaws.com", body))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	next.mu.Lock()
	reqs := next.reqs
	next.mu.Unlock()
	if len(reqs) != 160 {
		t.Fatalf("%d requests sent, want 160", len(reqs))
	}
	v := testVerifier()
	for _, rec := range reqs {
		if err := v.Verify(rec.serverRequest(), rec.body); err != nil {
			t.Fatal(err)
		}
	}
}

type failingProvider struct{}

func (failingProvider) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{}, errors.New("credentials expired and refresh failed")
}

// TestRoundTrip_CredentialsError returns the provider's error and closes the
// caller's body, sending nothing.
func TestRoundTrip_CredentialsError(t *testing.T) {
	next := &recordingTransport{}
	rt := &roundTripper{next: next, creds: failingProvider{}, signer: v4.NewSigner(), now: time.Now,
		params: signParams{service: "aps", region: testRegion, setContentSHA256: true, normalizePath: true}}
	req := remoteWriteRequest(t, "https://aps-workspaces.us-east-1.amazonaws.com", nil)
	tracker := &closeTracker{Reader: strings.NewReader("x")}
	req.Body, req.GetBody = tracker, nil
	_, err := rt.RoundTrip(req)
	if err == nil || !strings.Contains(err.Error(), "refresh failed") {
		t.Fatalf("error %v", err)
	}
	if !tracker.closed {
		t.Error("caller's body not closed")
	}
	if len(next.reqs) != 0 {
		t.Error("a request was sent")
	}
}

func TestNewRoundTripper_BadArguments(t *testing.T) {
	isolateAWSEnv(t)
	if _, err := NewRoundTripper(context.Background(), Config{Region: testRegion, AccessKey: testAccessKey, SecretKey: testSecretKey},
		nil, Options{}); err == nil {
		t.Error("nil next accepted")
	}
	_, err := NewRoundTripper(context.Background(), Config{Region: testRegion, AccessKey: testAccessKey}, &recordingTransport{}, Options{})
	if err == nil || !strings.Contains(err.Error(), "secret_key") {
		t.Errorf("access_key without secret_key: %v", err)
	}
}

type nopTransport struct{}

func (nopTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
}

// BenchmarkRoundTrip signs a remote-write POST (body built with
// bytes.NewReader, so with GetBody) against a no-op transport.
func BenchmarkRoundTrip(b *testing.B) {
	isolateAWSEnv(b)
	rt, err := NewRoundTripper(context.Background(),
		Config{Region: testRegion, AccessKey: testAccessKey, SecretKey: testSecretKey}, nopTransport{}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{1 << 10, 50 << 10, 1 << 20} {
		b.Run(sizeName(size), func(b *testing.B) {
			body := bytes.Repeat([]byte("0123456789abcdef"), size/16)
			req := remoteWriteRequest(b, "https://aps-workspaces.us-east-1.amazonaws.com", body)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				r := req.Clone(context.Background())
				r.Body, _ = req.GetBody()
				resp, err := rt.RoundTrip(r)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
	}
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20:
		return strconv.Itoa(n>>20) + "MiB"
	case n >= 1<<10:
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}
