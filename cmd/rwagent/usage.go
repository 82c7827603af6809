package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// flagGroup is a heading of `rwagent --help` and the flags under it, each
// with the placeholder its value is shown with ("" for a boolean).
type flagGroup struct {
	title string
	flags [][2]string // name, placeholder
}

// printUsage writes `rwagent --help`: the subcommands, then every flag of
// fs under its group. A flag no group names is listed under "More", so
// none is ever left out.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	subcommands := [...]struct{ synopsis, what string }{
		{"check-config [--check-credentials] FILE...", "Validate configuration files (and resolve their AWS credentials)."},
		{"sign [flags] URL", "Sign one request with the agent's credential chain and send it (like awscurl); --dry-run prints it."},
		{"convert grafana-agent FILE", "Print the rwagent configuration of a Grafana Agent static-mode file."},
		{"help", "Print this help."},
	}

	flagGroups := [...]flagGroup{
		{"Configuration", [][2]string{{"config.file", "FILE"}, {"config.expand-env", ""}, {"storage.path", "DIR"}}},
		{"Web", [][2]string{{"web.listen-address", "HOST:PORT"}, {"web.enable-pprof", ""}, {"web.external-url", "URL"}, {"web.route-prefix", "PATH"}, {"web.amp-price-per-10m-samples", "USD"}}},
		{"Sharding (several agents sharing the targets)", [][2]string{{"shard.count", "N"}, {"shard.index", "I"}, {"shard.replication", "R"}}},
		{"Logging", [][2]string{{"log.level", "LEVEL"}, {"log.format", "FORMAT"}}},
		{"Other", [][2]string{{"version", ""}, {"help", ""}}},
	}
	var b strings.Builder
	b.WriteString("rwagent scrapes Prometheus targets, logs every sample to a write-ahead log\n" +
		"and sends it with remote write (signed with AWS SigV4 when asked). See README.md.\n\n" +
		"Usage:\n  rwagent [flags]\n        Run the agent.\n")
	for _, c := range subcommands {
		fmt.Fprintf(&b, "  rwagent %s\n        %s\n", c.synopsis, c.what)
	}
	b.WriteString("\nFlags of the agent (a flag is written --name=value or --name value):\n")
	listed := map[string]bool{}
	for _, g := range flagGroups {
		fmt.Fprintf(&b, "\n  %s:\n", g.title)
		for _, nf := range g.flags {
			listed[nf[0]] = true
			writeFlag(&b, fs, nf[0], nf[1])
		}
	}
	var more [][2]string
	fs.VisitAll(func(f *flag.Flag) {
		if !listed[f.Name] {
			more = append(more, [2]string{f.Name, "VALUE"})
		}
	})
	if len(more) > 0 {
		b.WriteString("\n  More:\n")
		for _, nf := range more {
			writeFlag(&b, fs, nf[0], nf[1])
		}
	}
	b.WriteString("\nRun `rwagent check-config --help` or `rwagent sign --help` for theirs.\n")
	io.WriteString(w, b.String())
}

// writeFlag writes one flag: its name and placeholder, then its help and
// default indented below.
func writeFlag(b *strings.Builder, fs *flag.FlagSet, name, placeholder string) {
	if name == "help" {
		b.WriteString("    --help\n        Print this help.\n")
		return
	}
	f := fs.Lookup(name)
	if f == nil {
		return
	}
	b.WriteString("    --" + name)
	if placeholder != "" {
		b.WriteString("=" + placeholder)
	}
	b.WriteString("\n        " + f.Usage)
	if f.DefValue != "" && f.DefValue != "false" {
		fmt.Fprintf(b, " (default %s)", f.DefValue)
	}
	b.WriteString("\n")
}
