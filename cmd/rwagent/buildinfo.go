package main

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// buildLabels are the labels of prometheus_build_info, as Prometheus
// sets them (client_golang's version collector): the dashboards of the
// Prometheus mixin take their $job and $instance choices from this series.
type buildLabels struct {
	version, revision, branch, goVersion, goOS, goArch, tags string
	date                                                     string // vcs.time, for the status API's buildDate; not a label
}

// currentBuild reads the labels from the binary: the link-time version
// and what the Go toolchain recorded (VCS revision, build tags). What
// is not recorded is "unknown", as in Prometheus.
func currentBuild() buildLabels {
	b := buildLabels{
		version: versionString(), revision: "unknown", branch: "unknown", tags: "unknown",
		goVersion: runtime.Version(), goOS: runtime.GOOS, goArch: runtime.GOARCH,
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.revision = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		case "-tags":
			b.tags = s.Value
		case "vcs.time":
			b.date = s.Value
		}
	}
	if modified && b.revision != "unknown" {
		b.revision += "-modified"
	}
	return b
}

// newBuildInfo returns prometheus_build_info with Prometheus' label set,
// and rwagent_build_info{version} as before, both constant 1.
func newBuildInfo() prometheus.Collector {
	b := currentBuild()
	prom := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "prometheus_build_info",
		Help: "A metric with a constant '1' value labeled by version, revision, branch, goversion from which rwagent was built, and the goos and goarch for the build; Prometheus' name, so that its dashboards find rwagent.",
	}, []string{"version", "revision", "branch", "goversion", "goos", "goarch", "tags"})
	prom.WithLabelValues(b.version, b.revision, b.branch, b.goVersion, b.goOS, b.goArch, b.tags).Set(1)
	own := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rwagent_build_info",
		Help: "A metric with a constant '1' value labelled by the version rwagent was built from.",
	}, []string{"version"})
	own.WithLabelValues(b.version).Set(1)
	return collectorSet{prom, own}
}

// collectorSet registers several collectors as one.
type collectorSet []prometheus.Collector

func (cs collectorSet) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

func (cs collectorSet) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}
