package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"go.uber.org/goleak"

	"github.com/rwagent/rwagent/pkg/receive"
	"github.com/rwagent/rwagent/pkg/sigv4"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testAccessKey = "AKIDAMPEMUTEST"
	testSecretKey = "ampemu-test-secret"
)

// syncBuffer is a log destination safe for the server's and the test's goroutines.
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

// start runs ampemu with args on 127.0.0.1:0 and returns its base URL and its
// log. The test's cleanup stops it and checks that run returned nil.
func start(t *testing.T, env map[string]string, args ...string) (string, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	addr := make(chan string, 1)
	done := make(chan error, 1)
	args = append([]string{"--web.listen-address=127.0.0.1:0"}, args...)
	go func() {
		done <- run(ctx, args, func(k string) string { return env[k] }, logs, func(a string) { addr <- a })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v\nlog:\n%s", err, logs)
		}
	})
	select {
	case a := <-addr:
		return "http://" + a, logs
	case err := <-done:
		t.Fatalf("run returned before serving: %v\nlog:\n%s", err, logs)
		return "", nil
	}
}

func writeBody(t *testing.T, ts int64) []byte {
	t.Helper()
	raw, err := (&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "ampemu_test"}, {Name: "job", Value: "t"}},
		Samples: []prompb.Sample{{Value: 42, Timestamp: ts}},
	}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

func send(t *testing.T, client *http.Client, method, url string, body []byte) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("Content-Encoding", "snappy")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// signingClient signs with the agent's sigv4 round tripper on a clock offset
// from the real one.
func signingClient(t *testing.T, offset time.Duration) *http.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	rt, err := sigv4.NewRoundTripper(context.Background(), sigv4.Config{
		Region: "us-east-1", AccessKey: testAccessKey, SecretKey: testSecretKey,
	}, tr, sigv4.Options{Now: func() time.Time { return time.Now().Add(offset) }})
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: rt}
}

func TestSignedWorkspace(t *testing.T) {
	const offset = time.Hour
	base, _ := start(t, map[string]string{"AMPEMU_SECRET_KEY": testSecretKey},
		"--access-key="+testAccessKey, "--clock-offset="+offset.String(), "--storage.path="+t.TempDir(), "--workspace-id=ws-e2e")
	ws := base + "/workspaces/ws-e2e"
	ts := time.Now().Add(-time.Minute).UnixMilli()

	plain := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(plain.CloseIdleConnections)
	resp, body := send(t, plain, http.MethodPost, ws+"/api/v1/remote_write", writeBody(t, ts))
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("x-amzn-ErrorType") != sigv4.CodeMissingAuthenticationToken {
		t.Fatalf("unsigned write: %s %s %q, want 403 %s", resp.Status, resp.Header.Get("x-amzn-ErrorType"), body, sigv4.CodeMissingAuthenticationToken)
	}
	var msg struct{ Message string }
	if err := json.Unmarshal(body, &msg); err != nil || msg.Message == "" {
		t.Errorf("unsigned write body %q: want {\"message\": ...} (%v)", body, err)
	}
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		t.Fatalf("Date header: %v", err)
	}
	if skew := date.Sub(time.Now()); skew < offset-time.Minute || skew > offset+time.Minute {
		t.Errorf("Date is %v ahead, want about %v (--clock-offset)", skew, offset)
	}

	// Signed on the real clock, an hour behind the emulator: refused with
	// InvalidSignatureException (counted in /metrics below), after which
	// the round tripper takes the emulator's time from its Date header and
	// signs again, so the caller sees the write accepted.
	resp, body = send(t, signingClient(t, 0), http.MethodPost, ws+"/api/v1/remote_write", writeBody(t, ts))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("skewed write: %s %s %q, want 200 after the clock correction", resp.Status, resp.Header.Get("x-amzn-ErrorType"), body)
	}

	// Signed on the emulator's clock: stored and queryable.
	client := signingClient(t, offset)
	resp, body = send(t, client, http.MethodPost, ws+"/api/v1/remote_write", writeBody(t, ts))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("signed write: %s %q, want 200", resp.Status, body)
	}
	resp, body = send(t, client, http.MethodGet, ws+"/api/v1/query?query=ampemu_test&time="+time.UnixMilli(ts).UTC().Format(time.RFC3339Nano), nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"value":[`) || !strings.Contains(string(body), `"42"`) {
		t.Fatalf("signed query: %s %s, want the sample 42", resp.Status, body)
	}

	resp, body = send(t, plain, http.MethodGet, base+"/metrics", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `ampemu_requests_total{code="403",handler="remote_write"} 2`) {
		t.Errorf("/metrics: %s, want two 403 remote writes counted", resp.Status)
	}
}

func TestUnsignedWorkspace(t *testing.T) {
	base, logs := start(t, nil)
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	resp, body := send(t, client, http.MethodPost, base+"/workspaces/ws-local/api/v1/remote_write", writeBody(t, time.Now().UnixMilli()))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("unsigned write: %s %q, want 200", resp.Status, body)
	}
	if !strings.Contains(logs.String(), "accepting unsigned requests") {
		t.Errorf("log does not say unsigned requests are accepted:\n%s", logs)
	}
	if !strings.Contains(logs.String(), base+"/workspaces/ws-local") {
		t.Errorf("log does not show the workspace URL %s:\n%s", base+"/workspaces/ws-local", logs)
	}
}

func TestParseFlags(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("from-the-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want string // error substring; "" for success
		key  string // access key expected on success
	}{
		{"defaults", nil, nil, "", ""},
		{"keys from env", nil, map[string]string{"AMPEMU_ACCESS_KEY": "a", "AMPEMU_SECRET_KEY": "s"}, "", "a"},
		{"flag beats env", []string{"--access-key=b", "--secret-key=t"}, map[string]string{"AMPEMU_ACCESS_KEY": "a"}, "", "b"},
		{"access key alone", []string{"--access-key=a"}, nil, "must be given together", ""},
		{"token alone", []string{"--session-token=x"}, nil, "needs --access-key", ""},
		{"bad level", []string{"--log.level=loud"}, nil, "log.level", ""},
		{"bad offset", []string{"--clock-offset=soon"}, nil, "clock-offset", ""},
		{"stray argument", []string{"extra"}, nil, "unexpected arguments", ""},
		{"secret key file", []string{"--access-key=a", "--secret-key-file=" + secretFile}, nil, "", "a"},
		{"secret key file beats env", []string{"--secret-key-file=" + secretFile},
			map[string]string{"AMPEMU_ACCESS_KEY": "a", "AMPEMU_SECRET_KEY": "from-env"}, "", "a"},
		{"secret key file and flag", []string{"--access-key=a", "--secret-key=s", "--secret-key-file=" + secretFile}, nil, "either --secret-key or --secret-key-file", ""},
		{"secret key file missing", []string{"--access-key=a", "--secret-key-file=" + filepath.Join(dir, "nope")}, nil, "--secret-key-file: open", ""},
		{"secret key file empty", []string{"--access-key=a", "--secret-key-file=" + emptyFile}, nil, "is empty", ""},
		{"session token file", []string{"--access-key=a", "--secret-key-file=" + secretFile, "--session-token-file=" + secretFile}, nil, "", "a"},
		{"limits", []string{"--ingestion.rate=5", "--ingestion.burst=10", "--limits.labels-per-series=0", "--ha.failover-timeout=1m"}, nil, "", ""},
		{"negative rate", []string{"--ingestion.rate=-1"}, nil, "--ingestion.rate -1 is negative", ""},
		{"rate without burst", []string{"--ingestion.burst=0"}, nil, "--ingestion.burst 0 must be positive", ""},
		{"negative limit", []string{"--limits.active-series=-5"}, nil, "--limits.active-series -5 is negative", ""},
		{"zero failover", []string{"--ha.failover-timeout=0s"}, nil, "--ha.failover-timeout 0s must be positive", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := parseFlags(c.args, func(k string) string { return c.env[k] }, io.Discard)
			if c.want == "" {
				if err != nil {
					t.Fatalf("parseFlags: %v", err)
				}
				if f.listen != "127.0.0.1:9095" || f.workspaceID != "ws-local" || f.region != "us-east-1" {
					t.Errorf("defaults = %q %q %q, want 127.0.0.1:9095 ws-local us-east-1", f.listen, f.workspaceID, f.region)
				}
				if f.accessKey != c.key {
					t.Errorf("access key = %q, want %q", f.accessKey, c.key)
				}
				if slices.Contains(c.args, "--secret-key-file="+secretFile) && f.secretKey != "from-the-file" {
					t.Errorf("secret key = %q, want the file's, without its newline", f.secretKey)
				}
				if slices.Contains(c.args, "--session-token-file="+secretFile) && f.sessionToken != "from-the-file" {
					t.Errorf("session token = %q, want the file's", f.sessionToken)
				}
				if got, want := f.secretsInArgs, slices.DeleteFunc(slices.Clone(c.args), func(a string) bool {
					return !strings.HasPrefix(a, "--secret-key=") && !strings.HasPrefix(a, "--session-token=")
				}); len(got) != len(want) {
					t.Errorf("secrets on the command line = %q, want one for each of %q", got, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("parseFlags: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestLimitFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want receive.Limits
	}{
		{nil, receive.DefaultLimits},
		{[]string{"--ingestion.rate=0", "--limits.labels-per-series=0", "--limits.active-series=0", "--ha.max-clusters=0", "--ha.failover-timeout=45s", "--ingestion.burst=7"},
			func() receive.Limits {
				l := receive.DefaultLimits
				l.IngestionRate, l.MaxLabelNamesPerSeries, l.MaxActiveSeries, l.MaxHAClusters = -1, -1, -1, -1
				l.HAFailoverTimeout, l.IngestionBurst = 45*time.Second, 7
				return l
			}()},
	} {
		f, err := parseFlags(c.args, func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		if f.limits != c.want {
			t.Errorf("%q: limits %+v, want %+v (0 on the command line turns a limit off)", c.args, f.limits, c.want)
		}
	}
}

// TestThrottledWorkspace runs ampemu with a bucket of one sample that
// refills once in about 17 minutes: the first write passes, the second is
// answered as AMP answers a throttled one.
func TestThrottledWorkspace(t *testing.T) {
	base, _ := start(t, nil, "--ingestion.rate=0.001", "--ingestion.burst=1")
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(client.CloseIdleConnections)
	url := base + "/workspaces/ws-local/api/v1/remote_write"
	ts := time.Now().Add(-time.Minute).UnixMilli()
	if resp, body := send(t, client, http.MethodPost, url, writeBody(t, ts)); resp.StatusCode != http.StatusOK {
		t.Fatalf("first write: %s %q", resp.Status, body)
	}
	resp, body := send(t, client, http.MethodPost, url, writeBody(t, ts+1))
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("x-amzn-ErrorType") != "ThrottlingException" ||
		!strings.Contains(string(body), `"message":"ingestion rate limit (0.001) exceeded while adding 1 samples and 0 metadata"`) {
		t.Fatalf("second write: %s %s %q, want 429 ThrottlingException", resp.Status, resp.Header.Get("x-amzn-ErrorType"), body)
	}
}
