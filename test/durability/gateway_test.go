//go:build durability

package durability

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

var gatewayAddr = regexp.MustCompile(`msg="gateway listening" addr=([0-9.]+:[0-9]+)`)

// TestGatewayAckSurvivesSIGKILL pushes samples to rwagent's gateway while
// the receiver is down, kills rwagent with SIGKILL right after the last
// 2xx, restarts it on the same data directory with the receiver up, and
// checks that every acknowledged sample arrives. The WAL runs with the
// default fsync policy (interval): a 2xx means written to the OS, which a
// killed process cannot lose.
func TestGatewayAckSurvivesSIGKILL(t *testing.T) {
	bin := binary(t)
	s := &sink{}
	s.set(true, 0)
	recv := listen(t, s)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "rwagent.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
global:
  scrape_interval: 1h
remote_write:
  - url: http://%s/api/v1/write
    name: sink
    queue_config: {batch_send_deadline: 20ms, min_backoff: 10ms, max_backoff: 50ms}
receive:
  listen_address: 127.0.0.1:0
  api_keys:
    - {tenant: team-a, key: durability-key}
`, recv)), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "data")
	a := start(t, bin, cfg, state)
	var m []string
	waitFor(t, "the gateway address in the logs", func() bool {
		m = gatewayAddr.FindStringSubmatch(a.logs.String())
		return m != nil
	})
	const n = 200
	for i := 1; i <= n; i++ {
		req := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  []prompb.Label{{Name: "__name__", Value: "seq_total"}, {Name: "sender", Value: fmt.Sprint(i % 7)}},
			Samples: []prompb.Sample{{Value: float64(i), Timestamp: int64(1000 * i)}},
		}}}
		raw, err := req.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		hr, _ := http.NewRequest(http.MethodPost, "http://"+m[1]+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
		hr.Header.Set("Authorization", "Bearer durability-key")
		hr.Header.Set("Content-Encoding", "snappy")
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("push %d: status %d", i, resp.StatusCode)
		}
	}
	a.stop(t, syscall.SIGKILL)

	s.set(false, 0)
	b := start(t, bin, cfg, state)
	waitFor(t, "every acknowledged sample at the receiver", func() bool {
		seen := map[float64]bool{}
		for _, v := range s.values() {
			seen[v] = true
		}
		for i := 1; i <= n; i++ {
			if !seen[float64(i)] {
				return false
			}
		}
		return true
	})
	b.stop(t, syscall.SIGTERM)
}
