package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go/logging"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if endpoint := os.Getenv(credentialProcessEnv); endpoint != "" {
		os.Exit(credentialProcess(endpoint))
	}
	goleak.VerifyTestMain(m)
}

// credentialProcessEnv, when set in the environment of the test binary,
// makes it a credential_process: it prints what GET of that URL (an
// awsemu.Process on 127.0.0.1) answers and exits. The credential_process
// test writes a shell script that runs the test binary so.
const credentialProcessEnv = "RWAGENT_TEST_CREDENTIAL_PROCESS_URL"

func credentialProcess(endpoint string) int {
	resp, err := http.Get(endpoint)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "credential endpoint answered", resp.Status)
		return 1
	}
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// suiteCase is one case of AWS's SigV4 test suite (see its README.md).
type suiteCase struct {
	name  string
	dir   string
	ctx   suiteContext
	files map[string]string // file name → content
}

type suiteContext struct {
	Credentials struct {
		AccessKeyID     string `json:"access_key_id"`
		SecretAccessKey string `json:"secret_access_key"`
		Token           string `json:"token"`
	} `json:"credentials"`
	Region           string    `json:"region"`
	Service          string    `json:"service"`
	Timestamp        time.Time `json:"timestamp"`
	Normalize        bool      `json:"normalize"`
	SignBody         bool      `json:"sign_body"`
	OmitSessionToken bool      `json:"omit_session_token"`
}

func (c suiteCase) file(t testing.TB, name string) string {
	t.Helper()
	s, ok := c.files[name]
	if !ok {
		t.Fatalf("case %s has no %s", c.name, name)
	}
	return s
}

// suiteDir is AWS's SigV4 test suite, kept in testdata with its LICENSE and
// NOTICE so that a clone of this repository alone runs it.
func suiteDir(t testing.TB) string {
	t.Helper()
	p := filepath.Join("testdata", "sigv4-suite")
	if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
		t.Fatalf("AWS SigV4 test suite not found at %s: %v", p, err)
	}
	return p
}

// loadSuite reads every case directory of the suite.
func loadSuite(t testing.TB) []suiteCase {
	t.Helper()
	root := suiteDir(t)
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var cases []suiteCase
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		c := suiteCase{name: e.Name(), dir: dir, files: map[string]string{}}
		files, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join(dir, f.Name()))
			if err != nil {
				t.Fatal(err)
			}
			c.files[f.Name()] = string(b)
		}
		if err := json.Unmarshal([]byte(c.file(t, "context.json")), &c.ctx); err != nil {
			t.Fatalf("case %s: context.json: %v", c.name, err)
		}
		cases = append(cases, c)
	}
	// The suite's README promises 38 cases; fewer means a broken copy.
	if len(cases) < 38 {
		t.Fatalf("AWS SigV4 test suite in %s has %d cases, want 38", root, len(cases))
	}
	return cases
}

// rawRequest is a request of the suite as written: the target exactly as on
// the request line (it may hold spaces and raw UTF-8), header lines in order
// with folded values kept, and the body.
type rawRequest struct {
	method, target string
	headers        [][2]string
	body           []byte
}

func parseRawRequest(t testing.TB, s string) rawRequest {
	t.Helper()
	head, body, _ := strings.Cut(s, "\n\n")
	lines := strings.Split(head, "\n")
	first := lines[0]
	sp1, sp2 := strings.IndexByte(first, ' '), strings.LastIndexByte(first, ' ')
	if sp1 < 0 || sp2 <= sp1 {
		t.Fatalf("bad request line %q", first)
	}
	r := rawRequest{method: first[:sp1], target: first[sp1+1 : sp2], body: []byte(body)}
	for _, l := range lines[1:] {
		l = strings.TrimSuffix(l, "\r")
		if l == "" {
			continue
		}
		if l[0] == ' ' || l[0] == '\t' { // folded continuation of the previous value
			r.headers[len(r.headers)-1][1] += "\n" + l
			continue
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			t.Fatalf("bad header line %q", l)
		}
		r.headers = append(r.headers, [2]string{name, value})
	}
	return r
}

func (r rawRequest) header(name string) (string, bool) {
	for _, h := range r.headers {
		if strings.EqualFold(h[0], name) {
			return h[1], true
		}
	}
	return "", false
}

// clientRequest builds the request a client would hand to our round tripper:
// the target goes into URL.Opaque so that the SDK signer sees the path exactly
// as written, Host into req.Host, Content-Length into ContentLength.
func (r rawRequest) clientRequest(t testing.TB) *http.Request {
	t.Helper()
	host, _ := r.header("Host")
	path, query, _ := strings.Cut(r.target, "?")
	req := &http.Request{
		Method:     r.method,
		URL:        &url.URL{Scheme: "https", Host: host, Opaque: "//" + host + path, RawQuery: query},
		Host:       host,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{},
	}
	for _, h := range r.headers {
		switch strings.ToLower(h[0]) {
		case "host", "content-length":
		default:
			req.Header.Add(h[0], h[1])
		}
	}
	if len(r.body) > 0 {
		body := r.body
		req.ContentLength = int64(len(body))
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	return req.WithContext(context.Background())
}

// serverRequest builds the request a server would hand to a handler:
// RequestURI is the target as written, headers keep folded values,
// Content-Length stays in the header.
func (r rawRequest) serverRequest(t testing.TB) *http.Request {
	t.Helper()
	host, _ := r.header("Host")
	path, query, _ := strings.Cut(r.target, "?")
	req := &http.Request{
		Method:     r.method,
		URL:        &url.URL{Path: path, RawQuery: query},
		RequestURI: r.target,
		Host:       host,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{},
		Body:       http.NoBody,
	}
	for _, h := range r.headers {
		if !strings.EqualFold(h[0], "host") {
			req.Header.Add(h[0], strings.TrimLeft(h[1], " \t"))
		}
	}
	req.ContentLength = int64(len(r.body))
	return req.WithContext(context.Background())
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// signingLog captures what the SDK signer logs with LogSigning.
type signingLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *signingLog) Logf(_ logging.Classification, format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, v...))
}

// canonical returns the canonical request and string to sign of the last
// signing logged.
func (l *signingLog) canonical(t testing.TB) (creq, sts string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == 0 {
		t.Fatal("the signer logged nothing")
	}
	const (
		creqMark = "---[ CANONICAL STRING  ]-----------------------------\n"
		stsMark  = "\n---[ STRING TO SIGN ]--------------------------------\n"
		endMark  = "\n-----------------------------------------------------"
	)
	s := l.lines[len(l.lines)-1]
	_, rest, ok1 := strings.Cut(s, creqMark)
	creq, rest, ok2 := strings.Cut(rest, stsMark)
	sts, _, ok3 := strings.Cut(rest, endMark)
	if !ok1 || !ok2 || !ok3 {
		t.Fatalf("unexpected signing log %q", s)
	}
	return creq, sts
}

// parsedAuthz parses an Authorization header of the suite.
func parsedAuthz(t testing.TB, h string) authorization {
	t.Helper()
	a, verr := parseAuthorization(h)
	if verr != nil {
		t.Fatalf("parse %q: %v", h, verr)
	}
	return a
}

// TestSuite_Verifier runs every case of AWS's test suite through the
// verifier's own canonicaliser (header and presigned-query forms) and through
// Verify.
func TestSuite_Verifier(t *testing.T) {
	for _, c := range loadSuite(t) {
		t.Run(c.name, func(t *testing.T) {
			sreq := parseRawRequest(t, c.file(t, "header-signed-request.txt"))
			r := sreq.serverRequest(t)
			authzHeader, _ := sreq.header("Authorization")
			a := parsedAuthz(t, authzHeader)
			ts := c.ctx.Timestamp
			scope := credentialScope(ts, c.ctx.Region, c.ctx.Service)
			key := signingKey(c.ctx.Credentials.SecretAccessKey, ts, c.ctx.Region, c.ctx.Service)
			payload := sha256Hex(sreq.body)

			path, rawQuery := requestTarget(r)
			creq := canonicalRequest(r, path, rawQuery, a.signedHeaders, payload, c.ctx.Normalize, true)
			if want := c.file(t, "header-canonical-request.txt"); creq != want {
				t.Errorf("canonical request\n got: %q\nwant: %q", creq, want)
			}
			sts := stringToSign(ts, scope, creq)
			if want := c.file(t, "header-string-to-sign.txt"); sts != want {
				t.Errorf("string to sign\n got: %q\nwant: %q", sts, want)
			}
			sig := signature(key, sts)
			if want := strings.TrimSpace(c.file(t, "header-signature.txt")); sig != want {
				t.Errorf("signature %s, want %s", sig, want)
			}
			wantAuthz := signingAlgorithm + " Credential=" + c.ctx.Credentials.AccessKeyID + "/" + scope +
				", SignedHeaders=" + a.signedHeaders + ", Signature=" + sig
			if authzHeader != wantAuthz {
				t.Errorf("Authorization\n got: %s\nwant: %s", authzHeader, wantAuthz)
			}

			// Presigned form: the same canonicaliser over the query of the
			// presigned URL, less X-Amz-Signature (and the token when the
			// case adds it after signing).
			qreq := parseRawRequest(t, c.file(t, "query-signed-request.txt"))
			qr := qreq.serverRequest(t)
			qpath, qraw := requestTarget(qr)
			q, err := url.ParseQuery(qraw)
			if err != nil {
				t.Fatal(err)
			}
			var kept []string
			for part := range strings.SplitSeq(qraw, "&") {
				if !strings.HasPrefix(part, "X-Amz-Signature=") &&
					!(c.ctx.OmitSessionToken && strings.HasPrefix(part, "X-Amz-Security-Token=")) {
					kept = append(kept, part)
				}
			}
			qcreq := canonicalRequest(qr, qpath, strings.Join(kept, "&"), q.Get("X-Amz-SignedHeaders"), payload, c.ctx.Normalize, true)
			if want := c.file(t, "query-canonical-request.txt"); qcreq != want {
				t.Errorf("presigned canonical request\n got: %q\nwant: %q", qcreq, want)
			}
			qsts := stringToSign(ts, scope, qcreq)
			if want := c.file(t, "query-string-to-sign.txt"); qsts != want {
				t.Errorf("presigned string to sign\n got: %q\nwant: %q", qsts, want)
			}
			if got, want := signature(key, qsts), strings.TrimSpace(c.file(t, "query-signature.txt")); got != want || q.Get("X-Amz-Signature") != want {
				t.Errorf("presigned signature %s (URL has %s), want %s", got, q.Get("X-Amz-Signature"), want)
			}

			// Verify accepts the signed request, unless the case signs a path
			// that AWS would normalise (the "*-unnormalized" cases): a
			// service other than S3 rejects those, and so do we.
			v := &Verifier{
				Region: c.ctx.Region, Service: c.ctx.Service,
				Credentials: []Credential{{
					AccessKeyID: c.ctx.Credentials.AccessKeyID, SecretAccessKey: c.ctx.Credentials.SecretAccessKey,
					SessionToken: c.ctx.Credentials.Token,
				}},
				Now: func() time.Time { return ts.Add(time.Minute) },
			}
			err = v.Verify(r, sreq.body)
			wirePath, _ := requestTarget(r)
			if c.ctx.Normalize || normalizePath(wirePath) == wirePath {
				if err != nil {
					t.Errorf("Verify: %v", err)
				}
			} else {
				assertCode(t, err, CodeInvalidSignature)
			}

			// A signature off by one character is a mismatch.
			bad := []byte(sig)
			bad[0] ^= 1
			r.Header.Set("Authorization", strings.Replace(authzHeader, sig, string(bad), 1))
			assertCode(t, v.Verify(r, sreq.body), CodeInvalidSignature)
		})
	}
}

// TestSuite_Signer runs every case of AWS's test suite through the signing
// code of the round tripper (signRequest over the SDK signer) and checks the
// canonical request and string to sign the SDK logs, the signature, the
// headers of the signed request, and that Verify accepts it.
func TestSuite_Signer(t *testing.T) {
	for _, c := range loadSuite(t) {
		t.Run(c.name, func(t *testing.T) {
			raw := parseRawRequest(t, c.file(t, "request.txt"))
			req := raw.clientRequest(t)
			creds := aws.Credentials{
				AccessKeyID: c.ctx.Credentials.AccessKeyID, SecretAccessKey: c.ctx.Credentials.SecretAccessKey,
				SessionToken: c.ctx.Credentials.Token,
			}
			log := &signingLog{}
			err := signRequest(context.Background(), v4.NewSigner(), req, sha256Hex(raw.body), creds, c.ctx.Timestamp,
				signParams{
					service: c.ctx.Service, region: c.ctx.Region,
					setContentSHA256: c.ctx.SignBody, normalizePath: c.ctx.Normalize,
				},
				func(o *v4.SignerOptions) {
					o.LogSigning = true
					o.Logger = log
					o.DisableSessionToken = c.ctx.OmitSessionToken
				})
			if err != nil {
				t.Fatal(err)
			}
			if c.ctx.OmitSessionToken && creds.SessionToken != "" {
				// The suite adds the token after signing, unsigned.
				req.Header.Set("X-Amz-Security-Token", creds.SessionToken)
			}
			creq, sts := log.canonical(t)
			if want := c.file(t, "header-canonical-request.txt"); creq != want {
				t.Errorf("canonical request\n got: %q\nwant: %q", creq, want)
			}
			if want := c.file(t, "header-string-to-sign.txt"); sts != want {
				t.Errorf("string to sign\n got: %q\nwant: %q", sts, want)
			}
			authz := req.Header.Get("Authorization")
			if want := strings.TrimSpace(c.file(t, "header-signature.txt")); !strings.HasSuffix(authz, "Signature="+want) {
				t.Errorf("Authorization %q does not end in Signature=%s", authz, want)
			}
			compareSignedRequest(t, req, parseRawRequest(t, c.file(t, "header-signed-request.txt")))

			// What the signer produced passes our verifier, as sent.
			target := urlPath(req.URL)
			if req.URL.RawQuery != "" {
				target += "?" + req.URL.RawQuery
			}
			wire := rawRequest{method: req.Method, target: target, body: raw.body}
			wire.headers = append(wire.headers, [2]string{"Host", req.Host})
			for k, vs := range req.Header {
				for _, v := range vs {
					wire.headers = append(wire.headers, [2]string{k, v})
				}
			}
			v := &Verifier{Region: c.ctx.Region, Service: c.ctx.Service, Now: func() time.Time { return c.ctx.Timestamp },
				Credentials: []Credential{{creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken}}}
			if err := v.Verify(wire.serverRequest(t), raw.body); err != nil &&
				(c.ctx.Normalize || normalizePath(urlPath(req.URL)) == urlPath(req.URL)) {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

// compareSignedRequest compares the request signRequest left with the
// suite's signed request. Divergences that change nothing the receiver
// checks are allowed and are the documented ones: the SDK re-sends the query
// in canonical order and encoding (same parameters), and folded header values
// are sent as one line (the receiver unfolds them).
func compareSignedRequest(t *testing.T, got *http.Request, want rawRequest) {
	t.Helper()
	if got.Method != want.method {
		t.Errorf("method %s, want %s", got.Method, want.method)
	}
	wantPath, wantQuery, _ := strings.Cut(want.target, "?")
	if p := urlPath(got.URL); p != wantPath {
		t.Errorf("path sent %q, want %q", p, wantPath)
	}
	gq, err1 := url.ParseQuery(got.URL.RawQuery)
	wq, err2 := url.ParseQuery(wantQuery)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(gq) != fmt.Sprint(wq) {
		t.Errorf("query sent %v, want %v", gq, wq)
	}
	var gotLines, wantLines []string
	gotLines = append(gotLines, "host:"+got.Host)
	if got.ContentLength > 0 {
		gotLines = append(gotLines, fmt.Sprintf("content-length:%d", got.ContentLength))
	}
	for k, vs := range got.Header {
		for _, v := range vs {
			gotLines = append(gotLines, strings.ToLower(k)+":"+strings.TrimSpace(v))
		}
	}
	for _, h := range want.headers {
		wantLines = append(wantLines, strings.ToLower(h[0])+":"+strings.TrimSpace(foldLines(h[1])))
	}
	slices.Sort(gotLines)
	slices.Sort(wantLines)
	if !slices.Equal(gotLines, wantLines) {
		t.Errorf("signed headers\n got: %q\nwant: %q", gotLines, wantLines)
	}
	if b := string(want.body); b != "" {
		rc, err := got.GetBody()
		if err != nil {
			t.Fatal(err)
		}
		gb, _ := io.ReadAll(rc)
		if string(gb) != b {
			t.Errorf("body %q, want %q", gb, b)
		}
	}
}

// TestSuite_RoundTrip sends the suite's cases that sign the body (as our
// round tripper always does) through NewRoundTripper end to end.
func TestSuite_RoundTrip(t *testing.T) {
	isolateAWSEnv(t)
	n := 0
	for _, c := range loadSuite(t) {
		if !c.ctx.SignBody || c.ctx.Credentials.Token != "" {
			continue
		}
		n++
		t.Run(c.name, func(t *testing.T) {
			next := &recordingTransport{}
			rt, err := NewRoundTripper(context.Background(), Config{
				Region: c.ctx.Region, Service: c.ctx.Service,
				AccessKey: c.ctx.Credentials.AccessKeyID, SecretKey: c.ctx.Credentials.SecretAccessKey,
			}, next, Options{Now: func() time.Time { return c.ctx.Timestamp }})
			if err != nil {
				t.Fatal(err)
			}
			raw := parseRawRequest(t, c.file(t, "request.txt"))
			resp, err := rt.RoundTrip(raw.clientRequest(t))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := parseRawRequest(t, c.file(t, "header-signed-request.txt"))
			wantAuthz, _ := want.header("Authorization")
			if got := next.last().req.Header.Get("Authorization"); got != wantAuthz {
				t.Errorf("Authorization\n got: %s\nwant: %s", got, wantAuthz)
			}
			compareSignedRequest(t, next.last().req, want)
		})
	}
	if n == 0 {
		t.Fatal("the suite has no case that signs the body")
	}
}
