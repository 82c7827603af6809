package sigv4_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"

	"github.com/rwagent/rwagent/pkg/awsemu"
	"github.com/rwagent/rwagent/pkg/receive"
	"github.com/rwagent/rwagent/pkg/sigv4"
)

const (
	srcRegion    = "eu-west-1"
	srcAccessKey = "AKIDSOURCESTEST"
	srcSecretKey = "rwagentSOURCEsecretKEY/0123456789abcdefghij"
	srcToken     = "rwagentSOURCEsessionTOKEN+0123456789/abcdefghij=="
	srcRole      = "arn:aws:iam::123456789012:role/rwagent-writer"
)

// syncBuffer is a log sink safe for the concurrent writers of a test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// assertClean fails if text holds a test secret or anything an awsemu
// stand-in issued as a secret or token.
func assertClean(t *testing.T, texts ...string) {
	t.Helper()
	sigv4.AssertNoSecret(t, texts...)
	for _, s := range texts {
		for _, secret := range []string{srcSecretKey, srcToken, awsemu.SecretMarker, awsemu.TokenMarker} {
			if strings.Contains(s, secret) {
				t.Errorf("a secret (%.12s…) appears in: %.300s", secret, s)
			}
		}
	}
}

// amp is a pkg/receive server on 127.0.0.1 whose SigV4 check accepts
// exactly the credentials valid() returns at the moment of each request.
type amp struct {
	url                string
	accepted, rejected atomic.Int64
	mu                 sync.Mutex
	keys               map[string]bool // access key ids accepted
	lastReject         string
}

func newAMP(t *testing.T, region string, now func() time.Time, valid func() []sigv4.Credential) *amp {
	t.Helper()
	a := &amp{keys: map[string]bool{}}
	recv, err := receive.New(receive.Options{
		Dir: t.TempDir(),
		Now: now,
		Verify: func(r *http.Request, body []byte) error {
			v := &sigv4.Verifier{Region: region, Service: "aps", Credentials: valid(), Now: now}
			if err := v.Verify(r, body); err != nil {
				a.rejected.Add(1)
				a.mu.Lock()
				a.lastReject = err.Error()
				a.mu.Unlock()
				if ve, ok := errors.AsType[*sigv4.VerifyError](err); ok {
					return receive.Reject(ve.Status, ve.Code, ve.Message)
				}
				return err
			}
			a.accepted.Add(1)
			key, _, _ := strings.Cut(strings.TrimPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 Credential="), "/")
			a.mu.Lock()
			a.keys[key] = true
			a.mu.Unlock()
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(recv.Handler())
	t.Cleanup(func() {
		srv.Close()
		if err := recv.Close(); err != nil {
			t.Error(err)
		}
	})
	a.url = srv.URL + "/workspaces/" + recv.WorkspaceID() + "/api/v1/remote_write"
	return a
}

func (a *amp) distinctKeys() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.keys)
}

// writeBody is a snappy-compressed remote-write request of one sample at ts.
func writeBody(t *testing.T, ts int64) []byte {
	t.Helper()
	wr := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "rwagent_sigv4_test"}, {Name: "job", Value: "sources"}},
		Samples: []prompb.Sample{{Value: float64(ts), Timestamp: ts}},
	}}}
	b, err := wr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, b)
}

// send posts one remote-write request through rt and returns its status.
func send(t *testing.T, rt http.RoundTripper, url string, ts int64) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(writeBody(t, ts)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// source is one way the SDK finds credentials, set up against stand-ins.
type source struct {
	name string
	// setup prepares the environment and stand-ins and returns the sigv4
	// config, the credentials valid now, and the issuer when they rotate.
	setup func(t *testing.T) (sigv4.Config, func() []sigv4.Credential, *awsemu.Issuer)
	// check, when set, looks at what the stand-ins saw after sending.
	check func(t *testing.T)
}

func static(creds ...sigv4.Credential) func() []sigv4.Credential {
	return func() []sigv4.Credential { return creds }
}

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func writeFile(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func sources() []source {
	var sts *awsemu.STS
	return []source{
		{name: "env with session token", setup: func(t *testing.T) (sigv4.Config, func() []sigv4.Credential, *awsemu.Issuer) {
			t.Setenv("AWS_ACCESS_KEY_ID", srcAccessKey)
			t.Setenv("AWS_SECRET_ACCESS_KEY", srcSecretKey)
			t.Setenv("AWS_SESSION_TOKEN", srcToken)
			t.Setenv("AWS_REGION", srcRegion)
			return sigv4.Config{}, static(sigv4.Credential{AccessKeyID: srcAccessKey, SecretAccessKey: srcSecretKey, SessionToken: srcToken}), nil
		}},
		{name: "shared files and profile", setup: func(t *testing.T) (sigv4.Config, func() []sigv4.Credential, *awsemu.Issuer) {
			creds := writeFile(t, "credentials", "[default]\naws_access_key_id = AKIDWRONG\naws_secret_access_key = wrong\n\n"+
				"[writer]\naws_access_key_id = "+srcAccessKey+"\naws_secret_access_key = "+srcSecretKey+"\naws_session_token = "+srcToken+"\n", 0o600)
			t.Setenv("AWS_SHARED_CREDENTIALS_FILE", creds)
			t.Setenv("AWS_CONFIG_FILE", writeFile(t, "config", "[profile writer]\nregion = "+srcRegion+"\n", 0o600))
			return sigv4.Config{Profile: "writer"}, static(sigv4.Credential{AccessKeyID: srcAccessKey, SecretAccessKey: srcSecretKey, SessionToken: srcToken}), nil
		}},
		{name: "credential_process", setup: func(t *testing.T) (sigv4.Config, func() []sigv4.Credential, *awsemu.Issuer) {
			iss := &awsemu.Issuer{Prefix: "PROC"}
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			script := writeFile(t, "creds.sh", fmt.Sprintf("#!/bin/sh\nRWAGENT_TEST_CREDENTIAL_PROCESS_URL='%s' exec '%s'\n",
				serve(t, &awsemu.Process{Issuer: iss}), exe), 0o700)
			t.Setenv("AWS_CONFIG_FILE", writeFile(t, "config", "[profile proc]\nregion = "+srcRegion+"\ncredential_process = "+script+"\n", 0o600))
			return sigv4.Config{Profile: "proc"}, iss.Valid, iss
		}},
		{name: "web identity (IRSA)", setup: func(t *testing.T) (sigv4.Config, func() []sigv4.Credential, *awsemu.Issuer) {
			iss := &awsemu.Issuer{Prefix: "IRSA"}
			sts = &awsemu.STS{Issuer: iss, WebIdentityToken: "eyJhbGciOiJSUzI1NiJ9.projected.token"}
			t.Setenv("AWS_ENDPOINT_URL_STS", serve(t, sts))
			t.Setenv("AWS_ROLE_ARN", srcRole)
			t.Setenv("AWS_ROLE_SESSION_NAME", "irsa-session")
			t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", writeFile(t, "token", sts.WebIdentityToken, 0o600))
			t.Setenv("AWS_REGION", srcRegion)
			return sigv4.Config{}, iss.Valid, iss
		}, check: func(t *testing.T) {
			for _, c := range sts.Calls() {
				if c.Action != "AssumeRoleWithWebIdentity" || c.RoleARN != srcRole || c.RoleSessionName != "irsa-session" || c.Err != "" {
					t.Errorf("STS call %+v", c)
				}
			}
		}},
		{name: "container credentials (ECS, EKS Pod Identity)", setup: func(t *testing.T) (sigv4.Config, func() []sigv4.Credential, *awsemu.Issuer) {
			iss := &awsemu.Issuer{Prefix: "POD"}
			const token = "pod-identity-token-0123"
			t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", serve(t, &awsemu.Container{Issuer: iss, Token: token})+"/v1/credentials")
			t.Setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", writeFile(t, "eks-pod-identity-token", token, 0o600))
			t.Setenv("AWS_REGION", srcRegion)
			return sigv4.Config{}, iss.Valid, iss
		}},
		{name: "EC2 IMDSv2", setup: func(t *testing.T) (sigv4.Config, func() []sigv4.Credential, *awsemu.Issuer) {
			iss := &awsemu.Issuer{Prefix: "EC2"}
			t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
			t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", serve(t, awsemu.NewIMDS(iss, "rwagent-instance")))
			return sigv4.Config{Region: srcRegion}, iss.Valid, iss
		}},
		{name: "role_arn over static keys", setup: func(t *testing.T) (sigv4.Config, func() []sigv4.Credential, *awsemu.Issuer) {
			iss := &awsemu.Issuer{Prefix: "ROLE"}
			base := &sigv4.Verifier{Region: "us-west-2", Service: "sts",
				Credentials: []sigv4.Credential{{AccessKeyID: srcAccessKey, SecretAccessKey: srcSecretKey}}}
			sts = &awsemu.STS{Issuer: iss, Verify: base.Verify, ExternalID: "ext-4711"}
			return sigv4.Config{Region: srcRegion, AccessKey: srcAccessKey, SecretKey: srcSecretKey,
				RoleARN: srcRole, ExternalID: "ext-4711", RoleSessionName: "rwagent-writer",
				STSRegion: "us-west-2", STSEndpoint: serve(t, sts)}, iss.Valid, iss
		}, check: func(t *testing.T) {
			for _, c := range sts.Calls() {
				if c.Action != "AssumeRole" || c.RoleARN != srcRole || c.RoleSessionName != "rwagent-writer" ||
					c.ExternalID != "ext-4711" || c.Err != "" {
					t.Errorf("STS call %+v", c)
				}
			}
		}},
	}
}

// TestSources_KeepSending is the proof of the credential chain: for each
// source the SDK knows, a round tripper keeps sending remote-write requests
// to a receiver that accepts exactly the credentials valid at that moment.
// Rotating sources hand out credentials lasting seconds; the sender must see
// at least two rotations with every request accepted.
func TestSources_KeepSending(t *testing.T) {
	for _, src := range sources() {
		t.Run(src.name, func(t *testing.T) {
			sigv4.IsolateAWSEnv(t)
			cfg, valid, iss := src.setup(t)
			region := cfg.Region
			if region == "" {
				region = srcRegion
			}
			a := newAMP(t, region, time.Now, valid)
			var logs syncBuffer
			logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			tr := http.DefaultTransport.(*http.Transport).Clone()
			t.Cleanup(tr.CloseIdleConnections)
			rt, err := sigv4.NewRoundTripper(t.Context(), cfg, tr, sigv4.Options{Logger: logger})
			if err != nil {
				assertClean(t, err.Error(), logs.String())
				t.Fatal(err)
			}

			// Two senders at once, paced, until two rotations were
			// seen (or 20 requests for a source that does not rotate).
			deadline := time.Now().Add(12 * time.Second)
			var sent, failed atomic.Int64
			var firstFailure atomic.Value
			done := func() bool {
				if iss == nil {
					return sent.Load() >= 20
				}
				return len(iss.Issued()) >= 3 && a.distinctKeys() >= 3
			}
			var wg sync.WaitGroup
			start := time.Now().UnixMilli()
			for g := range 2 {
				wg.Go(func() {
					tick := time.NewTicker(10 * time.Millisecond)
					defer tick.Stop()
					for i := int64(0); !done() && time.Now().Before(deadline); i++ {
						status, body := send(t, rt, a.url, start+i*2+int64(g))
						sent.Add(1)
						if status/100 != 2 {
							failed.Add(1)
							firstFailure.CompareAndSwap(nil, fmt.Sprintf("status %d: %s", status, body))
						}
						<-tick.C
					}
				})
			}
			wg.Wait()

			if n := failed.Load(); n > 0 {
				t.Errorf("%d of %d requests failed; first: %v (receiver: %s)", n, sent.Load(), firstFailure.Load(), a.lastReject)
			}
			if !done() {
				var issued int
				if iss != nil {
					issued = len(iss.Issued())
				}
				t.Errorf("gave up after %d requests: %d credentials issued, %d used", sent.Load(), issued, a.distinctKeys())
			}
			if got := a.accepted.Load(); got != sent.Load() || a.rejected.Load() != 0 {
				t.Errorf("receiver accepted %d and rejected %d of %d", got, a.rejected.Load(), sent.Load())
			}
			if src.check != nil {
				src.check(t)
			}
			assertClean(t, logs.String())
			t.Logf("%d requests, %d keys", sent.Load(), a.distinctKeys())
		})
	}
}

// TestClockSkew runs the receiver with its clock 10 minutes ahead of (and
// behind) ours: the first request is refused as expired (not yet current),
// the round tripper learns the offset from the Date header, logs it once, sends
// that request again signed at the receiver's time, and every later request
// is accepted at the first try.
func TestClockSkew(t *testing.T) {
	for _, ahead := range []time.Duration{10 * time.Minute, -10 * time.Minute} {
		t.Run(ahead.String(), func(t *testing.T) {
			sigv4.IsolateAWSEnv(t)
			cred := sigv4.Credential{AccessKeyID: srcAccessKey, SecretAccessKey: srcSecretKey}
			a := newAMP(t, srcRegion, func() time.Time { return time.Now().Add(ahead) }, static(cred))
			var logs syncBuffer
			reg := prometheus.NewRegistry()
			metrics := sigv4.NewMetrics()
			if err := metrics.Register(reg); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(metrics.Unregister)
			tr := http.DefaultTransport.(*http.Transport).Clone()
			t.Cleanup(tr.CloseIdleConnections)
			rt, err := sigv4.NewRoundTripper(t.Context(), sigv4.Config{Region: srcRegion, AccessKey: srcAccessKey, SecretKey: srcSecretKey},
				tr, sigv4.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Metrics: metrics})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now().UnixMilli()
			for i := range int64(20) {
				if status, body := send(t, rt, a.url, start+i); status/100 != 2 {
					t.Fatalf("request %d: status %d: %s", i, status, body)
				}
			}
			if a.rejected.Load() != 1 || a.accepted.Load() != 20 {
				t.Errorf("receiver rejected %d, accepted %d; want 1 and 20", a.rejected.Load(), a.accepted.Load())
			}
			if n := strings.Count(logs.String(), "Fix this host's clock"); n != 1 {
				t.Errorf("%d clock warnings, want 1:\n%s", n, logs.String())
			}
			if !strings.Contains(logs.String(), "offset="+ahead.String()) && !strings.Contains(logs.String(), "offset="+(ahead-time.Second).String()) {
				t.Errorf("the warning does not show the offset %s:\n%s", ahead, logs.String())
			}
			got := gaugeValue(t, reg, "rwagent_sigv4_clock_offset_seconds")
			if d := time.Duration(got * float64(time.Second)); d < ahead-2*time.Second || d > ahead+2*time.Second {
				t.Errorf("rwagent_sigv4_clock_offset_seconds = %v, want about %v", got, ahead.Seconds())
			}
			assertClean(t, logs.String())
		})
	}
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("%s not registered", name)
	return 0
}

// TestDenied_LogsWhatWasSigned checks that a 403 is logged with the
// receiver's message and what was signed (service, region, a prefix of the
// access key id, the credential source), never a secret, and at most once a
// minute however many requests are refused.
func TestDenied_LogsWhatWasSigned(t *testing.T) {
	sigv4.IsolateAWSEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srcAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srcSecretKey)
	t.Setenv("AWS_SESSION_TOKEN", srcToken)
	cred := sigv4.Credential{AccessKeyID: srcAccessKey, SecretAccessKey: srcSecretKey, SessionToken: srcToken}
	a := newAMP(t, srcRegion, time.Now, static(cred))
	var logs syncBuffer
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	// Signed for the wrong region, as a user with AWS_REGION of another
	// workspace would.
	rt, err := sigv4.NewRoundTripper(t.Context(), sigv4.Config{Region: "us-east-2"}, tr,
		sigv4.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for i := range int64(3) {
		if status, body := send(t, rt, a.url, time.Now().UnixMilli()+i); status != http.StatusForbidden {
			t.Fatalf("status %d: %s", status, body)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "refused a signed request"); n != 1 {
		t.Errorf("%d denial lines, want 1 (rate-limited):\n%s", n, out)
	}
	for _, want := range []string{"Credential should be scoped to a valid region, not 'us-east-2'", "signed_service=aps",
		"signed_region=us-east-2", "access_key_id=AKIDSOUR…", "credential_source=EnvConfigCredentials",
		"temporary_credentials=true", "error_type=InvalidSignatureException"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	assertClean(t, out)
}

// TestClockSkew_Concurrent: requests already in flight when the offset is
// learnt were signed with our clock too; each is refused once, signed again
// at the receiver's time and accepted, and the offset is logged once.
func TestClockSkew_Concurrent(t *testing.T) {
	sigv4.IsolateAWSEnv(t)
	const inFlight = 4
	receiverNow := func() time.Time { return time.Now().Add(10 * time.Minute) }
	v := &sigv4.Verifier{Region: srcRegion, Service: "aps", Now: receiverNow,
		Credentials: []sigv4.Credential{{AccessKeyID: srcAccessKey, SecretAccessKey: srcSecretKey}}}
	// The first inFlight requests are held until all of them arrived, so
	// that all are signed before any answer teaches the offset.
	var (
		mu                 sync.Mutex
		arrived            int
		accepted, rejected int
	)
	all := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		arrived++
		if arrived == inFlight {
			close(all)
		}
		wait := arrived <= inFlight
		mu.Unlock()
		if wait {
			<-all
		}
		w.Header().Set("Date", receiverNow().UTC().Format(http.TimeFormat))
		err := v.Verify(r, body)
		mu.Lock()
		if err != nil {
			rejected++
		} else {
			accepted++
		}
		mu.Unlock()
		if ve, ok := errors.AsType[*sigv4.VerifyError](err); ok {
			sigv4.WriteError(w, ve)
		}
	}))
	t.Cleanup(srv.Close)
	var logs syncBuffer
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	rt, err := sigv4.NewRoundTripper(t.Context(), sigv4.Config{Region: srcRegion, AccessKey: srcAccessKey, SecretKey: srcSecretKey},
		tr, sigv4.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	statuses := make([]int, inFlight)
	for i := range inFlight {
		wg.Go(func() { statuses[i], _ = send(t, rt, srv.URL, int64(i)) })
	}
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Errorf("request %d: status %d, want 200", i, s)
		}
	}
	if rejected != inFlight || accepted != inFlight {
		t.Errorf("receiver rejected %d, accepted %d; want %d each", rejected, accepted, inFlight)
	}
	if n := strings.Count(logs.String(), "Fix this host's clock"); n != 1 {
		t.Errorf("%d clock warnings, want 1:\n%s", n, logs.String())
	}
	assertClean(t, logs.String())
}
