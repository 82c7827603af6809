package config

import (
	"crypto/sha256"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestReceiveGood(t *testing.T) {
	env := func(name string) (string, bool) {
		if name == "TEAM_B_KEY" {
			return "team-b-key", true
		}
		return "", false
	}
	c, err := LoadFile("testdata/receive/good.yml", env, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Receive
	if r == nil {
		t.Fatal("no receive section")
	}
	if r.ListenAddress != "127.0.0.1:9201" || r.TenantLabel != "tenant" || r.MaxRequestBytes != 1<<20 {
		t.Errorf("got listen %q, tenant_label %q, max_request_bytes %d", r.ListenAddress, r.TenantLabel, r.MaxRequestBytes)
	}
	// Relative to the file's directory, as key_file and Prometheus' files.
	if tc := r.TLSConfig; tc == nil || tc.CertFile != "testdata/receive/tls.crt" || tc.KeyFile != "/etc/rwagent/tls.key" {
		t.Errorf("tls_config %+v, want cert_file testdata/receive/tls.crt and key_file /etc/rwagent/tls.key", tc)
	}
	want := []struct {
		tenant string
		key    string
	}{{"team-a", "team-a-secret-key"}, {"team-b", "team-b-key"}, {"team-c", "team-c-key"}, {"team-b", "team-b-second-key"}}
	if len(r.APIKeys) != len(want) {
		t.Fatalf("%d keys, want %d", len(r.APIKeys), len(want))
	}
	for i, w := range want {
		k := r.APIKeys[i]
		if k.Tenant != w.tenant || k.Digest != sha256.Sum256([]byte(w.key)) {
			t.Errorf("api_keys[%d]: tenant %q, digest of the wrong key", i, k.Tenant)
		}
		if k.Key != "" {
			t.Errorf("api_keys[%d]: the key is kept after hashing", i)
		}
	}
	if k := r.APIKeys[0]; k.SamplesPerSecond != 1000 || k.Burst != 5000 {
		t.Errorf("api_keys[0] limits %v/%d", k.SamplesPerSecond, k.Burst)
	}
	if k := r.APIKeys[0]; len(k.RemoteWriteNames) != 0 {
		t.Errorf("api_keys[0] (no remote_write_names) routed to %q", k.RemoteWriteNames)
	}
	if k := r.APIKeys[1]; !slices.Equal(k.RemoteWriteNames, []string{"archive", "amp"}) {
		t.Errorf("api_keys[1] remote_write_names %q, want [archive amp]", k.RemoteWriteNames)
	}
}

// TestReceiveMemoryInFlight: max_memory_in_flight is kept when set,
// and when not set is the default, raised to what one request at
// max_request_bytes may need.
func TestReceiveMemoryInFlight(t *testing.T) {
	for _, c := range []struct {
		name, fields string
		want         int64
	}{
		{"default", "", DefaultMaxMemoryInFlight},
		{"set", "max_memory_in_flight: 300MiB", 300 << 20},
		{"set to exactly one request", "max_memory_in_flight: " + strconv.FormatInt(RequestMemory(10<<20), 10), RequestMemory(10 << 20)},
		{"default raised by max_request_bytes", "max_request_bytes: 100MiB", 100<<20 + 1 + 800<<20 + 1 + 128<<20},
		{"set with max_request_bytes", "max_request_bytes: 100MiB\n  max_memory_in_flight: 2GiB", 2 << 30},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc := "receive:\n  listen_address: :9201\n  api_keys: [{tenant: a, key: k}]\n  " + c.fields + "\n"
			cfg, err := Load([]byte(doc), lookup, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := int64(cfg.Receive.MaxMemoryInFlight); got != c.want {
				t.Errorf("max_memory_in_flight %d, want %d", got, c.want)
			}
		})
	}
}

func TestReceiveNone(t *testing.T) {
	c, err := Load([]byte("global: {}\n"), lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Receive != nil {
		t.Errorf("a file without receive: got a gateway: %+v", c.Receive)
	}
}

func TestReceiveTenantLabelEmpty(t *testing.T) {
	doc := "receive:\n  listen_address: :9201\n  tenant_label: \"\"\n  api_keys: [{tenant: a, key: k}]\n"
	c, err := Load([]byte(doc), lookup, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Receive.TenantLabel != "" {
		t.Errorf("tenant_label \"\" gave %q", c.Receive.TenantLabel)
	}
}

func TestReceiveBad(t *testing.T) {
	want := map[string]string{
		"no-listen.bad.yml":             `no-listen.bad.yml:2: receive.listen_address: required: the host:port the gateway listens on (its own, not --web.listen-address)`,
		"no-keys.bad.yml":               `no-keys.bad.yml:2: receive.api_keys: at least one key: the gateway does not take unauthenticated writes`,
		"routing.bad.yml":               `routing.bad.yml:9: receive.api_keys[0].remote_write_names: tenant "team-a": no remote_write is named "ampp"; the named ones are "amp", "archive"`,
		"routing-unnamed.bad.yml":       `routing-unnamed.bad.yml:6: receive.api_keys[0].remote_write_names: tenant "team-a": no remote_write is named "amp"; no remote_write has a name: (only named endpoints can be routed to)`,
		"routing-keys.bad.yml":          `routing-keys.bad.yml:8: receive.api_keys[1].remote_write_names: tenant "team-a" has other remote_write_names in api_keys[0]: keys of one tenant share its routing, give them the same`,
		"routing-comma.bad.yml":         `routing-comma.bad.yml:4: receive.api_keys[0].remote_write_names: tenant "team-a": "amp,archive" cannot be the name of a remote_write to route to (empty, or a comma in it)`,
		"tenant-label-reserved.bad.yml": `tenant-label-reserved.bad.yml:3: receive.tenant_label: "__rwagent_remote_write_names__" starts with __, which is reserved for internal labels`,
		"two-keys.bad.yml":              `two-keys.bad.yml:4: receive.api_keys[0]: set exactly one of key, key_file and sha256`,
		"bad-sha.bad.yml":               `bad-sha.bad.yml:5: receive.api_keys[1].sha256: must be the 64 hex digits of the key's SHA-256 (sha256sum)`,
		"same-key.bad.yml":              `same-key.bad.yml:5: receive.api_keys[1]: the same key as api_keys[0]: each key names one tenant`,
		"missing-key-file.bad.yml":      `missing-key-file.bad.yml:4: receive.api_keys[0].key_file: read key: open testdata/receive/no-such.key: no such file or directory`,
		"unknown.bad.yml":               `unknown.bad.yml:3: receive: unknown field "listen"`,
		"size.bad.yml":                  `size.bad.yml:3: receive.max_request_bytes: "lots" is not a size in bytes (like 10MiB)`,
		"tenant-limits.bad.yml":         `tenant-limits.bad.yml:5: receive.api_keys[1]: tenant "team-a" has other limits in api_keys[0]: keys of one tenant share its limits, give them the same`,
		"tenant-label.bad.yml":          `tenant-label.bad.yml:3: receive.tenant_label: "tenant-id" is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)`,
		"memory.bad.yml":                `memory.bad.yml:3: receive.max_memory_in_flight: max_memory_in_flight 134217728 bytes is less than one request may need at max_request_bytes 10485760: 228589570 bytes (218 MiB: its body, its decompressed body up to 80 MiB and twice the 64 MiB its decoding may hold); raise it, or lower max_request_bytes`,
		"series-limit.bad.yml":          `series-limit.bad.yml:5: receive.api_keys[1].max_series_per_request: max_series_per_request 100001 of tenant "team-b" is over the gateway's own limit of 100000 series per request, which it cannot raise: set at most 100000`,
		"otlp-settings.bad.yml":         "otlp-settings.bad.yml:5: otlp: not supported: the gateway's /v1/metrics translates OTLP with Prometheus' default otlp: settings; remove the otlp: section or leave it at its defaults",
	}
	files, err := filepath.Glob("testdata/receive/*.bad.yml")
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
			if got := strings.TrimPrefix(err.Error(), "testdata/receive/"); got != want[filepath.Base(f)] {
				t.Errorf("error\n got: %s\nwant: %s", got, want[filepath.Base(f)])
			}
			for _, secret := range []string{"team-a-secret-key", "k1", "k2"} {
				if strings.Contains(err.Error(), ": "+secret) || strings.Contains(err.Error(), "\""+secret+"\"") {
					t.Errorf("error shows a key: %s", err)
				}
			}
		})
	}
}
