// Package web is rwagent's status page and its JSON APIs: what is scraped,
// what is sent where, the WAL, what it costs at AMP, and the loaded
// configuration with its secrets hidden. It only reads: every source is a
// read-only accessor of the part that owns the data.
package web

import (
	"cmp"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/rwagent/rwagent/pkg/remotewrite"
	"github.com/rwagent/rwagent/pkg/scrape"
	"github.com/rwagent/rwagent/pkg/wal"
)

// DefaultAMPPricePer10M is AMP's published price of ingestion, in US
// dollars per 10 million samples, for the first tier (the first 2 billion
// samples a month) in US East (N. Virginia), from
// https://aws.amazon.com/prometheus/pricing/ as read on 2026-12-06.
const DefaultAMPPricePer10M = 0.90

// costPeriod is the month of the cost estimate: 30 days.
const costPeriod = 30 * 24 * time.Hour

// Scraper is the scrape manager of a pipeline (*scrape.Manager).
type Scraper interface {
	Status() []scrape.JobStatus
}

// Queue is one remote_write queue (*remotewrite.Queue).
type Queue interface {
	Status() remotewrite.Status
}

// WAL is a pipeline's write-ahead log (*wal.WAL).
type WAL interface {
	Stats() (wal.Stats, error)
}

// Discoveries are a pipeline's service discoveries that have not sent a
// target set.
type Discoveries interface {
	Pending(now time.Time) []Discovery
}

// Discovery is one job's service discovery that has sent no target set.
type Discovery struct {
	Job       string
	Mechanism string // as the scrape config spells it: file_sd_configs
	// GaveUp: the discovery failed or is empty; readiness no longer waits
	// for it. Else it is still awaited, for up to Wait.
	GaveUp bool
	Wait   time.Duration
	// Failed: its discoverer could not be created (the log says why; the
	// error is not shown, as it may quote the config).
	Failed bool
}

// Endpoint is a remote_write queue and the log of its last error.
type Endpoint struct {
	Queue  Queue
	Errors *remotewrite.ErrorLog // nil: no error is shown
}

// Pipeline is what one pipeline shows: a Grafana Agent instance, or the
// only one of a Prometheus file (Instance empty). Any part may be nil
// while the pipeline starts.
type Pipeline struct {
	Instance  string
	Scrape    Scraper
	Endpoints []Endpoint
	WAL       WAL
	// Discovery lists the discoveries without a target set.
	Discovery Discoveries
}

// BuildInfo is what /api/v1/status/buildinfo shows, in Prometheus' shape.
type BuildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	Branch    string `json:"branch"`
	BuildUser string `json:"buildUser"`
	BuildDate string `json:"buildDate"`
	GoVersion string `json:"goVersion"`
}

// Options configure a UI. Zero values mean what each field says.
type Options struct {
	// Config is the loaded configuration as YAML with its secrets already
	// hidden (config.Config.Dump). Empty: none shown.
	Config string
	// Flags are the command line's flags and values, every one, as
	// /api/v1/status/flags shows them. A flag holding a secret must not be
	// given here.
	Flags map[string]string
	Build BuildInfo
	// Start is when the agent started. Zero: when New was called.
	Start time.Time
	// PricePer10M is the price of 10 million samples ingested, in US
	// dollars. Zero: DefaultAMPPricePer10M.
	PricePer10M float64
	// GOGC is the GC percentage in effect, for runtimeinfo. Zero: unknown.
	GOGC int
	// Now tells the time. Nil: time.Now.
	Now func() time.Time
}

// UI serves the status page and the APIs. Register the pipelines as they
// start; all methods are safe for concurrent use.
type UI struct {
	opts Options

	mu    sync.Mutex
	next  int
	pipes map[int]*Pipeline
	// The configuration shown and the state of the last reload; replaced
	// by Reloaded.
	config     string
	gogc       int
	reloadOK   bool
	lastConfig time.Time
	rates      map[string][]observation // delivered samples seen, by endpoint key
}

// observation is a count of delivered samples at a time, for rates.
type observation struct {
	t time.Time
	v float64
}

// New builds a UI.
func New(opts Options) *UI {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Start.IsZero() {
		opts.Start = opts.Now()
	}
	if opts.PricePer10M == 0 {
		opts.PricePer10M = DefaultAMPPricePer10M
	}
	return &UI{opts: opts, pipes: map[int]*Pipeline{}, rates: map[string][]observation{},
		config: opts.Config, gogc: opts.GOGC, reloadOK: true, lastConfig: opts.Start}
}

// Reloaded records a reload at at: when it succeeded, config (a dump
// with secrets hidden, as Options.Config) and gogc are shown from now on,
// and at becomes the last configuration time; when it failed, the
// running configuration stays shown and runtimeinfo says the reload
// failed.
func (u *UI) Reloaded(success bool, config string, gogc int, at time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.reloadOK = success
	if success {
		u.config, u.gogc, u.lastConfig = config, gogc, at
	}
}

// Registration is a pipeline shown by the UI.
type Registration struct {
	u  *UI
	id int
}

// Register adds a pipeline, shown after those registered before it.
// Remove it when the pipeline stops, before its parts close.
func (u *UI) Register(p *Pipeline) *Registration {
	u.mu.Lock()
	defer u.mu.Unlock()
	id := u.next
	u.next++
	u.pipes[id] = p
	return &Registration{u: u, id: id}
}

// Update shows p in place of the pipeline registered (a reload changed
// its parts), in the same place on the page.
func (r *Registration) Update(p *Pipeline) {
	r.u.mu.Lock()
	defer r.u.mu.Unlock()
	if _, ok := r.u.pipes[r.id]; ok {
		r.u.pipes[r.id] = p
	}
}

// Remove stops showing the pipeline.
func (r *Registration) Remove() {
	r.u.mu.Lock()
	defer r.u.mu.Unlock()
	delete(r.u.pipes, r.id)
}

// Handler serves / (the page) and /api/v1/ (the APIs); any other path is
// 404.
func (u *UI) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", u.page)
	mux.HandleFunc("GET /api/v1/targets", u.apiTargets)
	mux.HandleFunc("GET /api/v1/targets/metadata", u.apiTargetMetadata)
	mux.HandleFunc("GET /api/v1/status/config", u.apiConfig)
	mux.HandleFunc("GET /api/v1/status/flags", u.apiFlags)
	mux.HandleFunc("GET /api/v1/status/buildinfo", u.apiBuildInfo)
	mux.HandleFunc("GET /api/v1/status/runtimeinfo", u.apiRuntimeInfo)
	mux.HandleFunc("GET /api/v1/status/walreplay", u.apiWALReplay)
	mux.HandleFunc("GET /api/v1/remote_write", u.apiRemoteWrite)
	return mux
}

// view is everything shown, read once per request.
type view struct {
	At        time.Time
	Pipelines []pipelineView
	Price     float64
	Build     BuildInfo
	Start     time.Time
}

type pipelineView struct {
	Instance  string
	Jobs      []scrape.JobStatus
	Silent    []Discovery // discoveries that have sent no target set
	Endpoints []endpointView
	WAL       wal.Stats
	WALErr    string
	HasWAL    bool
	// Series is the pipeline's scraped series; ScrapedPerSecond its
	// samples a second (each target's last scrape over its interval).
	Series           int
	ScrapedPerSecond float64
}

type endpointView struct {
	remotewrite.Status
	LastError remotewrite.LoggedError
	// PerSecond is delivered samples a second over RateWindow (since the
	// start when the UI has not watched long enough).
	PerSecond  float64
	RateWindow time.Duration
	RateSince  string // "over the last 5m0s" or "since the start"
	CostMonth  float64
}

// snapshot reads every source.
func (u *UI) snapshot() *view {
	now := u.opts.Now()
	u.mu.Lock()
	ids := make([]int, 0, len(u.pipes))
	for id := range u.pipes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	pipes := make([]*Pipeline, 0, len(ids))
	for _, id := range ids {
		pipes = append(pipes, u.pipes[id])
	}
	u.mu.Unlock()

	v := &view{At: now, Price: u.opts.PricePer10M, Build: u.opts.Build, Start: u.opts.Start}
	for _, p := range pipes {
		pv := pipelineView{Instance: p.Instance}
		if p.Scrape != nil {
			pv.Jobs = p.Scrape.Status()
		}
		if p.Discovery != nil {
			pv.Silent = p.Discovery.Pending(now)
		}
		for _, j := range pv.Jobs {
			pv.Series += j.Series
			pv.ScrapedPerSecond += jobRate(j)
		}
		for _, e := range p.Endpoints {
			ev := endpointView{Status: e.Queue.Status()}
			if e.Errors != nil {
				ev.LastError = e.Errors.Last()
			}
			ev.PerSecond, ev.RateWindow = u.rate(p.Instance+"\xff"+ev.Name+"\xff"+ev.URL, ev.SamplesDelivered, now)
			ev.RateSince = "since the start"
			if ev.RateWindow < now.Sub(u.opts.Start) {
				ev.RateSince = "over the last " + ev.RateWindow.Round(time.Second).String()
			}
			ev.CostMonth = monthlyCost(ev.PerSecond, u.opts.PricePer10M)
			pv.Endpoints = append(pv.Endpoints, ev)
		}
		if p.WAL != nil {
			pv.HasWAL = true
			st, err := p.WAL.Stats()
			pv.WAL = st
			if err != nil {
				pv.WALErr = err.Error()
			}
		}
		v.Pipelines = append(v.Pipelines, pv)
	}
	slices.SortStableFunc(v.Pipelines, func(a, b pipelineView) int { return cmp.Compare(a.Instance, b.Instance) })
	return v
}

// Rate windows: the rate is taken over the oldest observation kept, at
// most rateKeep old; observations are kept at most one per rateStep.
const (
	rateStep = 10 * time.Second
	rateKeep = 5 * time.Minute
)

// rate returns the delivered samples a second of the endpoint key, whose
// count is now v, and the window it is taken over: since the oldest
// observation kept, or since the start while none is rateStep old.
func (u *UI) rate(key string, v float64, now time.Time) (float64, time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	obs := u.rates[key]
	for len(obs) > 1 && now.Sub(obs[1].t) >= rateKeep {
		obs = obs[1:]
	}
	if len(obs) == 0 || now.Sub(obs[len(obs)-1].t) >= rateStep {
		obs = append(obs, observation{t: now, v: v})
	}
	u.rates[key] = obs
	if d := now.Sub(obs[0].t); d >= rateStep && v >= obs[0].v {
		return (v - obs[0].v) / d.Seconds(), d
	}
	d := now.Sub(u.opts.Start)
	if d <= 0 {
		return 0, 0
	}
	return v / d.Seconds(), d
}

// jobRate is a job's samples a second: each target's samples of its last
// scrape over its scrape interval.
func jobRate(j scrape.JobStatus) float64 {
	var r float64
	for _, t := range j.Active {
		if t.ScrapeInterval > 0 {
			r += float64(t.Samples) / t.ScrapeInterval.Seconds()
		}
	}
	return r
}

// monthlyCost is the price of perSecond samples a second for costPeriod.
func monthlyCost(perSecond, pricePer10M float64) float64 {
	return perSecond * costPeriod.Seconds() * pricePer10M / 1e7
}
