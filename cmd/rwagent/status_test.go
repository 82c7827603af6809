package main

import (
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
)

// secretPattern matches every secret of testdata/secrets.yml.
var secretPattern = regexp.MustCompile(`SECRET-[a-z0-9-]+|5ec0e75ec0e7`)

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestStatusPagesHideSecrets runs the agent with a recognisable secret in
// every secret field its configuration has (scrape auth of each kind,
// service discovery credentials, remote_write URL password, headers,
// OAuth2 and SigV4, receive API keys) and checks that the status page and
// every API show the targets and endpoints and none of the secrets.
func TestStatusPagesHideSecrets(t *testing.T) {
	setAWSEnv(t)
	app := serve(t, appRegistry(t))
	b, err := os.ReadFile("testdata/secrets.yml")
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, strings.ReplaceAll(string(b), "APP", app.Listener.Addr().String()))
	waitFor(t, "the bearer job's target up on /api/v1/targets", func() bool {
		_, body := getBody(t, a.web+"/api/v1/targets?state=active")
		var r struct {
			Data struct {
				ActiveTargets []struct{ ScrapePool, Health string }
			}
		}
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			return false
		}
		for _, at := range r.Data.ActiveTargets {
			if at.ScrapePool == "bearer" && at.Health == "up" {
				return true
			}
		}
		return false
	})
	pages := map[string]string{
		"/":                          app.Listener.Addr().String(),
		"/api/v1/targets":            `"scrapePool":"authz"`,
		"/api/v1/targets/metadata":   `"metric":"`,
		"/api/v1/status/config":      `secret_key: \u003csecret\u003e`,
		"/api/v1/status/flags":       `"status":"success"`,
		"/api/v1/status/buildinfo":   `"goVersion":"go`,
		"/api/v1/status/runtimeinfo": `"startTime"`,
		"/api/v1/status/walreplay":   `"current"`,
		"/api/v1/remote_write":       `"url":"http://user:xxxxx@127.0.0.1:1/api/v1/write"`,
		"/metrics":                   "prometheus_remote_storage_samples_total",
	}
	for path, want := range pages {
		code, body := getBody(t, a.web+path)
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("%s = %d, lacks %q:\n%.2000s", path, code, want, body)
		}
		if found := secretPattern.FindAllString(body, -1); len(found) > 0 {
			t.Errorf("%s shows secrets %v", path, found)
		}
	}
	_, cfg := getBody(t, a.web+"/api/v1/status/config")
	for _, want := range []string{"job_name: httpsd", "job_name: ec2", `X-Scope-OrgID: \u003csecret\u003e`} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config dump lacks %q", want)
		}
	}
}

// TestFlagValues checks that /api/v1/status/flags gets every flag with
// its value, defaults included.
func TestFlagValues(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.String("config.file", "rwagent.yaml", "")
	fs.Float64("web.amp-price-per-10m-samples", 0.9, "")
	if err := fs.Parse([]string{"--config.file=a.yml"}); err != nil {
		t.Fatal(err)
	}
	got := flagValues(fs)
	if len(got) != 2 || got["config.file"] != "a.yml" || got["web.amp-price-per-10m-samples"] != "0.9" {
		t.Errorf("flagValues = %v", got)
	}
}

// TestAMPPriceFlag checks that a price that is not positive is refused by
// name.
func TestAMPPriceFlag(t *testing.T) {
	var stderr strings.Builder
	if code := run([]string{"--web.amp-price-per-10m-samples=0"}, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "--web.amp-price-per-10m-samples") {
		t.Errorf("exit %d, stderr %q: want 2 naming the flag", code, stderr.String())
	}
}
