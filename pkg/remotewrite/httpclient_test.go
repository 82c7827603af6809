package remotewrite

import (
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/record"
)

// TestHTTPClientConfig: what Prometheus' http_client_config and headers
// say reaches the receiver, through Prometheus' own write handler: custom
// headers, basic auth, a bearer token (authorization), and TLS verified
// against a CA file.
func TestHTTPClientConfig(t *testing.T) {
	secret := config_util.Secret("s3cr3t")
	for _, tc := range []struct {
		name  string
		tls   bool
		mod   func(c *config.RemoteWriteConfig, caFile string)
		check func(r *http.Request) bool
	}{
		{"headers", false, func(c *config.RemoteWriteConfig, _ string) {
			c.Headers = map[string]string{"X-Scope-OrgID": "tenant-1"}
		}, func(r *http.Request) bool { return r.Header.Get("X-Scope-OrgID") == "tenant-1" }},
		{"basic auth", false, func(c *config.RemoteWriteConfig, _ string) {
			c.HTTPClientConfig.BasicAuth = &config_util.BasicAuth{Username: "agent", Password: secret}
		}, func(r *http.Request) bool {
			u, p, ok := r.BasicAuth()
			return ok && u == "agent" && p == string(secret)
		}},
		{"bearer token", false, func(c *config.RemoteWriteConfig, _ string) {
			c.HTTPClientConfig.Authorization = &config_util.Authorization{Type: "Bearer", Credentials: secret}
		}, func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer "+string(secret) }},
		{"TLS with a CA file", true, func(c *config.RemoteWriteConfig, caFile string) {
			c.HTTPClientConfig.TLSConfig = config_util.TLSConfig{CAFile: caFile}
		}, func(r *http.Request) bool { return r.TLS != nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newTestStore()
			h := remote.NewWriteHandler(slog.New(slog.DiscardHandler), prometheus.NewRegistry(), st,
				remoteapi.MessageTypes{remoteapi.WriteV1MessageType}, false, false)
			refused := make(chan struct{}, 100)
			handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !tc.check(r) {
					refused <- struct{}{}
					http.Error(w, "request lacks what the config asks for", http.StatusUnauthorized)
					return
				}
				h.ServeHTTP(w, r)
			})
			var srv *httptest.Server
			caFile := ""
			if tc.tls {
				srv = httptest.NewTLSServer(handler)
				caFile = filepath.Join(t.TempDir(), "ca.pem")
				cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
				if err := os.WriteFile(caFile, cert, 0o600); err != nil {
					t.Fatal(err)
				}
			} else {
				srv = httptest.NewServer(handler)
			}
			t.Cleanup(srv.Close)

			log := newFakeLog()
			base := nowMs()
			end := log.append(seriesRec(rs(1, "__name__", "up")), samplesRec(record.RefSample{Ref: 1, T: base, V: 1}))
			r := startQueue(t, Options{
				Config: testConfig(t, srv.URL, func(c *config.RemoteWriteConfig) { tc.mod(c, caFile) }),
				Log:    log,
			})
			waitFor(t, "acked at end", func() bool { return r.q.Acked() == end })
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			if len(refused) > 0 {
				t.Errorf("%d requests lacked what the config asks for", len(refused))
			}
			if got := st.count(); got != 1 {
				t.Errorf("receiver stored %d samples, want 1", got)
			}
		})
	}
}
