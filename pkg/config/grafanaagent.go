package config

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/relabel"
	yamlv2 "go.yaml.in/yaml/v2"
	"gopkg.in/yaml.v3"
)

// Grafana Agent's static mode (end of life) reads a file of its own shape:
// server:, metrics: (formerly prometheus:) with a global section and a list
// of instances (metrics.configs[]), each with Prometheus' scrape_configs
// and remote_write, plus integrations:, logs: and traces:. Each instance is
// read here as a Prometheus-shaped Config of its own, with its own WAL
// directory, wal_directory/<name>, as Grafana Agent lays them out, so that
// the agent runs it as a pipeline of its own and samples never cross
// instances. Read at grafana/agent 372611b (static/metrics/instance,
// static/config, static/server).

// InstanceConfig is what a Grafana Agent metrics instance adds to a
// pipeline. Its zero value, for Prometheus' shape, adds nothing.
type InstanceConfig struct {
	// Name is metrics.configs[].name: the instance's directory under
	// wal_directory (or --storage.path) and the instance_name label of its
	// metrics. Empty for Prometheus' shape.
	Name string
	// HostFilter (host_filter) keeps only discovered targets that run on
	// this host: see README, "Coming from Grafana Agent".
	HostFilter bool
	// HostFilterRelabelConfigs (host_filter_relabel_configs) rewrite a copy
	// of a target's labels before the host filter looks at them.
	HostFilterRelabelConfigs []*relabel.Config
	// FlushDeadline (remote_flush_deadline) bounds the sending after a
	// stop. Zero means the remote-write default.
	FlushDeadline time.Duration
	// WriteStaleOnShutdown (write_stale_on_shutdown): on a graceful stop,
	// every scraped series gets a stale marker before the queues flush.
	WriteStaleOnShutdown bool
}

// ServerConfig is what a Grafana Agent `server:` block asks of rwagent's
// command line. Empty fields are not set; a flag given on the command line
// wins over them.
type ServerConfig struct {
	LogLevel  string // server.log_level: debug, info, warn or error
	LogFormat string // server.log_format: logfmt or json
	// HTTPListenAddress is host:port from http_listen_address (default
	// 127.0.0.1) and http_listen_port (default 12345).
	HTTPListenAddress string
}

// The defaults of a Grafana Agent file, Grafana Agent's own
// (static/metrics/instance.DefaultConfig, static/metrics.DefaultConfig),
// so that a file means what it meant there.
const (
	GrafanaAgentWALDirectory        = "data-agent/"
	GrafanaAgentWALTruncateFreq     = 60 * time.Minute
	GrafanaAgentMinWALTime          = 5 * time.Minute
	GrafanaAgentMaxWALTime          = 4 * time.Hour
	GrafanaAgentRemoteFlushDeadline = time.Minute
	// grafanaAgentIdleConnTimeout is http_idle_conn_timeout's default and
	// the idle timeout of rwagent's scrape connections (Prometheus'
	// HTTP client's).
	grafanaAgentIdleConnTimeout = 5 * time.Minute
	defaultListenHost           = "127.0.0.1"
	defaultListenPort           = "12345"
)

// isGrafanaAgent says whether the top-level mapping root is a Grafana Agent
// file: it has a section Prometheus' shape does not.
func isGrafanaAgent(root *yaml.Node) bool {
	for i := 0; i+1 < len(root.Content); i += 2 {
		switch root.Content[i].Value {
		case "metrics", "prometheus", "server", "integrations", "logs", "loki", "traces", "tempo", "agent_management":
			return true
		}
	}
	return false
}

// refusedSections are the top-level sections of a Grafana Agent file that
// rwagent does not do, with what to use instead.
var refusedSections = map[string]string{
	"logs":             "rwagent forwards metrics only; ship logs with Grafana Alloy, Promtail or Fluent Bit, and remove logs",
	"loki":             "rwagent forwards metrics only; ship logs with Grafana Alloy, Promtail or Fluent Bit, and remove loki",
	"traces":           "rwagent forwards metrics only; send traces with Grafana Alloy or the AWS Distro for OpenTelemetry collector, and remove traces",
	"tempo":            "rwagent forwards metrics only; send traces with Grafana Alloy or the AWS Distro for OpenTelemetry collector, and remove tempo",
	"agent_management": "rwagent reads its configuration from this file only; remove agent_management",
}

// loadGrafanaAgent loads a Grafana Agent file whose environment references
// are already expanded. Errors name the line and the field as the file
// spells it (metrics.configs[1].scrape_configs[0]...).
func loadGrafanaAgent(root *yaml.Node, logger *slog.Logger, dir string) (*Config, error) {
	c := &Config{Shape: ShapeGrafanaAgent}
	var metrics *yaml.Node
	metricsKey := ""
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], deref(root.Content[i+1])
		switch k.Value {
		case "server":
			if err := loadServer(v, &c.Server, &c.Notes); err != nil {
				return nil, err
			}
		case "metrics", "prometheus":
			if metrics != nil {
				return nil, &Error{Line: k.Line, Field: k.Value, Msg: "set either metrics or prometheus (its former name), not both"}
			}
			metrics, metricsKey = v, k.Value
		case "integrations":
			if name, n := enabledIntegration(v); name != "" {
				return nil, &Error{Line: n.Line, Field: "integrations." + name, Msg: "not supported: " + integrationAdvice(name)}
			}
		default:
			what, refused := refusedSections[k.Value]
			if !refused {
				return nil, &Error{Line: k.Line, Msg: fmt.Sprintf("unknown field %q (a Grafana Agent file has server, metrics, integrations, logs and traces)", k.Value)}
			}
			if !isEmpty(v) {
				return nil, &Error{Line: k.Line, Field: k.Value, Msg: "not supported: " + what}
			}
		}
	}
	if metrics == nil || isEmpty(metrics) {
		return c, nil
	}
	if metrics.Kind != yaml.MappingNode {
		return nil, &Error{Line: metrics.Line, Field: metricsKey, Msg: "must be a mapping"}
	}
	insts, err := loadMetrics(metrics, metricsKey, logger, dir, &c.Notes)
	if err != nil {
		return nil, err
	}
	c.Instances = insts
	return c, nil
}

// metricsSection is the metrics: block once read, apart from its instances.
type metricsSection struct {
	walDir   string
	global   *yaml.Node // global without remote_write; nil when absent
	globalRW *yaml.Node // global.remote_write; nil when absent
	configs  *yaml.Node
}

func loadMetrics(m *yaml.Node, key string, logger *slog.Logger, dir string, notes *[]string) ([]*Config, error) {
	s := metricsSection{walDir: GrafanaAgentWALDirectory}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], deref(m.Content[i+1])
		path := key + "." + k.Value
		switch k.Value {
		case "global":
			if isEmpty(v) {
				continue
			}
			if v.Kind != yaml.MappingNode {
				return nil, &Error{Line: v.Line, Field: path, Msg: "must be a mapping"}
			}
			s.global = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: v.Line, Column: v.Column}
			for j := 0; j+1 < len(v.Content); j += 2 {
				if v.Content[j].Value == "remote_write" {
					s.globalRW = deref(v.Content[j+1])
					continue
				}
				s.global.Content = append(s.global.Content, v.Content[j], v.Content[j+1])
			}
		case "wal_directory":
			if err := decodeScalar(v, path, &s.walDir); err != nil {
				return nil, err
			}
			if s.walDir == "" {
				return nil, &Error{Line: v.Line, Field: path, Msg: "must not be empty"}
			}
		case "configs":
			s.configs = v
		case "wal_cleanup_age", "wal_cleanup_period":
			d, err := decodeDuration(v, path)
			if err != nil {
				return nil, err
			}
			if k.Value == "wal_cleanup_period" && d == 0 {
				continue // cleanup off: what rwagent does
			}
			return nil, &Error{Line: k.Line, Field: path, Msg: "not supported: rwagent does not remove the WAL of an instance no longer configured; " +
				"remove its directory under wal_directory yourself, and set wal_cleanup_period: 0 or remove " + k.Value}
		case "http_disable_keepalives":
			var b bool
			if err := decodeScalar(v, path, &b); err != nil {
				return nil, err
			}
			if b {
				return nil, &Error{Line: k.Line, Field: path, Msg: "not supported: rwagent keeps scrape connections alive, as Prometheus does; remove it"}
			}
		case "http_idle_conn_timeout":
			d, err := decodeDuration(v, path)
			if err != nil {
				return nil, err
			}
			if d != grafanaAgentIdleConnTimeout {
				return nil, &Error{Line: k.Line, Field: path, Msg: "not supported: rwagent closes idle scrape connections after 5m, as Prometheus does; remove it"}
			}
		case "instance_restart_backoff":
			if _, err := decodeDuration(v, path); err != nil {
				return nil, err
			}
			*notes = append(*notes, path+": rwagent does not restart a failed instance; it stops, and its supervisor (systemd's Restart=on-failure, the container runtime) starts it again")
		case "instance_mode":
			var mode string
			if err := decodeScalar(v, path, &mode); err != nil {
				return nil, err
			}
			if mode != "shared" && mode != "distinct" {
				return nil, &Error{Line: v.Line, Field: path, Msg: fmt.Sprintf("%q is not one of shared, distinct", mode)}
			}
			// Both run every instance's samples to its own remote_write;
			// rwagent always runs instances apart, as distinct does.
		case "scraping_service":
			var on struct {
				Enabled bool `yaml:"enabled"`
			}
			_ = v.Decode(&on)
			if on.Enabled {
				return nil, &Error{Line: k.Line, Field: path, Msg: "not supported: rwagent does not share scrape configs through a KV store; " +
					"run one rwagent per host with its own file (host_filter keeps each to its host's targets), and remove scraping_service"}
			}
		case "scraping_service_client":
			// Configures the clustering client only; nothing without
			// scraping_service, which is refused above.
		default:
			return nil, &Error{Line: k.Line, Field: key, Msg: fmt.Sprintf("unknown field %q", k.Value)}
		}
	}
	if s.configs == nil || isEmpty(s.configs) {
		// No instance: still check the global section.
		if s.global != nil || s.globalRW != nil {
			doc := s.instanceDoc(nil)
			if rw := cloneNode(s.globalRW); !isEmpty(rw) && grafanaAgentRemoteWrite(rw) == nil {
				doc.Content = append(doc.Content, scalar("remote_write"), rw)
			}
			if _, err := loadPrometheus(doc, logger, dir); err != nil {
				return nil, s.rename(err, key, -1, true)
			}
		}
		return nil, nil
	}
	if s.configs.Kind != yaml.SequenceNode {
		return nil, &Error{Line: s.configs.Line, Field: key + ".configs", Msg: "must be a list of instances"}
	}
	var out []*Config
	names := map[string]int{}
	for i, n := range s.configs.Content {
		c, err := s.loadInstance(deref(n), key, i, logger, dir)
		if err != nil {
			return nil, err
		}
		if j, dup := names[c.Instance.Name]; dup {
			return nil, &Error{Line: n.Line, Field: fmt.Sprintf("%s.configs[%d].name", key, i),
				Msg: fmt.Sprintf("%q is also the name of configs[%d]: each instance needs its own WAL directory", c.Instance.Name, j)}
		}
		names[c.Instance.Name] = i
		out = append(out, c)
	}
	return out, nil
}

// loadInstance reads metrics.configs[i].
func (s *metricsSection) loadInstance(n *yaml.Node, key string, i int, logger *slog.Logger, dir string) (*Config, error) {
	path := fmt.Sprintf("%s.configs[%d]", key, i)
	if n.Kind != yaml.MappingNode {
		return nil, &Error{Line: n.Line, Field: path, Msg: "must be a mapping"}
	}
	ic := InstanceConfig{FlushDeadline: GrafanaAgentRemoteFlushDeadline}
	truncate, minWAL, maxWAL := GrafanaAgentWALTruncateFreq, GrafanaAgentMinWALTime, GrafanaAgentMaxWALTime
	var scrapes, rw *yaml.Node
	lines := map[string]int{}
	for j := 0; j+1 < len(n.Content); j += 2 {
		k, v := n.Content[j], deref(n.Content[j+1])
		fp := path + "." + k.Value
		lines[k.Value] = k.Line
		var err error
		switch k.Value {
		case "name":
			err = decodeScalar(v, fp, &ic.Name)
		case "host_filter":
			err = decodeScalar(v, fp, &ic.HostFilter)
		case "host_filter_relabel_configs":
			ic.HostFilterRelabelConfigs, err = decodeRelabels(v, fp)
		case "scrape_configs":
			scrapes = v
		case "remote_write":
			rw = v
		case "wal_truncate_frequency":
			truncate, err = decodeDuration(v, fp)
		case "min_wal_time":
			minWAL, err = decodeDuration(v, fp)
		case "max_wal_time":
			maxWAL, err = decodeDuration(v, fp)
		case "remote_flush_deadline":
			ic.FlushDeadline, err = decodeDuration(v, fp)
		case "write_stale_on_shutdown":
			err = decodeScalar(v, fp, &ic.WriteStaleOnShutdown)
		default:
			err = &Error{Line: k.Line, Field: path, Msg: fmt.Sprintf("unknown field %q", k.Value)}
		}
		if err != nil {
			return nil, err
		}
	}
	line := func(k string) int {
		if l := lines[k]; l > 0 {
			return l
		}
		return n.Line
	}
	switch {
	case ic.Name == "":
		return nil, &Error{Line: n.Line, Field: path + ".name", Msg: "missing: every instance needs a name (its WAL directory)"}
	case ic.Name == "." || ic.Name == ".." || strings.ContainsAny(ic.Name, `/\`):
		return nil, &Error{Line: line("name"), Field: path + ".name", Msg: fmt.Sprintf("%q cannot be a directory name under wal_directory", ic.Name)}
	case truncate <= 0:
		return nil, &Error{Line: line("wal_truncate_frequency"), Field: path + ".wal_truncate_frequency", Msg: "must be greater than 0s"}
	case ic.FlushDeadline <= 0:
		return nil, &Error{Line: line("remote_flush_deadline"), Field: path + ".remote_flush_deadline", Msg: "must be greater than 0s"}
	case minWAL > maxWAL:
		return nil, &Error{Line: line("min_wal_time"), Field: path + ".min_wal_time", Msg: fmt.Sprintf("%s is more than max_wal_time %s", minWAL, maxWAL)}
	case minWAL < 0:
		return nil, &Error{Line: line("min_wal_time"), Field: path + ".min_wal_time", Msg: "must not be negative"}
	}

	ownRW := rw != nil && !isEmpty(rw)
	if !ownRW {
		rw = s.globalRW
	}
	doc := s.instanceDoc(scrapes)
	if rw != nil && !isEmpty(rw) {
		rw = cloneNode(rw) // the global list is read once per instance
		if err := grafanaAgentRemoteWrite(rw); err != nil {
			return nil, s.rename(err, key, i, ownRW)
		}
		doc.Content = append(doc.Content, scalar("remote_write"), rw)
	}
	c, err := loadPrometheus(doc, logger, dir)
	if err != nil {
		return nil, s.rename(err, key, i, ownRW)
	}
	for j, sc := range c.Prometheus.ScrapeConfigs {
		if time.Duration(sc.ScrapeInterval) > truncate {
			return nil, &Error{Line: scrapeLine(scrapes, j), Field: fmt.Sprintf("%s.scrape_configs[%d].scrape_interval", path, j),
				Msg: fmt.Sprintf("%s is longer than wal_truncate_frequency %s", sc.ScrapeInterval, truncate)}
		}
	}
	c.Shape = ShapePrometheus
	c.Instance = ic
	c.WAL = DefaultWALConfig
	c.WAL.Dir = filepath.Join(s.walDir, ic.Name)
	c.WAL.TruncateFrequency = model.Duration(truncate)
	c.WAL.MinAge = model.Duration(minWAL)
	c.WAL.MaxAge = model.Duration(maxWAL)
	if err := c.WAL.Validate(); err != nil {
		return nil, &Error{Line: n.Line, Field: path, Msg: err.Error()}
	}
	return c, nil
}

// instanceDoc is the Prometheus-shaped document of an instance: the global
// section (a copy: each load changes its nodes) and scrape_configs.
func (s *metricsSection) instanceDoc(scrapes *yaml.Node) *yaml.Node {
	doc := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	if s.global != nil {
		doc.Content = append(doc.Content, scalar("global"), cloneNode(s.global))
	}
	if scrapes != nil {
		doc.Content = append(doc.Content, scalar("scrape_configs"), scrapes)
	}
	return doc
}

// rename re-tells an error of an instance's Prometheus-shaped document in
// the file's terms: global is metrics.global, scrape_configs is the
// instance's, remote_write the instance's (ownRW) or the global one. i < 0
// is the global section alone.
func (s *metricsSection) rename(err error, key string, i int, ownRW bool) error {
	e, ok := err.(*Error)
	if !ok {
		return err
	}
	inst := fmt.Sprintf("%s.configs[%d]", key, i)
	prefix := func(field string) string {
		switch {
		case field == "global" || strings.HasPrefix(field, "global."):
			return key + "." + field
		case strings.HasPrefix(field, "remote_write") && (!ownRW || i < 0):
			return key + ".global." + field
		case field == "":
			if i < 0 {
				return key
			}
			return inst
		}
		return inst + "." + field
	}
	out := *e
	out.Field = prefix(e.Field)
	return &out
}

// grafanaAgentRemoteWrite applies what Grafana Agent changed in Prometheus'
// remote_write (the list node rw, changed in place): send_exemplars
// defaults to true, and a sigv4 block may carry Grafana Agent's former
// `enabled` key (true: sign, as the block does anyway; false: do not sign,
// as if there were no block).
func grafanaAgentRemoteWrite(rw *yaml.Node) error {
	if rw.Kind != yaml.SequenceNode {
		return nil // Prometheus' loader names the problem
	}
	for j, e := range rw.Content {
		e = deref(e)
		if e.Kind != yaml.MappingNode {
			continue
		}
		if mappingValue(e, "send_exemplars") == nil {
			e.Content = append(e.Content, scalar("send_exemplars"), &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
		}
		block := deref(mappingValue(e, "sigv4"))
		if block == nil || block.Kind != yaml.MappingNode {
			continue
		}
		for m := 0; m+1 < len(block.Content); m += 2 {
			if block.Content[m].Value != "enabled" {
				continue
			}
			var on bool
			if v := block.Content[m+1]; v.Decode(&on) != nil {
				return &Error{Line: v.Line, Field: fmt.Sprintf("remote_write[%d].sigv4.enabled", j), Msg: fmt.Sprintf("%q is not true or false", v.Value)}
			}
			block.Content = append(block.Content[:m:m], block.Content[m+2:]...)
			if !on {
				removeKey(e, "sigv4")
			}
			break
		}
	}
	return nil
}

// loadServer reads the server: block into s. Settings that configure only
// what rwagent does not have (a gRPC server, HTTP server timeouts) are
// listed in notes; those that would change what rwagent serves are
// refused.
func loadServer(n *yaml.Node, s *ServerConfig, notes *[]string) error {
	if isEmpty(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return &Error{Line: n.Line, Field: "server", Msg: "must be a mapping"}
	}
	var host, port string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		path := "server." + k.Value
		switch k.Value {
		case "log_level":
			if err := decodeScalar(v, path, &s.LogLevel); err != nil {
				return err
			}
			switch s.LogLevel {
			case "debug", "info", "warn", "error":
			default:
				return &Error{Line: v.Line, Field: path, Msg: fmt.Sprintf("%q is not one of debug, info, warn, error", s.LogLevel)}
			}
		case "log_format":
			if err := decodeScalar(v, path, &s.LogFormat); err != nil {
				return err
			}
			if s.LogFormat != "logfmt" && s.LogFormat != "json" {
				return &Error{Line: v.Line, Field: path, Msg: fmt.Sprintf("%q is not one of logfmt, json", s.LogFormat)}
			}
		case "http_listen_address":
			if err := decodeScalar(v, path, &host); err != nil {
				return err
			}
		case "http_listen_port":
			var p int
			if err := decodeScalar(v, path, &p); err != nil {
				return err
			}
			if p < 0 || p > 65535 {
				return &Error{Line: v.Line, Field: path, Msg: fmt.Sprintf("%d is not a port", p)}
			}
			port = strconv.Itoa(p)
		case "http_tls_config", "http_path_prefix":
			if !isEmpty(v) {
				return &Error{Line: k.Line, Field: path, Msg: "not supported: rwagent serves /metrics and /-/ready over plain HTTP at the root of --web.listen-address (127.0.0.1 by default); " +
					"put a proxy in front for TLS or a prefix, and remove " + k.Value}
			}
		case "grpc_listen_address", "grpc_listen_port", "grpc_listen_network", "grpc_tls_config",
			"grpc_server_max_recv_msg_size", "grpc_server_max_send_msg_size", "grpc_server_max_concurrent_streams",
			"http_listen_network", "http_server_read_timeout", "http_server_write_timeout", "http_server_idle_timeout",
			"graceful_shutdown_timeout", "register_instrumentation", "log_source_ips_enabled", "log_source_ips_header", "log_source_ips_regex":
			*notes = append(*notes, path+": rwagent has no gRPC server and serves HTTP with its own settings; ignored")
		default:
			return &Error{Line: k.Line, Field: "server", Msg: fmt.Sprintf("unknown field %q", k.Value)}
		}
	}
	if host != "" || port != "" {
		if host == "" {
			host = defaultListenHost
		}
		if port == "" {
			port = defaultListenPort
		}
		s.HTTPListenAddress = net.JoinHostPort(host, port)
	}
	return nil
}

// enabledIntegration returns the first integration of the integrations:
// block n that is not switched off (`enabled: false`), with its key node;
// "" when there is none. prometheus_remote_write only says where
// integrations send, and is no integration.
func enabledIntegration(n *yaml.Node) (string, *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		if isEmpty(n) {
			return "", nil
		}
		return "integrations", n
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		if k.Value == "prometheus_remote_write" || isEmpty(v) {
			continue
		}
		if e := mappingValue(v, "enabled"); e != nil {
			var on bool
			if e.Decode(&on) == nil && !on {
				continue
			}
		}
		return k.Value, k
	}
	return "", nil
}

// integrationAdvice says what to run instead of an integration.
func integrationAdvice(name string) string {
	exporter := map[string]string{
		"node_exporter": "node_exporter (port 9100)", "process_exporter": "process-exporter (port 9256)",
		"mysqld_exporter": "mysqld_exporter (port 9104)", "postgres_exporter": "postgres_exporter (port 9187)",
		"redis_exporter": "redis_exporter (port 9121)", "cadvisor": "cAdvisor (port 8080)",
		"blackbox": "blackbox_exporter (port 9115)", "windows_exporter": "windows_exporter (port 9182)",
		"kafka_exporter": "kafka_exporter (port 9308)", "cloudwatch_exporter": "YACE, yet-another-cloudwatch-exporter (port 5000)",
	}[name]
	if exporter == "" {
		exporter = "the exporter " + name + " embeds"
	}
	if name == "agent" {
		return "rwagent serves its own metrics on --web.listen-address's /metrics; scrape it with a job in metrics.configs[].scrape_configs and remove integrations.agent"
	}
	return "rwagent embeds no exporters; run " + exporter + " as its own process, scrape it with a job in metrics.configs[].scrape_configs, and remove integrations." + name
}

// decodeRelabels reads a list of Prometheus relabel configs as Prometheus
// does (yaml.v2, strict, then Validate).
func decodeRelabels(n *yaml.Node, path string) ([]*relabel.Config, error) {
	text, err := yaml.Marshal(n)
	if err != nil {
		return nil, &Error{Line: n.Line, Field: path, Msg: err.Error()}
	}
	var out []*relabel.Config
	if err := yamlv2.UnmarshalStrict(text, &out); err != nil {
		return nil, &Error{Line: n.Line, Field: path, Msg: cleanV2(err.Error())}
	}
	for i, rc := range out {
		if rc == nil {
			return nil, &Error{Line: n.Line, Field: fmt.Sprintf("%s[%d]", path, i), Msg: "empty relabel config"}
		}
		if err := rc.Validate(model.UTF8Validation); err != nil {
			line := n.Line
			if i < len(n.Content) {
				line = n.Content[i].Line
			}
			return nil, &Error{Line: line, Field: fmt.Sprintf("%s[%d]", path, i), Msg: err.Error()}
		}
		// As Prometheus' loader sets it (the global default); relabeling
		// panics without one.
		rc.NameValidationScheme = model.UTF8Validation
	}
	return out, nil
}

func decodeScalar(n *yaml.Node, path string, v any) error {
	if n.Kind != yaml.ScalarNode {
		return &Error{Line: n.Line, Field: path, Msg: "must be a single value"}
	}
	if err := n.Decode(v); err != nil {
		return &Error{Line: n.Line, Field: path, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	return nil
}

// decodeDuration reads a duration as Grafana Agent did (Go's
// time.ParseDuration, "90s", "1h30m").
func decodeDuration(n *yaml.Node, path string) (time.Duration, error) {
	var s string
	if err := decodeScalar(n, path, &s); err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, &Error{Line: n.Line, Field: path, Msg: strings.TrimPrefix(err.Error(), "time: ")}
	}
	return d, nil
}

// isEmpty says whether n asks for nothing: absent, null, {} or [].
func isEmpty(n *yaml.Node) bool {
	n = deref(n)
	switch {
	case n == nil:
		return true
	case n.Kind == yaml.ScalarNode:
		return n.Tag == "!!null"
	case n.Kind == yaml.MappingNode, n.Kind == yaml.SequenceNode:
		return len(n.Content) == 0
	}
	return false
}

func scalar(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

// cloneNode copies n and everything below it, aliases resolved.
func cloneNode(n *yaml.Node) *yaml.Node {
	n = deref(n)
	if n == nil {
		return nil
	}
	c := *n
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, ch := range n.Content {
		c.Content[i] = cloneNode(ch)
	}
	return &c
}

// removeKey removes key and its value from mapping n.
func removeKey(n *yaml.Node, key string) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			n.Content = append(n.Content[:i:i], n.Content[i+2:]...)
			return
		}
	}
}

// scrapeLine is the line of scrape config j of list n, or zero.
func scrapeLine(n *yaml.Node, j int) int {
	if n = deref(n); n == nil || j >= len(n.Content) {
		return 0
	}
	return keyLine(n.Content[j], "scrape_interval")
}
