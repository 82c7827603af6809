package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	config_util "github.com/prometheus/common/config"
	promconfig "github.com/prometheus/prometheus/config"

	"github.com/rwagent/rwagent/pkg/config"
	"github.com/rwagent/rwagent/pkg/remotewrite"
	"github.com/rwagent/rwagent/pkg/sigv4"
)

// TestReceiverLimits: AMP's limits go to an AMP workspace URL, signed or
// not, and to any endpoint signed for AMP's service; every other endpoint
// gets none.
func TestReceiverLimits(t *testing.T) {
	const amp = "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write"
	for _, tc := range []struct {
		name string
		url  string
		sv   *config.SigV4Config
		amp  bool
	}{
		{"AMP URL", amp, nil, true},
		{"AMP URL signed", amp, &config.SigV4Config{}, true},
		{"signed for aps by default", "https://vpce-1.example.com/api/v1/remote_write", &config.SigV4Config{}, true},
		{"signed for aps", "https://proxy.example.com/write", &config.SigV4Config{Service: "aps"}, true},
		{"signed for an API Gateway", "https://gw.example.com/write", &config.SigV4Config{Service: "execute-api"}, false},
		{"unsigned", "http://127.0.0.1:9090/api/v1/write", nil, false},
		{"not an AMP host", "https://aps-workspaces.example.com/write", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := remotewrite.Limits{}
			if tc.amp {
				want = remotewrite.AMPLimits()
			}
			if got := receiverLimits(tc.url, tc.sv); got != want {
				t.Errorf("receiverLimits = %+v, want %+v", got, want)
			}
		})
	}
	if remotewrite.AMPLimits() == (remotewrite.Limits{}) {
		t.Error("AMPLimits are zero")
	}
}

// TestEndpointTransport: an endpoint with a sigv4 block gets a transport
// that signs every request (the receiver's verifier accepts it) and is
// marked signed; one without gets an unsigned transport.
func TestEndpointTransport(t *testing.T) {
	signEnv(t)
	v := &sigv4.Verifier{Region: "us-east-1", Service: "aps", Credentials: []sigv4.Credential{{AccessKeyID: "AKIDSTATIC", SecretAccessKey: "static-s3cr3t"}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if err := v.Verify(r, body); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
		}
	}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL + "/api/v1/remote_write")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		sv   *config.SigV4Config
		code int
	}{
		{"signed", &config.SigV4Config{Region: "us-east-1", AccessKey: "AKIDSTATIC", SecretKey: "static-s3cr3t"}, http.StatusOK},
		{"unsigned", nil, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rw := promconfig.DefaultRemoteWriteConfig
			rw.URL = &config_util.URL{URL: u}
			et, err := newEndpointTransport(t.Context(), &rw, tc.sv, slog.New(slog.DiscardHandler), nil)
			if err != nil {
				t.Fatal(err)
			}
			if et.signed != (tc.sv != nil) {
				t.Errorf("signed = %v", et.signed)
			}
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, u.String(), bytes.NewReader([]byte("body")))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := et.transport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Errorf("status %d (%s), want %d", resp.StatusCode, msg, tc.code)
			}
		})
	}
}
