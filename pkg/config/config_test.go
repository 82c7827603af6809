package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

var testEnv = map[string]string{
	"CLUSTER":    "prod-eu",
	"AMP_URL":    "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write",
	"AWS_SECRET": "s3cr3t-value-never-logged",
	"MAX_SHARDS": "7",
}

func lookup(name string) (string, bool) {
	v, ok := testEnv[name]
	return v, ok
}

func TestLoadGood(t *testing.T) {
	c, err := LoadFile("testdata/good.yml", lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Prometheus
	if got := p.GlobalConfig.ExternalLabels.Get("cluster"); got != "prod-eu" {
		t.Errorf("external label cluster = %q, want expanded prod-eu", got)
	}
	if len(p.ScrapeConfigs) != 2 || p.ScrapeConfigs[0].JobName != "node" {
		t.Fatalf("scrape configs = %v", p.ScrapeConfigs)
	}
	if got := p.ScrapeConfigs[0].RelabelConfigs[0].Replacement; got != "${1}" {
		t.Errorf("relabel replacement = %q, want ${1} left alone", got)
	}
	if got := p.ScrapeConfigs[1].ScrapeInterval; got != model.Duration(30*time.Second) {
		t.Errorf("files scrape_interval = %s", got)
	}
	if got := p.ScrapeConfigs[0].ScrapeInterval; got != model.Duration(15*time.Second) {
		t.Errorf("node scrape_interval = %s, want global 15s", got)
	}
	rw := p.RemoteWriteConfigs[0]
	if rw.URL.String() != testEnv["AMP_URL"] {
		t.Errorf("remote_write url = %s", rw.URL)
	}
	if string(rw.SigV4Config.SecretKey) != testEnv["AWS_SECRET"] {
		t.Errorf("sigv4 secret not expanded")
	}
	if rw.QueueConfig.MaxShards != 7 {
		t.Errorf("max_shards = %d, want 7 from ${MAX_SHARDS}", rw.QueueConfig.MaxShards)
	}
	want := WALConfig{Dir: "/var/lib/rwagent", Fsync: FsyncAlways, FsyncInterval: DefaultWALConfig.FsyncInterval, SegmentSize: 1 << 20, TruncateFrequency: DefaultWALConfig.TruncateFrequency,
		MaxSize: 1 << 30, MaxAge: model.Duration(24 * time.Hour), MinAge: model.Duration(5 * time.Minute)}
	if c.WAL != want {
		t.Errorf("wal = %+v, want %+v", c.WAL, want)
	}
	if len(c.Ignored) != 1 || c.Ignored[0] != "rule_files" {
		t.Errorf("ignored = %v, want [rule_files]", c.Ignored)
	}
	// Relative paths resolve against the file's directory, as in Prometheus.
	if got := p.ScrapeConfigs[1].ServiceDiscoveryConfigs; len(got) != 1 {
		t.Errorf("file_sd configs = %v", got)
	}
	if strings.Contains(p.String(), testEnv["AWS_SECRET"]) {
		t.Errorf("config dump shows the secret")
	}
}

func TestLoadDefaults(t *testing.T) {
	for _, f := range []string{"testdata/minimal.yml", "testdata/empty.yml"} {
		c, err := LoadFile(f, lookup, nil)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if c.WAL != DefaultWALConfig {
			t.Errorf("%s: wal = %+v, want defaults", f, c.WAL)
		}
	}
}

// TestBadConfigs loads every testdata/*.bad.yml and compares its error
// with the message expected for it: each must name the file, the line and
// the field.
func TestBadConfigs(t *testing.T) {
	want := map[string]string{
		"unknown-field.bad.yml":    `unknown-field.bad.yml:5: scrape_configs[0]: unknown field "scrape_intervall"`,
		"bad-duration.bad.yml":     `bad-duration.bad.yml:5: scrape_configs[0].scrape_timeout: unknown unit "x" in duration "5x"`,
		"missing-url.bad.yml":      `missing-url.bad.yml:6: remote_write[0]: url for remote_write is empty`,
		"bad-url.bad.yml":          `bad-url.bad.yml:2: remote_write[0].url: parse "::not a url": missing protocol scheme`,
		"unset-env.bad.yml":        `unset-env.bad.yml:2: remote_write[0].url: environment variable WORKSPACE_ID_UNSET is not set`,
		"bad-fsync.bad.yml":        `bad-fsync.bad.yml:2: wal.fsync: "sometimes" is not one of always, interval, never`,
		"wal-unknown.bad.yml":      `wal-unknown.bad.yml:2: wal: unknown field "directory"`,
		"wal-max-size.bad.yml":     `wal-max-size.bad.yml:2: wal.max_size: must be zero (no cap) or at least two segments (67108864 bytes), got 1000`,
		"wal-max-age.bad.yml":      `wal-max-age.bad.yml:2: wal.max_age: not a valid duration string: "-1h"`,
		"wal-segment-size.bad.yml": `wal-segment-size.bad.yml:2: wal.segment_size: must be a multiple of the 32768-byte page, got 100000`,
		"wal-min-age.bad.yml":      `wal-min-age.bad.yml:2: wal.min_age: not a valid duration string: "-1m"`,
		"bad-regex.bad.yml":        `bad-regex.bad.yml:7: scrape_configs[0].metric_relabel_configs[0].regex: error parsing regexp: missing closing ): ` + "`^(?s:go_(()$`",
		"syntax.bad.yml":           `syntax.bad.yml:6: mapping values are not allowed in this context`,
		"duplicate-job.bad.yml":    `duplicate-job.bad.yml: found multiple scrape configs with job name "node"`,
		"bad-sd.bad.yml":           `bad-sd.bad.yml:4: scrape_configs[0].file_sd_configs[0]: not a valid duration string: "soon"`,
		"not-a-mapping.bad.yml":    `not-a-mapping.bad.yml:1: the document must be a mapping of sections`,
		// sigv4: rwagent's extension keys (see sigv4.go).
		"sigv4-sts-no-role.bad.yml":         `sigv4-sts-no-role.bad.yml:5: remote_write[0].sigv4.sts_endpoint: needs role_arn: it only applies to the sts:AssumeRole call`,
		"sigv4-two-session-names.bad.yml":   `sigv4-two-session-names.bad.yml:6: remote_write[0].sigv4.role_session_name: set either session_name or role_session_name, not both`,
		"sigv4-secret-file-missing.bad.yml": `sigv4-secret-file-missing.bad.yml:5: remote_write[0].sigv4.secret_key_file: read secret key: open testdata/no-such-secret: no such file or directory`,
		"sigv4-scrape-unknown.bad.yml":      `sigv4-scrape-unknown.bad.yml:7: scrape_configs[0].sigv4: unknown field "regoin"`,
		"sigv4-scrape-sts-endpoint.bad.yml": `sigv4-scrape-sts-endpoint.bad.yml:7: scrape_configs[0].sigv4.sts_endpoint: "sts.example:443" is not an http(s) URL`,
		// Settings Prometheus accepts and rwagent cannot honour (refuse.go).
		"rw-azuread.bad.yml":                `rw-azuread.bad.yml:3: remote_write[0].azuread: not supported: rwagent cannot authenticate with Azure AD, and will not send unauthenticated where authentication was asked for; use authorization, oauth2 or basic_auth, or remove it`,
		"rw-google-iam.bad.yml":             `rw-google-iam.bad.yml:3: remote_write[0].google_iam: not supported: rwagent cannot authenticate with Google IAM, and will not send unauthenticated where authentication was asked for; use authorization or oauth2, or remove it`,
		"rw-round-robin-dns.bad.yml":        `rw-round-robin-dns.bad.yml:6: remote_write[1].round_robin_dns: not supported: rwagent dials the host as Go's HTTP client does (the resolver's first working address, connections reused); remove it`,
		"rw-convert-nhcb.bad.yml":           `rw-convert-nhcb.bad.yml:3: remote_write[0].convert_nhcb_to_classic: not supported: rwagent does not convert native histograms with custom buckets to classic ones; remove it, or do not set convert_classic_histograms_to_nhcb on the scrape configs`,
		"rw-failed-request-logging.bad.yml": `rw-failed-request-logging.bad.yml:4: remote_write[0].failed_request_logging: not supported: rwagent does not dump failed requests; it logs the status and the receiver's message of every refused batch. Remove it`,
		"sigv4-fips-sts.bad.yml":            `sigv4-fips-sts.bad.yml:5: remote_write[0].sigv4.use_fips_sts_endpoint: not supported: rwagent does not choose the FIPS STS endpoint itself; set sts_endpoint: https://sts-fips.<region>.amazonaws.com instead`,
		"sigv4-tags.bad.yml":                `sigv4-tags.bad.yml:5: remote_write[0].sigv4.tags: not supported: rwagent does not pass session tags to sts:AssumeRole; remove tags and grant what they would through the role's policy`,
		"storage-retention.bad.yml":         `storage-retention.bad.yml:4: storage.tsdb.retention.size: not supported: rwagent keeps no TSDB, so there is nothing for it to apply to; remove it (the WAL is bounded by wal.max_size and wal.max_age)`,
		"storage-exemplars.bad.yml":         `storage-exemplars.bad.yml:3: storage.exemplars.max_exemplars: not supported: rwagent keeps no TSDB, so there is nothing for it to apply to; remove it (the WAL is bounded by wal.max_size and wal.max_age)`,
		"tracing.bad.yml":                   `tracing.bad.yml:1: tracing: not supported: rwagent exports no traces of its own; remove the section`,
		"runtime-log-level.bad.yml":         `runtime-log-level.bad.yml:3: runtime.log_level: not supported: rwagent takes its log level from the command line; remove it and run with --log.level=debug`,
		"runtime-gogc-zero.bad.yml":         `runtime-gogc-zero.bad.yml:2: runtime.gogc: 0 would collect garbage continuously; remove it for the default (GOGC, else 50) or set a percentage`,
		// AWS regions and AMP URLs.
		"region-invalid.bad.yml":         `region-invalid.bad.yml:4: remote_write[0].sigv4.region: "us-east-1a" is not an AWS region name (like us-east-1, eu-central-2 or us-gov-west-1)`,
		"region-contradicts-url.bad.yml": `region-contradicts-url.bad.yml:5: remote_write[0].sigv4.region: eu-west-1 contradicts the region us-east-1 of the URL's host: requests signed for eu-west-1 are refused there; set region: us-east-1 or remove it`,
		"amp-no-sigv4.bad.yml":           `amp-no-sigv4.bad.yml:4: remote_write[1].url: an Amazon Managed Service for Prometheus workspace refuses unsigned requests (403): add a sigv4: block (sigv4: {} takes the region from the URL and credentials from the AWS default chain)`,
		"sigv4-scrape-region.bad.yml":    `sigv4-scrape-region.bad.yml:6: scrape_configs[0].sigv4.region: "eu-west" is not an AWS region name (like us-east-1, eu-central-2 or us-gov-west-1)`,
		"sigv4-sts-region.bad.yml":       `sigv4-sts-region.bad.yml:5: remote_write[0].sigv4.sts_region: "east" is not an AWS region name (like us-east-1, eu-central-2 or us-gov-west-1)`,
	}
	files, err := filepath.Glob("testdata/*.bad.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Errorf("%d bad files, %d expectations: keep them in step", len(files), len(want))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := LoadFile(f, lookup, nil)
			if err == nil {
				t.Fatal("loaded without error")
			}
			w, ok := want[filepath.Base(f)]
			if !ok {
				t.Fatalf("no expected message; got %q", err)
			}
			if got := strings.TrimPrefix(err.Error(), "testdata/"); got != w {
				t.Errorf("error\n got: %s\nwant: %s", got, w)
			}
		})
	}
}

func TestSecretNotInErrors(t *testing.T) {
	doc := "remote_write:\n  - url: http://127.0.0.1/\n    sigv4:\n      secret_key: ${AWS_SECRET}\n      bogus: 1\n"
	_, err := Load([]byte(doc), lookup, nil)
	if err == nil {
		t.Fatal("want error for unknown field")
	}
	if strings.Contains(err.Error(), testEnv["AWS_SECRET"]) {
		t.Errorf("error shows the secret: %v", err)
	}
}

func TestExpand(t *testing.T) {
	env := func(n string) (string, bool) {
		v, ok := map[string]string{"A": "x", "B_2": "y: z # w", "EMPTY": ""}[n]
		return v, ok
	}
	f := func(in, want, wantErr string) {
		t.Helper()
		got, err := expand(in, env)
		if wantErr != "" {
			if err == nil || err.Error() != wantErr {
				t.Errorf("expand(%q) error = %v, want %q", in, err, wantErr)
			}
			return
		}
		if err != nil || got != want {
			t.Errorf("expand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	f("plain", "plain", "")
	f("${A}", "x", "")
	f("a${A}b${B_2}c", "axby: z # wc", "")
	f("${EMPTY}", "", "")
	f("$1 ${1} $A", "$1 ${1} $A", "")
	f("$${A}", "${A}", "")
	f("${A", "${A", "")
	f("${}", "${}", "")
	f("${NOPE}", "", "environment variable NOPE is not set")
	// Defaults, as Grafana Agent's -config.expand-env reads them.
	f("${NOPE:-d}", "d", "")
	f("${NOPE-d}", "d", "")
	f("${EMPTY:-d}", "d", "")
	f("${EMPTY-d}", "", "")
	f("${A:-d}", "x", "")
	f("${NOPE:-http://h:9/w}/x", "http://h:9/w/x", "")
	f("${NOPE:-}", "", "")
	f("${1:-d}", "${1:-d}", "")
}

// A value that expands to YAML syntax stays one string.
func TestExpandCannotInject(t *testing.T) {
	env := func(string) (string, bool) { return "x\nscrape_configs: [", true }
	c, err := Load([]byte("global:\n  external_labels:\n    a: ${V}\n"), env, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Prometheus.GlobalConfig.ExternalLabels.Get("a"); got != "x\nscrape_configs: [" {
		t.Errorf("label = %q", got)
	}
}

func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yml")
	ga, _ := filepath.Glob("testdata/grafana-agent/*.yml")
	for _, p := range append(files, ga...) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Load(b, lookup, nil)
		if err != nil {
			return
		}
		for _, p := range c.Pipelines() {
			if p.Prometheus == nil {
				t.Fatal("nil Prometheus config without error")
			}
		}
	})
}

// TestV2QueueDefaults checks max_samples_per_send: a 2.0 remote_write that
// does not set it gets DefaultMaxSamplesPerSendV2, one that sets it keeps
// its value (Prometheus' 2,000 included), and 1.0 keeps Prometheus'
// default.
func TestV2QueueDefaults(t *testing.T) {
	c, err := Load([]byte(`
remote_write:
  - url: http://a/write
    protobuf_message: io.prometheus.write.v2.Request
  - url: http://b/write
    protobuf_message: io.prometheus.write.v2.Request
    queue_config:
      max_samples_per_send: 2000
  - url: http://c/write
    protobuf_message: io.prometheus.write.v2.Request
    queue_config:
      max_shards: 3
  - url: http://d/write
`), lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{DefaultMaxSamplesPerSendV2, 2000, DefaultMaxSamplesPerSendV2, 2000} {
		if got := c.Prometheus.RemoteWriteConfigs[i].QueueConfig.MaxSamplesPerSend; got != want {
			t.Errorf("remote_write[%d] max_samples_per_send = %d, want %d", i, got, want)
		}
	}
	if got := c.Prometheus.RemoteWriteConfigs[2].QueueConfig.MaxShards; got != 3 {
		t.Errorf("remote_write[2] max_shards = %d, want 3", got)
	}
}

// TestAccepted loads settings Prometheus has that rwagent accepts because
// they ask for nothing it does not do (defaults written out,
// keep_dropped_targets), the otlp section it ignores with a note, and
// runtime.gogc, which it honours.
func TestAccepted(t *testing.T) {
	c, err := LoadFile("testdata/accepted.yml", lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Ignored) != 0 {
		t.Errorf("ignored = %v, want none: every section there is at its default", c.Ignored)
	}
	if c.GoGC == nil || *c.GoGC != 80 {
		t.Errorf("GoGC = %v, want 80 from runtime.gogc", c.GoGC)
	}
	if got := c.Prometheus.ScrapeConfigs[0].KeepDroppedTargets; got != 10 {
		t.Errorf("keep_dropped_targets = %d, want 10", got)
	}

	c, err = LoadFile("testdata/otlp.yml", lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Ignored) != 1 || c.Ignored[0] != "otlp" {
		t.Errorf("ignored = %v, want [otlp]", c.Ignored)
	}
	if c.GoGC != nil {
		t.Errorf("GoGC = %d without runtime.gogc, want nil", *c.GoGC)
	}

	// A negative gogc turns the collector off, as GOGC=off does; the
	// value written is kept, not Prometheus' default for it.
	c, err = Load([]byte("runtime:\n  gogc: -1\n"), lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.GoGC == nil || *c.GoGC != -1 {
		t.Errorf("GoGC = %v, want -1", c.GoGC)
	}
}
