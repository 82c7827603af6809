package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	"gopkg.in/yaml.v3"
)

// Converted is one Grafana Agent instance written as an rwagent
// configuration of Prometheus' shape.
type Converted struct {
	// Name is the instance's name.
	Name string
	// YAML is the configuration: global, scrape_configs, remote_write and
	// wal. Environment references are kept as written, so no secret that
	// the file took from the environment is written out.
	YAML []byte
}

// ConvertGrafanaAgent writes each instance of the Grafana Agent file b as
// a Prometheus-shaped rwagent configuration that means the same: the
// global section merged in, the global remote_write where the instance has
// none, Grafana Agent's remote_write defaults written out, and a wal:
// section with the instance's directory and WAL times. getenv is used to
// check the file first, as LoadFile would (nil: os.LookupEnv). Settings
// that Prometheus' shape cannot hold (host_filter, write_stale_on_shutdown,
// a remote_flush_deadline other than rwagent's 1m) are refused by name:
// keep running the Grafana Agent file for them. The server: block is left
// to the command line (see ServerConfig).
func ConvertGrafanaAgent(b []byte, getenv func(string) (string, bool)) ([]Converted, error) {
	c, err := Load(b, getenv, nil)
	if err != nil {
		return nil, err
	}
	if c.Shape != ShapeGrafanaAgent {
		return nil, errors.New(" not a Grafana Agent file (it has no metrics, server, integrations, logs or traces section)")
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlSyntaxError(err)
	}
	root := deref(doc.Content[0])
	key := "metrics"
	metrics := child(root, key)
	if metrics == nil {
		key = "prometheus"
		metrics = child(root, key)
	}
	s := metricsSection{walDir: GrafanaAgentWALDirectory}
	if v := child(metrics, "wal_directory"); v != nil {
		s.walDir = v.Value
	}
	if g := child(metrics, "global"); g != nil && g.Kind == yaml.MappingNode {
		s.global = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for j := 0; j+1 < len(g.Content); j += 2 {
			if g.Content[j].Value == "remote_write" {
				s.globalRW = deref(g.Content[j+1])
				continue
			}
			s.global.Content = append(s.global.Content, g.Content[j], g.Content[j+1])
		}
	}
	configs := child(metrics, "configs")
	var out []Converted
	for i, inst := range c.Instances {
		n := deref(configs.Content[i])
		ic := inst.Instance
		p := fmt.Sprintf("%s.configs[%d]", key, i)
		for _, r := range []struct {
			key string
			set bool
			why string
		}{
			{"host_filter", ic.HostFilter, "Prometheus' shape has no host filter"},
			{"write_stale_on_shutdown", ic.WriteStaleOnShutdown, "Prometheus' shape has no stale markers on shutdown"},
			{"remote_flush_deadline", ic.FlushDeadline != GrafanaAgentRemoteFlushDeadline, "rwagent's flush deadline in Prometheus' shape is 1m"},
		} {
			if r.set {
				return nil, &Error{Line: keyLine(n, r.key), Field: p + "." + r.key,
					Msg: "cannot be converted: " + r.why + "; keep running rwagent with the Grafana Agent file"}
			}
		}
		d := s.instanceDoc(child(n, "scrape_configs"))
		rw := child(n, "remote_write")
		if isEmpty(rw) {
			rw = s.globalRW
		}
		if !isEmpty(rw) {
			rw = cloneNode(rw)
			if err := grafanaAgentRemoteWrite(rw); err != nil {
				return nil, err
			}
			d.Content = append(d.Content, scalar("remote_write"), rw)
		}
		wal := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		wal.Content = append(wal.Content,
			scalar("dir"), scalar(path.Join(s.walDir, ic.Name)),
			scalar("truncate_frequency"), scalar(durationText(inst.WAL.TruncateFrequency.String())),
			scalar("min_age"), scalar(durationText(inst.WAL.MinAge.String())),
			scalar("max_age"), scalar(durationText(inst.WAL.MaxAge.String())))
		d.Content = append(d.Content, scalar("wal"), wal)
		stripPositions(d)
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(d); err != nil {
			return nil, fmt.Errorf("encode instance %s: %w", ic.Name, err)
		}
		out = append(out, Converted{Name: ic.Name, YAML: buf.Bytes()})
	}
	return out, nil
}

// durationText is a model.Duration's text ("1h", "5m"); zero is "0s".
func durationText(s string) string {
	if s == "0s" || s == "" {
		return time.Duration(0).String()
	}
	return s
}

// stripPositions clears the line and column of every node under n, so the
// encoder lays the document out afresh rather than by the positions nodes
// had in the original file.
func stripPositions(n *yaml.Node) {
	n.Line, n.Column = 0, 0
	for _, c := range n.Content {
		stripPositions(c)
	}
}
