package config

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestDumpHidesSecrets loads a file with a recognisable secret (SECRET-…)
// in every secret field and checks the dump shows none of them, and still
// shows what is not secret.
func TestDumpHidesSecrets(t *testing.T) {
	b, err := os.ReadFile("testdata/secrets.yml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(b, lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Dump()
	if err != nil {
		t.Fatal(err)
	}
	secret := regexp.MustCompile(`SECRET-[a-z0-9-]+|5ec0e75ec0e7`)
	if found := secret.FindAllString(out, -1); len(found) > 0 {
		t.Errorf("the dump shows secrets %v:\n%s", found, out)
	}
	for _, want := range []string{
		"job_name: oauth", "service: execute-api", "username: u", "access_key: AKIAEXAMPLE", "X-Scope-OrgID: <secret>",
		"user:xxxxx@receiver.example.com", "role_arn: arn:aws:iam::123456789012:role/amp-writer",
		"tenant: team-a", "fsync: interval", "listen_address: 127.0.0.1:0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the dump lacks %q:\n%s", want, out)
		}
	}
	var v map[string]any
	if err := yaml.Unmarshal([]byte(out), &v); err != nil {
		t.Errorf("the dump is not YAML: %v", err)
	}
}

// TestDumpInstances checks that a Grafana Agent file dumps each instance,
// named.
func TestDumpInstances(t *testing.T) {
	doc := `metrics:
  wal_directory: /tmp/wal
  configs:
    - name: first
      scrape_configs: [{job_name: a, static_configs: [{targets: ["127.0.0.1:1"]}]}]
      remote_write: [{url: "http://127.0.0.1/write", basic_auth: {username: u, password: SECRET-ga}}]
    - name: second
      scrape_configs: [{job_name: b, static_configs: [{targets: ["127.0.0.1:2"]}]}]
`
	c, err := Load([]byte(doc), lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Dump()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# instance: first", "job_name: a", "---\n# instance: second", "job_name: b"} {
		if !strings.Contains(out, want) {
			t.Errorf("the dump lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "SECRET-ga") {
		t.Errorf("the dump shows the password:\n%s", out)
	}
}
