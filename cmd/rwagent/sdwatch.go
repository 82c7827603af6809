package main

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/rwagent/rwagent/pkg/web"
)

// defaultDiscoveryWait is how long readiness waits for a service
// discovery's first target set when agentOptions.DiscoveryWait is zero.
// A discovery that fails (a missing file, an HTTP endpoint answering 500,
// an API server refusing the list) sends nothing at all: Prometheus'
// discovery manager only counts the failure, by mechanism, in
// prometheus_sd_* counters, which cannot tell two jobs of one mechanism
// apart. So a discovery still silent after this wait counts as failed or
// empty, and readiness proceeds without it. A minute covers the first
// refresh of every built-in mechanism (each refreshes at once on start)
// and a slow first list of a large Kubernetes cluster.
const defaultDiscoveryWait = time.Minute

// discoveryWatch tells which service discoveries of a pipeline have sent
// their first target set. Build it with watchDiscovery, hand its Configs
// to the discovery manager instead of the scrape configs' own, and call
// Start when the manager starts. Safe for concurrent use.
type discoveryWatch struct {
	wait    time.Duration
	configs map[string]discovery.Configs // by job, for discovery.Manager
	sds     []*watchedSD                 // each distinct discovery once
	jobs    map[*watchedSD][]string      // the jobs using each

	mu    sync.Mutex
	start time.Time // zero until Start
}

// watchDiscovery wraps every discovery of sdCfgs (by job name) but static
// ones, which send at once. Jobs with equal discovery configs share one
// watchedSD, as they share one discoverer in the discovery manager. On a
// reload prev is the running watch: a discovery it already wraps keeps
// its watchedSD, so that the discovery manager, which compares configs
// with reflect.DeepEqual, keeps its discoverer and targets running.
func watchDiscovery(sdCfgs map[string]discovery.Configs, wait time.Duration, prev *discoveryWatch) *discoveryWatch {
	if wait <= 0 {
		wait = defaultDiscoveryWait
	}
	w := &discoveryWatch{wait: wait, configs: make(map[string]discovery.Configs, len(sdCfgs)), jobs: map[*watchedSD][]string{}}
	jobs := slices.Sorted(func(yield func(string) bool) {
		for j := range sdCfgs {
			if !yield(j) {
				return
			}
		}
	})
	for _, job := range jobs {
		cfgs := make(discovery.Configs, 0, len(sdCfgs[job]))
		for _, c := range sdCfgs[job] {
			if c.Name() == "static" {
				cfgs = append(cfgs, c)
				continue
			}
			same := func(s *watchedSD) bool { return reflect.DeepEqual(s.Config, c) }
			i := slices.IndexFunc(w.sds, same)
			if i < 0 {
				s := &watchedSD{Config: c}
				if prev != nil {
					if j := slices.IndexFunc(prev.sds, same); j >= 0 {
						s = prev.sds[j]
					}
				}
				w.sds = append(w.sds, s)
				i = len(w.sds) - 1
			}
			s := w.sds[i]
			if !slices.Contains(w.jobs[s], job) {
				w.jobs[s] = append(w.jobs[s], job)
			}
			cfgs = append(cfgs, s)
		}
		w.configs[job] = cfgs
	}
	return w
}

// Configs are the discovery configs to apply to the discovery manager.
func (w *discoveryWatch) Configs() map[string]discovery.Configs { return w.configs }

// Start starts the wait; call it as the discovery manager starts.
func (w *discoveryWatch) Start(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.start = now
}

// Over says whether the wait has passed at now.
func (w *discoveryWatch) Over(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.start.IsZero() && now.Sub(w.start) >= w.wait
}

// Jobs is the number of jobs watched.
func (w *discoveryWatch) Jobs() int { return len(w.configs) }

// Pending returns, at now, each job's discovery that has not sent a
// target set, sorted by job and mechanism: waiting while the wait runs,
// then given up on (GaveUp). A discovery that could not be created is
// given up on at once (Failed).
func (w *discoveryWatch) Pending(now time.Time) []web.Discovery {
	over := w.Over(now)
	var out []web.Discovery
	for _, s := range w.sds {
		sent, err := s.state()
		if sent {
			continue
		}
		for _, job := range w.jobs[s] {
			out = append(out, web.Discovery{Job: job, Mechanism: mechanism(s.Config), GaveUp: over || err != nil, Failed: err != nil, Wait: w.wait})
		}
	}
	slices.SortFunc(out, func(a, b web.Discovery) int {
		return strings.Compare(a.Job+"\xff"+a.Mechanism, b.Job+"\xff"+b.Mechanism)
	})
	return out
}

// waitingReason is why readiness still waits for pending, or "" when
// every pending discovery has been given up on.
func waitingReason(pending []web.Discovery) string {
	var waiting []string
	for _, d := range pending {
		if !d.GaveUp {
			waiting = append(waiting, fmt.Sprintf("job %s (%s) has produced no targets yet", d.Job, d.Mechanism))
		}
	}
	if len(waiting) == 0 {
		return ""
	}
	return "waiting for service discovery: " + strings.Join(waiting, ", ")
}

// mechanism names a discovery config as the scrape config spells it.
func mechanism(c discovery.Config) string { return c.Name() + "_sd_configs" }

// watchedSD is a discovery config that notes its discoverer's first
// target set. It is the config given to the discovery manager, which
// compares configs with reflect.DeepEqual: one pointer per distinct
// config keeps equal configs sharing one discoverer.
type watchedSD struct {
	discovery.Config

	mu   sync.Mutex
	sent bool  // a target set was sent
	err  error // creating the discoverer failed
}

func (s *watchedSD) state() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, s.err
}

// NewDiscoverer creates the wrapped config's discoverer, noting a failure.
func (s *watchedSD) NewDiscoverer(opts discovery.DiscovererOptions) (discovery.Discoverer, error) {
	d, err := s.Config.NewDiscoverer(opts)
	if err != nil {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		return nil, err
	}
	return &watchedDiscoverer{d: d, sd: s}, nil
}

// watchedDiscoverer passes its discoverer's target sets on, noting the
// first.
type watchedDiscoverer struct {
	d  discovery.Discoverer
	sd *watchedSD
}

// Run runs the discoverer until ctx is done, forwarding what it sends.
func (w *watchedDiscoverer) Run(ctx context.Context, up chan<- []*targetgroup.Group) {
	in := make(chan []*targetgroup.Group)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.d.Run(ctx, in)
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case tgs := <-in:
			w.sd.mu.Lock()
			w.sd.sent = true
			w.sd.mu.Unlock()
			select {
			case up <- tgs:
			case <-ctx.Done():
				return
			}
		}
	}
}
