package loadgen

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// parsed is what textparse reads from one scrape body.
type parsed struct {
	floats map[string]float64 // series → value
	native int                // native histogram samples
}

func parse(t *testing.T, body []byte, contentType string) parsed {
	t.Helper()
	p, err := textparse.New(body, contentType, labels.NewSymbolTable(), textparse.ParserOptions{})
	if err != nil {
		t.Fatalf("new parser for %q: %v", contentType, err)
	}
	out := parsed{floats: map[string]float64{}}
	var lset labels.Labels
	for {
		e, err := p.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("parse %s: %v", contentType, err)
		}
		switch e {
		case textparse.EntrySeries:
			p.Labels(&lset)
			_, _, v := p.Series()
			if _, dup := out.floats[lset.String()]; dup {
				t.Fatalf("series %s exposed twice", lset)
			}
			out.floats[lset.String()] = v
		case textparse.EntryHistogram:
			_, _, h, fh := p.Histogram()
			if h == nil && fh == nil {
				t.Fatal("histogram entry without a histogram")
			}
			if h != nil {
				if err := h.Validate(); err != nil {
					t.Fatalf("invalid native histogram: %v", err)
				}
			}
			out.native++
		}
	}
}

func TestTargetScrape(t *testing.T) {
	for _, tc := range []struct {
		name    string
		series  int
		natives int
		churn   float64
	}{
		{"small", 100, 0, 0},
		{"thousand", 1000, 0, 0},
		{"churn", 1000, 0, 0.1},
		{"natives", 500, 7, 0.05},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := newTarget(tc.series, tc.natives, 42)
			if tg.series < tc.series*9/10 || tg.series > tc.series*11/10 {
				t.Fatalf("target has %d series, want about %d", tg.series, tc.series)
			}
			body, n := tg.scrape(tc.churn, false)
			first := parse(t, body, "text/plain; version=0.0.4")
			if len(first.floats) != n || n != tg.series {
				t.Fatalf("text scrape: parsed %d series, reported %d, target has %d", len(first.floats), n, tg.series)
			}
			body, n = tg.scrape(tc.churn, false)
			second := parse(t, body, "text/plain; version=0.0.4")
			changed, gone := 0, 0
			for k, v := range first.floats {
				v2, ok := second.floats[k]
				switch {
				case !ok:
					gone++
				case v2 != v:
					changed++
				}
			}
			if changed < len(first.floats)/2 {
				t.Errorf("only %d of %d values changed between scrapes", changed, len(first.floats))
			}
			if (tc.churn > 0) != (gone > 0) {
				t.Errorf("churn %v replaced %d series", tc.churn, gone)
			}
			// OpenMetrics: the same series (no churn in between) with
			// values moved on, read by Prometheus' OpenMetrics parser.
			body, n = tg.scrape(0, true)
			om := parse(t, body, OpenMetricsContentType)
			// A counter's family is named without _total; the body ends
			// with # EOF (the parser insists on the latter only).
			if !strings.Contains(string(body), "\n# TYPE node_cpu_seconds counter\n") || strings.Contains(string(body), "_total counter\n") {
				t.Error("OpenMetrics counter families keep their _total suffix")
			}
			if len(om.floats) != n || n != tg.series {
				t.Fatalf("OpenMetrics scrape: parsed %d series, reported %d, target has %d", len(om.floats), n, tg.series)
			}
			for k := range second.floats {
				if _, ok := om.floats[k]; !ok {
					t.Fatalf("series %s of the text scrape missing from OpenMetrics", k)
				}
			}
			body, n, err := tg.scrapeProto(tc.churn)
			if err != nil {
				t.Fatal(err)
			}
			pb := parse(t, body, ProtobufContentType)
			if pb.native != tc.natives || len(pb.floats)+pb.native != n {
				t.Fatalf("protobuf scrape: parsed %d series and %d native histograms, reported %d samples",
					len(pb.floats), pb.native, n)
			}
		})
	}
}

func TestGeneratorServes(t *testing.T) {
	g, err := New(Options{Targets: 3, Series: 200, NativeHistograms: 2, OpenMetrics: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	var want int64
	for _, addr := range g.Addrs() {
		for _, accept := range []string{"text/plain", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
			"application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"} {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
			req.Header.Set("Accept", accept)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("scrape %s: %d %v", addr, resp.StatusCode, err)
			}
			ct := resp.Header.Get("Content-Type")
			if strings.HasPrefix(accept, "application/openmetrics-text") != strings.HasPrefix(ct, "application/openmetrics-text") {
				t.Fatalf("asked for %q, got %q", accept, ct)
			}
			p := parse(t, body, ct)
			want += int64(len(p.floats) + p.native)
		}
	}
	// The handler counts after the body is written, so the last count may
	// land just after the client has read it: poll to a deadline.
	deadline := time.Now().Add(5 * time.Second)
	for {
		samples, scrapes := g.Served()
		if samples == want && scrapes == 9 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Served() = %d samples, %d scrapes; want %d, 9", samples, scrapes, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func BenchmarkTargetScrape(b *testing.B) {
	tg := newTarget(1000, 0, 1)
	b.ReportAllocs()
	var n int
	for b.Loop() {
		_, n = tg.scrape(0, false)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sample")
}
