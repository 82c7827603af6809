package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPprofOption checks that /debug/pprof/ is served only when
// EnablePprof is set, and that the index page names it only then.
func TestPprofOption(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		h := New(Options{EnablePprof: enabled}).Handler()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/cmdline", nil))
		if got, want := rec.Code == http.StatusOK, enabled; got != want {
			t.Errorf("EnablePprof=%v: /debug/pprof/cmdline = %d", enabled, rec.Code)
		}
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		if got := strings.Contains(rec.Body.String(), "/debug/pprof/"); got != enabled {
			t.Errorf("EnablePprof=%v: index page %q", enabled, rec.Body.String())
		}
	}
}
