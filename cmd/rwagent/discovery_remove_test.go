//go:build remove_all_sd && !enable_aws_sd && !enable_consul_sd && !enable_dns_sd && !enable_kubernetes_sd && !all_sd

package main

import (
	"fmt"
	"strings"
	"testing"

	rwconfig "github.com/rwagent/rwagent/pkg/config"
)

// TestDiscovery_RemoveAllSD pins `-tags remove_all_sd`: static, file and
// http stay built in, and every other discovery is refused by name.
func TestDiscovery_RemoveAllSD(t *testing.T) {
	doc := func(key, body string) []byte {
		return fmt.Appendf(nil, "scrape_configs:\n  - job_name: j\n    %s:\n      %s\n", key, body)
	}
	for key, body := range map[string]string{
		"static_configs":  "- targets: [127.0.0.1:9100]",
		"file_sd_configs": "- files: [targets.json]",
		"http_sd_configs": "- url: http://127.0.0.1:8080/sd",
	} {
		if _, err := rwconfig.Load(doc(key, body), nil, nil); err != nil {
			t.Errorf("%s: refused by a remove_all_sd build: %v", key, err)
		}
	}
	for key, body := range map[string]string{
		"ec2_sd_configs":        "- region: us-east-1",
		"kubernetes_sd_configs": "- role: pod",
		"consul_sd_configs":     "- server: 127.0.0.1:8500",
		"dns_sd_configs":        "- names: [_prometheus._tcp.example.org]",
	} {
		_, err := rwconfig.Load(doc(key, body), nil, nil)
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: want an error naming it in a remove_all_sd build, got %v", key, err)
		}
	}
}
