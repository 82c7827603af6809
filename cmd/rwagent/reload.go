package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rwagent/rwagent/pkg/config"
	"github.com/rwagent/rwagent/pkg/sdnotify"
	"github.com/rwagent/rwagent/pkg/sendpos"
	"github.com/rwagent/rwagent/pkg/server"
	"github.com/rwagent/rwagent/pkg/web"
)

// A reload re-reads the configuration file and applies it to the running
// pipelines in place: scrape jobs whose configuration is unchanged keep
// their loops and series caches (no stale marker, no missed scrape), and
// remote_write endpoints whose configuration is unchanged keep their
// queue, shards and send position. Jobs and endpoints added start; jobs
// removed stop (their series get stale markers, as in Prometheus);
// endpoints removed stop, flush within their flush deadline, then release
// their hold on the WAL. An endpoint whose configuration changed is
// stopped (it flushes) and a new queue resumes where it left off. What
// cannot change while running (the WAL's settings, an instance's own
// settings, the instances themselves, whether every endpoint speaks
// remote write 2.0, and of the gateway its section appearing or going,
// its listen address and TLS turned on or off) refuses the reload by name,
// and nothing changes. The gateway's keys, tenants, limits, routes and
// certificate reload.

// checkReload says why cfg cannot replace p's running configuration
// while it runs, naming the setting; nil when it can.
func (p *pipeline) checkReload(cfg *config.Config) error {
	old := p.cfg.Load()
	where := ""
	if name := old.Instance.Name; name != "" {
		where = "instance " + name + ": "
	}
	switch {
	case old.WAL != cfg.WAL:
		return fmt.Errorf("%swal: the WAL's settings changed; they take effect at a restart", where)
	case !reflect.DeepEqual(old.Instance, cfg.Instance):
		return fmt.Errorf("%sthe instance's own settings (other than scrape_configs and remote_write) changed; they take effect at a restart", where)
	case allV2(old.Prometheus.RemoteWriteConfigs) != allV2(cfg.Prometheus.RemoteWriteConfigs):
		// The scrapes parse start timestamps (and skip _created series)
		// only when every endpoint speaks 2.0: a 1.0 endpoint would
		// miss the _created series.
		return fmt.Errorf("%sremote_write protobuf_message: whether every endpoint speaks remote write 2.0 changed; that takes effect at a restart", where)
	}
	return nil
}

// handoverFlush bounds the flush of a queue replaced by a reload: its
// successor resumes where it acknowledged, so a receiver that is down
// (often why the endpoint's configuration changed) holds the reload up
// for seconds rather than the whole flush deadline.
const handoverFlush = 5 * time.Second

// plannedEndpoint is a remote_write endpoint of the configuration a
// reload applies: kept running, or to be started with its transport.
type plannedEndpoint struct {
	key  string
	ep   sendpos.Endpoint
	spec endpointSpec
	keep *endpoint         // running with this spec: kept
	et   endpointTransport // to start, when keep is nil
}

// reload applies cfg, which checkReload accepted, to the running
// pipeline. What can fail (the transports of new endpoints, which resolve
// credentials; the scrape configs) is done before anything changes, so a
// failure there leaves the pipeline as it was.
func (p *pipeline) reload(cfg *config.Config) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return errors.New("the pipeline is stopping")
	}
	old := p.cfg.Load()

	// Endpoints: which are kept, which start (their transports first).
	running := make(map[string]*endpoint, len(p.endpoints))
	for _, ep := range p.endpoints {
		running[ep.key] = ep
	}
	eps := sendposEndpoints(cfg.Prometheus.RemoteWriteConfigs)
	keys := sendpos.Keys(eps)
	flush := p.flushDeadline(cfg)
	plan := make([]plannedEndpoint, len(eps))
	for i := range eps {
		pe := plannedEndpoint{key: keys[i], ep: eps[i], spec: newEndpointSpec(cfg, i, flush)}
		if ep := running[pe.key]; ep != nil && ep.spec.same(pe.spec) {
			pe.keep = ep
		} else {
			et, err := p.newTransport(p.ctx, pe.spec)
			if err != nil {
				return err
			}
			pe.et = et
		}
		plan[i] = pe
	}
	if err := p.registerSignerMetrics(cfg); err != nil {
		return err
	}
	// The gateway applies all or nothing, and refuses what needs a
	// restart: nothing else has changed yet.
	if err := p.gw.reload(cfg); err != nil {
		return fmt.Errorf("%w: %w", server.ErrReloadRefused, err)
	}

	// Scrape jobs: the scrape manager applies all or nothing. A job
	// whose sigv4 block changed is rebuilt even when its scrape config
	// is not.
	scrapeCfgs, err := cfg.Prometheus.GetScrapeConfigs()
	if err != nil {
		return err
	}
	renew := func(job string) bool { return !reflect.DeepEqual(old.ScrapeSigV4[job], cfg.ScrapeSigV4[job]) }
	p.cfg.Store(cfg) // the transports of rebuilt jobs sign with the new blocks
	if err := p.sm.ApplyConfigRenewing(scrapeCfgs, renew); err != nil {
		p.cfg.Store(old)
		if gerr := p.gw.reload(old); gerr != nil {
			err = errors.Join(err, fmt.Errorf("the gateway could not go back to the running configuration: %w", gerr))
		}
		return err
	}
	// Discovery keeps every discoverer whose config is unchanged (the
	// watch hands it the same wrapped config), and with it its targets.
	watch := watchDiscovery(sdCfgs(scrapeCfgs), p.opts.DiscoveryWait, p.watch)
	watch.Start(time.Now())
	var errs []error
	if err := p.dm.ApplyConfig(watch.Configs()); err != nil {
		errs = append(errs, fmt.Errorf("apply discovery config: %w", err))
	}
	p.watch = watch

	// Endpoints: removed ones stop and flush in the background, then
	// release the WAL; changed ones stop (and flush) before their
	// successor resumes where they left off; added ones start.
	wanted := make(map[string]bool, len(plan))
	for _, pe := range plan {
		wanted[pe.key] = true
	}
	for key, ep := range running {
		if !wanted[key] {
			p.logger.Info("remote_write removed by the reload: it flushes, then its send position stops holding the WAL", "remote_name", ep.spec.rw.Name, "url", ep.spec.rw.URL.Redacted())
			ep.stop()
			p.leave(ep)
		}
	}
	next := make([]*endpoint, 0, len(plan))
	for _, pe := range plan {
		if pe.keep != nil {
			next = append(next, pe.keep)
			continue
		}
		ep, err := p.replaceEndpoint(pe, running[pe.key])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		next = append(next, ep)
	}
	p.endpoints = next
	p.showOnUI()
	return errors.Join(errs...)
}

// replaceEndpoint starts the queue of pe, after prev (the running queue of
// the same endpoint, changed; nil if none) or a removed queue of the same
// key still flushing has stopped: it then resumes where that one
// acknowledged. p.mu must be held.
func (p *pipeline) replaceEndpoint(pe plannedEndpoint, prev *endpoint) (*endpoint, error) {
	logger := p.logger.With("remote_name", pe.spec.rw.Name, "url", pe.spec.rw.URL.Redacted())
	if prev == nil {
		prev = p.leaving[pe.key] // already stopped, flushing in full
		delete(p.leaving, pe.key)
	} else {
		prev.q.Handover(handoverFlush)
	}
	var (
		rs  sendpos.Resume
		w   *sendpos.Writer
		err error
	)
	if prev != nil {
		logger.Info("remote_write changed by the reload: the running queue flushes (for at most 5s), then the new one resumes where it left off")
		prev.stop()
		<-prev.done
		rs, w, err = p.positions.Continue(pe.key)
	} else {
		logger.Info("remote_write added by the reload")
		rs, w, err = p.positions.Add(pe.ep, pe.key)
	}
	if err != nil {
		return nil, err
	}
	ep, err := p.newEndpoint(pe.spec, rs, w, pe.et)
	if err != nil {
		return nil, fmt.Errorf("remote_write %s: %w", pe.spec.rw.URL.Redacted(), err)
	}
	p.start(ep)
	return ep, nil
}

// leave waits, in the background, for the removed endpoint ep to finish
// flushing, then removes its send position, unless a later reload has
// taken its key back. p.mu must be held.
func (p *pipeline) leave(ep *endpoint) {
	if p.leaving == nil {
		p.leaving = map[string]*endpoint{}
	}
	p.leaving[ep.key] = ep
	p.sending.Go(func() {
		<-ep.done
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.leaving[ep.key] != ep {
			return // taken back: its successor continues its positions
		}
		delete(p.leaving, ep.key)
		if err := p.positions.Remove(ep.key); err != nil {
			p.logger.Warn("remote_write removed, but its send position could not be: it holds the WAL until the next restart", "err", err)
		}
	})
}

// checkPipelines says why next cannot replace running while the agent
// runs: the instances must be the same, by name and order.
func checkPipelines(running, next *config.Config) error {
	if running.Shape != next.Shape {
		return errors.New("the file changed between Prometheus' shape and Grafana Agent's; that takes effect at a restart")
	}
	name := func(c *config.Config) string { return c.Instance.Name }
	a, b := running.Pipelines(), next.Pipelines()
	an, bn := make([]string, len(a)), make([]string, len(b))
	for i, c := range a {
		an[i] = name(c)
	}
	for i, c := range b {
		bn[i] = name(c)
	}
	if !slices.Equal(an, bn) {
		return fmt.Errorf("metrics.configs: the instances changed (%v, now %v); adding or removing an instance takes effect at a restart", an, bn)
	}
	if !reflect.DeepEqual(running.Server, next.Server) {
		return errors.New("server: the server block changed; it takes effect at a restart")
	}
	return nil
}

// reloader re-reads the configuration file on SIGHUP and on POST or PUT
// /-/reload, one reload at a time, and applies it to the pipelines.
type reloader struct {
	file     string
	logger   *slog.Logger
	notifier *sdnotify.Notifier
	ui       *web.UI
	ready    func() bool // whether the agent is ready (systemd heard READY)
	// success and successTime are prometheus_config_last_reload_successful
	// and prometheus_config_last_reload_success_timestamp_seconds.
	success, successTime prometheus.Gauge

	mu      sync.Mutex
	running *config.Config // mu
	pipes   []*pipeline    // mu; by index in running.Pipelines(), nil until started
}

func newReloader(file string, cfg *config.Config, logger *slog.Logger, notifier *sdnotify.Notifier, ui *web.UI, reg prometheus.Registerer, ready func() bool) *reloader {
	r := &reloader{
		file: file, logger: logger, notifier: notifier, ui: ui, ready: ready, running: cfg,
		pipes: make([]*pipeline, len(cfg.Pipelines())),
		success: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "prometheus_config_last_reload_successful",
			Help: "Whether the last configuration reload attempt was successful.",
		}),
		successTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "prometheus_config_last_reload_success_timestamp_seconds",
			Help: "Timestamp of the last successful configuration reload.",
		}),
	}
	// As Prometheus: loading the file at start counts as a reload.
	r.success.Set(1)
	r.successTime.SetToCurrentTime()
	reg.MustRegister(r.success, r.successTime)
	return r
}

// started returns what runPipeline calls when pipeline i runs.
func (r *reloader) started(i int) func(*pipeline) {
	return func(p *pipeline) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.pipes[i] = p
	}
}

// run reloads on every signal from hup until ctx is done.
func (r *reloader) run(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.logger.Info("SIGHUP: reloading the configuration", "config", r.file)
			_ = r.reload() // logged by reload
		}
	}
}

// reload re-reads the file and applies it. An error wrapping
// server.ErrReloadRefused means the configuration was refused and
// nothing changed; another means applying it failed part-way (the error
// says which part; the rest applied).
func (r *reloader) reload() (err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	begin := time.Now()
	notified := r.ready()
	if notified {
		notify(r.logger, r.notifier.Reloading, "reloading the configuration")
	}
	defer func() {
		if err != nil {
			r.success.Set(0)
			r.ui.Reloaded(false, "", 0, begin)
			r.logger.Error("configuration reload failed: the running configuration stays, except as the error says", "config", r.file, "err", err)
		}
		if notified {
			status := "ready: configuration reloaded"
			if err != nil {
				status = "ready: configuration reload failed, see the log"
			}
			notify(r.logger, r.notifier.Ready, status)
		}
	}()
	cfg, err := config.LoadFile(r.file, nil, r.logger)
	if err != nil {
		return fmt.Errorf("%w: %w", server.ErrReloadRefused, err)
	}
	if err := checkPipelines(r.running, cfg); err != nil {
		return fmt.Errorf("%w: %w", server.ErrReloadRefused, err)
	}
	next := cfg.Pipelines()
	for i, p := range r.pipes {
		if p == nil {
			return errors.New("the agent is still starting: reload once it is ready")
		}
		if err := p.checkReload(next[i]); err != nil {
			return fmt.Errorf("%w: %w", server.ErrReloadRefused, err)
		}
	}
	dump, err := cfg.Dump()
	if err != nil {
		return fmt.Errorf("%w: %w", server.ErrReloadRefused, err)
	}
	var errs []error
	for i, p := range r.pipes {
		if err := p.reload(next[i]); err != nil {
			if name := next[i].Instance.Name; name != "" {
				err = fmt.Errorf("instance %s: %w", name, err)
			}
			errs = append(errs, err)
		}
	}
	for _, s := range cfg.Ignored {
		r.logger.Warn("configuration section ignored: rwagent is an agent", "section", s)
	}
	for _, n := range cfg.Notes {
		r.logger.Warn("configuration setting has no effect", "setting", n)
	}
	if previous, ok := applyGoGC(cfg.GoGC); ok {
		r.logger.Info("runtime.gogc of the configuration applied", "gogc", *cfg.GoGC, "previous", previous)
	}
	r.running = cfg
	if err := errors.Join(errs...); err != nil {
		return err
	}
	r.success.Set(1)
	r.successTime.Set(float64(begin.UnixNano()) / 1e9)
	r.ui.Reloaded(true, dump, gogc(cfg.GoGC), begin)
	r.logger.Info("configuration reloaded", "config", r.file, "took", time.Since(begin).Round(time.Millisecond))
	return nil
}
