package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/rwagent/rwagent/pkg/config"
	"github.com/rwagent/rwagent/pkg/lograte"
	"github.com/rwagent/rwagent/pkg/remotewrite"
	"github.com/rwagent/rwagent/pkg/scrape"
	"github.com/rwagent/rwagent/pkg/sdnotify"
	"github.com/rwagent/rwagent/pkg/sendpos"
	"github.com/rwagent/rwagent/pkg/server"
	"github.com/rwagent/rwagent/pkg/sigv4"
	"github.com/rwagent/rwagent/pkg/wal"
	"github.com/rwagent/rwagent/pkg/web"
)

// agentOptions are what the command line decides.
type agentOptions struct {
	ConfigFile  string
	StoragePath string // overrides wal.dir when set
	ListenAddr  string
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
	srv := server.New(server.Options{Addr: o.ListenAddr, Gatherer: reg, NotReady: notReady, Logger: logger, UI: ui.Handler(),
		EnablePprof: o.EnablePprof})
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
	for i, pc := range pipes {
		running.Go(func() {
			if errs[i] = runPipeline(pctx, pc, dirs[i], o, reg, &readies[i], ui); errs[i] != nil {
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

// runPipeline opens the WAL in dir and runs one pipeline of cfg until ctx
// is done, then closes the WAL. The metrics of a Grafana Agent instance
// carry its name as instance_name, as Grafana Agent's did in distinct
// mode, so that two instances' series never collide.
func runPipeline(ctx context.Context, cfg *config.Config, dir string, o agentOptions, root prometheus.Registerer, ready *atomic.Pointer[string], ui *web.UI) error {
	logger, reg := o.Logger, root
	if name := cfg.Instance.Name; name != "" {
		logger = logger.With("instance", name)
		reg = prometheus.WrapRegistererWith(prometheus.Labels{"instance_name": name}, root)
	}
	w, err := wal.Open(wal.Options{
		Dir:           filepath.Join(dir, "wal"),
		SegmentSize:   cfg.WAL.SegmentSize,
		Fsync:         wal.FsyncPolicy(cfg.WAL.Fsync),
		FsyncInterval: time.Duration(cfg.WAL.FsyncInterval),
		MinAge:        time.Duration(cfg.WAL.MinAge),
	}, logger, reg)
	if err != nil {
		if cfg.Instance.Name != "" {
			return fmt.Errorf("instance %s: open WAL: %w", cfg.Instance.Name, err)
		}
		return fmt.Errorf("open WAL: %w", err)
	}
	ready.Store(new("starting"))
	p := &pipeline{cfg: cfg, wal: w, logger: logger, reg: reg, opts: o, stateDir: dir, ui: ui}
	err = p.run(ctx, ready)
	if cerr := w.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close WAL: %w", cerr))
	}
	return err
}

// pipeline is the running agent between WAL open and close.
type pipeline struct {
	cfg    *config.Config
	wal    *wal.WAL
	logger *slog.Logger
	reg    prometheus.Registerer
	opts   agentOptions
	// stateDir holds the WAL (wal/) and the send positions (send_positions/).
	stateDir string
	// ui shows the pipeline on the status page while it runs.
	ui *web.UI
}

func (p *pipeline) run(ctx context.Context, ready *atomic.Pointer[string]) error {
	pc := p.cfg.Prometheus
	positions, err := sendpos.Open(sendpos.Options{
		Dir:               filepath.Join(p.stateDir, "send_positions"),
		WAL:               p.wal,
		Endpoints:         sendposEndpoints(pc.RemoteWriteConfigs),
		SaveInterval:      p.opts.PositionInterval,
		TruncateFrequency: time.Duration(p.cfg.WAL.TruncateFrequency),
		MaxSize:           p.cfg.WAL.MaxSize,
		MaxAge:            time.Duration(p.cfg.WAL.MaxAge),
		Logger:            p.logger,
	})
	if err != nil {
		return err
	}
	defer positions.Close()
	// One set of SigV4 metrics for every signer (remote_write endpoints
	// and scrape jobs), registered while the pipeline runs, so that a
	// rebuilt pipeline registers it again.
	signerMetrics := sigv4.NewMetrics()
	if len(p.cfg.ScrapeSigV4) > 0 || slices.ContainsFunc(p.cfg.RemoteWriteSigV4, func(sv *config.SigV4Config) bool { return sv != nil }) {
		if err := signerMetrics.Register(p.reg); err != nil {
			return err
		}
		defer signerMetrics.Unregister()
	}
	queues, shown, err := p.newQueues(ctx, positions, signerMetrics)
	if err != nil {
		return err
	}
	if len(queues) == 0 {
		p.logger.Warn("no remote_write configured: samples are logged to the WAL and sent nowhere")
	}

	scrapeCfgs, err := pc.GetScrapeConfigs()
	if err != nil {
		return err
	}
	sdCtx, stopSD := context.WithCancel(ctx)
	defer stopSD()
	dm, sm, watch, err := p.newScraping(ctx, sdCtx, scrapeCfgs, signerMetrics)
	if err != nil {
		return err
	}
	defer sm.Close() // Run closes it; this covers a return before Run (Close is idempotent)
	defer p.ui.Register(&web.Pipeline{Instance: p.cfg.Instance.Name, Scrape: sm, Endpoints: shown, WAL: p.wal, Discovery: watch})()
	gw, err := p.startGateway()
	if err != nil {
		return err
	}
	defer gw.close()
	// host_filter needs the host name: found before any stage starts, so
	// that failing to find it stops nothing half-started.
	var hf *hostFilter
	if ic := p.cfg.Instance; ic.HostFilter {
		host, err := hostName()
		if err != nil {
			return err
		}
		p.logger.Info("host_filter: scraping only this host's targets", "host", host)
		hf = &hostFilter{host: host, relabels: ic.HostFilterRelabelConfigs}
	}

	// Each stage gets its own context so they stop in data-flow order:
	// scraping, then the queues (they flush), then the send positions
	// (they save what the queues acknowledged), then the WAL. Scraping too
	// stops only when told, so that write_stale_on_shutdown can still
	// stop its jobs one by one (which writes stale markers) after ctx ends.
	scrapeCtx, stopScrape := context.WithCancel(context.WithoutCancel(ctx))
	defer stopScrape()
	queueCtx, stopQueues := context.WithCancel(context.WithoutCancel(ctx))
	defer stopQueues()
	posCtx, stopPositions := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPositions()
	walCtx, stopWAL := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWAL()

	var scraping, sending, keeping, rest sync.WaitGroup
	errs := make(chan error, 6+len(queues))
	rest.Go(func() { errs <- p.wal.Run(walCtx) })
	watch.Start(time.Now())
	rest.Go(func() {
		if err := dm.Run(); err != nil && !errors.Is(err, context.Canceled) {
			errs <- fmt.Errorf("discovery: %w", err)
		}
	})
	for _, q := range queues {
		sending.Go(func() { errs <- q.Run(queueCtx) })
	}
	tsets := dm.SyncCh()
	if hf != nil {
		filtered := make(chan map[string][]*targetgroup.Group)
		scraping.Go(func() { hf.run(scrapeCtx, dm.SyncCh(), filtered) })
		tsets = filtered
	}
	keeping.Go(func() { errs <- positions.Run(posCtx) })
	scraping.Go(func() { errs <- sm.Run(scrapeCtx, tsets) })
	scraping.Go(func() { errs <- gw.run(scrapeCtx) })
	scraping.Go(func() { p.awaitReady(scrapeCtx, sm, watch, ready) })

	var first error
	select {
	case <-ctx.Done():
		p.logger.Info("stopping: scraping ends, queues flush what they hold")
		if p.cfg.Instance.WriteStaleOnShutdown {
			// Stopping every job writes a stale marker for each of its
			// series, which the queues then flush with the rest.
			if err := sm.ApplyConfig(nil); err != nil {
				p.logger.Error("write_stale_on_shutdown: stale markers not written", "err", err)
			} else {
				p.logger.Info("write_stale_on_shutdown: stale markers written for every series")
			}
		}
	case first = <-errs:
		p.logger.Error("a stage failed; stopping", "err", first)
	}
	ready.Store(new("stopping"))
	stopScrape()
	stopSD()
	scraping.Wait()
	stopQueues()
	sending.Wait()
	stopPositions()
	keeping.Wait()
	stopWAL()
	rest.Wait()
	close(errs)
	all := []error{first}
	for err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// newQueues builds a queue per remote_write endpoint, resuming at its send
// position, with the transport cmd builds for it (signed when it has a
// sigv4 block), and the status page's view of each.
func (p *pipeline) newQueues(ctx context.Context, positions *sendpos.Keeper, signerMetrics *sigv4.Metrics) ([]*remotewrite.Queue, []web.Endpoint, error) {
	pc := p.cfg.Prometheus
	queues := make([]*remotewrite.Queue, 0, len(pc.RemoteWriteConfigs))
	shown := make([]web.Endpoint, 0, len(pc.RemoteWriteConfigs))
	for i, rw := range pc.RemoteWriteConfigs {
		rs := positions.Resume(i)
		errLog := &remotewrite.ErrorLog{} // the status page's last error
		qlogger := errLog.Logger(p.logger.With("component", "remote_write"))
		et, err := newEndpointTransport(ctx, rw, p.cfg.RemoteWriteSigV4[i], qlogger.With("remote_name", rw.Name, "url", rw.URL.Redacted()), signerMetrics)
		if err != nil {
			return nil, nil, err
		}
		q, err := remotewrite.New(ctx, remotewrite.Options{
			Config:         rw,
			ExternalLabels: pc.GlobalConfig.ExternalLabels,
			Log:            remotewrite.WALLog(p.wal),
			Start:          rs.Start,
			ResendUntil:    rs.ResendUntil,
			Lost:           rs.Lost,
			Positions:      positions.Writer(i),
			Transport:      et.transport,
			Signed:         et.signed,
			Limits:         et.limits,
			UserAgent:      "rwagent/" + versionString(),
			FlushDeadline:  p.flushDeadline(),
			Logger:         qlogger,
			Registerer:     p.reg,
		})
		if err != nil {
			return nil, nil, err
		}
		positions.Attach(positions.Writer(i), q)
		queues = append(queues, q)
		shown = append(shown, web.Endpoint{Queue: q, Errors: errLog})
	}
	return queues, shown, nil
}

// newScraping builds the discovery manager (run under sdCtx) with every
// discovery watched for readiness, and the scrape manager writing into the
// WAL, signing the scrapes of jobs with a sigv4 block.
func (p *pipeline) newScraping(ctx, sdCtx context.Context, scrapeCfgs []*promconfig.ScrapeConfig, signerMetrics *sigv4.Metrics) (*discovery.Manager, *scrape.Manager, *discoveryWatch, error) {
	sdMetrics, err := discovery.CreateAndRegisterSDMetrics(p.reg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("register discovery metrics: %w", err)
	}
	watch := watchDiscovery(sdCfgs(scrapeCfgs), p.opts.DiscoveryWait)
	dm := discovery.NewManager(sdCtx, p.logger.With("component", "discovery"), p.reg, sdMetrics, discovery.Name("scrape"))
	if dm == nil {
		return nil, nil, nil, errors.New("create discovery manager: metrics registration failed")
	}
	if err := dm.ApplyConfig(watch.Configs()); err != nil {
		return nil, nil, nil, fmt.Errorf("apply discovery config: %w", err)
	}
	sm, err := scrape.NewManager(scrape.ManagerOptions{
		Logger:     p.logger.With("component", "scrape"),
		Registerer: p.reg,
		Storage:    p.wal,
		UserAgent:  "rwagent/" + versionString(),
		// Start timestamps only reach remote-write 2.0, and parsing them
		// skips the _created series: only when every endpoint speaks 2.0.
		StartTimestamps: allV2(p.cfg.Prometheus.RemoteWriteConfigs),
		Shard:           p.opts.Shard,
		WrapTransport: func(job string, next http.RoundTripper) (http.RoundTripper, error) {
			c := p.cfg.ScrapeSigV4[job]
			if c == nil {
				return next, nil
			}
			return sigv4.NewRoundTripper(ctx, *sigv4Config(c, ""), next, sigv4.Options{
				Logger: p.logger.With("component", "scrape", "scrape_job", job), Metrics: signerMetrics,
			})
		},
	})
	if err != nil {
		return nil, nil, nil, err
	}
	if err := sm.ApplyConfig(scrapeCfgs); err != nil {
		sm.Close()
		return nil, nil, nil, err
	}
	return dm, sm, watch, nil
}

// awaitReady keeps ready saying why the pipeline is not ready until it
// is: the WAL is replayed (it was, to get here), every service discovery
// has sent its first target set or been given up on after the wait
// (each given up on is logged), and the scrape manager has been handed
// target sets. It returns when ready, or when ctx is done.
func (p *pipeline) awaitReady(ctx context.Context, sm *scrape.Manager, watch *discoveryWatch, ready *atomic.Pointer[string]) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	logged := map[web.Discovery]bool{}
	for {
		now := time.Now()
		pending := watch.Pending(now)
		for _, d := range pending {
			if d.GaveUp && !logged[d] {
				logged[d] = true
				p.logger.Warn("service discovery sent no target set: counted as failed or empty, readiness no longer waits for it; see prometheus_sd_* failure counters",
					"scrape_job", d.Job, "mechanism", d.Mechanism, "wait", d.Wait, "failed_to_start", d.Failed)
			}
		}
		why := waitingReason(pending)
		// Discovery hands target sets on at most every 5s; none come when
		// there is no job, or when every discovery was given up on.
		if why == "" && !sm.Ready() && watch.Jobs() > 0 && !watch.Over(now) {
			why = "waiting for service discovery: target sets not yet handed to the scrape manager"
		}
		if why == "" {
			ready.Store(new(""))
			p.logger.Info("rwagent ready")
			return
		}
		ready.Store(&why)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sdCfgs are the scrape configs' service discoveries by job name.
func sdCfgs(scs []*promconfig.ScrapeConfig) map[string]discovery.Configs {
	out := make(map[string]discovery.Configs, len(scs))
	for _, sc := range scs {
		out[sc.JobName] = sc.ServiceDiscoveryConfigs
	}
	return out
}

// notify sends status to systemd with send (a Notifier method) and logs
// a failure: systemd then misjudges the agent's state, the agent goes on.
func notify(logger *slog.Logger, send func(string) error, status string) {
	if err := send(status); err != nil {
		logger.Warn("systemd not notified", "status", status, "err", err)
	}
}

// sendposEndpoints names the remote_write endpoints to sendpos.
func sendposEndpoints(rws []*promconfig.RemoteWriteConfig) []sendpos.Endpoint {
	eps := make([]sendpos.Endpoint, len(rws))
	for i, rw := range rws {
		eps[i] = sendpos.Endpoint{Name: rw.Name, URL: rw.URL.URL}
	}
	return eps
}

// flushDeadline is the command line's flush deadline, else the
// instance's remote_flush_deadline, else zero (the remotewrite default).
func (p *pipeline) flushDeadline() time.Duration {
	if p.opts.FlushDeadline > 0 {
		return p.opts.FlushDeadline
	}
	return p.cfg.Instance.FlushDeadline
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
func allV2(rws []*promconfig.RemoteWriteConfig) bool {
	for _, rw := range rws {
		if rw.ProtobufMessage != remoteapi.WriteV2MessageType {
			return false
		}
	}
	return len(rws) > 0
}
