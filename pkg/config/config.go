// Package config loads rwagent's configuration file: Prometheus' own shape
// (global, scrape_configs, remote_write), validated by Prometheus' config
// package so that a user's prometheus.yml works unchanged, plus rwagent's
// own `wal:` section.
//
// Load reports every problem with the file, line and field it comes from.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"gopkg.in/yaml.v3"
)

// Config is a loaded, validated rwagent configuration. Callers must not
// modify it after Load returns; it is safe to share between goroutines.
type Config struct {
	// Prometheus holds the global, scrape_configs and remote_write sections,
	// parsed and validated by Prometheus' own config package.
	Prometheus *promconfig.Config
	// WAL is rwagent's `wal:` section, with defaults applied.
	WAL WALConfig
	// File is the path the configuration was read from.
	File string
	// Ignored lists top-level Prometheus sections present in the file that
	// configure what an agent does not have (rule_files, alerting,
	// remote_read, otlp): accepted, with no effect. Settings an agent would
	// be expected to honour and cannot are refused by Load instead.
	Ignored []string
	// GoGC is runtime.gogc when the file sets it: the agent applies it with
	// debug.SetGCPercent, over GOGC and rwagent's default, as Prometheus
	// does. Nil: the file does not set it.
	GoGC *int
	// RemoteWriteSigV4 is the complete sigv4 block of each remote_write
	// (Prometheus' fields and rwagent's), by the index of
	// Prometheus.RemoteWriteConfigs; nil where a remote_write has none.
	// It is the one to sign with: the SigV4Config of Prometheus'
	// RemoteWriteConfig keeps only what Prometheus parsed (no rwagent
	// keys, no secret_key_file's key).
	RemoteWriteSigV4 []*SigV4Config
	// ScrapeSigV4 is the sigv4 block of each scrape config that has one
	// (an rwagent extension), by job name.
	ScrapeSigV4 map[string]*SigV4Config

	// Shape is the format the file was written in.
	Shape Shape
	// Instances are the pipelines of a Grafana Agent file, one per
	// metrics.configs[] entry, in the file's order: each is a complete
	// Prometheus-shaped Config (Prometheus, WAL, sigv4 blocks) with its
	// Instance settings, and the fields above are zero. Nil for
	// Prometheus' shape. Use Pipelines to range over either.
	Instances []*Config
	// Instance holds what a Grafana Agent instance adds to a pipeline;
	// zero for Prometheus' shape.
	Instance InstanceConfig
	// Notes are settings of a Grafana Agent file that rwagent accepts and
	// does not apply, each a sentence naming the field and why: the agent
	// logs them as warnings, check-config prints them.
	Notes []string
	// Server is what a Grafana Agent file's `server:` block asks of the
	// command line; zero for Prometheus' shape.
	Server ServerConfig
	// Receive is the `receive:` section (receive.go); nil: no gateway.
	Receive *ReceiveConfig
}

// Shape is the format of a configuration file.
type Shape int

// The shapes LoadFile reads.
const (
	// ShapePrometheus is Prometheus' configuration file plus `wal:`.
	ShapePrometheus Shape = iota
	// ShapeGrafanaAgent is a Grafana Agent static-mode file (top-level
	// metrics:, server:, integrations:, logs: or traces:).
	ShapeGrafanaAgent
)

// Pipelines returns the configurations the agent runs, one pipeline
// (scrape, WAL, queues) each: the instances of a Grafana Agent file, or c
// itself for Prometheus' shape. The slice must not be modified.
func (c *Config) Pipelines() []*Config {
	if c.Shape == ShapeGrafanaAgent {
		return c.Instances
	}
	return []*Config{c}
}

// FsyncPolicy says when the WAL is flushed to stable storage.
type FsyncPolicy string

// The fsync policies. See README's Durability section for what each risks.
const (
	FsyncAlways   FsyncPolicy = "always"
	FsyncInterval FsyncPolicy = "interval"
	FsyncNever    FsyncPolicy = "never"
)

// WALConfig is the `wal:` section.
type WALConfig struct {
	// Dir is the directory that holds the agent's state (the WAL lives in
	// Dir/wal). The --storage.path flag overrides it. Zero means DefaultWALConfig.Dir.
	Dir string `yaml:"dir"`
	// Fsync is when written records are fsynced. Zero means "interval".
	Fsync FsyncPolicy `yaml:"fsync"`
	// FsyncInterval is the period of the "interval" policy. Zero means 1s.
	FsyncInterval model.Duration `yaml:"fsync_interval"`
	// SegmentSize is the size in bytes at which a WAL segment is cut.
	// Zero means DefaultWALConfig.SegmentSize.
	SegmentSize int `yaml:"segment_size"`
	// TruncateFrequency is how often segments that every remote_write has
	// sent are removed. Zero means DefaultWALConfig.TruncateFrequency.
	TruncateFrequency model.Duration `yaml:"truncate_frequency"`
	// MaxSize caps the WAL directory, in bytes: past it the oldest
	// segments are removed even if a remote_write has not sent them, and
	// what it had not sent is counted as dropped (reason wal_full). It must
	// leave room for two segments. Zero means no cap.
	MaxSize int64 `yaml:"max_size"`
	// MaxAge removes segments last written longer ago than this, sent or
	// not (reason too_old). Zero means no limit.
	MaxAge model.Duration `yaml:"max_age"`
	// MinAge keeps segments written to less than this long ago even once
	// every remote_write has sent them, as Prometheus agent's min_wal_time
	// does, so a short burst of acknowledgements never empties the WAL.
	// Zero means segments go as soon as they are sent.
	MinAge model.Duration `yaml:"min_age"`
}

// DefaultWALConfig is the `wal:` section a file without one gets.
var DefaultWALConfig = WALConfig{
	// Prometheus agent mode's default directory name, so a user switching
	// over finds the state where they expect it.
	Dir:   "data-agent",
	Fsync: FsyncInterval,
	// One second bounds what a power loss can take to one second of
	// samples, at one fsync a second: negligible I/O.
	FsyncInterval: model.Duration(time.Second),
	// 32 MiB segments: at 1M samples/s and ~2 bytes per sample on disk a
	// segment lasts ~15 s, so truncation frees space in small steps without
	// producing thousands of files.
	SegmentSize: 32 << 20,
	// Truncating once a minute keeps at most a minute of already-sent
	// segments on disk.
	TruncateFrequency: model.Duration(time.Minute),
}

// minSegmentSize is the WAL's page: segments are whole pages, at least one.
const minSegmentSize = 32 << 10

// UnmarshalYAML applies defaults, then the document, then Validate.
func (c *WALConfig) UnmarshalYAML(n *yaml.Node) error {
	*c = DefaultWALConfig
	type plain WALConfig // no methods, so no recursion
	if err := n.Decode((*plain)(c)); err != nil {
		return err
	}
	return c.Validate()
}

// Validate reports the first invalid field, naming its YAML key.
func (c *WALConfig) Validate() error {
	switch c.Fsync {
	case FsyncAlways, FsyncInterval, FsyncNever:
	default:
		return fmt.Errorf("wal.fsync: %q is not one of always, interval, never", c.Fsync)
	}
	if c.FsyncInterval <= 0 {
		return fmt.Errorf("wal.fsync_interval: must be positive, got %s", c.FsyncInterval)
	}
	if c.SegmentSize < minSegmentSize || c.SegmentSize%minSegmentSize != 0 {
		return fmt.Errorf("wal.segment_size: must be a multiple of the %d-byte page, got %d", minSegmentSize, c.SegmentSize)
	}
	if c.TruncateFrequency <= 0 {
		return fmt.Errorf("wal.truncate_frequency: must be positive, got %s", c.TruncateFrequency)
	}
	if c.Dir == "" {
		return errors.New("wal.dir: must not be empty")
	}
	// Two segments: the one being written and one to trim, or the cap
	// would remove every segment as soon as it is finished.
	if c.MaxSize < 0 || (c.MaxSize > 0 && c.MaxSize < 2*int64(c.SegmentSize)) {
		return fmt.Errorf("wal.max_size: must be zero (no cap) or at least two segments (%d bytes), got %d", 2*int64(c.SegmentSize), c.MaxSize)
	}
	if c.MinAge < 0 {
		return fmt.Errorf("wal.min_age: must not be negative, got %s", c.MinAge)
	}
	if c.MaxAge < 0 {
		return fmt.Errorf("wal.max_age: must not be negative, got %s", c.MaxAge)
	}
	return nil
}

// LoadFile reads and validates the configuration at path. Environment
// references ${NAME} in values are replaced by getenv(NAME); getenv nil
// means os.LookupEnv. Relative file paths in the configuration are taken
// relative to the file's directory, as Prometheus does.
func LoadFile(path string, getenv func(string) (string, bool), logger *slog.Logger) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := load(b, getenv, logger, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s:%w", path, err)
	}
	c.File = path
	for _, p := range c.Pipelines() {
		p.File = path
		p.Prometheus.SetDirectory(filepath.Dir(path))
	}
	return c, nil
}

// Load parses and validates a configuration document. Errors start with
// the line number, then the field path: "12: remote_write[0].url: ...".
func Load(b []byte, getenv func(string) (string, bool), logger *slog.Logger) (*Config, error) {
	return load(b, getenv, logger, "")
}

// load is Load with relative file paths of rwagent's sections (sigv4
// secret_key_file) taken relative to dir.
func load(b []byte, getenv func(string) (string, bool), logger *slog.Logger, dir string) (*Config, error) {
	if getenv == nil {
		getenv = os.LookupEnv
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlSyntaxError(err)
	}
	root := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	if len(doc.Content) == 1 {
		root = doc.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, &Error{Line: root.Line, Msg: "the document must be a mapping of sections"}
	}
	if err := expandEnv(root, getenv, ""); err != nil {
		return nil, err
	}
	if isGrafanaAgent(root) {
		return loadGrafanaAgent(root, logger, dir)
	}
	return loadPrometheus(root, logger, dir)
}

// loadPrometheus loads a document of Prometheus' shape (plus `wal:`) whose
// environment references are already expanded.
func loadPrometheus(root *yaml.Node, logger *slog.Logger, dir string) (*Config, error) {
	c := &Config{WAL: DefaultWALConfig}
	prom := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	var receive *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value == "wal" {
			if err := checkFields(v, walType, "wal"); err != nil {
				return nil, err
			}
			if err := v.Decode(&c.WAL); err != nil {
				// A bad value names its field; a failed Validate
				// already names it in its message.
				if e := locateIn(v, walType, "wal"); e != nil && e.Field != "wal" {
					return nil, e
				}
				return nil, &Error{Line: v.Line, Msg: err.Error()}
			}
			continue
		}
		if k.Value == "receive" {
			r, err := loadReceive(v, dir)
			if err != nil {
				return nil, err
			}
			c.Receive, receive = r, v
			continue
		}
		prom.Content = append(prom.Content, k, v)
	}
	sigv4Cut := cutSigV4(prom)
	if err := checkFields(prom, promConfigType, ""); err != nil {
		return nil, err
	}
	text, err := yaml.Marshal(prom)
	if err != nil {
		return nil, fmt.Errorf("re-encode configuration: %w", err)
	}
	pc, err := promconfig.Load(string(text), logger)
	if err != nil {
		return nil, locate(prom, promConfigType, err)
	}
	c.Prometheus = pc
	c.Ignored = ignoredSections(pc)
	applyQueueDefaults(pc, mappingValue(prom, "remote_write"))
	if err := applySigV4(c, sigv4Cut, dir); err != nil {
		return nil, err
	}
	if err := refuseUnhonoured(prom, pc); err != nil {
		return nil, err
	}
	// With a receive: section rwagent is an OTLP receiver, and its
	// translation is Prometheus' default one: otlp: settings that change
	// it cannot be honoured there. Without one, otlp: stays ignored (above).
	if c.Receive != nil && otlpSet(pc) {
		return nil, refusal(prom, "", "otlp", "the gateway's /v1/metrics translates OTLP with Prometheus' default otlp: settings; remove the otlp: section or leave it at its defaults")
	}
	if c.Receive != nil {
		if err := checkRoutes(c.Receive, receive, pc.RemoteWriteConfigs); err != nil {
			return nil, err
		}
	}
	if err := checkAWS(prom, c, sigv4Cut); err != nil {
		return nil, err
	}
	if c.GoGC, err = gogc(prom); err != nil {
		return nil, err
	}
	return c, nil
}

// ignoredSections names the sections a Prometheus server uses and an agent
// does not, so the caller can warn that they have no effect.
func ignoredSections(pc *promconfig.Config) []string {
	var out []string
	if len(pc.RuleFiles) > 0 {
		out = append(out, "rule_files")
	}
	if len(pc.AlertingConfig.AlertmanagerConfigs) > 0 || len(pc.AlertingConfig.AlertRelabelConfigs) > 0 {
		out = append(out, "alerting")
	}
	if len(pc.RemoteReadConfigs) > 0 {
		out = append(out, "remote_read")
	}
	// The translation of an OTLP receiver: without a receive: section
	// rwagent has none (Prometheus needs a flag to have one too); with one,
	// load refuses a non-default otlp: instead.
	if otlpSet(pc) {
		out = append(out, "otlp")
	}
	return out
}

// Error is a configuration problem at a line of the file.
type Error struct {
	Line  int    // 1-based; zero when the problem has no single place
	Field string // dotted path such as remote_write[0].url; may be empty
	Msg   string
}

func (e *Error) Error() string {
	var sb strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&sb, "%d: ", e.Line)
	} else {
		sb.WriteString(" ")
	}
	if e.Field != "" {
		sb.WriteString(e.Field)
		sb.WriteString(": ")
	}
	sb.WriteString(e.Msg)
	return sb.String()
}

// yamlSyntaxError turns yaml.v3's "yaml: line 3: ..." into an *Error.
func yamlSyntaxError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
	}
	return &Error{Line: line, Msg: msg}
}
