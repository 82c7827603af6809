package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/config"
	"github.com/rwagent/rwagent/pkg/receive"
	"github.com/rwagent/rwagent/pkg/wal"
)

// gatewayAddr waits for the agent's "gateway listening" log line and
// returns the address it bound.
func (a *agentUnderTest) gatewayAddr(t *testing.T) string {
	t.Helper()
	re := regexp.MustCompile(`msg="gateway listening" addr=(\S+)`)
	var addr string
	waitFor(t, "gateway listening", func() bool {
		m := re.FindStringSubmatch(a.logs.String())
		if m == nil {
			return false
		}
		addr = m[1]
		return true
	})
	return addr
}

// pushV1 sends a hand-built remote-write 1.0 request, as Prometheus'
// remote_write with `authorization: {credentials: key}` does, and returns
// the status.
func pushV1(t *testing.T, url, key string, req *prompb.WriteRequest) int {
	t.Helper()
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	hr, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(snappy.Encode(nil, raw)))
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Content-Encoding", "snappy")
	hr.Header.Set("Content-Type", "application/x-protobuf")
	hr.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	if key != "" {
		hr.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A sender without AWS credentials pushes through rwagent's gateway: the
// samples arrive at the (emulated) AMP signed by rwagent, with the
// tenant label of the sender's key, and a sender without a key gets 401
// and writes nothing.
func TestGatewayForwardsWithTenantLabel(t *testing.T) {
	setAWSEnv(t)
	a := startAgent(t, `
global:
  scrape_interval: 1h
remote_write:
  - url: RECEIVER
    sigv4: {region: us-east-1}
    queue_config: {batch_send_deadline: 100ms}
receive:
  listen_address: 127.0.0.1:0
  api_keys:
    - {tenant: team-a, key: gateway-key-team-a}
    - {tenant: team-b, key: gateway-key-team-b}
`)
	url := "http://" + a.gatewayAddr(t) + "/api/v1/write"
	now := time.Now().UnixMilli()
	series := func(v float64) *prompb.WriteRequest {
		return &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  []prompb.Label{{Name: "__name__", Value: "pushed_value"}, {Name: "instance", Value: "sender-1"}},
			Samples: []prompb.Sample{{Value: v, Timestamp: now}},
		}}}
	}
	if code := pushV1(t, url, "gateway-key-team-a", series(42)); code != http.StatusNoContent {
		t.Fatalf("team-a push: %d", code)
	}
	if code := pushV1(t, url, "gateway-key-team-b", series(7)); code != http.StatusNoContent {
		t.Fatalf("team-b push: %d", code)
	}
	if code := pushV1(t, url, "", series(1)); code != http.StatusUnauthorized {
		t.Fatalf("push without a key: %d, want 401", code)
	}
	waitFor(t, "team-a's sample at the receiver", a.scalarIs(t, `pushed_value{tenant="team-a",instance="sender-1"}`, 42))
	waitFor(t, "team-b's sample at the receiver", a.scalarIs(t, `pushed_value{tenant="team-b",instance="sender-1"}`, 7))
	if v := a.query(t, `count(pushed_value)`); len(v) != 1 || v[0].F != 2 {
		t.Errorf("count(pushed_value) = %v, want 2: the unauthenticated push wrote nothing", v)
	}
	if v := a.metric(t, "rwagent_receive_requests_total", map[string]string{"tenant": "team-a", "code": "204"}); v != 1 {
		t.Errorf("rwagent_receive_requests_total{tenant=team-a,code=204} = %v, want 1", v)
	}
	if v := a.metric(t, "rwagent_receive_rejected_requests_total", map[string]string{"reason": "unauthorized"}); v != 1 {
		t.Errorf("rejected unauthorized = %v, want 1", v)
	}
	a.stop(t)
	if logs := a.logs.String(); bytes.Contains([]byte(logs), []byte("gateway-key-team")) {
		t.Error("a gateway key is in the log")
	}
}

// walFull flips once the segments come within one segment of max_size.
func TestWALFull(t *testing.T) {
	w, err := wal.Open(wal.Options{Dir: t.TempDir(), SegmentSize: 32 << 10}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if walFull(w, 0, 32<<10) != nil {
		t.Error("no max_size: want no check")
	}
	if walFull(w, 64<<10, 32<<10)() {
		t.Fatal("an empty WAL is full")
	}
	ref := w.NewRef()
	recs := &wal.Records{Series: []record.RefSeries{{Ref: ref, Labels: labels.FromStrings("__name__", "x")}}}
	for i := range 5000 {
		recs.Samples = append(recs.Samples, record.RefSample{Ref: ref, T: int64(i) * 1000, V: rand.Float64()})
	}
	if err := w.Log(recs); err != nil {
		t.Fatal(err)
	}
	if n, _ := w.BytesAfter(wal.Position{}); n < 32<<10 {
		t.Fatalf("only %d bytes logged; the test needs a segment's worth", n)
	}
	if !walFull(w, 64<<10, 32<<10)() {
		t.Error("a WAL within one segment of max_size is not full")
	}
}

// A tenant with remote_write_names reaches only the endpoints it names;
// one without reaches every endpoint; the route label reaches none, and a
// sender that tries to set it is refused.
func TestGatewayRoutesByRemoteWriteNames(t *testing.T) {
	archive, archiveURL := serveReceiver(t, receive.Options{Dir: filepath.Join(t.TempDir(), "archive"), WorkspaceID: "ws-archive"})
	a := startAgentWith(t, `
global:
  scrape_interval: 1h
remote_write:
  - {name: amp, url: RECEIVER, queue_config: {batch_send_deadline: 100ms}}
  - {name: archive, url: `+archiveURL+`/workspaces/ws-archive/api/v1/remote_write, queue_config: {batch_send_deadline: 100ms}}
receive:
  listen_address: 127.0.0.1:0
  api_keys:
    - {tenant: team-a, key: key-a, remote_write_names: [archive]}
    - {tenant: team-b, key: key-b}
`, receive.Options{})
	url := "http://" + a.gatewayAddr(t) + "/api/v1/write"
	now := time.Now().UnixMilli()
	push := func(key, name string, extra ...prompb.Label) int {
		return pushV1(t, url, key, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
			Labels:  append([]prompb.Label{{Name: "__name__", Value: name}}, extra...),
			Samples: []prompb.Sample{{Value: 1, Timestamp: now}},
		}}})
	}
	// team-a first: once team-b's sample is at amp, amp's queue has read
	// past team-a's in the WAL.
	if code := push("key-a", "routed_value"); code != http.StatusNoContent {
		t.Fatalf("team-a push: %d", code)
	}
	if code := push("key-b", "everywhere_value"); code != http.StatusNoContent {
		t.Fatalf("team-b push: %d", code)
	}
	if code := push("key-b", "forged_value", prompb.Label{Name: wal.RouteLabel, Value: "amp"}); code != http.StatusBadRequest {
		t.Fatalf("push with the route label: %d, want 400", code)
	}
	queryArchive := func(expr string) promql.Vector {
		v, err := archive.Query(context.Background(), expr, time.Now())
		if err != nil {
			t.Fatalf("query %s: %v", expr, err)
		}
		return v
	}
	waitFor(t, "everywhere_value at amp", a.scalarIs(t, `everywhere_value{tenant="team-b"}`, 1))
	waitFor(t, "everywhere_value and routed_value at archive", func() bool {
		return len(queryArchive(`everywhere_value{tenant="team-b"}`)) == 1 && len(queryArchive(`routed_value{tenant="team-a"}`)) == 1
	})
	names := func(v promql.Vector) []string {
		var out []string
		for _, s := range v {
			out = append(out, s.Metric.Get("__name__"))
		}
		slices.Sort(out)
		return out
	}
	const all = `count by (__name__) ({__name__=~".+"})`
	if got := names(a.query(t, all)); !slices.Equal(got, []string{"everywhere_value"}) {
		t.Errorf("amp holds %q, want only everywhere_value", got)
	}
	if got := names(queryArchive(all)); !slices.Equal(got, []string{"everywhere_value", "routed_value"}) {
		t.Errorf("archive holds %q, want everywhere_value and routed_value", got)
	}
	const routed = `{` + wal.RouteLabel + `!=""}`
	if v := a.query(t, routed); len(v) != 0 {
		t.Errorf("amp got the route label: %v", v)
	}
	if v := queryArchive(routed); len(v) != 0 {
		t.Errorf("archive got the route label: %v", v)
	}
	if v := a.metric(t, "rwagent_remote_write_series_not_routed_total", map[string]string{"remote_name": "amp"}); v != 1 {
		t.Errorf("series_not_routed_total{remote_name=amp} = %v, want 1", v)
	}
	if v := a.metric(t, "rwagent_remote_write_series_not_routed_total", map[string]string{"remote_name": "archive"}); v != 0 {
		t.Errorf("series_not_routed_total{remote_name=archive} = %v, want 0", v)
	}
}

// gatewayReloadConfig is a receive: section on 127.0.0.1 with TLS from
// dir/tls.crt and the key of team-a in dir/team-a.key; limits and
// listen are spliced in.
const gatewayReloadConfig = `
receive:
  listen_address: LISTEN
  tls_config: {cert_file: tls.crt, key_file: tls.key}
  api_keys:
    - {tenant: team-a, key_file: team-a.key, LIMITS}
`

// TestGatewayReload reloads a running gateway from configuration files as
// the agent's reload does: a rotated key (the old one 403, the new one
// 2xx), changed limits, a rotated certificate (a new TLS connection sees
// it), and a refused change of listen_address or of the receive: section
// that leaves the old configuration serving. The certificates in
// testdata/gateway-tls are self-signed for 127.0.0.1 and valid until 2126.
func TestGatewayReload(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	useCert := func(name string) []byte {
		t.Helper()
		for _, ext := range []string{".crt", ".key"} {
			b, err := os.ReadFile(filepath.Join("testdata", "gateway-tls", name+ext))
			if err != nil {
				t.Fatal(err)
			}
			write("tls"+ext, string(b))
		}
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
		if err != nil {
			t.Fatal(err)
		}
		return pair.Certificate[0]
	}
	load := func(listen, limits string) *config.Config {
		t.Helper()
		text := strings.NewReplacer("LISTEN", listen, "LIMITS", limits).Replace(gatewayReloadConfig)
		write("agent.yml", text)
		c, err := config.LoadFile(filepath.Join(dir, "agent.yml"), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first := useCert("first")
	write("team-a.key", "first-key\n")
	cfg := load("127.0.0.1:0", "samples_per_second: 1, burst: 2")
	w, err := wal.Open(wal.Options{Dir: filepath.Join(dir, "wal"), SegmentSize: 1 << 20}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	p := &pipeline{wal: w, logger: slog.New(slog.DiscardHandler), reg: prometheus.NewRegistry()}
	p.cfg.Store(cfg)
	gw, err := p.startGateway()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		gw.close()
	}()

	// push sends n samples of one series with key over a new TLS
	// connection and returns the status and the certificate served.
	now := time.Now().UnixMilli()
	push := func(key string, n int) (int, []byte) {
		t.Helper()
		req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{Labels: []prompb.Label{{Name: "__name__", Value: "pushed"}}}}}
		for i := range n {
			now++
			req.Timeseries[0].Samples = append(req.Timeseries[0].Samples, prompb.Sample{Timestamp: now, Value: float64(i)})
		}
		raw, err := req.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		hr, _ := http.NewRequest(http.MethodPost, "https://"+gw.addr.String()+"/api/v1/write", bytes.NewReader(snappy.Encode(nil, raw)))
		hr.Header.Set("Content-Encoding", "snappy")
		hr.Header.Set("Authorization", "Bearer "+key)
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // the test compares the certificate itself
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.TLS.PeerCertificates[0].Raw
	}

	if code, cert := push("first-key", 2); code != http.StatusNoContent || !bytes.Equal(cert, first) {
		t.Fatalf("before the reload: %d, first certificate %t", code, bytes.Equal(cert, first))
	}
	if code, _ := push("first-key", 2); code != http.StatusTooManyRequests {
		t.Fatalf("over the limit before the reload: %d, want 429", code)
	}

	second := useCert("second")
	write("team-a.key", "second-key\n")
	if err := gw.reload(load("127.0.0.1:0", "samples_per_second: 1000, burst: 1000")); err != nil {
		t.Fatal(err)
	}
	if code, _ := push("first-key", 1); code != http.StatusForbidden {
		t.Errorf("old key after the reload: %d, want 403", code)
	}
	code, cert := push("second-key", 500)
	if code != http.StatusNoContent {
		t.Errorf("new key, 500 samples under the new limit: %d, want 204", code)
	}
	if !bytes.Equal(cert, second) {
		t.Error("the reload did not rotate the certificate")
	}

	for _, c := range []struct {
		cfg  *config.Config
		want string
	}{
		{load("127.0.0.1:1", "samples_per_second: 1000, burst: 1000"), "receive: gateway: listen_address cannot change"},
		{&config.Config{}, "receive: removed"},
	} {
		if err := gw.reload(c.cfg); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("reload = %v, want %q", err, c.want)
		}
	}
	if err := (&gatewayRun{}).reload(cfg); err == nil || !strings.HasPrefix(err.Error(), "receive: added") {
		t.Errorf("reload adding receive: = %v", err)
	}
	if code, cert := push("second-key", 1); code != http.StatusNoContent || !bytes.Equal(cert, second) {
		t.Errorf("after refused reloads: %d, second certificate %t: the old configuration must still serve", code, bytes.Equal(cert, second))
	}
}
