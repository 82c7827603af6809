package scrape

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
)

func TestShard_Validate(t *testing.T) {
	cases := []struct {
		s    Shard
		want string // "" when valid
	}{
		{Shard{}, ""},
		{Shard{Count: 1}, ""},
		{Shard{Count: 3, Index: 2}, ""},
		{Shard{Count: 3, Index: 0, Replication: 3}, ""},
		{Shard{Count: 16, Index: 15, Replication: 2}, ""},
		{Shard{Count: -1}, "--shard.count: -1 is negative"},
		{Shard{Count: 3, Index: 3}, "--shard.index: 3 is not in 0..2 (--shard.count is 3)"},
		{Shard{Count: 3, Index: -1}, "--shard.index: -1 is not in 0..2"},
		{Shard{Index: 1}, "--shard.index: 1 is set but --shard.count is 0"},
		{Shard{Count: 3, Replication: 4}, "--shard.replication: 4 is more than --shard.count 3"},
		{Shard{Count: 3, Replication: -1}, "--shard.replication: -1 is negative"},
		{Shard{Count: 1, Replication: 2}, "--shard.replication: 2 needs --shard.count of at least 2 (it is 1)"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%+v", c.s), func(t *testing.T) {
			err := c.s.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Errorf("Validate: %v, want nil", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("Validate: %v, want %q", err, c.want)
			}
		})
	}
	if _, err := NewManager(ManagerOptions{Storage: newMemStorage(), Shard: Shard{Count: 2, Index: 2}}); err == nil || !strings.Contains(err.Error(), "--shard.index") {
		t.Errorf("NewManager with an invalid shard: %v, want the --shard.index error", err)
	}
}

// randomTargets builds n targets as a scrape config turns discovered
// labels into targets (relabeling included), with random addresses, paths
// and labels.
func randomTargets(t *testing.T, r *rand.Rand, n int) []*scrape.Target {
	t.Helper()
	cfg := loadScrapeConfigs(t, `
scrape_configs:
  - job_name: pods
    relabel_configs:
      - source_labels: [__meta_pod]
        target_label: pod
      - regex: __meta_.*
        action: labeldrop
`)[0]
	g := &targetgroup.Group{Source: "random", Labels: model.LabelSet{"env": "prod"}}
	for i := range n {
		g.Targets = append(g.Targets, model.LabelSet{
			model.AddressLabel:     model.LabelValue(fmt.Sprintf("10.%d.%d.%d:%d", r.IntN(256), r.IntN(256), r.IntN(256), 1024+r.IntN(60000))),
			model.MetricsPathLabel: model.LabelValue(fmt.Sprintf("/m%d", r.IntN(4))),
			"__meta_pod":           model.LabelValue(fmt.Sprintf("pod-%d-%x", i, r.Uint32())),
		})
	}
	ts, failures := scrape.TargetsFromGroup(g, cfg, nil, labels.NewBuilder(labels.EmptyLabels()))
	if len(failures) > 0 || len(ts) != n {
		t.Fatalf("built %d targets of %d, failures %v", len(ts), n, failures)
	}
	return ts
}

// TestShard_EveryTargetKeptByExactlyR is the property sharding promises:
// for random target sets and every count 1..16 and replication 1..count,
// each target is kept by exactly R of the count shards, and each shard's
// share is even: within 5 standard deviations of T*R/N (a shard's count is
// a sum of T independent draws of probability R/N, whose variance is below
// its mean, so the bound is 5*sqrt(T*R/N), plus 1 for rounding).
func TestShard_EveryTargetKeptByExactlyR(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 2026))
	for _, n := range []int{1, 7, 100, 1000, 3000} {
		ts := randomTargets(t, r, n)
		lb := labels.NewBuilder(labels.EmptyLabels())
		hashes := make([]uint64, len(ts))
		for i, tg := range ts {
			hashes[i] = ShardHash(tg, lb)
		}
		for count := 1; count <= 16; count++ {
			for repl := 1; repl <= count; repl++ {
				perShard := make([]int, count)
				for i, h := range hashes {
					keepers := 0
					for idx := range count {
						if (Shard{Count: count, Index: idx, Replication: repl}).Keeps(h) {
							keepers++
							perShard[idx]++
						}
					}
					if keepers != repl {
						t.Fatalf("targets %d, count %d, replication %d: target %s kept by %d shards", n, count, repl, ts[i], keepers)
					}
				}
				mean := float64(n*repl) / float64(count)
				bound := 5*math.Sqrt(mean) + 1
				for idx, c := range perShard {
					if math.Abs(float64(c)-mean) > bound {
						t.Errorf("targets %d, count %d, replication %d: shard %d keeps %d, want %.1f ± %.1f (split %v)", n, count, repl, idx, c, mean, bound, perShard)
					}
				}
			}
		}
	}
}

// TestShardHash_Stable holds the hash to its documented definition, so that
// agents of different builds and versions in one fleet agree: xxhash64 of
// the public labels after relabeling (name 0xff value 0xff, sorted) and
// then the scrape URL.
func TestShardHash_Stable(t *testing.T) {
	cfg := loadScrapeConfigs(t, `
scrape_configs:
  - job_name: node
    relabel_configs:
      - target_label: team
        replacement: infra
`)[0]
	g := &targetgroup.Group{Targets: []model.LabelSet{{model.AddressLabel: "10.0.0.1:9100"}}}
	ts, _ := scrape.TargetsFromGroup(g, cfg, nil, labels.NewBuilder(labels.EmptyLabels()))
	if len(ts) != 1 {
		t.Fatalf("got %d targets", len(ts))
	}
	got := ShardHash(ts[0], labels.NewBuilder(labels.EmptyLabels()))
	want := xxhash.Sum64String("instance\xff10.0.0.1:9100\xffjob\xffnode\xffteam\xffinfra\xff" + "http://10.0.0.1:9100/metrics")
	if got != want {
		t.Errorf("ShardHash = %#x, want %#x", got, want)
	}
	// The same value as a literal: a change of the definition above, or of
	// xxhash, would split a fleet of mixed versions differently.
	if got != 0x7808a820492411e7 {
		t.Errorf("ShardHash = %#x, want the value of earlier releases 0x7808a820492411e7", got)
	}
}

// TestManager_Shards runs three managers as shards 0..2 of one fleet on the
// same targets: each target is scraped by exactly one, and each counts
// what it kept and dropped.
func TestManager_Shards(t *testing.T) {
	const n = 12
	var addrs []string
	for range n {
		srv := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, "probe_value 1")
		}))
		addrs = append(addrs, hostOf(srv.URL))
	}
	cfgs := loadScrapeConfigs(t, jobYAML("100ms", ""))
	owner := map[string]int{} // instance → shard
	for idx := range 3 {
		h := startManagerOpts(t, cfgs, ManagerOptions{Storage: newMemStorage(), Shard: Shard{Count: 3, Index: idx}})
		h.setTargets("test", addrs...)
		// The metrics are set while a sync runs, the active targets
		// published when it ends: wait for both.
		waitFor(t, "shard metrics and active targets", func() bool {
			kept := testutil.ToFloat64(h.m.shard.targets.WithLabelValues("test", shardKept))
			return kept+testutil.ToFloat64(h.m.shard.targets.WithLabelValues("test", shardDropped)) == n &&
				int(kept) == len(h.m.ActiveTargets()["test"])
		})
		active := h.m.ActiveTargets()["test"]
		if kept := testutil.ToFloat64(h.m.shard.targets.WithLabelValues("test", shardKept)); int(kept) != len(active) {
			t.Errorf("shard %d: rwagent_shard_targets{state=kept} = %v, active targets %d", idx, kept, len(active))
		}
		for _, tg := range active {
			inst := tg.DiscoveredLabels(labels.NewBuilder(labels.EmptyLabels())).Get(model.AddressLabel)
			if prev, ok := owner[inst]; ok {
				t.Errorf("target %s scraped by shards %d and %d", inst, prev, idx)
			}
			owner[inst] = idx
		}
		h.stop()
	}
	if len(owner) != n {
		t.Errorf("%d of %d targets scraped by some shard: %v", len(owner), n, owner)
	}
}

func TestManager_ShardMetricsUnregister(t *testing.T) {
	h := startManagerOpts(t, nil, ManagerOptions{Storage: newMemStorage(), Shard: Shard{Count: 4, Index: 1, Replication: 2}})
	if got := testutil.ToFloat64(h.m.shard.info.WithLabelValues("1", "4", "2")); got != 1 {
		t.Errorf("rwagent_shard_info{index=1,count=4,replication=2} = %v, want 1", got)
	}
	h.stop()
	if n, err := testutil.GatherAndCount(h.reg, "rwagent_shard_info", "rwagent_shard_targets"); err != nil || n != 0 {
		t.Errorf("after Run returned: %d shard series registered (err %v), want 0", n, err)
	}
}
