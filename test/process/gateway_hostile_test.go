//go:build process

package process

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/gzip"
)

// gatewayBudget is the gateway's max_memory_in_flight here: a little
// more than one request at the bounds (218 MiB), so that the hostile
// requests below, up to some 150 MiB each, exceed it together.
const gatewayBudget = 256 << 20

// gatewayRSSBound is what rwagent may reach, at its peak, while its
// gateway decodes and refuses hostileSenders hostile requests at once:
// an idle agent's 75 MiB and twice the budget the requests in flight
// share (the heap grows to 1.5 times what is live at GOGC=50, and the
// decoders keep buffers for reuse), whatever the number of senders.
// Before the per-request bounds, one request of 10 million empty series
// took the decoder to 2.5 GB; before the shared budget, the bounds
// multiplied by the 16 requests in flight.
const gatewayRSSBound = 75<<20 + 2*gatewayBudget

// hostileSenders is how many hostile requests are in flight at once.
const hostileSenders = 8

// TestProcessGatewayHostileRequests sends rwagent's gateway, with a valid
// key, requests of millions of minimal series (1.0 and 2.0), of minimal
// exemplars, and of empty OTLP data points, hostileSenders at a time, a bounded
// number of rounds. Each must be refused 413 naming the bound (after
// retries, as a sender would, while the gateway answers 503 "decoding
// too much at once" for its memory budget), counted by reason, leave the
// agent's peak RSS (VmHWM) under gatewayRSSBound, and leave the gateway
// taking ordinary requests.
func TestProcessGatewayHostileRequests(t *testing.T) {
	rwagent := lookBinary(t, "RWAGENT_BIN", "rwagent")
	dir := t.TempDir()
	recvAddr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	ports := freePorts(t, 2)
	agentAddr, gwAddr := ports[0], ports[1]
	const key = "process-test-key-hostile"
	cfg := strings.NewReplacer("RECV", recvAddr, "GW", gwAddr, "KEY", key, "BUDGET", fmt.Sprint(gatewayBudget)).Replace(`
remote_write:
  - url: http://RECV/api/v1/write
receive:
  listen_address: GW
  max_memory_in_flight: BUDGET
  api_keys:
    - {tenant: hostile, key: KEY}
wal:
  fsync: never
`)
	cfgPath := filepath.Join(dir, "rwagent.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	agent := startProc(t, dir, "rwagent", rwagent,
		"--config.file="+cfgPath,
		"--storage.path="+filepath.Join(dir, "agent"),
		"--web.listen-address="+agentAddr)
	waitUp(t, "http://"+agentAddr+"/-/ready")

	v2Series := []byte{0x22, 0x08, '_', '_', 'n', 'a', 'm', 'e', '_', '_', 0x22, 0x01, 'm'}
	v2Series = append(v2Series, bytes.Repeat([]byte{0x2a, 0x04, 0x0a, 0x02, 0x00, 0x01}, 4_000_000)...)
	exemplars := bytes.Repeat([]byte{0x1a, 0x02, 0x0a, 0x00}, 6_000_000)
	exemplars = append(append([]byte{0x0a}, uvarint(len(exemplars))...), exemplars...)
	const (
		ctV1 = "application/x-protobuf;proto=prometheus.WriteRequest"
		ctV2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request"
	)
	// OTLP: a gauge of 8 million empty data points, gzipped.
	points := field(0x2a, bytes.Repeat([]byte{0x0a, 0x00}, 8_000_000))
	otlp := gzipped(t, field(0x0a, field(0x12, field(0x12, append(field(0x0a, []byte("m")), points...)))))
	hostile := []struct {
		name, ct, reason, msg string
		body                  []byte
	}{
		{"1.0: 12M empty series", ctV1, "too_many_series", "more than 100000 series", snappy.Encode(nil, bytes.Repeat([]byte{0x0a, 0x00}, 12_000_000))},
		{"2.0: 4M series", ctV2, "too_many_series", "more than 100000 series", snappy.Encode(nil, v2Series)},
		{"1.0: 6M empty exemplars", ctV1, "decode_too_large", "over 64 MiB", snappy.Encode(nil, exemplars)},
		{"OTLP: 8M empty data points", "otlp", "decode_too_large", "over 64 MiB", otlp},
	}
	post := func(ct string, body []byte) (int, string, string, error) {
		path, enc := "/api/v1/write", "snappy"
		if ct == "otlp" {
			// The answer is a google.rpc.Status whose message is in its bytes.
			path, enc, ct = "/v1/metrics", "gzip", "application/x-protobuf"
		}
		req, err := http.NewRequest(http.MethodPost, "http://"+gwAddr+path, bytes.NewReader(body))
		if err != nil {
			return 0, "", "", err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Encoding", enc)
		req.Header.Set("Content-Type", ct)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("Retry-After"), nil
	}

	const (
		rounds  = 3
		retries = 10 // of a request answered 503 for the memory budget
	)
	var (
		wg   sync.WaitGroup
		busy atomic.Int32 // 503s for the budget
		errs = make(chan error, rounds*hostileSenders)
	)
	for i := range hostileSenders {
		wg.Go(func() {
			for r := range rounds {
				h := hostile[(i+r)%len(hostile)]
				for try := 0; ; try++ {
					code, msg, retryAfter, err := post(h.ct, h.body)
					if err == nil && code == http.StatusServiceUnavailable && retryAfter == "1" && strings.Contains(msg, "decoding too much at once") && try < retries {
						busy.Add(1)
						time.Sleep(time.Second) // Retry-After, as a sender honours it
						continue
					}
					switch {
					case err != nil:
						errs <- fmt.Errorf("%s: %v", h.name, err)
					case code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, h.msg):
						errs <- fmt.Errorf("%s: %d %q, want 413 naming %q", h.name, code, msg, h.msg)
					}
					break
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := metricValue(t, agentAddr, `rwagent_receive_rejected_requests_total{reason="memory_in_flight",tenant="hostile"}`); got != float64(busy.Load()) {
		t.Errorf("%v requests counted as refused for memory_in_flight, %d answered so", got, busy.Load())
	}
	t.Logf("%d answers 503 for the memory budget, retried", busy.Load())
	if got := metricValue(t, agentAddr, `rwagent_receive_memory_reserved_bytes`); got != 0 {
		t.Errorf("rwagent_receive_memory_reserved_bytes %v after every request was answered, want 0", got)
	}
	for _, reason := range []string{"too_many_series", "decode_too_large"} {
		if v := metricValue(t, agentAddr, `rwagent_receive_rejected_requests_total{reason="`+reason+`",tenant="hostile"}`); v == 0 {
			t.Errorf("no request counted as rejected for %s", reason)
		}
	}

	// An ordinary request afterwards: one series, one sample.
	good := field(0x0a, append(field(0x0a, append(field(0x0a, []byte("__name__")), field(0x12, []byte("ok_metric"))...)),
		field(0x12, []byte{0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x01})...))
	if code, msg, _, err := post(ctV1, snappy.Encode(nil, good)); err != nil || code != http.StatusNoContent {
		t.Errorf("an ordinary request after the hostile ones: %d %q %v, want 204", code, msg, err)
	}
	if v := metricValue(t, agentAddr, `rwagent_receive_samples_total{tenant="hostile",type="float"}`); v != 1 {
		t.Errorf("rwagent_receive_samples_total{type=float} = %v, want 1", v)
	}

	hwm := vmHWM(t, agent.cmd.Process.Pid)
	t.Logf("peak RSS (VmHWM) %.1f MiB, bound %d MiB", float64(hwm)/(1<<20), gatewayRSSBound>>20)
	if hwm > gatewayRSSBound {
		t.Errorf("peak RSS %d bytes, over the bound of %d", hwm, gatewayRSSBound)
	}
	agent.stop(t, "rwagent", 30*time.Second, true)
	log, err := os.ReadFile(agent.log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "Write request refused") || !strings.Contains(string(log), "decode_too_large") && !strings.Contains(string(log), "too_many_series") {
		t.Errorf("no log line says a request was refused for its size:\n%s", tail(string(log), 4000))
	}
}

// gzipped is b compressed with gzip.
func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// field is a length-delimited protobuf field of tag tag holding b.
func field(tag byte, b []byte) []byte {
	return append(append([]byte{tag}, uvarint(len(b))...), b...)
}

func uvarint(n int) []byte {
	var b []byte
	v := uint64(n)
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
