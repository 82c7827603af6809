package main

import (
	"bytes"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/tsdb/chunks"

	"github.com/rwagent/rwagent/pkg/config"
	"github.com/rwagent/rwagent/pkg/gateway"
	"github.com/rwagent/rwagent/pkg/wal"
)

// TestCheckCredentials runs `rwagent check-config --check-credentials` in
// an environment without AWS settings (isolateAWS: HOME and the shared files
// in a temporary directory, instance metadata off), then with credentials
// in the environment or the file, and checks that it fails naming the
// endpoint and the places looked when there are none, passes when there
// are, and prints no secret either way.
func TestCheckCredentials(t *testing.T) {
	const (
		ampURL = "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write"
		secret = "check-config-secret-never-printed-0123456789"
		token  = "check-config-session-token-never-printed"
	)
	for _, tc := range []struct {
		name     string
		config   string
		env      map[string]string
		flag     bool
		code     int
		out, err []string // each must appear in stdout, stderr
	}{
		{
			name:   "no credentials, not asked",
			config: "remote_write:\n  - url: " + ampURL + "\n    sigv4: {}\n",
			code:   0, out: []string{"SUCCESS"},
		},
		{
			name:   "no credentials anywhere",
			config: "remote_write:\n  - url: " + ampURL + "\n    sigv4: {}\n",
			flag:   true, code: 1,
			err: []string{"FAILED: ", "remote_write[0] " + ampURL, "environment (AWS_ACCESS_KEY_ID", "shared config and credentials files",
				"EC2 instance metadata"},
		},
		{
			name: "signed scrape without credentials",
			config: "scrape_configs:\n  - job_name: gateway\n    static_configs: [{targets: ['127.0.0.1:9']}]\n" +
				"    sigv4:\n      region: eu-west-1\n",
			flag: true, code: 1,
			err: []string{`scrape_configs[0] job "gateway"`, "EC2 instance metadata"},
		},
		{
			name:   "credentials in the environment",
			config: "remote_write:\n  - url: " + ampURL + "\n    sigv4: {}\n",
			env:    map[string]string{"AWS_ACCESS_KEY_ID": "AKIDCHECKCONFIG00001", "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": token},
			flag:   true, code: 0,
			out: []string{"sigv4 credentials loaded", "remote_write[0] " + ampURL, "EnvConfigCredentials", "region=eu-west-1", "SUCCESS"},
		},
		{
			name: "static keys in the file, one endpoint of two signed",
			config: "remote_write:\n  - url: http://127.0.0.1:9/write\n  - url: " + ampURL + "\n    sigv4:\n      access_key: AKIDCHECKCONFIG00002\n" +
				"      secret_key: " + secret + "\n",
			flag: true, code: 0,
			out: []string{"remote_write[1] " + ampURL, "StaticCredentials", "SUCCESS"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolateAWS(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			f := writeTestFile(t, "agent.yml", tc.config)
			args := []string{"check-config", f}
			if tc.flag {
				args = []string{"check-config", "--check-credentials", f}
			}
			var stdout, stderr bytes.Buffer
			if code := run(args, &stdout, &stderr); code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout.String(), stderr.String())
			}
			for _, w := range tc.out {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tc.err {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			assertNoSecrets(t, "stdout", stdout.String(), secret, token)
			assertNoSecrets(t, "stderr", stderr.String(), secret, token)
		})
	}
}

// TestApplyGoGC checks that runtime.gogc, when the file sets it, replaces
// the GC percent GOGC or rwagent's default chose, and that nothing changes
// when it does not.
func TestApplyGoGC(t *testing.T) {
	old := debug.SetGCPercent(defaultGCPercent)
	defer debug.SetGCPercent(old)
	if _, ok := applyGoGC(nil); ok {
		t.Error("applied without runtime.gogc")
	}
	if got := debug.SetGCPercent(defaultGCPercent); got != defaultGCPercent {
		t.Errorf("without runtime.gogc the GC percent became %d", got)
	}
	v := 80
	prev, ok := applyGoGC(&v)
	if !ok || prev != defaultGCPercent {
		t.Errorf("applyGoGC(80) = %d, %v; want %d, true", prev, ok, defaultGCPercent)
	}
	if got := debug.SetGCPercent(old); got != 80 {
		t.Errorf("GC percent %d after runtime.gogc: 80", got)
	}
}

// TestSystemdUnitChecksCredentials runs the systemd unit's ExecStartPre
// command line (on a test file instead of /etc/rwagent/rwagent.yaml): it
// must check credentials and be a command line rwagent accepts.
func TestSystemdUnitChecksCredentials(t *testing.T) {
	unit, err := os.ReadFile("../../packaging/systemd/rwagent.service")
	if err != nil {
		t.Fatal(err)
	}
	var pre []string
	for line := range strings.Lines(string(unit)) {
		if cmd, ok := strings.CutPrefix(strings.TrimSpace(line), "ExecStartPre="); ok {
			pre = strings.Fields(cmd)
		}
	}
	if len(pre) < 3 || !slices.Contains(pre, "--check-credentials") || pre[1] != "check-config" {
		t.Fatalf("ExecStartPre = %q, want rwagent check-config --check-credentials FILE", pre)
	}
	isolateAWS(t)
	args := slices.Clone(pre[1:])
	args[len(args)-1] = writeTestFile(t, "rwagent.yaml", "remote_write:\n  - url: http://127.0.0.1:9/write\n    sigv4:\n      region: eu-west-1\n")
	var stdout, stderr bytes.Buffer
	if code := run(args, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "EC2 instance metadata") {
		t.Errorf("ExecStartPre without credentials: exit %d, stderr %q; want 1 naming the places looked", code, stderr.String())
	}
}

// TestCheckConfigGatewayBounds: check-config refuses, by name, the
// receive: settings the gateway would refuse at start or reload (a
// tenant's max_series_per_request over the gateway's own limit, a
// max_memory_in_flight too small for one request), with the gateway's
// message, and accepts them at the limits.
func TestCheckConfigGatewayBounds(t *testing.T) {
	const head = "receive:\n  listen_address: 127.0.0.1:9201\n"
	for _, tc := range []struct {
		name, config string
		opts         func(*gateway.Options) // the same setting, given to the gateway
		want         string                 // in stderr; "" passes
	}{
		{
			name:   "max_series_per_request over the gateway's",
			config: head + "  api_keys: [{tenant: team-a, key: k1, max_series_per_request: 100001}]\n",
			opts:   func(o *gateway.Options) { o.Keys[0].Tenant.MaxSeriesPerRequest = config.MaxSeriesPerRequest + 1 },
			want:   `receive.api_keys[0].max_series_per_request: max_series_per_request 100001 of tenant "team-a" is over the gateway's own limit of 100000`,
		},
		{
			name:   "max_series_per_request at the gateway's",
			config: head + "  api_keys: [{tenant: team-a, key: k1, max_series_per_request: 100000}]\n",
		},
		{
			name:   "max_memory_in_flight under one request",
			config: head + "  api_keys: [{tenant: team-a, key: k1}]\n  max_request_bytes: 1MiB\n  max_memory_in_flight: 100MiB\n",
			opts:   func(o *gateway.Options) { o.MaxRequestBytes, o.MaxMemoryInFlight = 1<<20, 100<<20 },
			want:   "receive.max_memory_in_flight: max_memory_in_flight 104857600 bytes is less than one request may need at max_request_bytes 1048576",
		},
		{
			name:   "max_memory_in_flight of one request",
			config: head + "  api_keys: [{tenant: team-a, key: k1}]\n  max_request_bytes: 1MiB\n  max_memory_in_flight: " + strconv.FormatInt(config.RequestMemory(1<<20), 10) + "\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := writeTestFile(t, "agent.yml", tc.config)
			var stdout, stderr bytes.Buffer
			code := run([]string{"check-config", f}, &stdout, &stderr)
			if tc.want == "" {
				if code != 0 {
					t.Fatalf("exit %d, want 0\nstderr: %s", code, stderr.String())
				}
				return
			}
			if code != 1 || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr.String(), tc.want)
			}
			// The gateway refuses the same setting with the same message.
			opts := gateway.Options{Addr: "127.0.0.1:0", Storage: discardStorage{}, Keys: []gateway.Key{{Tenant: &gateway.Tenant{Name: "team-a"}}}}
			tc.opts(&opts)
			_, err := gateway.New(opts)
			_, msg, _ := strings.Cut(tc.want, ": ")
			if err == nil || !strings.Contains(err.Error(), msg) {
				t.Errorf("gateway.New: %v, want %q", err, msg)
			}
		})
	}
}

// discardStorage is a gateway.Storage that keeps nothing.
type discardStorage struct{}

func (discardStorage) NewRef() chunks.HeadSeriesRef   { return 1 }
func (discardStorage) Log(*wal.Records) error         { return nil }
func (discardStorage) Release([]chunks.HeadSeriesRef) {}
