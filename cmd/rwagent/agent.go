package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/rwagent/rwagent/pkg/config"
	"github.com/rwagent/rwagent/pkg/lograte"
	"github.com/rwagent/rwagent/pkg/offheap"
	"github.com/rwagent/rwagent/pkg/scrape"
	"github.com/rwagent/rwagent/pkg/sdnotify"
	"github.com/rwagent/rwagent/pkg/server"
	"github.com/rwagent/rwagent/pkg/web"
)

// agentOptions are what the command line decides.
type agentOptions struct {
	ConfigFile  string
	StoragePath string // overrides wal.dir when set
	ListenAddr  string
	// RoutePrefix is the path the web routes are served under; zero or
	// "/" is the root.
	RoutePrefix string
	// EnablePprof serves /debug/pprof/ on ListenAddr.
	EnablePprof bool
	Logger      *slog.Logger
	// Shard is this agent's share of the targets; zero scrapes them all.
	Shard scrape.Shard
	// Registry receives every metric; nil means a new one.
	Registry *prometheus.Registry
	// Listening, when set, is told the bound web address (tests use :0).
	Listening func(net.Addr)
	// FlushDeadline bounds the sending after a stop; zero means the
	// remotewrite default.
	FlushDeadline time.Duration
	// PositionInterval is how often send positions are saved; zero means
	// sendpos.DefaultSaveInterval.
	PositionInterval time.Duration
	// Flags are the command line's flags for /api/v1/status/flags.
	Flags map[string]string
	// AMPPrice is the status page's price per 10M samples; zero means
	// web.DefaultAMPPricePer10M.
	AMPPrice float64
	// Notifier tells systemd of start-up, readiness and stopping; nil
	// tells no one.
	Notifier *sdnotify.Notifier
	// DiscoveryWait is how long readiness waits for each service
	// discovery's first target set; zero means defaultDiscoveryWait.
	DiscoveryWait time.Duration
	// WatchdogInterval is how often Notifier is sent WATCHDOG=1 while the
	// agent runs; zero sends none.
	WatchdogInterval time.Duration
	// HUP delivers SIGHUP: each reloads the configuration (as POST
	// /-/reload does). Nil: only /-/reload reloads.
	HUP <-chan os.Signal
}

// runAgent runs the whole agent until ctx is done, then stops it in
// data-flow order: scraping first, then the queues flush what they hold,
// then the WAL is synced and closed, then the web server stops. A Grafana
// Agent file runs one pipeline (scrape, WAL, queues) per instance, each in
// its own directory and with its metrics labelled instance_name; a
// pipeline that fails stops them all.
func runAgent(ctx context.Context, o agentOptions) error {
	logger := o.Logger
	cfg, err := config.LoadFile(o.ConfigFile, nil, logger)
	if err != nil {
		return err
	}
	for _, s := range cfg.Ignored {
		logger.Warn("configuration section ignored: rwagent is an agent", "section", s)
	}
	for _, n := range cfg.Notes {
		logger.Warn("configuration setting has no effect", "setting", n)
	}
	if previous, ok := applyGoGC(cfg.GoGC); ok {
		logger.Info("runtime.gogc of the configuration applied", "gogc", *cfg.GoGC, "previous", previous)
	}
	pipes := cfg.Pipelines()
	dirs := make([]string, len(pipes))
	for i, pc := range pipes {
		dirs[i] = stateDir(pc, o.StoragePath)
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newBuildInfo(),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rwagent_offheap_mapped_bytes",
			Help: "Address space mapped for arrays kept off the Go heap (series caches, hash indexes); in RSS as far as written, and not in go_memstats.",
		}, func() float64 { return float64(offheap.Mapped()) }),
	)

	// Each pipeline says why it is not ready yet ("" once it is); the
	// agent is ready when every one is.
	readies := make([]atomic.Pointer[string], len(pipes))
	for i := range readies {
		readies[i].Store(new("replaying the WAL"))
	}
	notReady := func() string {
		var why []string
		for i := range readies {
			r := *readies[i].Load()
			if r == "" {
				continue
			}
			if name := pipes[i].Instance.Name; name != "" {
				r = "instance " + name + ": " + r
			}
			why = append(why, r)
		}
		return strings.Join(why, "; ")
	}
	ready := func() bool { return notReady() == "" }
	dump, err := cfg.Dump()
	if err != nil {
		return err
	}
	ui := web.New(web.Options{Config: dump, Flags: o.Flags, Build: buildInfo(), PricePer10M: o.AMPPrice, GOGC: gogc(cfg.GoGC)})
	rl := newReloader(o.ConfigFile, cfg, logger, o.Notifier, ui, reg, ready)
	srv := server.New(server.Options{Addr: o.ListenAddr, Gatherer: reg, NotReady: notReady, Logger: logger, UI: ui.Handler(),
		EnablePprof: o.EnablePprof, RoutePrefix: o.RoutePrefix, Reload: func(context.Context) error { return rl.reload() }})
	addr, err := srv.Listen()
	if err != nil {
		return err
	}
	if o.Listening != nil {
		o.Listening(addr)
	}
	logger.Info("rwagent starting", "version", versionString(), "config", o.ConfigFile, "storage", strings.Join(dirs, ","), "web", addr.String())
	if len(pipes) == 0 {
		logger.Warn("no metrics instance configured (metrics.configs is empty): nothing is scraped")
	}

	var wg sync.WaitGroup
	srvCtx, stopSrv := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSrv()
	wg.Go(func() {
		if err := srv.Run(srvCtx); err != nil {
			logger.Error("web server", "err", err)
		}
	})
	defer wg.Wait()
	wg.Go(func() {
		var lim lograte.Limiter
		lim.Interval, lim.Level = time.Minute, slog.LevelWarn
		o.Notifier.RunWatchdog(srvCtx, o.WatchdogInterval, func(err error) {
			lim.Log(logger, "systemd watchdog not told the agent is alive", "err", err)
		})
	})
	notify(logger, o.Notifier.Status, "replaying the WAL")

	pctx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	errs := make([]error, len(pipes))
	var running sync.WaitGroup
	// systemd hears READY once every pipeline is ready (/-/ready is 200),
	// and STOPPING when the stop begins, by a signal or a failed pipeline.
	running.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for !ready() {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
			}
		}
		notify(logger, o.Notifier.Ready, "ready: WAL replayed, targets discovered, scraping")
	})
	running.Go(func() {
		<-pctx.Done()
		notify(logger, o.Notifier.Stopping, "stopping: queues flush what they hold, then the WAL closes")
	})
	running.Go(func() { rl.run(pctx, o.HUP) })
	for i, pc := range pipes {
		running.Go(func() {
			if errs[i] = runPipeline(pctx, pc, dirs[i], o, reg, &readies[i], ui, rl.started(i)); errs[i] != nil {
				stopAll()
			}
		})
	}
	running.Wait()
	err = errors.Join(errs...)
	if err == nil {
		logger.Info("rwagent stopped: scraping ended, queues flushed, WAL synced and closed")
	}
	stopSrv()
	return err
}

// stateDir is the directory of a pipeline's WAL and send positions:
// wal.dir, or an instance's wal_directory/<name>; --storage.path replaces
// wal.dir or wal_directory.
func stateDir(c *config.Config, storagePath string) string {
	switch {
	case storagePath == "":
		return c.WAL.Dir
	case c.Instance.Name != "":
		return filepath.Join(storagePath, c.Instance.Name)
	}
	return storagePath
}

// notify sends status to systemd with send (a Notifier method) and logs
// a failure: systemd then misjudges the agent's state, the agent goes on.
func notify(logger *slog.Logger, send func(string) error, status string) {
	if err := send(status); err != nil {
		logger.Warn("systemd not notified", "status", status, "err", err)
	}
}

// buildInfo is the status page's build info, read as prometheus_build_info
// reads it (currentBuild), so that the two never disagree.
func buildInfo() web.BuildInfo {
	b := currentBuild()
	return web.BuildInfo{Version: b.version, Revision: b.revision, Branch: b.branch, BuildDate: b.date, GoVersion: b.goVersion}
}

// gogc is the configuration's runtime.gogc, or GOGC, or rwagent's default.
func gogc(fromConfig *int) int {
	if fromConfig != nil {
		return *fromConfig
	}
	env := os.Getenv("GOGC")
	if env == "off" {
		return -1 // as runtime/debug reports a collector turned off
	}
	if n, err := strconv.Atoi(env); err == nil {
		return n
	}
	return defaultGCPercent
}

// allV2 says whether there are endpoints and all send remote-write 2.0.
