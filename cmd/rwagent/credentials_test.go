package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rwagent/rwagent/pkg/awsemu"
	"github.com/rwagent/rwagent/pkg/receive"
	"github.com/rwagent/rwagent/pkg/sigv4"
)

// The tests of this file prove issue 4's claims on the whole agent: runAgent
// scraping a client_golang target and sending through its remote_write
// queues to a pkg/receive server that accepts exactly the credentials valid
// at the moment, with credentials from the AWS SDK's real providers talking
// to pkg/awsemu stand-ins on 127.0.0.1.

const (
	credRegion   = "eu-west-1"
	credRole     = "arn:aws:iam::123456789012:role/amp-writer"
	credBaseKey  = "AKIDAGENTBASEKEY0001"
	credBaseSec  = "agent-base-secret-never-logged-0123456789"
	credWebToken = "eyJhbGciOiJSUzI1NiJ9.agent-projected-sa-token.sig"
	credPodToken = "agent-pod-identity-token-never-logged"
)

// isolateAWS clears every AWS setting of the environment for the test (and
// restores it after), points the shared files at empty files in a temporary
// HOME and turns instance metadata off, so that only what the test sets up
// can supply credentials.
func isolateAWS(t *testing.T) {
	t.Helper()
	for _, k := range []string{
		"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN",
		"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
		"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_STS", "AWS_CA_BUNDLE", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
		"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_CREDENTIAL_EXPIRATION", "AWS_SDK_LOAD_CONFIG",
	} {
		t.Setenv(k, "") // restores the old value after the test
		os.Unsetenv(k)
	}
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("AWS_CONFIG_FILE", writeTestFile(t, "config", ""))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", writeTestFile(t, "credentials", ""))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

func writeTestFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// serveLoopback serves h on 127.0.0.1 until the test ends.
func serveLoopback(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// issuedSecrets lists every secret key and session token iss handed out.
func issuedSecrets(iss *awsemu.Issuer) []string {
	var out []string
	for _, c := range iss.Issued() {
		out = append(out, c.SecretAccessKey, c.SessionToken)
	}
	return out
}

// readMetrics returns the agent's /metrics page.
func (a *agentUnderTest) readMetrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(a.web + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// credentialSource sets up one place the AWS SDK finds credentials, against
// awsemu stand-ins on 127.0.0.1.
type credentialSource struct {
	name string
	// setup sets the environment and stand-ins up. It returns the lines
	// of the remote_write sigv4 block, the issuer of the credentials the
	// receiver accepts, the other secrets in play, and a check of what
	// the stand-ins saw (nil: none).
	setup func(t *testing.T) (block string, iss *awsemu.Issuer, secrets []string, check func(t *testing.T))
}

func credentialSources() []credentialSource {
	return []credentialSource{
		{name: "EC2 IMDSv2", setup: func(t *testing.T) (string, *awsemu.Issuer, []string, func(*testing.T)) {
			iss := &awsemu.Issuer{Prefix: "EC2"}
			t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
			t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", serveLoopback(t, awsemu.NewIMDS(iss, "amp-writer-instance")))
			return "region: " + credRegion, iss, nil, nil
		}},
		{name: "EKS IRSA web identity", setup: func(t *testing.T) (string, *awsemu.Issuer, []string, func(*testing.T)) {
			iss := &awsemu.Issuer{Prefix: "IRSA"}
			sts := &awsemu.STS{Issuer: iss, WebIdentityToken: credWebToken}
			t.Setenv("AWS_ENDPOINT_URL_STS", serveLoopback(t, sts))
			t.Setenv("AWS_ROLE_ARN", credRole)
			t.Setenv("AWS_ROLE_SESSION_NAME", "irsa-agent")
			t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", writeTestFile(t, "token", credWebToken))
			t.Setenv("AWS_REGION", credRegion)
			return "{}", iss, []string{credWebToken}, func(t *testing.T) {
				for _, c := range sts.Calls() {
					if c.Action != "AssumeRoleWithWebIdentity" || c.RoleARN != credRole || c.RoleSessionName != "irsa-agent" || c.Err != "" {
						t.Errorf("STS call %+v", c)
					}
				}
			}
		}},
		{name: "EKS Pod Identity container credentials", setup: func(t *testing.T) (string, *awsemu.Issuer, []string, func(*testing.T)) {
			iss := &awsemu.Issuer{Prefix: "POD"}
			t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI",
				serveLoopback(t, &awsemu.Container{Issuer: iss, Token: credPodToken})+"/v1/credentials")
			t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", writeTestFile(t, "eks-pod-identity-token", credPodToken))
			return "region: " + credRegion, iss, []string{credPodToken}, nil
		}},
		{name: "role_arn with external_id over env keys", setup: func(t *testing.T) (string, *awsemu.Issuer, []string, func(*testing.T)) {
			iss := &awsemu.Issuer{Prefix: "ROLE"}
			// STS accepts only the env keys, signed for sts in
			// sts_region: the agent must use both sts_region and
			// sts_endpoint of its config.
			base := &sigv4.Verifier{Region: "us-west-2", Service: "sts",
				Credentials: []sigv4.Credential{{AccessKeyID: credBaseKey, SecretAccessKey: credBaseSec}}}
			sts := &awsemu.STS{Issuer: iss, Verify: base.Verify, ExternalID: "team-obs-4711"}
			t.Setenv("AWS_ACCESS_KEY_ID", credBaseKey)
			t.Setenv("AWS_SECRET_ACCESS_KEY", credBaseSec)
			block := strings.Join([]string{
				"region: " + credRegion,
				"role_arn: " + credRole,
				"external_id: team-obs-4711",
				"role_session_name: rwagent-agent",
				"sts_region: us-west-2",
				"sts_endpoint: " + serveLoopback(t, sts),
			}, "\n")
			return block, iss, []string{credBaseSec}, func(t *testing.T) {
				for _, c := range sts.Calls() {
					if c.Action != "AssumeRole" || c.RoleARN != credRole || c.RoleSessionName != "rwagent-agent" ||
						c.ExternalID != "team-obs-4711" || c.Err != "" {
						t.Errorf("STS call %+v", c)
					}
				}
			}
		}},
	}
}

// agentConfig is a configuration scraping APP every 200ms and sending to
// RECEIVER as remote_write "amp" with the sigv4 block of the given lines.
func agentConfig(app, block string) string {
	indented := "      " + strings.ReplaceAll(block, "\n", "\n      ")
	return strings.NewReplacer("APP", app, "BLOCK", indented).Replace(`
global:
  scrape_interval: 200ms
  scrape_timeout: 150ms
scrape_configs:
  - job_name: app
    static_configs:
      - targets: [APP]
remote_write:
  - url: RECEIVER
    name: amp
    sigv4:
BLOCK
    queue_config:
      batch_send_deadline: 50ms
      min_backoff: 10ms
      max_backoff: 100ms
`)
}

// TestAgent_CredentialsRotate: for each place users run, the whole agent
// keeps sending while its credentials (lasting 3-4 seconds) rotate at least
// twice, to a receiver that accepts only the credentials valid at that
// moment: every request is accepted, nothing fails, samples scraped after
// the last rotation arrive, and no secret reaches the logs or /metrics.
func TestAgent_CredentialsRotate(t *testing.T) {
	for _, src := range credentialSources() {
		t.Run(src.name, func(t *testing.T) {
			isolateAWS(t)
			block, iss, secrets, check := src.setup(t)
			app := serve(t, appRegistry(t))
			l := newLedger()
			a := startAgentWith(t, agentConfig(app.Listener.Addr().String(), block),
				receive.Options{Verify: l.verify(credRegion, time.Now, iss.Valid)})

			// Two rotations: requests accepted with three credentials.
			waitFor(t, "requests accepted with three successive credentials", func() bool {
				keys, _, _, _ := l.snapshot()
				return len(keys) >= 3
			})
			keys, firstOK, accepted, _ := l.snapshot()
			third := firstOK[keys[2]]
			waitFor(t, "samples scraped after the second rotation", func() bool {
				v := a.query(t, `timestamp(up{job="app"})`)
				if len(v) != 1 {
					return false
				}
				return v[0].F > float64(third.UnixMilli())/1000
			})
			for i, k := range keys[:3] {
				if accepted[k] == 0 {
					t.Errorf("credential #%d: no request accepted", i)
				}
			}
			if failed := a.metric(t, "prometheus_remote_storage_samples_failed_total", map[string]string{"remote_name": "amp"}); failed != 0 {
				t.Errorf("prometheus_remote_storage_samples_failed_total = %v, want 0", failed)
			}
			if sent := a.metric(t, "prometheus_remote_storage_samples_total", map[string]string{"remote_name": "amp"}); sent <= 0 {
				t.Errorf("prometheus_remote_storage_samples_total = %v, want > 0", sent)
			}
			if n := a.metric(t, "rwagent_sigv4_credential_refreshes_total", map[string]string{"result": "success"}); n < 2 {
				t.Errorf("rwagent_sigv4_credential_refreshes_total{result=success} = %v, want at least the 2 rotations", n)
			}
			metrics := a.readMetrics(t)
			a.stop(t)

			l.mu.Lock()
			afterFirst, total := l.afterFirst, 0
			for _, n := range l.rejected {
				total += n
			}
			l.mu.Unlock()
			if afterFirst != 0 || total != 0 {
				t.Errorf("receiver refused %d requests (%d after the first success); want none: %s", total, afterFirst, l)
			}
			if n := len(iss.Issued()); n < 3 {
				t.Errorf("%d credentials issued, want at least 3", n)
			}
			if check != nil {
				check(t)
			}
			all := append(issuedSecrets(iss), secrets...)
			assertNoSecrets(t, "agent log", a.logs.String(), all...)
			assertNoSecrets(t, "/metrics", metrics, all...)
			t.Logf("%d credentials issued; %s", len(iss.Issued()), l)
		})
	}
}

// TestAgent_ClockSkew runs the receiver 10 minutes ahead of the agent. Each
// remote_write round tripper has its first request refused as not yet
// current, learns the offset from the Date header and signs that request and
// every later one at the receiver's time: exactly one refusal per round
// tripper, nothing failed, and rwagent_sigv4_clock_offset_seconds ≈ 600.
func TestAgent_ClockSkew(t *testing.T) {
	isolateAWS(t)
	const (
		keyA, secretA = "AKIDSKEWENDPOINTA001", "skew-secret-a-never-logged-0123456789"
		keyB, secretB = "AKIDSKEWENDPOINTB001", "skew-secret-b-never-logged-0123456789"
		ahead         = 10 * time.Minute
	)
	receiverNow := func() time.Time { return time.Now().Add(ahead) }
	creds := []sigv4.Credential{{AccessKeyID: keyA, SecretAccessKey: secretA}, {AccessKeyID: keyB, SecretAccessKey: secretB}}
	l := newLedger()
	app := serve(t, appRegistry(t))
	endpoint := func(name, key, secret string) string {
		return strings.NewReplacer("NAME", name, "KEY", key, "SECRET", secret).Replace(`
  - url: RECEIVER
    name: NAME
    sigv4:
      region: eu-west-1
      access_key: KEY
      secret_key: SECRET
    queue_config:
      batch_send_deadline: 50ms
      min_backoff: 10ms
      max_backoff: 100ms`)
	}
	cfg := strings.ReplaceAll(`
global:
  scrape_interval: 200ms
  scrape_timeout: 150ms
scrape_configs:
  - job_name: app
    static_configs:
      - targets: [APP]
remote_write:`, "APP", app.Listener.Addr().String()) + endpoint("a", keyA, secretA) + endpoint("b", keyB, secretB) + "\n"
	a := startAgentWith(t, cfg, receive.Options{
		Now:    receiverNow,
		Verify: l.verify(credRegion, receiverNow, func() []sigv4.Credential { return creds }),
	})

	waitFor(t, "both endpoints keep sending", func() bool {
		_, _, accepted, _ := l.snapshot()
		return accepted[keyA] >= 10 && accepted[keyB] >= 10
	})
	waitFor(t, "samples stored", a.scalarIs(t, `up{job="app"}`, 1))
	_, _, _, rejected := l.snapshot()
	if rejected[keyA] != 1 || rejected[keyB] != 1 || len(rejected) != 2 {
		t.Errorf("refusals by access key %v; want exactly one per round tripper (%s and %s)", rejected, keyA, keyB)
	}
	l.mu.Lock()
	late := fmt.Sprint(l.lateReject)
	l.mu.Unlock()
	if late != "map[]" {
		t.Errorf("refused after a success: %s", late)
	}
	for _, name := range []string{"a", "b"} {
		if f := a.metric(t, "prometheus_remote_storage_samples_failed_total", map[string]string{"remote_name": name}); f != 0 {
			t.Errorf("%s: prometheus_remote_storage_samples_failed_total = %v, want 0", name, f)
		}
	}
	if off := a.metric(t, "rwagent_sigv4_clock_offset_seconds", nil); math.Abs(off-ahead.Seconds()) > 2 {
		t.Errorf("rwagent_sigv4_clock_offset_seconds = %v, want about %v", off, ahead.Seconds())
	}
	metrics := a.readMetrics(t)
	a.stop(t)
	logs := a.logs.String()
	if n := strings.Count(logs, "Fix this host's clock"); n != 2 {
		t.Errorf("%d clock warnings, want one per round tripper (2)", n)
	}
	assertNoSecrets(t, "agent log", logs, secretA, secretB)
	assertNoSecrets(t, "/metrics", metrics, secretA, secretB)
}

// TestAgent_MissingCredentialsFailAtStart: with a sigv4 remote_write and no
// usable credentials, runAgent returns at start with the credential chain's
// answer, and neither the error nor the log holds a secret.
func TestAgent_MissingCredentialsFailAtStart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) (block string, secrets []string)
		// scrape puts the sigv4 block on the scrape config instead of the
		// remote_write.
		scrape bool
		want   []string // in the error
	}{
		{
			name:  "nothing anywhere",
			setup: func(t *testing.T) (string, []string) { return "region: " + credRegion, nil },
			want: []string{"remote_write", "no EC2 IMDS role found", "environment (AWS_ACCESS_KEY_ID",
				"EC2 instance metadata"},
		},
		{
			name: "STS refuses the role",
			setup: func(t *testing.T) (string, []string) {
				base := &sigv4.Verifier{Region: credRegion, Service: "sts",
					Credentials: []sigv4.Credential{{AccessKeyID: credBaseKey, SecretAccessKey: credBaseSec, SessionToken: credWebToken}}}
				sts := &awsemu.STS{Issuer: &awsemu.Issuer{}, Verify: base.Verify, ExternalID: "the-right-one"}
				t.Setenv("AWS_ACCESS_KEY_ID", credBaseKey)
				t.Setenv("AWS_SECRET_ACCESS_KEY", credBaseSec)
				t.Setenv("AWS_SESSION_TOKEN", credWebToken) // a secret too
				return "region: " + credRegion + "\nrole_arn: " + credRole + "\nexternal_id: a-wrong-one\nsts_endpoint: " +
					serveLoopback(t, sts), []string{credBaseSec, credWebToken}
			},
			want: []string{"sts:AssumeRole " + credRole, "AccessDenied", "external id"},
		},
		{
			name:   "signed scrape, nothing anywhere",
			setup:  func(t *testing.T) (string, []string) { return "region: " + credRegion, nil },
			scrape: true,
			want:   []string{"scrape", "no EC2 IMDS role found", "EC2 instance metadata"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolateAWS(t)
			block, secrets := tc.setup(t)
			dir := t.TempDir()
			cfg := agentConfig("127.0.0.1:9", block)
			if tc.scrape {
				cfg = strings.NewReplacer("BLOCK", "      "+strings.ReplaceAll(block, "\n", "\n      ")).Replace(`
scrape_configs:
  - job_name: gateway
    static_configs:
      - targets: [127.0.0.1:9]
    sigv4:
BLOCK
remote_write:
  - url: RECEIVER
`)
			}
			cfgFile := writeTestFile(t, "agent.yml", strings.ReplaceAll(cfg, "RECEIVER",
				"http://127.0.0.1:9/workspaces/ws-e2e/api/v1/remote_write"))
			logs := &logBuffer{}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := runAgent(ctx, agentOptions{
				ConfigFile:  cfgFile,
				StoragePath: filepath.Join(dir, "agent"),
				ListenAddr:  "127.0.0.1:0",
				Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			})
			if ctx.Err() != nil {
				t.Fatalf("runAgent ran until the test's deadline (err %v); want an error at start", err)
			}
			if err == nil {
				t.Fatal("runAgent returned nil; want an error at start")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			assertNoSecrets(t, "error", err.Error(), secrets...)
			assertNoSecrets(t, "agent log", logs.String(), secrets...)
			t.Logf("error: %v", err)
		})
	}
}
