package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/rwagent/rwagent/pkg/config"
	"github.com/rwagent/rwagent/pkg/scrape"
	"github.com/rwagent/rwagent/pkg/sendpos"
	"github.com/rwagent/rwagent/pkg/sigv4"
	"github.com/rwagent/rwagent/pkg/wal"
	"github.com/rwagent/rwagent/pkg/web"
)

// runPipeline opens the WAL in dir and runs one pipeline of cfg until ctx
// is done, then closes the WAL. The metrics of a Grafana Agent instance
// carry its name as instance_name, as Grafana Agent's did in distinct
// mode, so that two instances' series never collide. started, when not
// nil, is given the pipeline once it runs (for reloads).
func runPipeline(ctx context.Context, cfg *config.Config, dir string, o agentOptions, root prometheus.Registerer, ready *atomic.Pointer[string], ui *web.UI, started func(*pipeline)) error {
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
	p := &pipeline{wal: w, logger: logger, reg: reg, opts: o, stateDir: dir, ui: ui}
	p.cfg.Store(cfg)
	err = p.run(ctx, ready, started)
	if cerr := w.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close WAL: %w", cerr))
	}
	return err
}

// pipeline is the running agent between WAL open and close: scraping and
// the gateway write into the WAL, a queue per remote_write endpoint sends
// from it. A reload (see reload.go) changes the scrape jobs, the endpoints
// and the gateway in place.
type pipeline struct {
	// cfg is the configuration running: replaced by a reload, read by the
	// scrape transports when a job is (re)built.
	cfg    atomic.Pointer[config.Config]
	wal    *wal.WAL
	logger *slog.Logger
	reg    prometheus.Registerer
	opts   agentOptions
	// stateDir holds the WAL (wal/) and the send positions (send_positions/).
	stateDir string
	// ui shows the pipeline on the status page while it runs.
	ui *web.UI
	// fails collects what the stages return; the first failure stops
	// the pipeline.
	fails failures

	// mu serializes reloads with each other and with the stop. The fields
	// below are set by run before the pipeline is handed out, and changed
	// by reloads under mu.
	mu            sync.Mutex
	stopping      bool // the stop has begun: reloads are refused
	ctx           context.Context
	positions     *sendpos.Keeper
	signerMetrics *sigv4.Metrics
	signerReg     bool // signerMetrics is registered
	queueCtx      context.Context
	sending       sync.WaitGroup // the queues' goroutines, and those removing a stopped one's position
	endpoints     []*endpoint    // in configuration order
	leaving       map[string]*endpoint
	sm            *scrape.Manager
	dm            *discovery.Manager
	watch         *discoveryWatch
	gw            *gatewayRun
	shownUI       *web.Registration
}

// failures collects the errors the stages return; the first closes
// failed.
type failures struct {
	mu     sync.Mutex
	errs   []error
	once   sync.Once
	failed chan struct{}
}

func newFailures() failures { return failures{failed: make(chan struct{})} }

// add records err unless it is nil or a cancellation.
func (f *failures) add(err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	f.mu.Lock()
	f.errs = append(f.errs, err)
	f.mu.Unlock()
	f.once.Do(func() { close(f.failed) })
}

// first returns the first error added.
func (f *failures) first() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.errs) == 0 {
		return nil
	}
	return f.errs[0]
}

// all returns every error added.
func (f *failures) all() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return errors.Join(f.errs...)
}

func (p *pipeline) run(ctx context.Context, ready *atomic.Pointer[string], started func(*pipeline)) error {
	cfg := p.cfg.Load()
	pc := cfg.Prometheus
	p.fails = newFailures()
	p.ctx = ctx
	eps := sendposEndpoints(pc.RemoteWriteConfigs)
	positions, err := sendpos.Open(sendpos.Options{
		Dir:               filepath.Join(p.stateDir, "send_positions"),
		WAL:               p.wal,
		Endpoints:         eps,
		SaveInterval:      p.opts.PositionInterval,
		TruncateFrequency: time.Duration(cfg.WAL.TruncateFrequency),
		MaxSize:           cfg.WAL.MaxSize,
		MaxAge:            time.Duration(cfg.WAL.MaxAge),
		Logger:            p.logger,
	})
	if err != nil {
		return err
	}
	defer positions.Close()
	p.positions = positions
	// One set of SigV4 metrics for every signer (remote_write endpoints
	// and scrape jobs), registered while the pipeline runs with a signer
	// (from a reload on, if the first one comes then), so that a rebuilt
	// pipeline registers it again.
	p.signerMetrics = sigv4.NewMetrics()
	if err := p.registerSignerMetrics(cfg); err != nil {
		return err
	}
	defer func() {
		if p.signerReg {
			p.signerMetrics.Unregister()
		}
	}()

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
	p.queueCtx = queueCtx

	for i := range pc.RemoteWriteConfigs {
		spec := newEndpointSpec(cfg, i, p.flushDeadline(cfg))
		et, err := p.newTransport(ctx, spec)
		if err != nil {
			return err
		}
		rs := positions.Resume(i)
		ep, err := p.newEndpoint(spec, rs, positions.Writer(i), et)
		if err != nil {
			return err
		}
		p.endpoints = append(p.endpoints, ep)
	}
	if len(p.endpoints) == 0 {
		p.logger.Warn("no remote_write configured: samples are logged to the WAL and sent nowhere")
	}

	scrapeCfgs, err := pc.GetScrapeConfigs()
	if err != nil {
		return err
	}
	sdCtx, stopSD := context.WithCancel(ctx)
	defer stopSD()
	dm, sm, watch, err := p.newScraping(ctx, sdCtx, scrapeCfgs)
	if err != nil {
		return err
	}
	defer sm.Close() // Run closes it; this covers a return before Run (Close is idempotent)
	p.dm, p.sm, p.watch = dm, sm, watch
	gw, err := p.startGateway()
	if err != nil {
		return err
	}
	defer gw.close()
	p.gw = gw
	// host_filter needs the host name: found before any stage starts, so
	// that failing to find it stops nothing half-started.
	var hf *hostFilter
	if ic := cfg.Instance; ic.HostFilter {
		host, err := hostName()
		if err != nil {
			return err
		}
		p.logger.Info("host_filter: scraping only this host's targets", "host", host)
		hf = &hostFilter{host: host, relabels: ic.HostFilterRelabelConfigs}
	}
	p.showOnUI()
	defer func() { p.shownUI.Remove() }()

	// Every stage is built: start them, in data-flow order from the WAL.
	var scraping, keeping, rest sync.WaitGroup
	rest.Go(func() { p.fails.add(p.wal.Run(walCtx)) })
	for _, ep := range p.endpoints {
		p.start(ep)
	}
	watch.Start(time.Now())
	rest.Go(func() {
		if err := dm.Run(); err != nil && !errors.Is(err, context.Canceled) {
			p.fails.add(fmt.Errorf("discovery: %w", err))
		}
	})
	tsets := dm.SyncCh()
	if hf != nil {
		filtered := make(chan map[string][]*targetgroup.Group)
		scraping.Go(func() { hf.run(scrapeCtx, dm.SyncCh(), filtered) })
		tsets = filtered
	}
	keeping.Go(func() { p.fails.add(positions.Run(posCtx)) })
	scraping.Go(func() { p.fails.add(sm.Run(scrapeCtx, tsets)) })
	scraping.Go(func() { p.fails.add(gw.run(scrapeCtx)) })
	scraping.Go(func() { p.awaitReady(scrapeCtx, sm, watch, ready) })
	if started != nil {
		started(p)
	}

	select {
	case <-ctx.Done():
		p.logger.Info("stopping: scraping ends, queues flush what they hold")
	case <-p.fails.failed:
		p.logger.Error("a stage failed; stopping", "err", p.fails.first())
	}
	// From here on no reload changes anything: the stop owns the stages.
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	if ctx.Err() != nil && p.cfg.Load().Instance.WriteStaleOnShutdown {
		// Stopping every job writes a stale marker for each of its
		// series, which the queues then flush with the rest.
		if err := sm.ApplyConfig(nil); err != nil {
			p.logger.Error("write_stale_on_shutdown: stale markers not written", "err", err)
		} else {
			p.logger.Info("write_stale_on_shutdown: stale markers written for every series")
		}
	}
	ready.Store(new("stopping"))
	stopScrape()
	stopSD()
	scraping.Wait()
	stopQueues()
	p.sending.Wait()
	stopPositions()
	keeping.Wait()
	stopWAL()
	rest.Wait()
	return p.fails.all()
}

// registerSignerMetrics registers the SigV4 metrics once cfg has a
// signer, if they are not yet.
func (p *pipeline) registerSignerMetrics(cfg *config.Config) error {
	if p.signerReg || !hasSigner(cfg) {
		return nil
	}
	if err := p.signerMetrics.Register(p.reg); err != nil {
		return err
	}
	p.signerReg = true
	return nil
}

// hasSigner says whether a remote_write or a scrape job of cfg signs.
func hasSigner(cfg *config.Config) bool {
	if len(cfg.ScrapeSigV4) > 0 {
		return true
	}
	for _, sv := range cfg.RemoteWriteSigV4 {
		if sv != nil {
			return true
		}
	}
	return false
}

// showOnUI (re)registers the pipeline's view on the status page, with
// the endpoints and discoveries running now.
func (p *pipeline) showOnUI() {
	shown := make([]web.Endpoint, len(p.endpoints))
	for i, ep := range p.endpoints {
		shown[i] = ep.shown
	}
	view := &web.Pipeline{Instance: p.cfg.Load().Instance.Name, Scrape: p.sm, Endpoints: shown, WAL: p.wal, Discovery: p.watch}
	if p.shownUI == nil {
		p.shownUI = p.ui.Register(view)
		return
	}
	p.shownUI.Update(view)
}

// newScraping builds the discovery manager (run under sdCtx) with every
// discovery watched for readiness, and the scrape manager writing into the
// WAL, signing the scrapes of jobs with a sigv4 block (the running
// configuration's, when a job is rebuilt by a reload).
func (p *pipeline) newScraping(ctx, sdCtx context.Context, scrapeCfgs []*promconfig.ScrapeConfig) (*discovery.Manager, *scrape.Manager, *discoveryWatch, error) {
	sdMetrics, err := discovery.CreateAndRegisterSDMetrics(p.reg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("register discovery metrics: %w", err)
	}
	watch := watchDiscovery(sdCfgs(scrapeCfgs), p.opts.DiscoveryWait, nil)
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
		StartTimestamps: allV2(p.cfg.Load().Prometheus.RemoteWriteConfigs),
		Shard:           p.opts.Shard,
		WrapTransport: func(job string, next http.RoundTripper) (http.RoundTripper, error) {
			c := p.cfg.Load().ScrapeSigV4[job]
			if c == nil {
				return next, nil
			}
			return sigv4.NewRoundTripper(ctx, *sigv4Config(c, ""), next, sigv4.Options{
				Logger: p.logger.With("component", "scrape", "scrape_job", job), Metrics: p.signerMetrics,
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

// sendposEndpoints names the remote_write endpoints to sendpos.
func sendposEndpoints(rws []*promconfig.RemoteWriteConfig) []sendpos.Endpoint {
	eps := make([]sendpos.Endpoint, len(rws))
	for i, rw := range rws {
		eps[i] = sendpos.Endpoint{Name: rw.Name, URL: rw.URL.URL}
	}
	return eps
}

// flushDeadline is the command line's flush deadline, else the
// instance's remote_flush_deadline of cfg, else zero (the remotewrite
// default).
func (p *pipeline) flushDeadline(cfg *config.Config) time.Duration {
	if p.opts.FlushDeadline > 0 {
		return p.opts.FlushDeadline
	}
	return cfg.Instance.FlushDeadline
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
