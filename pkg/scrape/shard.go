package scrape

import (
	"fmt"
	"strconv"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"

	"github.com/rwagent/rwagent/pkg/metricset"
)

// Shard says which targets an agent of a sharded fleet scrapes. Every agent
// of the fleet must have the same scrape configs, Count and Replication,
// and its own Index. The zero value scrapes every target.
//
// A target belongs to base shard ShardHash(target) mod Count, and is kept
// by the Replication shards from its base on, wrapping past Count-1: by
// exactly Replication agents of the fleet.
type Shard struct {
	// Count is the number of agents sharing the targets. Zero or 1: no
	// sharding, every target is kept.
	Count int
	// Index is this agent's shard, 0 <= Index < Count.
	Index int
	// Replication is how many agents keep each target (for receivers that
	// deduplicate). Zero means 1; at most Count.
	Replication int
}

// Validate says what is wrong with s, naming the flag that sets the field.
func (s Shard) Validate() error {
	switch {
	case s.Count < 0:
		return fmt.Errorf("--shard.count: %d is negative", s.Count)
	case s.Count <= 1 && s.Index != 0:
		return fmt.Errorf("--shard.index: %d is set but --shard.count is %d: there is no shard to pick", s.Index, s.Count)
	case s.Count <= 1 && s.Replication > 1:
		return fmt.Errorf("--shard.replication: %d needs --shard.count of at least %d (it is %d)", s.Replication, s.Replication, s.Count)
	case s.Index < 0 || (s.Count > 1 && s.Index >= s.Count):
		return fmt.Errorf("--shard.index: %d is not in 0..%d (--shard.count is %d)", s.Index, s.Count-1, s.Count)
	case s.Replication < 0:
		return fmt.Errorf("--shard.replication: %d is negative", s.Replication)
	case s.Replication > s.Count && s.Count > 1:
		return fmt.Errorf("--shard.replication: %d is more than --shard.count %d", s.Replication, s.Count)
	}
	return nil
}

// Enabled says whether s drops any target.
func (s Shard) Enabled() bool { return s.Count > 1 && s.replication() < s.Count }

func (s Shard) replication() int { return max(s.Replication, 1) }

// Keeps says whether the shard keeps a target of hash h (ShardHash). s
// must be valid.
func (s Shard) Keeps(h uint64) bool {
	if !s.Enabled() {
		return true
	}
	base := int(h % uint64(s.Count))
	// The shards base, base+1, ..., base+R-1 (mod Count) keep it: Index is
	// one of them when its distance from base, going up, is below R.
	return (s.Index-base+s.Count)%s.Count < s.replication()
}

// String is the shard as a log or metric shows it: "1/3" or "1/3 x2".
func (s Shard) String() string {
	if s.Count <= 1 {
		return "none"
	}
	out := strconv.Itoa(s.Index) + "/" + strconv.Itoa(s.Count)
	if s.replication() > 1 {
		out += " x" + strconv.Itoa(s.replication())
	}
	return out
}

// ShardHash is the hash sharding assigns a target by: xxhash64 of its
// labels after relabeling, the public ones (sorted, as name 0xff value
// 0xff) and its scrape URL. It depends only on the scrape config and the
// discovered target, not on the build or the process, so every agent of a
// fleet and every restart assign a target alike. (labels.Labels.Hash is not
// used: its input is the label set's in-memory encoding, which differs
// between Prometheus' stringlabels and slicelabels builds.)
func ShardHash(t *scrape.Target, lb *labels.Builder) uint64 {
	d := xxhash.New()
	var sep = []byte{0xff}
	t.Labels(lb).Range(func(l labels.Label) {
		_, _ = d.WriteString(l.Name)
		_, _ = d.Write(sep)
		_, _ = d.WriteString(l.Value)
		_, _ = d.Write(sep)
	})
	_, _ = d.WriteString(t.URL().String())
	return d.Sum64()
}

// shardMetrics count what sharding keeps and drops. Safe for concurrent
// use.
type shardMetrics struct {
	reg     prometheus.Registerer
	all     metricset.Set // every collector above
	targets *prometheus.GaugeVec
	info    *prometheus.GaugeVec
}

// The state labels of rwagent_shard_targets.
const (
	shardKept    = "kept"
	shardDropped = "dropped"
)

// newShardMetrics builds the metrics, unregistered; register puts them on
// reg.
func newShardMetrics(reg prometheus.Registerer, s Shard) *shardMetrics {
	f := promauto.With(nil)
	m := &shardMetrics{reg: reg}
	m.targets = f.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rwagent_shard_targets",
		Help: "Targets after relabeling, by scrape job and whether this agent's shard keeps them (kept) or leaves them to other shards (dropped).",
	}, []string{"scrape_job", "state"})
	m.info = f.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rwagent_shard_info",
		Help: "This agent's shard: index, count and replication (count 0 or 1: not sharded). Always 1.",
	}, []string{"index", "count", "replication"})
	m.info.WithLabelValues(strconv.Itoa(s.Index), strconv.Itoa(s.Count), strconv.Itoa(s.replication())).Set(1)
	m.all.Add(m.targets, m.info)
	return m
}

func (m *shardMetrics) set(job string, kept, dropped int) {
	m.targets.WithLabelValues(job, shardKept).Set(float64(kept))
	m.targets.WithLabelValues(job, shardDropped).Set(float64(dropped))
}

func (m *shardMetrics) deleteJob(job string) {
	m.targets.DeletePartialMatch(prometheus.Labels{"scrape_job": job})
}

// register registers every metric on the Registerer given to
// newShardMetrics, or none.
func (m *shardMetrics) register() error { return m.all.Register(m.reg) }

// unregister removes what register registered.
func (m *shardMetrics) unregister() { m.all.Unregister() }
