package sigv4_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rwagent/rwagent/pkg/sigv4"
)

// TestUnregisterMetrics builds two round trippers sharing one Metrics on a
// registry, unregisters, and does it again on the same registry: the second
// registration must not fail, and afterwards the registry holds none of the
// sigv4 series.
func TestUnregisterMetrics(t *testing.T) {
	sigv4.IsolateAWSEnv(t)
	reg := prometheus.NewRegistry()
	for range 2 {
		m := sigv4.NewMetrics()
		if err := m.Register(reg); err != nil {
			t.Fatalf("register again on the same registry: %v", err)
		}
		for range 2 { // two endpoints share the metrics
			if _, err := sigv4.NewRoundTripper(t.Context(), sigv4.Config{Region: "us-east-1", AccessKey: "AKID", SecretKey: "secret"},
				http.DefaultTransport, sigv4.Options{Metrics: m}); err != nil {
				t.Fatal(err)
			}
		}
		m.Unregister()
		m.Unregister() // idempotent
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "rwagent_sigv4_") {
			t.Errorf("%s still registered", mf.GetName())
		}
	}
}

// TestMetrics_RegisterAllOrNone checks that a failed registration leaves
// nothing behind and names the metric it failed on.
func TestMetrics_RegisterAllOrNone(t *testing.T) {
	reg := prometheus.NewRegistry()
	// Another collector under the second name makes its registration fail.
	blocker := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rwagent_sigv4_credential_refreshes_total",
		Help: "Refreshes of expiring AWS credentials used for SigV4, by result; a failure keeps signing with the current credentials until they expire.",
	}, []string{"result"})
	reg.MustRegister(blocker)
	err := sigv4.NewMetrics().Register(reg)
	if err == nil || !strings.Contains(err.Error(), "rwagent_sigv4_credential_refreshes_total") {
		t.Fatalf("Register = %v, want an error naming rwagent_sigv4_credential_refreshes_total", err)
	}
	if !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
		t.Errorf("Register = %v, want it to wrap prometheus.AlreadyRegisteredError", err)
	}
	// The gauge registered before the failure was taken back: a new set
	// registers once the other collector is gone.
	reg.Unregister(blocker)
	if err := sigv4.NewMetrics().Register(reg); err != nil {
		t.Errorf("register after a failed Register: %v", err)
	}
}
