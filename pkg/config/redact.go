package config

import (
	"bytes"
	"fmt"
	"strings"

	yamlv2 "go.yaml.in/yaml/v2"
	"gopkg.in/yaml.v3"
)

// Redacted is the text every secret of a dumped configuration shows, as
// Prometheus' config.Secret marshals.
const Redacted = "<secret>"

// secretKeys are the keys whose values Dump never shows, wherever they
// are: Prometheus' Secret fields (which marshal as <secret> already),
// rwagent's own (sigv4 secret_key, receive api_keys) and anything named
// like a secret, so that a field added later is hidden by default.
var secretKeys = map[string]bool{
	"password": true, "credentials": true, "client_secret": true, "bearer_token": true,
	"secret_key": true, "key": true, "sha256": true, "api_key": true, "token": true,
	"session_token": true, "access_token": true, "secret": true,
}

// headerKeys are maps whose values Dump never shows: remote_write
// `headers` are plain strings in Prometheus' type (shown by its
// /api/v1/status/config), but they carry API keys and tokens as often as
// not, so rwagent hides them.
var headerKeys = map[string]bool{"headers": true, "http_headers": true, "proxy_connect_header": true}

// Dump returns the loaded configuration as YAML, for /api/v1/status/config:
// Prometheus' sections as its config package marshals them, then the
// `wal:` section and a `receive:` section's non-secret fields, with every
// secret shown as <secret> (see secretKeys, headerKeys). A Grafana Agent
// file dumps each instance as a document of its own, headed by a comment
// with its name.
func (c *Config) Dump() (string, error) {
	var out strings.Builder
	for i, pc := range c.Pipelines() {
		if i > 0 {
			out.WriteString("---\n")
		}
		if pc.Instance.Name != "" {
			fmt.Fprintf(&out, "# instance: %s\n", pc.Instance.Name)
		}
		doc, err := pc.dumpNode()
		if err != nil {
			return "", err
		}
		if c.Receive != nil && i == 0 {
			if err := appendSection(doc, "receive", c.Receive); err != nil {
				return "", err
			}
		}
		redactNode(doc, "")
		var b bytes.Buffer
		enc := yaml.NewEncoder(&b)
		enc.SetIndent(2)
		if err := enc.Encode(doc); err != nil {
			return "", fmt.Errorf("encode the configuration: %w", err)
		}
		out.Write(b.Bytes())
	}
	return out.String(), nil
}

// dumpNode is one pipeline's Prometheus sections and its wal section, as a
// YAML mapping.
func (c *Config) dumpNode() (*yaml.Node, error) {
	doc := &yaml.Node{Kind: yaml.MappingNode}
	if c.Prometheus != nil {
		// Prometheus' types marshal with its yaml v2 (Secret, URL and
		// the discovery configs have v2 marshallers).
		b, err := yamlv2.Marshal(c.Prometheus)
		if err != nil {
			return nil, fmt.Errorf("marshal the configuration: %w", err)
		}
		var n yaml.Node
		if err := yaml.Unmarshal(b, &n); err != nil {
			return nil, fmt.Errorf("read the marshalled configuration: %w", err)
		}
		if len(n.Content) == 1 && n.Content[0].Kind == yaml.MappingNode {
			doc = n.Content[0]
		}
	}
	if err := c.dumpSigV4(doc); err != nil {
		return nil, err
	}
	if err := appendSection(doc, "wal", c.WAL); err != nil {
		return nil, err
	}
	return doc, nil
}

// dumpSigV4 puts rwagent's complete sigv4 blocks where the file had them:
// Prometheus' scrape configs have none, and its remote_write sigv4 lacks
// rwagent's fields.
func (c *Config) dumpSigV4(doc *yaml.Node) error {
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k, v := doc.Content[i], doc.Content[i+1]
		if v.Kind != yaml.SequenceNode {
			continue
		}
		for j, item := range v.Content {
			var block *SigV4Config
			switch k.Value {
			case "scrape_configs":
				block = c.ScrapeSigV4[mapValue(item, "job_name")]
			case "remote_write":
				if j < len(c.RemoteWriteSigV4) {
					block = c.RemoteWriteSigV4[j]
				}
			}
			if block == nil {
				continue
			}
			removeKey(item, "sigv4")
			if err := appendSection(item, "sigv4", block); err != nil {
				return err
			}
		}
	}
	return nil
}

// mapValue is the scalar value of key in the mapping n, or "".
func mapValue(n *yaml.Node, key string) string {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1].Value
		}
	}
	return ""
}

// appendSection adds key: v to the mapping doc.
func appendSection(doc *yaml.Node, key string, v any) error {
	var n yaml.Node
	if err := n.Encode(v); err != nil {
		return fmt.Errorf("marshal the %s section: %w", key, err)
	}
	doc.Content = append(doc.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, &n)
	return nil
}

// redactNode replaces, under n, the value of every secret key and every
// value of a header map. parent is the key n is the value of.
func redactNode(n *yaml.Node, parent string) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			redactNode(c, parent)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			switch {
			case headerKeys[parent]:
				hide(v)
			case secretKeys[strings.ToLower(k.Value)]:
				hide(v)
			default:
				redactNode(v, k.Value)
			}
		}
	}
}

// hide replaces a value (a scalar, or each scalar of a list or map) with
// Redacted; an empty value stays empty, to show the field is unset.
func hide(v *yaml.Node) {
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Value != "" && v.Tag != "!!null" {
			*v = yaml.Node{Kind: yaml.ScalarNode, Value: Redacted}
		}
	case yaml.MappingNode:
		for i := 1; i < len(v.Content); i += 2 {
			hide(v.Content[i])
		}
	default:
		for _, c := range v.Content {
			hide(c)
		}
	}
}
