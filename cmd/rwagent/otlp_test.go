package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/rwagent/rwagent/pkg/sigv4"
)

// An application instrumented with the OTel Go SDK exports with
// otlpmetrichttp, a real OTLP/HTTP client, to rwagent's gateway with an
// API key; rwagent forwards to ampemu signed with SigV4 (ampemu refuses
// anything unsigned), and the series is found with ampemu's query API,
// itself signed, under its translated name with the tenant label.
func TestGatewayOTLPToAMP(t *testing.T) {
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
    - {tenant: team-otel, key: otel-gateway-key}
`)
	ctx := t.Context()
	exp, err := otlpmetrichttp.New(ctx,
		otlpmetrichttp.WithEndpointURL("http://"+a.gatewayAddr(t)+"/v1/metrics"),
		otlpmetrichttp.WithHeaders(map[string]string{"Authorization": "Bearer otel-gateway-key"}),
		otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression),
		otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: false}),
	)
	if err != nil {
		t.Fatal(err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", "checkout"), attribute.String("service.instance.id", "pod-1"))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))))
	orders, err := mp.Meter("shop").Int64Counter("orders")
	if err != nil {
		t.Fatal(err)
	}
	orders.Add(ctx, 3, metric.WithAttributes(attribute.String("region", "eu")))
	if err := mp.ForceFlush(ctx); err != nil {
		t.Fatalf("export to the gateway: %v", err)
	}
	if err := mp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	signed, err := sigv4.NewRoundTripper(ctx, sigv4.Config{Region: "us-east-1"}, http.DefaultTransport, sigv4.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const expr = `orders_total{tenant="team-otel", job="checkout", instance="pod-1", region="eu"}`
	queryURL := a.recvURL + "/workspaces/ws-e2e/api/v1/query?query=" + url.QueryEscape(expr)
	// query asks ampemu's query API for expr and returns the values it
	// answers, and the status code.
	query := func(rt http.RoundTripper) ([]string, int) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, queryURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := (&http.Client{Transport: rt, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if resp.StatusCode != http.StatusOK {
			return nil, resp.StatusCode
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		var vals []string
		for _, r := range body.Data.Result {
			v, _ := r.Value[1].(string)
			vals = append(vals, v)
		}
		return vals, resp.StatusCode
	}
	waitFor(t, expr+" in ampemu", func() bool {
		vals, _ := query(signed)
		return len(vals) == 1 && vals[0] == "3"
	})
	if _, code := query(http.DefaultTransport); code != http.StatusForbidden {
		t.Errorf("an unsigned query answered %d, want 403: the test relies on ampemu checking signatures", code)
	}
	if v := a.metric(t, "rwagent_receive_requests_total", map[string]string{"tenant": "team-otel", "protocol": "otlp_protobuf", "code": "200"}); v < 1 {
		t.Errorf("rwagent_receive_requests_total{tenant=team-otel,protocol=otlp_protobuf,code=200} = %v, want at least 1", v)
	}
}
