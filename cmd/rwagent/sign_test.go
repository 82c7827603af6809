package main

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rwagent/rwagent/pkg/sigv4"
)

const (
	signAccessKey = "AKIDSIGNCOMMAND"
	signSecret    = "rwagentSIGNsecretKEY/0123456789abcdefghij"
	signToken     = "rwagentSIGNsessionTOKEN+0123456789/abcdefghij=="
)

// signEnv gives the AWS SDK session credentials from the environment and
// nothing else from this machine.
func signEnv(t *testing.T) {
	for _, k := range []string{"AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ACCESS_KEY_ID", signAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", signSecret)
	t.Setenv("AWS_SESSION_TOKEN", signToken)
}

// signReceiver verifies SigV4 for region eu-west-1: service aps under
// /workspaces/, execute-api elsewhere; it echoes the body it accepted.
func signReceiver(t *testing.T) string {
	cred := []sigv4.Credential{{AccessKeyID: signAccessKey, SecretAccessKey: signSecret, SessionToken: signToken}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		service := "execute-api"
		if strings.HasPrefix(r.URL.Path, "/workspaces/") {
			service = "aps"
		}
		v := &sigv4.Verifier{Region: "eu-west-1", Service: service, Credentials: cred}
		if err := v.Verify(r, body); err != nil {
			var ve *sigv4.VerifyError
			errors.As(err, &ve)
			sigv4.WriteError(w, ve)
			return
		}
		w.Write([]byte("accepted " + r.Method + " " + r.Header.Get("X-Team") + " " + string(body)))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestSignCommand(t *testing.T) {
	signEnv(t)
	url := signReceiver(t)
	bodyFile := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(bodyFile, []byte("payload"), 0o600); err != nil {
		t.Fatal(err)
	}
	rw := url + "/workspaces/ws-1/api/v1/remote_write"
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
		wantErr  []string
	}{
		{name: "POST from a file with a header", args: []string{"--region", "eu-west-1", "-d", "@" + bodyFile, "-H", "X-Team: obs", rw},
			wantOut: []string{"200 OK", "accepted POST obs payload"}},
		{name: "GET to an API Gateway", args: []string{"--region", "eu-west-1", "--service", "execute-api", url + "/prod/metrics"},
			wantOut: []string{"200 OK", "accepted GET"}},
		{name: "explicit method and inline body", args: []string{"--region", "eu-west-1", "-X", "put", "-d", "inline", rw},
			wantOut: []string{"200 OK", "accepted PUT  inline"}},
		{name: "wrong region", args: []string{"--region", "us-east-1", rw}, wantCode: 1,
			wantOut: []string{"403 Forbidden", "Credential should be scoped to a valid region, not 'us-east-1'"},
			wantErr: []string{"signed_region=us-east-1", "access_key_id=AKIDSIGN…", "credential_source=EnvConfigCredentials"}},
		{name: "dry run", args: []string{"--region", "eu-west-1", "--dry-run", "-d", "payload", rw},
			wantOut: []string{"# Canonical request\nPOST\n/workspaces/ws-1/api/v1/remote_write\n\n", "x-amz-security-token:<redacted>\n",
				"# String to sign\nAWS4-HMAC-SHA256\n", "/eu-west-1/aps/aws4_request\n", "Authorization: AWS4-HMAC-SHA256 Credential=" + signAccessKey,
				"credentials from EnvConfigCredentials", "X-Amz-Security-Token: <redacted>"}},
		{name: "external id without a role", args: []string{"--region", "eu-west-1", "--external-id", "ext-1", rw}, wantCode: 2,
			wantErr: []string{"-external-id: needs role_arn"}},
		{name: "bad header", args: []string{"-H", "nocolon", rw}, wantCode: 2, wantErr: []string{"is not 'Name: value'"}},
		{name: "no URL", args: []string{"--region", "eu-west-1"}, wantCode: 2, wantErr: []string{"Usage:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"sign"}, tc.args...), &stdout, &stderr)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, &stdout, &stderr)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, &stdout)
				}
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, &stderr)
				}
			}
			for _, secret := range []string{signSecret, signToken} {
				if strings.Contains(stdout.String()+stderr.String(), secret) {
					t.Errorf("output shows a secret:\n%s\n%s", &stdout, &stderr)
				}
			}
		})
	}
}
