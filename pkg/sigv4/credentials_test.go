package sigv4

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// isolateAWSEnv makes the AWS SDK see no credentials, region or profile from
// this machine: the AWS_* variables are unset, the shared files point into
// t.TempDir() and EC2 instance metadata is off, so no test reaches the network.
func isolateAWSEnv(t testing.TB) {
	t.Helper()
	for _, k := range []string{
		"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN",
		"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
		"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS", "AWS_CA_BUNDLE", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
		"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_CREDENTIAL_EXPIRATION",
	} {
		t.Setenv(k, "") // restores the old value after the test
		os.Unsetenv(k)
	}
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// newCredTest builds a round tripper for cfg that records what it sends, with
// logs captured.
func newCredTest(t *testing.T, cfg Config) (http.RoundTripper, *recordingTransport, *bytes.Buffer, error) {
	t.Helper()
	var logs bytes.Buffer
	next := &recordingTransport{}
	rt, err := NewRoundTripper(context.Background(), cfg, next,
		Options{Logger: testLogger(&logs), Now: func() time.Time { return testBase }})
	if err != nil {
		assertNoSecrets(t, err.Error(), fmt.Sprintf("%+v", err), logs.String())
	}
	return rt, next, &logs, err
}

// sendAndVerify sends one request through rt and checks v accepts it.
func sendAndVerify(t *testing.T, rt http.RoundTripper, next *recordingTransport, v *Verifier) recorded {
	t.Helper()
	body := []byte("samples")
	resp, err := rt.RoundTrip(remoteWriteRequest(t, "https://aps-workspaces."+v.Region+".amazonaws.com", body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	rec := next.last()
	if err := v.Verify(rec.serverRequest(), body); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rec
}

func TestCredentials_Static(t *testing.T) {
	isolateAWSEnv(t)
	rt, next, logs, err := newCredTest(t, Config{Region: testRegion, AccessKey: testAccessKey, SecretKey: testSecretKey})
	if err != nil {
		t.Fatal(err)
	}
	rec := sendAndVerify(t, rt, next, testVerifier())
	if rec.req.Header.Get("X-Amz-Security-Token") != "" {
		t.Error("static keys sent a security token")
	}
	if !strings.Contains(logs.String(), "source=StaticCredentials") {
		t.Errorf("log does not name the source: %s", logs)
	}
	assertNoSecrets(t, logs.String())
}

func TestCredentials_EnvWithSessionToken(t *testing.T) {
	isolateAWSEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", testAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecretKey)
	t.Setenv("AWS_SESSION_TOKEN", testSessionToken)
	t.Setenv("AWS_REGION", "ap-southeast-2")
	rt, next, logs, err := newCredTest(t, Config{})
	if err != nil {
		t.Fatal(err)
	}
	v := &Verifier{Region: "ap-southeast-2", Service: "aps", Now: func() time.Time { return testBase },
		Credentials: []Credential{{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey, SessionToken: testSessionToken}}}
	rec := sendAndVerify(t, rt, next, v)
	if rec.req.Header.Get("X-Amz-Security-Token") != testSessionToken {
		t.Error("session token not sent")
	}
	if !strings.Contains(rec.req.Header.Get("Authorization"), "x-amz-security-token") {
		t.Error("session token not signed")
	}
	assertNoSecrets(t, logs.String())
}

func TestCredentials_SharedFileProfile(t *testing.T) {
	isolateAWSEnv(t)
	writeFile(t, os.Getenv("AWS_SHARED_CREDENTIALS_FILE"), "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = "+otherSecretKey+"\n\n"+
		"[rwagent]\naws_access_key_id = "+testAccessKey+"\naws_secret_access_key = "+testSecretKey+"\n")
	writeFile(t, os.Getenv("AWS_CONFIG_FILE"), "[profile rwagent]\nregion = eu-west-2\n")
	rt, next, logs, err := newCredTest(t, Config{Profile: "rwagent"})
	if err != nil {
		t.Fatal(err)
	}
	v := testVerifier()
	v.Region = "eu-west-2" // from the profile
	sendAndVerify(t, rt, next, v)
	assertNoSecrets(t, logs.String())

	_, _, _, err = newCredTest(t, Config{Profile: "missing", Region: testRegion})
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("unknown profile: %v", err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCredentials_NoneAvailable fails at construction with an error naming
// the sources tried.
func TestCredentials_NoneAvailable(t *testing.T) {
	isolateAWSEnv(t)
	_, _, logs, err := newCredTest(t, Config{Region: testRegion})
	if err == nil {
		t.Fatal("no credentials anywhere, yet NewRoundTripper succeeded")
	}
	msg := err.Error()
	for _, want := range []string{"retrieve AWS credentials", "environment", "shared config and credentials files",
		"web identity", "container credentials", "EC2 instance metadata"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	assertNoSecrets(t, logs.String())

	// With a role to assume, the error says so too.
	_, _, _, err = newCredTest(t, Config{Region: testRegion, RoleARN: "arn:aws:iam::123456789012:role/rwagent"})
	if err == nil || !strings.Contains(err.Error(), "sts:AssumeRole arn:aws:iam::123456789012:role/rwagent") {
		t.Errorf("error %v does not name the role", err)
	}
}

func TestCredentials_NoRegion(t *testing.T) {
	isolateAWSEnv(t)
	_, _, _, err := newCredTest(t, Config{AccessKey: testAccessKey, SecretKey: testSecretKey})
	if err == nil || !strings.Contains(err.Error(), "AWS_REGION") || !strings.Contains(err.Error(), "region") {
		t.Errorf("error %v does not say where a region was looked for", err)
	}
}

// TestCredentials_RedactedError checks the redacting wrapper hides secrets
// in a chain error and keeps it for errors.Is.
func TestCredentials_RedactedError(t *testing.T) {
	isolateAWSEnv(t)
	t.Setenv("AWS_SESSION_TOKEN", testSessionToken)
	inner := fmt.Errorf("parse line %q: %w", "aws_secret_access_key = "+testSecretKey+" token "+testSessionToken, io.ErrUnexpectedEOF)
	err := redact(inner, Config{SecretKey: testSecretKey})
	assertNoSecrets(t, err.Error())
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Error("redacted error lost its chain")
	}
}

// fakeSTS answers sts:AssumeRole after checking the SDK's own signature with
// our Verifier (service "sts"), a cross-check of the verifier against the
// SDK's client signing.
func fakeSTS(t *testing.T, calls *atomic.Int32) *httptest.Server {
	t.Helper()
	v := &Verifier{Region: testRegion, Service: "sts",
		Credentials: []Credential{{AccessKeyID: testAccessKey, SecretAccessKey: testSecretKey}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := v.Verify(r, body); err != nil {
			var ve *VerifyError
			errors.As(err, &ve)
			t.Errorf("STS request rejected: %v", err)
			WriteError(w, ve)
			return
		}
		if !bytes.Contains(body, []byte("Action=AssumeRole")) || !bytes.Contains(body, []byte("role%2Frwagent")) {
			t.Errorf("unexpected STS request %s", body)
		}
		calls.Add(1)
		w.Header().Set("Content-Type", "text/xml")
		fmt.Fprintf(w, `<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/rwagent/session</Arn>
      <AssumedRoleId>AROATEST:session</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAASSUMED</AccessKeyId>
      <SecretAccessKey>%s</SecretAccessKey>
      <SessionToken>%s</SessionToken>
      <Expiration>%s</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>req-1</RequestId></ResponseMetadata>
</AssumeRoleResponse>`, otherSecretKey, otherSessionToken, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestCredentials_AssumeRole assumes a role through a fake STS on 127.0.0.1
// and signs with the assumed credentials.
func TestCredentials_AssumeRole(t *testing.T) {
	isolateAWSEnv(t)
	var calls atomic.Int32
	sts := fakeSTS(t, &calls)
	t.Setenv("AWS_ENDPOINT_URL_STS", sts.URL)
	rt, next, logs, err := newCredTest(t, Config{Region: testRegion, AccessKey: testAccessKey, SecretKey: testSecretKey,
		RoleARN: "arn:aws:iam::123456789012:role/rwagent"})
	if err != nil {
		t.Fatal(err)
	}
	v := &Verifier{Region: testRegion, Service: "aps", Now: func() time.Time { return testBase },
		Credentials: []Credential{{AccessKeyID: "ASIAASSUMED", SecretAccessKey: otherSecretKey, SessionToken: otherSessionToken}}}
	for range 3 {
		rec := sendAndVerify(t, rt, next, v)
		if !strings.Contains(rec.req.Header.Get("Authorization"), "Credential=ASIAASSUMED/") {
			t.Errorf("not signed with the assumed role: %s", rec.req.Header.Get("Authorization"))
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d AssumeRole calls, want 1 (cached)", n)
	}
	if !strings.Contains(logs.String(), "role_arn=arn:aws:iam::123456789012:role/rwagent") {
		t.Errorf("log does not name the role: %s", logs)
	}
	assertNoSecrets(t, logs.String())
}
