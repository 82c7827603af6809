package main

import (
	"context"
	"fmt"
	"net"
	"os"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
)

// hostFilter is Grafana Agent's host_filter: it sits between discovery and
// the scrape manager and keeps only the targets that run on this host, so
// that an agent per node (a DaemonSet) scrapes each target once. A target
// is on this host when its address, or one of the labels in hostLabels,
// names the host (a port is ignored), or names localhost or 127.0.0.1. A
// target without an address is kept: the scrape manager reports it. The
// relabel configs rewrite a copy of the target's labels (its group's
// labels merged in) before the check, to set __host__ for instance; the
// scraped target keeps its own labels; one they drop is filtered out. It
// is not safe for concurrent use.
type hostFilter struct {
	host     string
	relabels []*relabel.Config
}

// hostLabels are the discovery labels that can name a target's host, as
// Grafana Agent checks them (static/metrics/instance/host_filter.go).
var hostLabels = []string{
	"__meta_consul_node",
	"__meta_dockerswarm_node_id", "__meta_dockerswarm_node_hostname", "__meta_dockerswarm_node_address",
	"__meta_kubernetes_pod_node_name", "__meta_kubernetes_node_name",
	"__host__",
}

// hostName is the name host_filter compares targets with: $HOSTNAME (a
// DaemonSet sets it to spec.nodeName), else the kernel's host name, as
// Grafana Agent takes it.
func hostName() (string, error) {
	if h := os.Getenv("HOSTNAME"); h != "" {
		return h, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("host name for host_filter: %w", err)
	}
	return h, nil
}

// run passes each update of in to out, filtered, until ctx is done.
func (f *hostFilter) run(ctx context.Context, in <-chan map[string][]*targetgroup.Group, out chan<- map[string][]*targetgroup.Group) {
	for {
		select {
		case <-ctx.Done():
			return
		case groups := <-in:
			select {
			case out <- f.filter(groups):
			case <-ctx.Done():
				return
			}
		}
	}
}

// filter returns the groups with only this host's targets. Groups are
// copied, never changed: discovery may still hold them.
func (f *hostFilter) filter(in map[string][]*targetgroup.Group) map[string][]*targetgroup.Group {
	out := make(map[string][]*targetgroup.Group, len(in))
	lb := labels.NewBuilder(labels.EmptyLabels())
	for job, groups := range in {
		kept := make([]*targetgroup.Group, 0, len(groups))
		for _, g := range groups {
			if g == nil {
				continue
			}
			ng := &targetgroup.Group{Labels: g.Labels, Source: g.Source, Targets: make([]model.LabelSet, 0, len(g.Targets))}
			for _, t := range g.Targets {
				if f.onHost(lb, t, g.Labels) {
					ng.Targets = append(ng.Targets, t)
				}
			}
			kept = append(kept, ng)
		}
		out[job] = kept
	}
	return out
}

// onHost says whether target t of a group with labels common is on this
// host.
func (f *hostFilter) onHost(lb *labels.Builder, t, common model.LabelSet) bool {
	lb.Reset(labels.EmptyLabels())
	for n, v := range common {
		lb.Set(string(n), string(v))
	}
	for n, v := range t { // the target's own labels win
		lb.Set(string(n), string(v))
	}
	if !relabel.ProcessBuilder(lb, f.relabels...) {
		return false // a drop in host_filter_relabel_configs filters out
	}
	addr := lb.Get(model.AddressLabel)
	if addr == "" || f.names(addr) {
		return true
	}
	for _, l := range hostLabels {
		if v := lb.Get(l); v != "" && f.names(v) {
			return true
		}
	}
	return false
}

// names says whether v, with or without a port, names this host.
func (f *hostFilter) names(v string) bool {
	if h, _, err := net.SplitHostPort(v); err == nil {
		v = h
	}
	return v == f.host || v == "localhost" || v == "127.0.0.1"
}
