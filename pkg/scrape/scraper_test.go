package scrape

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
)

func TestManager_FailedScrapes(t *testing.T) {
	good := newExporter(t).handler
	malformed, err := os.ReadFile(filepath.Join("testdata", "bad_unclosed_labels.prom"))
	if err != nil {
		t.Fatal(err)
	}
	dupNames, err := os.ReadFile(filepath.Join("testdata", "dup_label_names.prom"))
	if err != nil {
		t.Fatal(err)
	}
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := closed.Addr().String()
	closed.Close()

	cases := []struct {
		name       string
		extra      string
		handler    http.Handler
		addr       string // instead of a server
		wantErr    string
		wantIs     error
		wantReason string // of rwagent_scrape_failures_total; empty: other
	}{
		{
			name:       "sample_limit",
			extra:      "    sample_limit: 5",
			handler:    good,
			wantErr:    "sample_limit exceeded",
			wantIs:     ErrSampleLimit,
			wantReason: failSampleLimit,
		},
		{
			name:       "body_size_limit",
			extra:      "    body_size_limit: 100B\n    enable_compression: false",
			handler:    good,
			wantErr:    "body_size_limit",
			wantIs:     ErrBodySizeLimit,
			wantReason: failBodySizeLimit,
		},
		{
			name: "duplicate label names",
			handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain; version=0.0.4")
				_, _ = w.Write(dupNames)
			}),
			wantErr:    `label name "a" is not unique`,
			wantIs:     ErrDuplicateLabelNames,
			wantReason: failDuplicateNames,
		},
		{
			name: "malformed exposition",
			handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain; version=0.0.4")
				_, _ = w.Write(malformed)
			}),
			wantErr: "parse exposition",
		},
		{
			name: "slow target",
			handler: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				<-r.Context().Done()
			}),
			wantErr: "scrape_timeout of 100ms exceeded",
		},
		{
			name:    "HTTP error",
			handler: http.NotFoundHandler(),
			wantErr: "404",
		},
		{
			name:    "unreachable",
			addr:    deadAddr,
			wantErr: "connection refused",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := tc.addr
			if tc.handler != nil {
				addr = hostOf(newTestServer(t, tc.handler).URL)
			}
			var logs lockedBuffer
			s := newMemStorage()
			h := startManagerOpts(t, loadScrapeConfigs(t, jobYAML("100ms", tc.extra)), ManagerOptions{
				Storage: s,
				Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
			})
			h.s = s
			h.setTargets("test", addr)
			h.waitUp(addr, 0)
			err := h.target("test").LastError()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("target error = %v, want one containing %q", err, tc.wantErr)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("target error %v is not %v", err, tc.wantIs)
			}
			if strings.Contains(err.Error(), "http://") {
				t.Errorf("error %q contains the target URL", err)
			}
			if refs := h.s.find("__name__", "test_temperature_celsius"); len(refs) != 0 {
				t.Errorf("samples of a failed scrape logged: %v", refs)
			}
			reason := cmp.Or(tc.wantReason, failOther)
			failures := h.m.metrics.failures.WithLabelValues("test", reason)
			waitFor(t, "failure counted with reason "+reason, func() bool { return testutil.ToFloat64(failures) > 0 })
			waitFor(t, "failure logged with the target", func() bool {
				l := logs.String()
				return strings.Contains(l, "Scrape failed") && strings.Contains(l, addr)
			})
		})
	}
}

func TestAcceptHeader(t *testing.T) {
	// The values Prometheus v0.316.0 sends.
	cases := []struct {
		protocols []config.ScrapeProtocol
		escaping  model.EscapingScheme
		want      string
	}{
		{
			config.DefaultScrapeProtocols, model.NoEscaping,
			"application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.7," +
				"application/openmetrics-text;version=0.0.1;q=0.6," +
				"text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5," +
				"text/plain;version=0.0.4;q=0.4,*/*;q=0.3",
		},
		{
			config.DefaultProtoFirstScrapeProtocols, model.UnderscoreEscaping,
			"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7," +
				"application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.6," +
				"application/openmetrics-text;version=0.0.1;q=0.5," +
				"text/plain;version=1.0.0;escaping=underscores;q=0.4," +
				"text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
		},
	}
	for _, tc := range cases {
		if got := acceptHeader(tc.protocols, tc.escaping); got != tc.want {
			t.Errorf("acceptHeader(%v) =\n%s\nwant\n%s", tc.protocols, got, tc.want)
		}
	}
}

// TestManager_DroppedSamplesLogged: samples dropped as duplicates or out of
// bounds are counted and logged with the target, once per
// badSampleLogInterval however often the target is scraped.
func TestManager_DroppedSamplesLogged(t *testing.T) {
	addr := hostOf(newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		future := time.Now().Add(time.Hour).UnixMilli()
		fmt.Fprintf(w, "dup 1\ndup 2\nfuture 1 %d\nfine 1\n", future)
	})).URL)
	var logs lockedBuffer
	s := newMemStorage()
	h := startManagerOpts(t, loadScrapeConfigs(t, jobYAML("50ms", "")), ManagerOptions{
		Storage: s,
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	})
	h.s = s
	h.setTargets("test", addr)
	ok := h.m.metrics.scrapes.WithLabelValues("test", "success")
	waitFor(t, "five scrapes", func() bool { return testutil.ToFloat64(ok) >= 5 })
	h.stop()

	for reason, c := range map[string]prometheus.Collector{
		reasonDuplicate:   h.m.metrics.dropped.WithLabelValues(reasonDuplicate),
		reasonOutOfBounds: h.m.metrics.dropped.WithLabelValues(reasonOutOfBounds),
		"prometheus_target_scrapes_sample_duplicate_timestamp_total": h.m.metrics.duplicates,
		"prometheus_target_scrapes_sample_out_of_bounds_total":       h.m.metrics.outOfBounds,
	} {
		if v := testutil.ToFloat64(c); v < 5 {
			t.Errorf("%s = %v, want one per scrape (>= 5)", reason, v)
		}
	}
	var lines []string
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, "Samples dropped") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("logged %d lines of dropped samples, want 1 (rate-limited):\n%s", len(lines), logs.String())
	}
	for _, want := range []string{"target=http://" + addr, "duplicate=1", "out_of_bounds=1", "scrape_job=test"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("log line %q lacks %q", lines[0], want)
		}
	}
	if _, ok := s.last("__name__", "fine"); !ok {
		t.Error("the good sample of the scrape was not logged")
	}
}
