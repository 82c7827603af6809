package gateway

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
)

// TestReloadKeys: after a reload the old key is refused and the new one
// writes, as its new tenant with the new tenant label.
func TestReloadKeys(t *testing.T) {
	e := newEnv(t, Tenant{}, nil)
	up := func(ts int64) []byte {
		return v1(prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "up"}}, Samples: []prompb.Sample{{Timestamp: ts, Value: 1}}})
	}
	if resp, msg := e.post(keyA, ctV1, up(1)); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("before the reload: %d %s", resp.StatusCode, msg)
	}
	opts := e.opts
	opts.Keys = []Key{{Digest: sha256.Sum256([]byte("rotated-key")), Tenant: &Tenant{Name: "team-a2"}}}
	opts.TenantLabel = "owner"
	if err := e.g.Reload(opts); err != nil {
		t.Fatal(err)
	}
	if resp, msg := e.post(keyA, ctV1, up(2)); resp.StatusCode != http.StatusForbidden {
		t.Errorf("old key after the reload: %d %s, want 403", resp.StatusCode, msg)
	}
	if resp, msg := e.post("rotated-key", ctV1, up(3)); resp.StatusCode != http.StatusNoContent {
		t.Errorf("new key after the reload: %d %s, want 204", resp.StatusCode, msg)
	}
	got := strings.Join(e.contents().samples, "\n")
	want := `{__name__="up", tenant="team-a"} 1 1` + "\n" + `{__name__="up", owner="team-a2"} 3 1`
	if got != want {
		t.Errorf("WAL samples:\n%s\nwant:\n%s", got, want)
	}
}

// TestReloadLimits: a tenant whose rate limit did not change keeps its
// bucket (still empty after a reload); changed limits apply at once, as
// do max_series_per_request and max_request_bytes.
func TestReloadLimits(t *testing.T) {
	e := newEnv(t, Tenant{SamplesPerSecond: 1, Burst: 5, MaxSeriesPerRequest: 2}, nil)
	five := v1(ts([]string{"__name__", "a"}, 1, 1, 2, 3, 4, 5))
	three := v1(ts([]string{"__name__", "a"}, 10, 1), ts([]string{"__name__", "b"}, 10, 1), ts([]string{"__name__", "c"}, 10, 1))
	if resp, msg := e.post(keyB, ctV1, five); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("first five: %d %s", resp.StatusCode, msg)
	}
	reload := func(b Tenant, maxBytes int64) {
		t.Helper()
		b.Name = "team-b"
		opts := e.opts
		opts.Keys = []Key{opts.Keys[0], {Digest: sha256.Sum256([]byte(keyB)), Tenant: &b}}
		opts.MaxRequestBytes = maxBytes
		if err := e.g.Reload(opts); err != nil {
			t.Fatal(err)
		}
	}
	// The same rate, another series limit: the bucket is the old one, empty.
	reload(Tenant{SamplesPerSecond: 1, Burst: 5, MaxSeriesPerRequest: 3}, 0)
	if resp, msg := e.post(keyB, ctV1, five); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("same limits after a reload: %d %s, want 429 (the bucket is kept, still empty)", resp.StatusCode, msg)
	}
	// A new rate: a new bucket, full.
	reload(Tenant{SamplesPerSecond: 100, Burst: 100, MaxSeriesPerRequest: 3}, 0)
	if resp, msg := e.post(keyB, ctV1, five); resp.StatusCode != http.StatusNoContent {
		t.Errorf("raised limits: %d %s, want 204", resp.StatusCode, msg)
	}
	if resp, msg := e.post(keyB, ctV1, three); resp.StatusCode != http.StatusNoContent {
		t.Errorf("3 series with max_series_per_request 3: %d %s, want 204", resp.StatusCode, msg)
	}
	reload(Tenant{SamplesPerSecond: 100, Burst: 100, MaxSeriesPerRequest: 2}, 16)
	if resp, msg := e.post(keyB, ctV1, three); resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "max_request_bytes (16 bytes)") {
		t.Errorf("max_request_bytes 16: %d %s, want 413", resp.StatusCode, msg)
	}
}

// TestReloadTLS serves TLS on 127.0.0.1: a reload rotates the certificate
// for new connections; a certificate that does not load, a new listen
// address and turning TLS off are refused, and the gateway goes on
// serving as before each.
func TestReloadTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := writeCert(t, certFile, keyFile, "first")
	e := newEnv(t, Tenant{}, func(o *Options) {
		o.Addr, o.TLSCertFile, o.TLSKeyFile = "127.0.0.1:0", certFile, keyFile
	})
	addr, err := e.g.Listen()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- e.g.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// served returns the certificate a new connection is given, after
	// checking that a write with keyA goes through on it.
	served := func() []byte {
		t.Helper()
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // the test checks the certificate itself
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodPost, "https://"+addr.String()+"/api/v1/write", bytes.NewReader(v1(ts([]string{"__name__", "up"}, time.Now().UnixMilli(), 1))))
		req.Header.Set("Authorization", "Bearer "+keyA)
		req.Header.Set("Content-Encoding", "snappy")
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("write over TLS: %d", resp.StatusCode)
		}
		return resp.TLS.PeerCertificates[0].Raw
	}
	if !bytes.Equal(served(), first) {
		t.Fatal("not serving the first certificate")
	}
	second := writeCert(t, certFile, keyFile, "second")
	if err := e.g.Reload(e.opts); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(served(), second) {
		t.Error("a reload did not rotate the certificate")
	}

	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.g.Reload(e.opts); err == nil || !strings.Contains(err.Error(), "load the gateway's TLS certificate "+certFile) {
		t.Errorf("broken certificate: Reload = %v, want the error naming it", err)
	}
	moved := e.opts
	moved.Addr = "127.0.0.1:1"
	moved.Keys = []Key{{Digest: sha256.Sum256([]byte("other")), Tenant: &Tenant{Name: "x"}}}
	if err := e.g.Reload(moved); err == nil || !strings.Contains(err.Error(), "listen_address") {
		t.Errorf("new listen address: Reload = %v, want an error naming listen_address", err)
	}
	plain := e.opts
	plain.TLSCertFile, plain.TLSKeyFile = "", ""
	if err := e.g.Reload(plain); err == nil || !strings.Contains(err.Error(), "tls_config") {
		t.Errorf("TLS off: Reload = %v, want an error naming tls_config", err)
	}
	if !bytes.Equal(served(), second) { // keyA still writes: nothing changed
		t.Error("a refused reload changed the certificate")
	}
}

// TestReloadTLSOn: a gateway serving plain HTTP cannot turn TLS on live.
func TestReloadTLSOn(t *testing.T) {
	e := newEnv(t, Tenant{}, nil)
	dir := t.TempDir()
	opts := e.opts
	opts.TLSCertFile, opts.TLSKeyFile = filepath.Join(dir, "c"), filepath.Join(dir, "k")
	writeCert(t, opts.TLSCertFile, opts.TLSKeyFile, "x")
	if err := e.g.Reload(opts); err == nil || !strings.Contains(err.Error(), "tls_config") {
		t.Errorf("TLS on: Reload = %v, want an error naming tls_config", err)
	}
}

// writeCert writes a new self-signed certificate for 127.0.0.1 named cn
// and its key, and returns the certificate's DER.
func writeCert(t *testing.T, certFile, keyFile, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return der
}
