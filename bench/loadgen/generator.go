// Package loadgen serves synthetic Prometheus scrape targets on loopback
// for the load benchmark: node_exporter- and kube-state-metrics-shaped
// counters, gauges and classic histograms whose values change on every
// scrape, with optional series churn. Series names and labels are
// rendered once; a scrape only appends the new values, so the generator
// costs little next to the agent it feeds.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Generator. Zero values are described per field.
type Options struct {
	Targets int // number of targets (listeners); zero: 1
	Series  int // series per target, rounded to whole histograms; zero: 1000
	// Churn is the fraction of each target's series replaced by new ones
	// on every scrape; zero: no churn.
	Churn float64
	// NativeHistograms per target are served, beside the Series, to
	// scrapers that accept the protobuf format; zero: none.
	NativeHistograms int
	// OpenMetrics serves OpenMetrics 1.0 text to scrapers that ask for it
	// (as client_golang does with EnableOpenMetrics), without _created
	// series; otherwise they get Prometheus' text format.
	OpenMetrics bool
	Seed        uint64 // zero: 1
}

// OpenMetricsContentType is what targets answer when they serve OpenMetrics.
const OpenMetricsContentType = "application/openmetrics-text; version=1.0.0; charset=utf-8"

// Generator serves Options.Targets targets, each on its own
// 127.0.0.1 listener. Its methods are safe for concurrent use.
type Generator struct {
	opts      Options
	listeners []net.Listener
	targets   []*servedTarget
	samples   atomic.Int64
	scrapes   atomic.Int64
}

type servedTarget struct {
	mu sync.Mutex // serialises scrapes of t
	t  *target
}

// New renders the targets and opens their listeners; it starts nothing.
// Close releases the listeners if Run is never called.
func New(opts Options) (*Generator, error) {
	if opts.Targets <= 0 {
		opts.Targets = 1
	}
	if opts.Series <= 0 {
		opts.Series = 1000
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	g := &Generator{opts: opts}
	for i := range opts.Targets {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("listen for target %d: %w", i, err)
		}
		g.listeners = append(g.listeners, l)
		g.targets = append(g.targets, &servedTarget{t: newTarget(opts.Series, opts.NativeHistograms, opts.Seed*uint64(i+1)*0x9e3779b97f4a7c15)})
	}
	return g, nil
}

// Addrs returns the targets' host:port addresses.
func (g *Generator) Addrs() []string {
	out := make([]string, len(g.listeners))
	for i, l := range g.listeners {
		out[i] = l.Addr().String()
	}
	return out
}

// SeriesPerTarget is the number of samples every scrape of one target returns.
func (g *Generator) SeriesPerTarget() int { return g.targets[0].t.series }

// Served returns the samples and scrapes served so far: the samples an
// agent stores from the responses (a native histogram counts one).
func (g *Generator) Served() (samples, scrapes int64) { return g.samples.Load(), g.scrapes.Load() }

// Run serves every target until ctx is done, then closes the listeners.
func (g *Generator) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	servers := make([]*http.Server, len(g.listeners))
	errs := make(chan error, len(g.listeners))
	for i, l := range g.listeners {
		servers[i] = &http.Server{Handler: g.handler(g.targets[i]), ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() {
			if err := servers[i].Serve(l); !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("serve target %s: %w", l.Addr(), err)
			}
		})
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	for _, s := range servers {
		s.Close()
	}
	wg.Wait()
	return err
}

// Close closes listeners that Run has not taken over.
func (g *Generator) Close() {
	for _, l := range g.listeners {
		l.Close()
	}
}

func (g *Generator) handler(st *servedTarget) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st.mu.Lock()
		defer st.mu.Unlock()
		var (
			body []byte
			n    int
		)
		if g.opts.NativeHistograms > 0 && strings.Contains(r.Header.Get("Accept"), "application/vnd.google.protobuf") {
			var err error
			if body, n, err = st.t.scrapeProto(g.opts.Churn); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", ProtobufContentType)
		} else if g.opts.OpenMetrics && strings.Contains(r.Header.Get("Accept"), "application/openmetrics-text") {
			body, n = st.t.scrape(g.opts.Churn, true)
			w.Header().Set("Content-Type", OpenMetricsContentType)
		} else {
			body, n = st.t.scrape(g.opts.Churn, false)
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		if _, err := w.Write(body); err != nil {
			return
		}
		g.samples.Add(int64(n))
		g.scrapes.Add(1)
	})
}
