package sigv4

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Test credentials. The secrets are distinctive so that a test can prove
// they never reach a log line or an error.
const (
	testAccessKey    = "AKIDRWAGENTTEST"
	testSecretKey    = "rwagentTESTsecretKEY/0123456789abcdefghij"
	testSessionToken = "rwagentTESTsessionTOKEN+0123456789/abcdefghij=="
	testRegion       = "us-east-1"
)

var testSecrets = []string{testSecretKey, testSessionToken, otherSecretKey, otherSessionToken}

const (
	otherSecretKey    = "rwagentOTHERsecretKEY/9876543210zyxwvutsrq"
	otherSessionToken = "rwagentOTHERsessionTOKEN+9876543210/zyxwv=="
)

// assertNoSecrets fails if any text holds a test secret.
func assertNoSecrets(t testing.TB, texts ...string) {
	t.Helper()
	for _, s := range texts {
		for _, secret := range testSecrets {
			if strings.Contains(s, secret) {
				t.Errorf("secret %.8s… leaked into %q", secret, s)
			}
		}
	}
}

func assertCode(t testing.TB, err error, code string) *VerifyError {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v, want a *VerifyError with code %s", err, code)
	}
	if ve.Code != code || ve.Status != http.StatusForbidden {
		t.Errorf("got %d %s (%s), want 403 %s", ve.Status, ve.Code, ve.Message, code)
	}
	return ve
}

var testBase = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// verifyServer is an AMP stand-in on 127.0.0.1 that answers 204 when v
// accepts a request and AWS's error otherwise. It sends no Date header, so
// the round tripper learns no clock offset from it and the verifier's
// messages about time are seen as they are.
func verifyServer(t *testing.T, v *Verifier) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Date"] = nil
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := v.Verify(r, body); err != nil {
			var ve *VerifyError
			if !errors.As(err, &ve) {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			WriteError(w, ve)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// tamperTransport changes a signed request before passing it on.
type tamperTransport struct {
	next   http.RoundTripper
	tamper func(*http.Request)
}

func (tt tamperTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if tt.tamper != nil {
		tt.tamper(r)
	}
	return tt.next.RoundTrip(r)
}

func remoteWriteRequest(t testing.TB, url string, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url+"/workspaces/ws-1/api/v1/remote_write", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "rwagent/test")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	return req
}

// TestVerify_RoundTrip signs requests with our round tripper, sends them to
// an httptest server on 127.0.0.1 that checks them with Verify, and checks
// acceptance and each rejection's status, x-amzn-ErrorType and message.
func TestVerify_RoundTrip(t *testing.T) {
	body := bytes.Repeat([]byte("remote write body "), 100)
	tests := []struct {
		name      string
		cfg       Config          // signer; zero fields take the defaults below
		env       [][2]string     // environment for the signer's credentials
		signAt    time.Duration   // signer clock, from testBase
		verifier  func(*Verifier) // changes to the default verifier
		tamper    func(*http.Request)
		wantCode  string // "" = accepted
		wantMsg   string // exact message, when set
		wantStart string // message prefix, when set
	}{
		{name: "accepted"},
		{name: "accepted with session token", env: envToken(testSessionToken),
			verifier: func(v *Verifier) { v.Credentials[0].SessionToken = testSessionToken }},
		{name: "unsigned header added after signing is ignored",
			tamper: func(r *http.Request) { r.Header.Set("X-Forwarded-For", "10.0.0.1") }},
		{name: "tampered body", wantCode: CodeInvalidSignature, wantStart: msgSignatureMismatch,
			tamper: func(r *http.Request) {
				r.Body = io.NopCloser(bytes.NewReader(bytes.Repeat([]byte("REMOTE WRITE BODY "), 100)))
			}},
		{name: "tampered signed header", wantCode: CodeInvalidSignature, wantStart: msgSignatureMismatch,
			tamper: func(r *http.Request) { r.Header.Set("Content-Encoding", "zstd") }},
		{name: "wrong secret", wantCode: CodeInvalidSignature, wantStart: msgSignatureMismatch,
			verifier: func(v *Verifier) { v.Credentials[0].SecretAccessKey = otherSecretKey }},
		{name: "unknown access key", wantCode: CodeUnrecognizedClient, wantMsg: msgInvalidClientToken,
			verifier: func(v *Verifier) { v.Credentials[0].AccessKeyID = "AKIDSOMEONEELSE" }},
		{name: "missing session token", wantCode: CodeUnrecognizedClient, wantMsg: msgInvalidSessionToken,
			verifier: func(v *Verifier) { v.Credentials[0].SessionToken = testSessionToken }},
		{name: "wrong session token", env: envToken(otherSessionToken), wantCode: CodeUnrecognizedClient, wantMsg: msgInvalidSessionToken,
			verifier: func(v *Verifier) { v.Credentials[0].SessionToken = testSessionToken }},
		{name: "unexpected session token", env: envToken(testSessionToken), wantCode: CodeUnrecognizedClient, wantMsg: msgInvalidSessionToken},
		{name: "signed 6 minutes ago", signAt: -6 * time.Minute, wantCode: CodeInvalidSignature,
			wantMsg: "Signature expired: 20231231T235400Z is now earlier than 20231231T235500Z (20240101T000000Z - 5 min.)"},
		{name: "signed 6 minutes ahead", signAt: 6 * time.Minute, wantCode: CodeInvalidSignature,
			wantMsg: "Signature not yet current: 20240101T000600Z is still later than 20240101T000500Z (20240101T000000Z + 5 min.)"},
		{name: "verified 11 minutes later", wantCode: CodeInvalidSignature,
			verifier: func(v *Verifier) { v.Now = func() time.Time { return testBase.Add(11 * time.Minute) } },
			wantMsg:  "Signature expired: 20240101T000000Z is now earlier than 20240101T000600Z (20240101T001100Z - 5 min.)"},
		{name: "wrong region", cfg: Config{Region: "eu-west-1"}, wantCode: CodeInvalidSignature,
			wantMsg: "Credential should be scoped to a valid region, not 'eu-west-1'. "},
		{name: "wrong service", cfg: Config{Service: "execute-api"}, wantCode: CodeInvalidSignature,
			wantMsg: "Credential should be scoped to correct service: 'aps'. "},
		{name: "no Authorization", wantCode: CodeMissingAuthenticationToken, wantMsg: msgMissingAuthenticationToken,
			tamper: func(r *http.Request) { r.Header.Del("Authorization") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			isolateAWSEnv(t)
			v := &Verifier{
				Region: testRegion, Service: "aps",
				Credentials: []Credential{{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey}},
				Now:         func() time.Time { return testBase },
			}
			if tc.verifier != nil {
				tc.verifier(v)
			}
			srv := verifyServer(t, v)

			cfg := tc.cfg
			if cfg.Region == "" {
				cfg.Region = testRegion
			}
			if tc.env != nil {
				t.Setenv("AWS_ACCESS_KEY_ID", testAccessKey)
				t.Setenv("AWS_SECRET_ACCESS_KEY", testSecretKey)
				for _, kv := range tc.env {
					t.Setenv(kv[0], kv[1])
				}
			} else {
				cfg.AccessKey, cfg.SecretKey = testAccessKey, testSecretKey
			}
			var logs bytes.Buffer
			rt, err := NewRoundTripper(context.Background(), cfg,
				tamperTransport{next: srv.Client().Transport, tamper: tc.tamper},
				Options{Logger: testLogger(&logs), Now: func() time.Time { return testBase.Add(tc.signAt) }})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := (&http.Client{Transport: rt}).Do(remoteWriteRequest(t, srv.URL, body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			respBody, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			assertNoSecrets(t, logs.String(), string(respBody))

			if tc.wantCode == "" {
				if resp.StatusCode != http.StatusNoContent {
					t.Fatalf("status %d, body %s", resp.StatusCode, respBody)
				}
				return
			}
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("status %d, want 403", resp.StatusCode)
			}
			if got := resp.Header.Get("x-amzn-ErrorType"); got != tc.wantCode {
				t.Errorf("x-amzn-ErrorType %q, want %q", got, tc.wantCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var msg struct {
				Message string `json:"message"`
			}
			if err := json.Unmarshal(respBody, &msg); err != nil {
				t.Fatalf("body %q: %v", respBody, err)
			}
			if tc.wantMsg != "" && msg.Message != tc.wantMsg {
				t.Errorf("message\n got: %q\nwant: %q", msg.Message, tc.wantMsg)
			}
			if tc.wantStart != "" && !strings.HasPrefix(msg.Message, tc.wantStart) {
				t.Errorf("message %q does not start with %q", msg.Message, tc.wantStart)
			}
		})
	}
}

func envToken(token string) [][2]string { return [][2]string{{"AWS_SESSION_TOKEN", token}} }

// TestVerify_Malformed checks the answers to malformed and incomplete
// Authorization headers, word for word.
func TestVerify_Malformed(t *testing.T) {
	const (
		date  = "20240101T000000Z"
		cred  = "Credential=" + testAccessKey + "/20240101/us-east-1/aps/aws4_request"
		sig   = "Signature=" + emptyPayloadHash
		hosts = "SignedHeaders=host;x-amz-date"
	)
	tests := []struct {
		name, authz, date string
		code, msg         string
	}{
		{"no header", "", date, CodeMissingAuthenticationToken, "Missing Authentication Token"},
		{"bearer token", "eyJhbGciOiJIUzI1NiJ9", date, CodeIncompleteSignature,
			"Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. " +
				"Authorization header requires 'SignedHeaders' parameter. Authorization=eyJhbGciOiJIUzI1NiJ9"},
		{"no date", signingAlgorithm + " " + cred + ", " + hosts + ", " + sig, "", CodeIncompleteSignature,
			"Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=" +
				signingAlgorithm + " " + cred + ", " + hosts + ", " + sig},
		{"missing equal sign", signingAlgorithm + " " + cred + ", " + hosts + ", Signature", date, CodeIncompleteSignature,
			"'Signature' not a valid key=value pair (missing equal-sign) in Authorization header: '" +
				signingAlgorithm + " " + cred + ", " + hosts + ", Signature'."},
		{"bad date", signingAlgorithm + " " + cred + ", " + hosts + ", " + sig, "2024", CodeIncompleteSignature,
			"Date must be in ISO-8601 'basic format'. Got '2024'. See http://en.wikipedia.org/wiki/ISO_8601"},
		{"host not signed", signingAlgorithm + " " + cred + ", SignedHeaders=x-amz-date, " + sig, date, CodeInvalidSignature,
			"'Host' must be a 'SignedHeader' in the AWS Authorization."},
		{"unsupported algorithm", "AWS4-HMAC-SHA512 " + cred + ", " + hosts + ", " + sig, date, CodeIncompleteSignature,
			"Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA512' (only AWS4-HMAC-SHA256 for now). "},
		{"short credential", signingAlgorithm + " Credential=" + testAccessKey + "/20240101/us-east-1/aps, " + hosts + ", " + sig, date,
			CodeIncompleteSignature,
			"Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '" +
				testAccessKey + "/20240101/us-east-1/aps'"},
		{"every scope part wrong", signingAlgorithm + " Credential=" + testAccessKey + "/20231231/eu-west-1/s3/aws5_request, " + hosts + ", " + sig,
			date, CodeInvalidSignature,
			"Credential should be scoped to a valid region, not 'eu-west-1'. Credential should be scoped to correct service: 'aps'. " +
				"Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'. " +
				"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20231231' != '20240101', from '20240101T000000Z'."},
		{"trailing slash in credential is ignored", signingAlgorithm + " " + cred + "/, " + hosts + ", " + sig, date,
			CodeInvalidSignature, ""},
	}
	v := &Verifier{Region: testRegion, Service: "aps", Now: func() time.Time { return testBase },
		Credentials: []Credential{{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey}}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "http://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write", nil)
			if tc.authz != "" {
				r.Header.Set("Authorization", tc.authz)
			}
			if tc.date != "" {
				r.Header.Set("X-Amz-Date", tc.date)
			}
			ve := assertCode(t, v.Verify(r, nil), tc.code)
			if tc.msg != "" && ve.Message != tc.msg {
				t.Errorf("message\n got: %q\nwant: %q", ve.Message, tc.msg)
			}
			if tc.msg == "" && !strings.HasPrefix(ve.Message, msgSignatureMismatch) {
				t.Errorf("message %q, want a signature mismatch", ve.Message)
			}
		})
	}
}

// TestVerify_DateHeader accepts a request dated by the HTTP Date header, as
// AWS does when X-Amz-Date is absent.
func TestVerify_DateHeader(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "http://example.amazonaws.com/a?b=c", nil)
	r.Header.Set("Date", testBase.Format(http.TimeFormat))
	const signed = "date;host"
	creq := canonicalRequest(r, "/a", "b=c", signed, emptyPayloadHash, true, true)
	sts := stringToSign(testBase, credentialScope(testBase, testRegion, "aps"), creq)
	sig := signature(signingKey(testSecretKey, testBase, testRegion, "aps"), sts)
	r.Header.Set("Authorization", signingAlgorithm+" Credential="+testAccessKey+"/"+credentialScope(testBase, testRegion, "aps")+
		", SignedHeaders="+signed+", Signature="+sig)
	v := &Verifier{Region: testRegion, Service: "aps", Now: func() time.Time { return testBase },
		Credentials: []Credential{{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey}}}
	if err := v.Verify(r, nil); err != nil {
		t.Fatal(err)
	}
}

// TestVerify_MismatchMessageRedactsToken checks the mismatch answer shows the
// canonical request and string to sign, with the session token redacted.
func TestVerify_MismatchMessageRedactsToken(t *testing.T) {
	isolateAWSEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", testAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecretKey)
	t.Setenv("AWS_SESSION_TOKEN", testSessionToken)
	next := &recordingTransport{}
	rt, err := NewRoundTripper(context.Background(), Config{Region: testRegion}, next, Options{Now: func() time.Time { return testBase }})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("payload")
	resp, err := rt.RoundTrip(remoteWriteRequest(t, "https://aps-workspaces.us-east-1.amazonaws.com", body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r := next.last().serverRequest()
	v := &Verifier{Region: testRegion, Service: "aps", Now: func() time.Time { return testBase },
		Credentials: []Credential{{AccessKeyID: testAccessKey, SecretAccessKey: otherSecretKey, SessionToken: testSessionToken}}}
	ve := assertCode(t, v.Verify(r, body), CodeInvalidSignature)
	want := msgSignatureMismatch + "\n\nThe Canonical String for this request should have been\n'POST\n/workspaces/ws-1/api/v1/remote_write\n\n" +
		"content-encoding:snappy\ncontent-length:7\ncontent-type:application/x-protobuf\nhost:aps-workspaces.us-east-1.amazonaws.com\n" +
		"x-amz-content-sha256:" + sha256Hex(body) + "\nx-amz-date:20240101T000000Z\nx-amz-security-token:<redacted>\n" +
		"x-prometheus-remote-write-version:0.1.0\n\n" +
		"content-encoding;content-length;content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token;x-prometheus-remote-write-version\n" +
		sha256Hex(body) + "'\n\nThe String-to-Sign should have been\n'AWS4-HMAC-SHA256\n20240101T000000Z\n20240101/us-east-1/aps/aws4_request\n"
	if !strings.HasPrefix(ve.Message, want) || !strings.HasSuffix(ve.Message, "'\n") {
		t.Errorf("message\n got: %q\nwant prefix: %q", ve.Message, want)
	}
	assertNoSecrets(t, ve.Message, ve.Error())
	// The body is checked against X-Amz-Content-Sha256 even when the
	// signature would not be.
	v.Credentials[0].SecretAccessKey = testSecretKey
	if err := v.Verify(r, body); err != nil {
		t.Fatalf("untampered: %v", err)
	}
	assertCode(t, v.Verify(r, []byte("PAYLOAD")), CodeInvalidSignature)
}

func TestWriteError(t *testing.T) {
	w := httptest.NewRecorder()
	WriteError(w, newVerifyError(CodeIncompleteSignature, "'x' & <y>"))
	if w.Code != http.StatusForbidden {
		t.Errorf("status %d", w.Code)
	}
	if got := w.Header()["x-amzn-ErrorType"]; len(got) != 1 || got[0] != CodeIncompleteSignature {
		t.Errorf("x-amzn-ErrorType %q", got)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if got, want := w.Body.String(), `{"message":"'x' & <y>"}`; got != want {
		t.Errorf("body %s, want %s", got, want)
	}
	if got := w.Header().Get("Content-Length"); got != "23" {
		t.Errorf("Content-Length %s", got)
	}
}
