// Command rwbench is rwagent's side-by-side load benchmark. It serves
// synthetic scrape targets (bench/loadgen) and a counting remote-write
// receiver (bench/sink) on 127.0.0.1, then runs one agent at a time
// against them with a generated configuration: warm-up, a measured
// window, a drain period for the window's last samples to arrive. For
// each agent it prints a table row and a JSON line: CPU-seconds per
// million samples delivered, peak RSS, RSS per active series, wire bytes
// per sample, p50/p99 latency from sample timestamp to arrival, and the
// delivery ratio. Peers are built by bench/peers.sh.
//
// With -receive the agents scrape nothing: a pusher (bench/loadgen) sends
// them remote write 1.0 of the same series at the same rate, and they
// forward it to the sink (rwagent through its receive: gateway, vmagent
// on its -httpListenAddr).
//
//	rwbench -agents rwagent,prometheus,vmagent -targets 10 -series 1000 -interval 5s
//	rwbench -receive -agents rwagent,vmagent -targets 50 -series 2000 -interval 5s
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rwagent/rwagent/bench/loadgen"
	"github.com/rwagent/rwagent/bench/sink"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

type options struct {
	agents                  []agent
	targets, series         int
	interval                time.Duration
	churn                   float64
	native                  int
	openMetrics             bool
	receive                 bool
	batch                   int
	warmup, duration, drain time.Duration
	workdir, jsonOut        string
	pprofDir                string
	rssStep                 time.Duration
	keep                    bool
}

func run(args []string, stdout, stderr io.Writer) int {
	cache := os.Getenv("BENCH_CACHE")
	if cache == "" {
		if dir, err := os.UserCacheDir(); err == nil {
			cache = filepath.Join(dir, "rwagent-bench")
		}
	}
	fs := flag.NewFlagSet("rwbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		agents  = fs.String("agents", "rwagent,prometheus,prometheus-rw2,vmagent", "Comma-separated agents to run, in order: rwagent, rwagent-rw2, prometheus, prometheus-rw2, vmagent, prometheus-deb, vmagent-deb.")
		rwBin   = fs.String("rwagent.bin", "bin/rwagent", "rwagent binary.")
		promBin = fs.String("prometheus.bin", filepath.Join(cache, "prometheus-v0.316.0", "prometheus"), "Prometheus v3 binary (bench/peers.sh builds it).")
		vmBin   = fs.String("vmagent.bin", filepath.Join(cache, "vmagent-v1.151.0", "vmagent"), "vmagent binary (bench/peers.sh builds it).")
		debProm = fs.String("prometheus-deb.bin", "/usr/bin/prometheus", "Debian's Prometheus 2.x binary.")
		debVM   = fs.String("vmagent-deb.bin", "/usr/bin/vmagent", "Debian's vmagent binary (package victoria-metrics).")
		o       options
	)
	fs.IntVar(&o.targets, "targets", 10, "Scrape targets.")
	fs.IntVar(&o.series, "series", 1000, "Series per target.")
	fs.DurationVar(&o.interval, "interval", 5*time.Second, "Scrape interval.")
	fs.IntVar(&o.native, "native", 10, "Native histograms per target, served in the protobuf format only (vmagent and text scrapers do not see them).")
	fs.Float64Var(&o.churn, "churn", 0, "Fraction of each target's series replaced on every scrape.")
	fs.BoolVar(&o.openMetrics, "openmetrics", false, "Targets answer OpenMetrics 1.0 (without _created series) to scrapers that ask for it; otherwise Prometheus' text format.")
	fs.BoolVar(&o.receive, "receive", false, "The receive workload: no targets; the same series are pushed to each agent as remote write 1.0, one sample per series per -interval, -batch samples per request, and the agent forwards them. For rwagent (receive: gateway, no tenant label) and vmagent.")
	fs.IntVar(&o.batch, "batch", 2000, "Samples per pushed request (-receive).")
	fs.DurationVar(&o.rssStep, "rss-step", time.Minute, "Report each agent's highest RSS in every step of this length within the window (read every second); the churn goal compares them.")
	fs.StringVar(&o.pprofDir, "pprof", "", "Save rwagent's CPU profile over the window and its heap profile at the window's end into this directory (the profiler's own cost is then in the window's CPU).")
	fs.DurationVar(&o.warmup, "warmup", 20*time.Second, "Time each agent runs before the measured window.")
	fs.DurationVar(&o.duration, "duration", 60*time.Second, "Measured window.")
	fs.DurationVar(&o.drain, "drain", 10*time.Second, "Wait after the window for its samples to arrive.")
	fs.StringVar(&o.workdir, "workdir", "", "Directory for configs, data and logs; zero: a temporary one, removed at the end.")
	fs.StringVar(&o.jsonOut, "json", "", "Also append the JSON lines to this file.")
	fs.BoolVar(&o.keep, "keep", false, "Keep the temporary work directory.")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	known := map[string]agent{
		"rwagent":        {Name: "rwagent", Bin: *rwBin, Flavour: "rwagent"},
		"rwagent-rw2":    {Name: "rwagent-rw2", Bin: *rwBin, Flavour: "rwagent", RW2: true},
		"prometheus":     {Name: "prometheus", Bin: *promBin, Flavour: "prometheus"},
		"prometheus-rw2": {Name: "prometheus-rw2", Bin: *promBin, Flavour: "prometheus", RW2: true},
		"vmagent":        {Name: "vmagent", Bin: *vmBin, Flavour: "vmagent"},
		"prometheus-deb": {Name: "prometheus-deb", Bin: *debProm, Flavour: "prometheus2"},
		"vmagent-deb":    {Name: "vmagent-deb", Bin: *debVM, Flavour: "vmagent"},
	}
	for _, name := range strings.Split(*agents, ",") {
		a, ok := known[strings.TrimSpace(name)]
		if !ok {
			fmt.Fprintf(stderr, "rwbench: unknown agent %q\n", name)
			return 2
		}
		o.agents = append(o.agents, a)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "rwbench: %v\n", err)
		return 1
	}
	return 0
}

// bench starts the load generator and the sink, measures every agent in
// turn and prints the results.
func bench(ctx context.Context, o options, stdout, stderr io.Writer) error {
	if o.workdir == "" {
		dir, err := os.MkdirTemp("", "rwbench-")
		if err != nil {
			return fmt.Errorf("create work directory: %w", err)
		}
		o.workdir = dir
		if !o.keep {
			defer os.RemoveAll(dir)
		}
	}
	if o.pprofDir != "" {
		if err := os.MkdirAll(o.pprofDir, 0o755); err != nil {
			return fmt.Errorf("create profile directory: %w", err)
		}
	}
	var gen *loadgen.Generator
	if !o.receive {
		var err error
		gen, err = loadgen.New(loadgen.Options{Targets: o.targets, Series: o.series, Churn: o.churn, NativeHistograms: o.native, OpenMetrics: o.openMetrics})
		if err != nil {
			return err
		}
		defer gen.Close()
	}
	snk, err := sink.New()
	if err != nil {
		return err
	}
	// The harness outlives ctx until the agent in flight has stopped, so
	// that it can flush.
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	done := make(chan error, 2)
	go func() { done <- snk.Run(hctx) }()
	if gen != nil {
		go func() { done <- gen.Run(hctx) }()
	} else {
		done <- nil
	}
	defer func() { cancel(); <-done; <-done }()

	w := workload{Interval: o.interval, URL: snk.URL()}
	if o.receive {
		if w.Key, err = newKey(); err != nil {
			return err
		}
		w.Receive = true
		fmt.Fprintf(stderr, "rwbench: receive: %d × about %d series pushed @ %s, %d samples per request, warm-up %s, window %s, drain %s, work dir %s\n",
			o.targets, o.series, o.interval, o.batch, o.warmup, o.duration, o.drain, o.workdir)
	} else {
		w.Targets, w.Native = gen.Addrs(), o.native > 0
		fmt.Fprintf(stderr, "rwbench: %d targets × (%d series + %d native histograms) @ %s (%d samples/s), churn %g, OpenMetrics %v, warm-up %s, window %s, drain %s, work dir %s\n",
			o.targets, gen.SeriesPerTarget(), o.native, o.interval, int64(o.targets*(gen.SeriesPerTarget()+o.native))*int64(time.Second)/int64(o.interval),
			o.churn, o.openMetrics, o.warmup, o.duration, o.drain, o.workdir)
	}
	var results []result
	for _, a := range o.agents {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(stderr, "rwbench: %s (%s)\n", a.Name, a.Bin)
		r := measure(ctx, a, w, gen, snk, o, stderr)
		if r.Error != "" {
			fmt.Fprintf(stderr, "rwbench: %s: %s\n", a.Name, r.Error)
		}
		results = append(results, r)
	}
	printTable(stdout, results)
	if err := printJSON(stdout, results); err != nil {
		return err
	}
	if o.jsonOut != "" {
		f, err := os.OpenFile(o.jsonOut, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("open %s: %w", o.jsonOut, err)
		}
		defer f.Close()
		if err := printJSON(f, results); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// newKey returns a random API key for the receive workload.
func newKey() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make an API key: %w", err)
	}
	return hex.EncodeToString(b), nil
}
