package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"

	"github.com/rwagent/rwagent/pkg/config"
	"github.com/rwagent/rwagent/pkg/lograte"
	"github.com/rwagent/rwagent/pkg/remotewrite"
	"github.com/rwagent/rwagent/pkg/scrape"
	"github.com/rwagent/rwagent/pkg/sdnotify"
	"github.com/rwagent/rwagent/pkg/sendpos"
	"github.com/rwagent/rwagent/pkg/server"
	"github.com/rwagent/rwagent/pkg/sigv4"
	"github.com/rwagent/rwagent/pkg/wal"
)

// agentOptions are what the command line decides.
type agentOptions struct {
	ConfigFile  string
	StoragePath string // overrides wal.dir when set
	ListenAddr  string
	Logger      *slog.Logger
	// Registry receives every metric; nil means a new one.
	Registry *prometheus.Registry
	// Listening, when set, is told the bound web address (tests use :0).
	Listening func(net.Addr)
	// FlushDeadline bounds the sending after a stop; zero means the
	// remotewrite default.
	FlushDeadline time.Duration
	// PositionInterval is how often send positions are saved; zero means
	// DefaultPositionInterval.
	PositionInterval time.Duration
	// Notifier tells systemd of start-up, readiness and stopping; nil
	// tells no one.
	Notifier *sdnotify.Notifier
	// WatchdogInterval is how often Notifier is sent WATCHDOG=1 while the
	// agent runs; zero sends none.
	WatchdogInterval time.Duration
}

// runAgent runs the whole agent until ctx is done, then stops it in
// data-flow order: scraping first, then the queues flush what they hold,
// then the WAL is synced and closed, then the web server stops.
func runAgent(ctx context.Context, o agentOptions) error {
	logger := o.Logger
	cfg, err := config.LoadFile(o.ConfigFile, nil, logger)
	if err != nil {
		return err
	}
	for _, s := range cfg.Ignored {
		logger.Warn("configuration section ignored: rwagent is an agent", "section", s)
	}
	dir := cfg.WAL.Dir
	if o.StoragePath != "" {
		dir = o.StoragePath
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

	var ready atomic.Bool
	srv := server.New(server.Options{Addr: o.ListenAddr, Gatherer: reg, Ready: ready.Load, Logger: logger})
	addr, err := srv.Listen()
	if err != nil {
		return err
	}
	if o.Listening != nil {
		o.Listening(addr)
	}
	logger.Info("rwagent starting", "version", versionString(), "config", o.ConfigFile, "storage", dir, "web", addr.String())

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

	w, err := wal.Open(wal.Options{
		Dir:           filepath.Join(dir, "wal"),
		SegmentSize:   cfg.WAL.SegmentSize,
		Fsync:         wal.FsyncPolicy(cfg.WAL.Fsync),
		FsyncInterval: time.Duration(cfg.WAL.FsyncInterval),
		MinAge:        time.Duration(cfg.WAL.MinAge),
	}, logger, reg)
	if err != nil {
		stopSrv()
		return fmt.Errorf("open WAL: %w", err)
	}
	p := &pipeline{cfg: cfg, wal: w, logger: logger, reg: reg, opts: o, stateDir: dir}
	err = p.run(ctx, &ready)
	if cerr := w.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close WAL: %w", cerr))
	}
	if err == nil {
		logger.Info("rwagent stopped: scraping ended, queues flushed, WAL synced and closed")
	}
	stopSrv()
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
}

func (p *pipeline) run(ctx context.Context, ready *atomic.Bool) error {
	pc := p.cfg.Prometheus
	store := sendpos.New(filepath.Join(p.stateDir, "send_positions"))
	resumes := resumePositions(store, p.wal, pc.RemoteWriteConfigs, p.logger)
	queues := make([]*remotewrite.Queue, 0, len(pc.RemoteWriteConfigs))
	endpoints := make([]*endpoint, 0, len(pc.RemoteWriteConfigs))
	for i, rw := range pc.RemoteWriteConfigs {
		rs := resumes[i]
		e := &endpoint{key: rs.key, saved: rs.start, logger: p.logger.With("remote_name", rw.Name, "url", rw.URL.Redacted())}
		live, err := store.OpenLive(rs.key)
		if err != nil {
			e.logger.Error("open live send position; after a crash, everything after the saved position will count as resent", "err", err)
		} else {
			e.live = live
			defer live.Close()
		}
		// The live file starts with this run's start: a sent mark never
		// goes back, so a crash before anything is sent again still counts
		// what the last run may have sent.
		e.WritePositions(rs.start, maxPosition(rs.start, rs.resendUntil))
		q, err := remotewrite.New(ctx, remotewrite.Options{
			Config:         rw,
			ExternalLabels: pc.GlobalConfig.ExternalLabels,
			Log:            remotewrite.WALLog(p.wal),
			Start:          rs.start,
			ResendUntil:    rs.resendUntil,
			Lost:           rs.lost,
			Positions:      e,
			SigV4:          sigv4Config(p.cfg.RemoteWriteSigV4[i], rw.URL.String()),
			UserAgent:      "rwagent/" + versionString(),
			FlushDeadline:  p.opts.FlushDeadline,
			Logger:         p.logger.With("component", "remote_write"),
			Registerer:     p.reg,
		})
		if err != nil {
			return err
		}
		queues = append(queues, q)
		e.q = q
		endpoints = append(endpoints, e)
	}
	ret := &retention{
		wal:        p.wal,
		store:      store,
		endpoints:  endpoints,
		logger:     p.logger,
		saveEvery:  p.opts.PositionInterval,
		truncEvery: time.Duration(p.cfg.WAL.TruncateFrequency),
		maxSize:    p.cfg.WAL.MaxSize,
		maxAge:     time.Duration(p.cfg.WAL.MaxAge),
	}
	if ret.saveEvery <= 0 {
		ret.saveEvery = DefaultPositionInterval
	}
	if len(queues) == 0 {
		p.logger.Warn("no remote_write configured: samples are logged to the WAL and sent nowhere")
	}

	scrapeCfgs, err := pc.GetScrapeConfigs()
	if err != nil {
		return err
	}
	sdMetrics, err := discovery.CreateAndRegisterSDMetrics(p.reg)
	if err != nil {
		return fmt.Errorf("register discovery metrics: %w", err)
	}
	sdCtx, stopSD := context.WithCancel(ctx)
	defer stopSD()
	dm := discovery.NewManager(sdCtx, p.logger.With("component", "discovery"), p.reg, sdMetrics, discovery.Name("scrape"))
	if dm == nil {
		return errors.New("create discovery manager: metrics registration failed")
	}
	sdCfgs := make(map[string]discovery.Configs, len(scrapeCfgs))
	for _, sc := range scrapeCfgs {
		sdCfgs[sc.JobName] = sc.ServiceDiscoveryConfigs
	}
	if err := dm.ApplyConfig(sdCfgs); err != nil {
		return fmt.Errorf("apply discovery config: %w", err)
	}
	sm, err := scrape.NewManager(scrape.ManagerOptions{
		Logger:     p.logger.With("component", "scrape"),
		Registerer: p.reg,
		Storage:    p.wal,
		UserAgent:  "rwagent/" + versionString(),
		// Start timestamps only reach remote-write 2.0, and parsing them
		// skips the _created series: only when every endpoint speaks 2.0.
		StartTimestamps: allV2(p.cfg.Prometheus.RemoteWriteConfigs),
		WrapTransport: func(job string, next http.RoundTripper) (http.RoundTripper, error) {
			c := p.cfg.ScrapeSigV4[job]
			if c == nil {
				return next, nil
			}
			return sigv4.NewRoundTripper(ctx, *sigv4Config(c, ""), next, sigv4.Options{
				Logger: p.logger.With("component", "scrape", "scrape_job", job), Registerer: p.reg,
			})
		},
	})
	if err != nil {
		return err
	}
	if err := sm.ApplyConfig(scrapeCfgs); err != nil {
		return err
	}

	// Each stage gets its own context so they stop in data-flow order:
	// scraping, then the queues (they flush), then the WAL.
	scrapeCtx, stopScrape := context.WithCancel(ctx)
	defer stopScrape()
	queueCtx, stopQueues := context.WithCancel(context.WithoutCancel(ctx))
	defer stopQueues()
	walCtx, stopWAL := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWAL()

	var scraping, sending, rest sync.WaitGroup
	errs := make(chan error, 4+len(queues))
	rest.Go(func() { errs <- p.wal.Run(walCtx) })
	rest.Go(func() {
		if err := dm.Run(); err != nil && !errors.Is(err, context.Canceled) {
			errs <- fmt.Errorf("discovery: %w", err)
		}
	})
	for _, q := range queues {
		sending.Go(func() { errs <- q.Run(queueCtx) })
	}
	scraping.Go(func() { errs <- sm.Run(scrapeCtx, dm.SyncCh()) })
	scraping.Go(func() { ret.run(scrapeCtx) })
	scraping.Go(func() {
		// Ready once the WAL is replayed (it was, to get here) and
		// discovery has handed the scrape manager its first targets.
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for !sm.Ready() {
			select {
			case <-scrapeCtx.Done():
				return
			case <-t.C:
			}
		}
		ready.Store(true)
		p.logger.Info("rwagent ready")
		notify(p.logger, p.opts.Notifier.Ready, "ready: WAL replayed, targets discovered, scraping")
	})

	var first error
	select {
	case <-ctx.Done():
		p.logger.Info("stopping: scraping ends, queues flush what they hold")
	case first = <-errs:
		p.logger.Error("a stage failed; stopping", "err", first)
	}
	ready.Store(false)
	notify(p.logger, p.opts.Notifier.Stopping, "stopping: queues flush what they hold, then the WAL closes")
	stopScrape()
	stopSD()
	scraping.Wait()
	stopQueues()
	sending.Wait()
	ret.saveAll() // what the queues acknowledged while they flushed
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

// notify sends status to systemd with send (a Notifier method) and logs
// a failure: systemd then misjudges the agent's state, the agent goes on.
func notify(logger *slog.Logger, send func(string) error, status string) {
	if err := send(status); err != nil {
		logger.Warn("systemd not notified", "status", status, "err", err)
	}
}

// sigv4Config maps a sigv4 block of the configuration to the signer's
// config; nil stays nil. url helps find the region of an AMP endpoint.
func sigv4Config(c *config.SigV4Config, url string) *sigv4.Config {
	if c == nil {
		return nil
	}
	return &sigv4.Config{
		Region: c.Region, URL: url,
		AccessKey: c.AccessKey, SecretKey: c.SecretKey, SecretKeyFile: c.SecretKeyFile,
		Profile: c.Profile, RoleARN: c.RoleARN, ExternalID: c.ExternalID, RoleSessionName: c.RoleSessionName,
		STSRegion: c.STSRegion, STSEndpoint: c.STSEndpoint, Service: c.Service,
	}
}

func newBuildInfo() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rwagent_build_info",
		Help: "A metric with a constant '1' value labelled by the version rwagent was built from.",
	}, []string{"version"})
	g.WithLabelValues(versionString()).Set(1)
	return g
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
