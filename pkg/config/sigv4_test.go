package config

import (
	"strings"
	"testing"
)

// TestLoadSigV4 loads Prometheus' sigv4 fields unchanged next to rwagent's
// extension and signed scrapes.
func TestLoadSigV4(t *testing.T) {
	c, err := LoadFile("testdata/sigv4.yml", lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Prometheus
	if len(c.RemoteWriteSigV4) != 3 || c.RemoteWriteSigV4[2] != nil {
		t.Fatalf("RemoteWriteSigV4 = %v", c.RemoteWriteSigV4)
	}
	want0 := SigV4Config{Region: "us-west-2", RoleARN: "arn:aws:iam::123456789012:role/writer", ExternalID: "ext-1",
		RoleSessionName: "prom-session", Service: "aps"}
	if got := *c.RemoteWriteSigV4[0]; got != want0 {
		t.Errorf("remote_write[0].sigv4 = %+v, want %+v", got, want0)
	}
	want1 := SigV4Config{AccessKey: "AKIDEXAMPLE", SecretKeyFile: "testdata/secret.txt",
		RoleARN: "arn:aws:iam::123456789012:role/writer", RoleSessionName: "rwagent",
		STSRegion: "eu-west-1", STSEndpoint: "https://sts.eu-west-1.amazonaws.com"}
	if got := *c.RemoteWriteSigV4[1]; got != want1 {
		t.Errorf("remote_write[1].sigv4 = %+v, want %+v", got, want1)
	}
	// RemoteWriteSigV4 is the one sigv4 config: Prometheus' block keeps
	// what Prometheus parsed, without rwagent's keys or the file's key
	// (nothing signs from it), and the dump never shows the secret.
	if got := string(p.RemoteWriteConfigs[1].SigV4Config.SecretKey); got != "" {
		t.Errorf("Prometheus' block holds secret_key %q, want none", got)
	}
	if strings.Contains(p.String(), "rwagentFILEsecret") {
		t.Error("config dump shows the secret")
	}
	if p.RemoteWriteConfigs[0].SigV4Config.SessionName != "prom-session" {
		t.Error("Prometheus' session_name lost")
	}
	if got := p.RemoteWriteConfigs[1].SigV4Config.SessionName; got != "" {
		t.Errorf("role_session_name written into Prometheus' block as session_name %q", got)
	}
	gw := c.ScrapeSigV4["gateway"]
	if gw == nil || gw.Service != DefaultScrapeSigV4Service || gw.Region != "eu-west-1" || gw.RoleARN == "" {
		t.Errorf("scrape sigv4 = %+v", gw)
	}
	if _, ok := c.ScrapeSigV4["plain"]; ok || len(c.ScrapeSigV4) != 1 {
		t.Errorf("ScrapeSigV4 = %v", c.ScrapeSigV4)
	}
}

// TestSigV4SecretNotInErrors checks that a secret near a bad sigv4 key is
// not repeated in the error.
func TestSigV4SecretNotInErrors(t *testing.T) {
	for _, doc := range []string{
		"remote_write:\n  - url: http://127.0.0.1/\n    sigv4:\n      access_key: AKID\n      secret_key: ${AWS_SECRET}\n      sts_region: eu-west-1\n",
		"scrape_configs:\n  - job_name: a\n    sigv4:\n      secret_key: ${AWS_SECRET}\n",
		"scrape_configs:\n  - job_name: a\n    sigv4:\n      secret_key: ${AWS_SECRET}\n      access_key: 1\n      bogus: 1\n",
	} {
		_, err := Load([]byte(doc), lookup, nil)
		if err == nil {
			t.Fatalf("no error for %q", doc)
		}
		if strings.Contains(err.Error(), testEnv["AWS_SECRET"]) {
			t.Errorf("error shows the secret: %v", err)
		}
	}
}
