package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServer(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "rwagent_test_total", Help: "t"})
	reg.MustRegister(c)
	c.Add(3)
	var ready atomic.Bool
	notReady := func() string {
		if ready.Load() {
			return ""
		}
		return "replaying the WAL"
	}
	s := New(Options{Addr: "127.0.0.1:0", Gatherer: reg, NotReady: notReady, EnablePprof: true})
	addr, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	base := "http://" + addr.String()

	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "rwagent_test_total 3") {
		t.Errorf("/metrics = %d %q", code, body)
	}
	if code, _ := get(t, base+"/-/healthy"); code != 200 {
		t.Errorf("/-/healthy = %d", code)
	}
	if code, _ := get(t, base+"/-/ready"); code != 503 {
		t.Errorf("/-/ready before ready = %d, want 503", code)
	}
	ready.Store(true)
	if code, _ := get(t, base+"/-/ready"); code != 200 {
		t.Errorf("/-/ready = %d, want 200", code)
	}
	if code, body := get(t, base+"/debug/pprof/heap?debug=1"); code != 200 || !strings.Contains(body, "heap profile") {
		t.Errorf("/debug/pprof/heap = %d", code)
	}
	if code, _ := get(t, base+"/nope"); code != 404 {
		t.Errorf("/nope = %d, want 404", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestServerUI checks that the status UI gets / and the paths the server
// does not serve, and that /metrics stays the server's.
func TestServerUI(t *testing.T) {
	ui := http.NewServeMux()
	ui.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "status page") })
	ui.HandleFunc("GET /api/v1/targets", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "targets") })
	h := New(Options{UI: ui}).Handler()
	for path, want := range map[string]string{"/": "status page", "/api/v1/targets": "targets", "/metrics": "# HELP", "/-/healthy": "healthy"} {
		rec := httptest.NewRecorder()
		if path == "/metrics" {
			want = "" // an empty registry: an empty body
		}
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s = %d %q, want %q", path, rec.Code, rec.Body, want)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/nope", nil))
	if rec.Code != 404 {
		t.Errorf("/nope = %d, want 404", rec.Code)
	}
}

// TestRoutePrefix: under a route prefix every route moves under it, the
// prefix without its slash and the root redirect to the page, and
// nothing else is served outside it.
func TestRoutePrefix(t *testing.T) {
	ui := http.NewServeMux()
	ui.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "status page") })
	ui.HandleFunc("GET /api/v1/targets", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "targets") })
	for _, prefix := range []string{"/rwagent", "/rwagent/", "/a/b"} {
		h := New(Options{UI: ui, RoutePrefix: prefix}).routed()
		base := strings.TrimSuffix(prefix, "/")
		for path, want := range map[string]int{
			base + "/": 200, base + "/api/v1/targets": 200, base + "/-/ready": 200, base + "/metrics": 200,
			base: http.StatusFound, "/": http.StatusFound, "/-/ready": 404, "/metrics": 404,
		} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
			if rec.Code != want {
				t.Errorf("prefix %q: %s = %d, want %d", prefix, path, rec.Code, want)
			}
			if want == http.StatusFound && rec.Header().Get("Location") != base+"/" {
				t.Errorf("prefix %q: %s redirects to %q, want %q", prefix, path, rec.Header().Get("Location"), base+"/")
			}
		}
	}
	rec := httptest.NewRecorder()
	New(Options{UI: ui, RoutePrefix: "/"}).routed().ServeHTTP(rec, httptest.NewRequest("GET", "/-/ready", nil))
	if rec.Code != 200 {
		t.Errorf("prefix /: /-/ready = %d", rec.Code)
	}
}

func TestListenTaken(t *testing.T) {
	a := New(Options{Addr: "127.0.0.1:0"})
	addr, err := a.Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer a.ln.Close()
	b := New(Options{Addr: addr.String()})
	if _, err := b.Listen(); err == nil || !strings.Contains(err.Error(), "listen on "+addr.String()) {
		t.Errorf("second Listen error = %v", err)
	}
	if err := New(Options{}).Run(context.Background()); err == nil {
		t.Error("Run before Listen: want error")
	}
}

// TestReadyReason: /-/ready answers 503 with NotReady's reason in the
// body, then 200 once the reason is empty.
func TestReadyReason(t *testing.T) {
	var why atomic.Pointer[string]
	why.Store(new("replaying the WAL"))
	h := New(Options{NotReady: func() string { return *why.Load() }}).Handler()
	for _, tc := range []struct {
		reason   string
		wantCode int
		wantBody string
	}{
		{"replaying the WAL", http.StatusServiceUnavailable, "rwagent is not ready: replaying the WAL."},
		{"instance a: waiting for service discovery: job k (kubernetes_sd_configs) has produced no targets yet", http.StatusServiceUnavailable, "instance a: waiting for service discovery: job k (kubernetes_sd_configs)"},
		{"", http.StatusOK, "rwagent is ready."},
	} {
		why.Store(&tc.reason)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/-/ready", nil))
		if rec.Code != tc.wantCode || !strings.Contains(rec.Body.String(), tc.wantBody) {
			t.Errorf("reason %q: %d %q, want %d containing %q", tc.reason, rec.Code, rec.Body.String(), tc.wantCode, tc.wantBody)
		}
	}
}

// TestReload: POST and PUT /-/reload call Reload; a refused configuration
// answers 400 and a failed one 500, each with the reason; GET is not a
// reload; without Reload the path is 404.
func TestReload(t *testing.T) {
	var calls atomic.Int32
	var result atomic.Pointer[error]
	result.Store(new(error))
	h := New(Options{Reload: func(context.Context) error {
		calls.Add(1)
		return *result.Load()
	}}).Handler()
	for _, tc := range []struct {
		method   string
		err      error
		wantCode int
		wantBody string
	}{
		{http.MethodPost, nil, http.StatusOK, "configuration reloaded."},
		{http.MethodPut, nil, http.StatusOK, "configuration reloaded."},
		{http.MethodPost, fmt.Errorf("load rwagent.yaml: %w: yaml: line 3", ErrReloadRefused), http.StatusBadRequest, "reload refused: load rwagent.yaml: configuration refused: yaml: line 3"},
		{http.MethodPost, errors.New("set up sigv4 for https://aps: no credentials"), http.StatusInternalServerError, "reload failed: set up sigv4 for https://aps: no credentials"},
	} {
		result.Store(&tc.err)
		before := calls.Load()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, "/-/reload", nil))
		if rec.Code != tc.wantCode || !strings.Contains(rec.Body.String(), tc.wantBody) || calls.Load() != before+1 {
			t.Errorf("%s with %v: %d %q (%d calls), want %d containing %q", tc.method, tc.err, rec.Code, rec.Body.String(), calls.Load()-before, tc.wantCode, tc.wantBody)
		}
	}
	before := calls.Load()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/-/reload", nil))
	if rec.Code != http.StatusMethodNotAllowed || calls.Load() != before {
		t.Errorf("GET /-/reload: %d, %d calls; want 405 and no reload", rec.Code, calls.Load()-before)
	}
	rec = httptest.NewRecorder()
	New(Options{}).Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/-/reload", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("POST /-/reload without Reload: %d, want 404", rec.Code)
	}
}
