package main

import (
	"bytes"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHelp checks `rwagent --help` and `rwagent help`: every flag the
// agent defines and every subcommand is listed, under readable names,
// without Go's default rendering ("-config.file wal:" from a backquoted
// word in a usage string).
func TestHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--help"}, &out, &errOut); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	help := errOut.String()
	out.Reset()
	if code := run([]string{"help"}, &out, io.Discard); code != 0 || out.String() != help {
		t.Errorf("help: exit %d, output differs from --help's:\n%s", code, out.String())
	}

	var bad bytes.Buffer
	if code := run([]string{"--no-such-flag"}, io.Discard, &bad); code != 2 || !strings.Contains(bad.String(), help) {
		t.Errorf("a bad flag: exit %d, and the usage is not printed: %q", code, bad.String())
	}

	var names []string
	for _, line := range strings.Split(help, "\n") {
		if f, ok := strings.CutPrefix(strings.TrimSpace(line), "--"); ok {
			name, _, _ := strings.Cut(f, "=")
			names = append(names, name)
		}
	}
	want := []string{
		"config.file", "config.expand-env", "storage.path",
		"web.listen-address", "web.enable-pprof", "web.external-url", "web.route-prefix", "web.amp-price-per-10m-samples",
		"shard.count", "shard.index", "shard.replication",
		"log.level", "log.format", "version", "help",
	}
	for _, w := range want {
		if !contains(names, w) {
			t.Errorf("--help does not list --%s", w)
		}
	}
	if len(names) != len(want) {
		t.Errorf("--help lists %v, want exactly %v (a new flag belongs in a group of printUsage)", names, want)
	}
	for _, sub := range []string{"rwagent check-config", "rwagent sign", "rwagent convert grafana-agent", "rwagent help"} {
		if !strings.Contains(help, sub) {
			t.Errorf("--help does not list %q", sub)
		}
	}
	for _, artefact := range []string{"-config.file wal:", "\n  -"} {
		if strings.Contains(help, artefact) {
			t.Errorf("--help contains Go's default rendering %q", artefact)
		}
	}
}

// TestPrintUsage_unlistedFlag checks that a flag no group names is still
// listed.
func TestPrintUsage_unlistedFlag(t *testing.T) {
	fs := flag.NewFlagSet("rwagent", flag.ContinueOnError)
	fs.String("config.file", "", "Configuration file.")
	fs.String("brand.new", "", "A flag nobody grouped.")
	var b strings.Builder
	printUsage(&b, fs)
	if !strings.Contains(b.String(), "More:\n    --brand.new=VALUE\n        A flag nobody grouped.") {
		t.Errorf("unlisted flag missing:\n%s", b.String())
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:12345": true, "localhost:9090": true, "[::1]:80": true, "127.3.2.1:1": true,
		":12345": false, "0.0.0.0:12345": false, "10.0.0.5:12345": false, "[::]:1": false, "example.com:80": false, "nonsense": false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestPprofEnabled(t *testing.T) {
	for _, c := range []struct {
		given, value bool
		addr         string
		want         bool
	}{
		{false, false, "127.0.0.1:12345", true},
		{false, false, "0.0.0.0:12345", false},
		{true, false, "127.0.0.1:12345", false},
		{true, true, ":12345", true},
	} {
		if got := pprofEnabled(c.given, c.value, c.addr); got != c.want {
			t.Errorf("pprofEnabled(%v, %v, %q) = %v, want %v", c.given, c.value, c.addr, got, c.want)
		}
	}
}

func TestWebFlags(t *testing.T) {
	for _, c := range []struct {
		args   []string
		errOut string
	}{
		{[]string{"--web.external-url=ftp://example.com/"}, `--web.external-url: "ftp://example.com/" is not an absolute http or https URL`},
		{[]string{"--web.external-url=https://user:hunter2@example.com/"}, "--web.external-url: \"https://user:xxxxx@example.com/\" carries credentials"},
		{[]string{"--web.external-url=/relative"}, "is not an absolute http or https URL"},
		{[]string{"--web.external-url=http://[::1"}, "--web.external-url: parse"},
		{[]string{"--web.route-prefix=rwagent"}, `--web.route-prefix: "rwagent" does not start with /`},
	} {
		var errOut bytes.Buffer
		if code := run(c.args, io.Discard, &errOut); code != 2 || !strings.Contains(errOut.String(), c.errOut) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errOut.String(), c.errOut)
		}
	}
}

func TestResolveRoutePrefix(t *testing.T) {
	for _, c := range []struct {
		flag, external, want string
	}{
		{"", "", "/"},
		{"", "https://example.com", "/"},
		{"", "https://example.com/", "/"},
		{"", "https://example.com/rwagent/", "/rwagent"},
		{"", "https://example.com/a/b", "/a/b"},
		{"/other/", "https://example.com/rwagent/", "/other"},
		{"/", "https://example.com/rwagent/", "/"},
	} {
		u, err := parseExternalURL(c.external)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := resolveRoutePrefix(c.flag, u); err != nil || got != c.want {
			t.Errorf("resolveRoutePrefix(%q, %q) = %q, %v; want %q", c.flag, c.external, got, err, c.want)
		}
	}
}

// TestRoutePrefixServed: the agent's routes move under the prefix.
func TestRoutePrefixServed(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "agent.yml")
	if err := os.WriteFile(cfgFile, []byte("scrape_configs: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := launch(t, &agentUnderTest{}, agentOptions{ConfigFile: cfgFile, StoragePath: filepath.Join(dir, "state"), RoutePrefix: "/rwagent"})
	waitFor(t, "/rwagent/-/ready answering 200", func() bool { return readyStatus(t, a.web+"/rwagent") == http.StatusOK })
	for path, want := range map[string]int{"/rwagent/": 200, "/rwagent/metrics": 200, "/rwagent/api/v1/status/flags": 200, "/-/ready": 404} {
		resp, err := http.Get(a.web + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}
