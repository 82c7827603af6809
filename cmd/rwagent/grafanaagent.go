package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rwagent/rwagent/pkg/config"
)

// applyServerBlock sets, from the server: block of a Grafana Agent file at
// path, each of --log.level, --log.format and --web.listen-address that
// the command line did not set. A file that does not load is left for the
// agent to report.
func applyServerBlock(fs *flag.FlagSet, path string) {
	c, err := config.LoadFile(path, nil, nil)
	if err != nil || c.Shape != config.ShapeGrafanaAgent {
		return
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, s := range []struct{ flag, value string }{
		{"log.level", c.Server.LogLevel},
		{"log.format", c.Server.LogFormat},
		{"web.listen-address", c.Server.HTTPListenAddress},
	} {
		if s.value != "" && !given[s.flag] {
			// The values were checked by the loader.
			_ = fs.Set(s.flag, s.value)
		}
	}
}

// printGrafanaAgent is check-config's report of a valid Grafana Agent file.
func printGrafanaAgent(w io.Writer, file string, c *config.Config) {
	fmt.Fprintf(w, "SUCCESS: %s is valid: Grafana Agent static mode, %d instance(s), each run as its own pipeline\n", file, len(c.Instances))
	for _, in := range c.Instances {
		fmt.Fprintf(w, "  instance %s: %d scrape config(s), %d remote_write endpoint(s), WAL in %s\n",
			in.Instance.Name, len(in.Prometheus.ScrapeConfigs), len(in.Prometheus.RemoteWriteConfigs), in.WAL.Dir)
	}
	if s := c.Server; s != (config.ServerConfig{}) {
		fmt.Fprintf(w, "  server: log level %q, log format %q, listen address %q (a flag on the command line wins)\n", s.LogLevel, s.LogFormat, s.HTTPListenAddress)
	}
	for _, n := range c.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}

// convertCommand is `rwagent convert grafana-agent FILE`: it prints each
// instance of a Grafana Agent file as an rwagent configuration of
// Prometheus' shape, one YAML document per instance, each to be run by an
// rwagent of its own. Exit 0, 1 when the file cannot be converted, 2 for a
// bad command line.
func convertCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || args[0] != "grafana-agent" {
		fmt.Fprintf(stderr, "usage: rwagent convert grafana-agent FILE\n")
		return 2
	}
	file := args[1]
	b, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintf(stderr, "FAILED: %v\n", err)
		return 1
	}
	out, err := config.ConvertGrafanaAgent(b, nil)
	if err != nil {
		fmt.Fprintf(stderr, "FAILED: %s:%v\n", file, err)
		return 1
	}
	if len(out) == 0 {
		fmt.Fprintf(stderr, "FAILED: %s: no metrics instance to convert (metrics.configs is empty)\n", file)
		return 1
	}
	var flags []string
	if c, err := config.LoadFile(file, nil, nil); err == nil {
		for _, f := range []struct{ flag, value string }{
			{"--log.level", c.Server.LogLevel}, {"--log.format", c.Server.LogFormat}, {"--web.listen-address", c.Server.HTTPListenAddress},
		} {
			if f.value != "" {
				flags = append(flags, f.flag+"="+f.value)
			}
		}
	}
	for i, c := range out {
		if i > 0 {
			fmt.Fprintln(stdout, "---")
		}
		fmt.Fprintf(stdout, "# Grafana Agent instance %q of %s.", c.Name, file)
		if len(out) > 1 {
			fmt.Fprintf(stdout, " Save each document as a file and run an rwagent for each\n# (its own --web.listen-address), so that instances keep their samples apart.")
		}
		fmt.Fprintln(stdout)
		if len(flags) > 0 {
			fmt.Fprintf(stdout, "# server: run with %s\n", strings.Join(flags, " "))
		}
		stdout.Write(c.YAML)
	}
	return 0
}
