//go:build browser

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBrowserStatusPage loads the status page of a running agent in
// headless Chromium (Debian's chromium, which .ci/run installs) and checks
// what a user sees in the rendered DOM: the target, the remote-write
// endpoint, and none of the configuration's secrets. It also takes a
// screenshot (BROWSER_SCREENSHOT names where to keep it).
func TestBrowserStatusPage(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run .ci/run, or apt-get install chromium")
	}
	setAWSEnv(t)
	app := serve(t, appRegistry(t))
	b, err := os.ReadFile("testdata/secrets.yml")
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, strings.ReplaceAll(string(b), "APP", app.Listener.Addr().String()))
	waitFor(t, "a target up", func() bool {
		_, body := getBody(t, a.web+"/api/v1/targets?state=active")
		return strings.Contains(body, `"health":"up"`)
	})

	browse := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir()}
		cmd := exec.CommandContext(ctx, chromium, append(append(base, args...), a.web+"/")...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
		}
		return string(out)
	}

	dom := browse("--dump-dom")
	for _, want := range []string{
		"rwagent status", "Computed at",
		app.Listener.Addr().String() + "/metrics",    // a target
		"http://user:xxxxx@127.0.0.1:1/api/v1/write", // an endpoint, without its password
		"Cost and cardinality", "$0.90 per 10 million samples",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page in Chromium lacks %q", want)
		}
	}
	if found := secretPattern.FindAllString(dom, -1); len(found) > 0 {
		t.Errorf("the page in Chromium shows secrets %v", found)
	}

	shot := os.Getenv("BROWSER_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "status.png")
	}
	browse("--screenshot="+shot, "--window-size=1400,2200", "--hide-scrollbars")
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 10_000 || !strings.HasPrefix(string(png), "\x89PNG") {
		t.Errorf("screenshot %s: %v, %d bytes: want a PNG of the page", shot, err, len(png))
	}
}
