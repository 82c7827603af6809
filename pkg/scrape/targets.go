package scrape

import (
	"cmp"
	"slices"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
)

// Why a discovered target is not scraped (DroppedTarget.Reason).
const (
	DroppedByRelabeling = "relabeling" // relabel_configs dropped it
	DroppedByShard      = "shard"      // another agent of the fleet scrapes it (Shard)
)

// TopNames is how many metric names JobStatus.TopNames lists.
const TopNames = 20

// statsRefresh is how often a loop recounts its series by metric name and
// copies its metadata when its number of series has not changed.
const statsRefresh = time.Minute

// JobStatus is what a status page shows of one scrape job. It is a copy:
// the caller may keep and change it.
type JobStatus struct {
	Job string
	// Active are the scraped targets, sorted by scrape URL.
	Active []TargetStatus
	// Dropped are discovered targets not scraped, with the reason, at
	// most keep_dropped_targets of them (0: all), as Prometheus keeps them.
	Dropped []DroppedTarget
	// DroppedTotal counts every dropped target, kept in Dropped or not.
	DroppedTotal int
	// Discovered is the number of targets service discovery gave the job
	// (active and dropped).
	Discovered int
	// Series is the number of series of the job's targets, as of each
	// target's last scrape.
	Series int
	// TopNames are the job's metric names with the most series, at most
	// TopNames of them, most first; counted at most statsRefresh ago.
	TopNames []NameCount
}

// TargetStatus is one scraped target.
type TargetStatus struct {
	ScrapeURL          string // password redacted
	Health             string // "up", "down" or "unknown" (not scraped yet)
	DiscoveredLabels   labels.Labels
	Labels             labels.Labels
	LastScrape         time.Time // zero: not scraped yet
	LastScrapeDuration time.Duration
	LastError          string
	ScrapeInterval     time.Duration
	ScrapeTimeout      time.Duration
	// Series is the number of series the target exposed (after metric
	// relabeling) as of its last scrape; Samples the samples of its last
	// scrape that were logged.
	Series, Samples int
	// Metadata is the type, help and unit of each metric family of the
	// target, by family name, as of at most statsRefresh ago.
	Metadata []Metadata
}

// DroppedTarget is a discovered target that is not scraped.
type DroppedTarget struct {
	DiscoveredLabels labels.Labels
	Reason           string // DroppedByRelabeling or DroppedByShard
}

// NameCount is the number of series of one metric name.
type NameCount struct {
	Name   string
	Series int
}

// Metadata is a metric family's metadata, as the target exposed it.
type Metadata struct {
	Family, Type, Help, Unit string
}

// jobView is what Status reads of a job without the Manager's lock: the
// sync that built it replaces it whole.
type jobView struct {
	loops        []*loop
	dropped      []droppedTarget
	droppedTotal int
	discovered   int
}

type droppedTarget struct {
	t      *scrape.Target
	reason string
}

// loopStats is what a loop publishes after a scrape for Status.
type loopStats struct {
	series, samples int
	names           map[string]int // series by metric name
	meta            []Metadata
	at              time.Time // when names and meta were counted
}

// Status returns every job's targets, as of their last scrapes, sorted by
// job name. It is safe for concurrent use and does not wait for syncs.
func (m *Manager) Status() []JobStatus {
	p := m.views.Load()
	if p == nil {
		return nil
	}
	lb := labels.NewBuilder(labels.EmptyLabels())
	out := make([]JobStatus, 0, len(*p))
	for name, v := range *p {
		js := JobStatus{Job: name, DroppedTotal: v.droppedTotal, Discovered: v.discovered}
		names := map[string]int{}
		for _, l := range v.loops {
			ts := targetStatus(l, lb)
			js.Series += ts.Series
			if st := l.stats.Load(); st != nil {
				for n, c := range st.names {
					names[n] += c
				}
			}
			js.Active = append(js.Active, ts)
		}
		slices.SortFunc(js.Active, func(a, b TargetStatus) int { return cmp.Compare(a.ScrapeURL, b.ScrapeURL) })
		for _, d := range v.dropped {
			js.Dropped = append(js.Dropped, DroppedTarget{DiscoveredLabels: d.t.DiscoveredLabels(lb), Reason: d.reason})
		}
		js.TopNames = topNames(names, TopNames)
		out = append(out, js)
	}
	slices.SortFunc(out, func(a, b JobStatus) int { return cmp.Compare(a.Job, b.Job) })
	return out
}

func targetStatus(l *loop, lb *labels.Builder) TargetStatus {
	t := l.target
	ts := TargetStatus{
		ScrapeURL:          l.url,
		Health:             string(t.Health()),
		DiscoveredLabels:   t.DiscoveredLabels(lb),
		Labels:             t.Labels(lb),
		LastScrape:         t.LastScrape(),
		LastScrapeDuration: t.LastScrapeDuration(),
		ScrapeInterval:     l.interval,
		ScrapeTimeout:      l.timeout,
	}
	if err := t.LastError(); err != nil {
		ts.LastError = err.Error()
	}
	if st := l.stats.Load(); st != nil {
		ts.Series, ts.Samples, ts.Metadata = st.series, st.samples, st.meta
	}
	return ts
}

// topNames returns the n names with the most series, most first, ties by
// name.
func topNames(counts map[string]int, n int) []NameCount {
	out := make([]NameCount, 0, len(counts))
	for name, c := range counts {
		out = append(out, NameCount{Name: name, Series: c})
	}
	slices.SortFunc(out, func(a, b NameCount) int {
		return cmp.Or(cmp.Compare(b.Series, a.Series), cmp.Compare(a.Name, b.Name))
	})
	return out[:min(n, len(out))]
}

// publishStats stores the loop's counts for Status after a scrape: the
// series count and samples every time, the names and metadata at most
// every statsRefresh (they cost a walk over the series, which a target
// whose series churn would otherwise pay at nearly every scrape), and at
// the first scrape that has series. Called by run only.
func (l *loop) publishStats(samples int, now time.Time) {
	c := l.app.cache
	series := c.series()
	prev := l.stats.Load()
	st := &loopStats{series: series, samples: samples}
	if prev != nil && prev.series != 0 && now.Sub(prev.at) < statsRefresh {
		st.names, st.meta, st.at = prev.names, prev.meta, prev.at
		l.stats.Store(st)
		return
	}
	st.at = now
	st.names = map[string]int{}
	entries := c.entries.Elems()
	for i := range entries {
		if e := &entries[i]; e.has(flagLive) {
			st.names[c.name(e)]++
		}
	}
	st.meta = make([]Metadata, 0, len(c.meta))
	for _, me := range c.meta {
		st.meta = append(st.meta, Metadata{Family: me.name, Type: string(me.typ), Help: me.help, Unit: me.unit})
	}
	slices.SortFunc(st.meta, func(a, b Metadata) int { return cmp.Compare(a.Family, b.Family) })
	l.stats.Store(st)
}
