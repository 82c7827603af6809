package main

import (
	"bytes"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
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
