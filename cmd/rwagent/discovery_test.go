//go:build !all_sd && !remove_all_sd

package main

import (
	"fmt"
	"strings"
	"testing"

	rwconfig "github.com/rwagent/rwagent/pkg/config"
)

// TestDiscovery_DefaultBuild pins the service discoveries of the default
// binary: the ones AWS users run load, and one left out is refused by name.
func TestDiscovery_DefaultBuild(t *testing.T) {
	builtIn := map[string]string{
		"ec2_sd_configs":        "- region: us-east-1",
		"ecs_sd_configs":        "- region: us-east-1",
		"lightsail_sd_configs":  "- region: us-east-1",
		"rds_sd_configs":        "- region: us-east-1",
		"kubernetes_sd_configs": "- role: pod",
		"consul_sd_configs":     "- server: 127.0.0.1:8500",
		"dns_sd_configs":        "- names: [_prometheus._tcp.example.org]",
		"http_sd_configs":       "- url: http://127.0.0.1:8080/sd",
		"file_sd_configs":       "- files: [targets.json]",
	}
	for key, body := range builtIn {
		doc := fmt.Sprintf("scrape_configs:\n  - job_name: j\n    %s:\n      %s\n", key, body)
		if _, err := rwconfig.Load([]byte(doc), nil, nil); err != nil {
			t.Errorf("%s: refused by the default build: %v", key, err)
		}
	}
	for _, key := range []string{"azure_sd_configs", "gce_sd_configs", "nomad_sd_configs"} {
		doc := fmt.Sprintf("scrape_configs:\n  - job_name: j\n    %s: []\n", key)
		_, err := rwconfig.Load([]byte(doc), nil, nil)
		if err == nil || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "all_sd") {
			t.Errorf("%s: want an error naming it and the all_sd tag, got %v", key, err)
		}
	}
}
