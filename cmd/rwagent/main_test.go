package main

import (
	"bytes"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	promconfig "github.com/prometheus/prometheus/config"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yml")
	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(good, []byte("scrape_configs:\n  - job_name: a\n    static_configs: [{targets: ['127.0.0.1:1']}]\nrule_files: [x.yml]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("remote_write:\n  - url: http://127.0.0.1/\n    remote_timeout: 3q\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name        string
		args        []string
		code        int
		out, errOut string
	}{
		{"version", []string{"--version"}, 0, "rwagent ", ""},
		{"check good", []string{"check-config", good}, 0, "SUCCESS: " + good + " is valid: 1 scrape config(s), 0 remote_write", ""},
		{"check notes ignored", []string{"check-config", good}, 0, "rule_files is ignored", ""},
		{"check bad", []string{"check-config", good, bad}, 1, "SUCCESS", "FAILED: " + bad + `:3: remote_write[0].remote_timeout: unknown unit "q" in duration "3q"`},
		{"check missing", []string{"check-config", filepath.Join(dir, "nope.yml")}, 1, "", "FAILED: read config: open "},
		{"check no file", []string{"check-config"}, 2, "", "usage: rwagent check-config [--check-credentials] FILE..."},
		{"unknown flag", []string{"--nope"}, 2, "", "flag provided but not defined: -nope"},
		{"stray argument", []string{"run"}, 2, "", `unexpected argument "run"`},
		{"bad log level", []string{"--log.level=loud"}, 2, "", `--log.level: "loud" is not one of`},
		{"bad log format", []string{"--log.format=xml"}, 2, "", `--log.format: "xml" is not one of logfmt, json`},
		{"bad config file", []string{"--config.file=" + bad, "--web.listen-address=127.0.0.1:0", "--storage.path=" + dir}, 1, "", `remote_timeout: unknown unit`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(c.args, &out, &errOut)
			if code != c.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, c.code, errOut.String())
			}
			if !strings.Contains(out.String(), c.out) {
				t.Errorf("stdout %q does not contain %q", out.String(), c.out)
			}
			if !strings.Contains(errOut.String(), c.errOut) {
				t.Errorf("stderr %q does not contain %q", errOut.String(), c.errOut)
			}
		})
	}
}

func TestAllV2(t *testing.T) {
	v1 := &promconfig.RemoteWriteConfig{ProtobufMessage: remoteapi.WriteV1MessageType}
	v2 := &promconfig.RemoteWriteConfig{ProtobufMessage: remoteapi.WriteV2MessageType}
	for _, tc := range []struct {
		name string
		rws  []*promconfig.RemoteWriteConfig
		want bool
	}{
		{"no endpoint", nil, false},
		{"one 1.0", []*promconfig.RemoteWriteConfig{v1}, false},
		{"one 2.0", []*promconfig.RemoteWriteConfig{v2}, true},
		{"2.0 and 1.0", []*promconfig.RemoteWriteConfig{v2, v1}, false},
		{"two 2.0", []*promconfig.RemoteWriteConfig{v2, v2}, true},
	} {
		if got := allV2(tc.rws); got != tc.want {
			t.Errorf("%s: allV2 = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSetGCPercent(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	setGCPercent("")
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("GOGC unset: GC percent %d, want %d", got, defaultGCPercent)
	}
	setGCPercent("200") // the runtime applied the environment's own
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC set: GC percent changed to %d", got)
	}
}
