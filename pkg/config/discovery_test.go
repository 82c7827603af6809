package config

import (
	"strings"
	"testing"

	// The tests load file_sd_configs. Which discoveries a binary has is
	// chosen by that binary (cmd/rwagent), not by this package.
	_ "github.com/prometheus/prometheus/discovery/file"
)

func TestLoad_DiscoveryNotBuiltIn(t *testing.T) {
	const doc = `scrape_configs:
  - job_name: vms
    azure_sd_configs:
      - subscription_id: x
        tenant_id: y
        client_id: z
        client_secret: hunter2-azure-secret
`
	_, err := Load([]byte(doc), nil, nil)
	if err == nil {
		t.Fatal("a discovery this binary lacks was accepted")
	}
	for _, want := range []string{"3: ", "scrape_configs[0].azure_sd_configs", "not built into", "all_sd"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows the secret: %q", err)
	}

	const known = `scrape_configs:
  - job_name: files
    file_sd_configs:
      - files: [targets.json]
`
	if _, err := Load([]byte(known), nil, nil); err != nil {
		t.Fatalf("a built-in discovery was refused: %v", err)
	}
}
