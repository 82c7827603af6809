package config

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"

	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	yamlv2 "go.yaml.in/yaml/v2"
	"gopkg.in/yaml.v3"
)

// Prometheus' config package parses with yaml.v2, whose errors from
// custom unmarshalers (durations, URLs, regexps, "url is empty") carry no
// line. We keep yaml.v3's node tree of the original file and walk it beside
// the Go types to name the line and field ourselves.

var (
	promConfigType = reflect.TypeFor[promconfig.Config]()
	walType        = reflect.TypeFor[WALConfig]()
	sdConfigsType  = reflect.TypeFor[discovery.Configs]()
	// yaml.v2 prefixes type errors with a line of the fragment it parsed,
	// which means nothing in the user's file.
	v2LinePrefix = regexp.MustCompile(`(?m)^\s*line \d+: `)
)

// yamlFields maps each YAML key of struct type t to its field type,
// following `yaml:",inline"`. ok is false for types whose YAML form is not
// their fields (no exported yaml fields, such as labels.Labels).
func yamlFields(t reflect.Type) (fields map[string]reflect.Type, hasSD bool, ok bool) {
	fields = map[string]reflect.Type{}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("yaml")
			name, opts, _ := strings.Cut(tag, ",")
			if name == "-" {
				if f.Type == sdConfigsType {
					hasSD = true
				}
				continue
			}
			if strings.Contains(","+opts+",", ",inline,") {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					add(ft)
				}
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			fields[name] = f.Type
			ok = true
		}
	}
	add(t)
	return fields, hasSD, ok || hasSD
}

// isSDKey reports whether key is a service-discovery list of a scrape or
// alertmanager config, which Prometheus decodes through its SD registry.
func isSDKey(key string) bool {
	return key == "static_configs" || strings.HasSuffix(key, "_sd_configs")
}

// sdBuiltIn reports whether the service discovery of key (such as
// "azure_sd_configs") is registered in this binary: cmd/rwagent chooses
// which ones by build tags. It asks Prometheus' own decoder, which knows
// only the registered ones.
func sdBuiltIn(key string) bool {
	var sc promconfig.ScrapeConfig
	err := yamlv2.UnmarshalStrict([]byte("job_name: probe\n"+key+": []\n"), &sc)
	return err == nil || !strings.Contains(err.Error(), "field "+key+" not found")
}

// checkFields reports the first key that t does not have, with its line.
// yaml.v2's strict mode reports the same, but with lines of the document
// we hand it, not of the user's file.
func checkFields(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case n.Kind == yaml.AliasNode:
		return checkFields(n.Alias, t, path)
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields, hasSD, ok := yamlFields(t)
		if !ok {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" { // merge key: check what it merges
				if err := checkFields(v, t, path); err != nil {
					return err
				}
				continue
			}
			ft, found := fields[k.Value]
			if !found {
				if hasSD && isSDKey(k.Value) {
					if !sdBuiltIn(k.Value) {
						return &Error{Line: k.Line, Field: join(path, k.Value), Msg: "this service discovery is not built into this rwagent binary; build it with `make build GOTAGS=all_sd` (see README, Service discovery)"}
					}
					continue
				}
				return &Error{Line: k.Line, Field: path, Msg: fmt.Sprintf("unknown field %q", k.Value)}
			}
			if err := checkFields(v, ft, join(path, k.Value)); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, e := range n.Content {
			if err := checkFields(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkFields(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value)); err != nil {
				return err
			}
		}
	}
	return nil
}

// locate finds the deepest node of the tree that fails to decode on its own
// and returns cause re-told with that node's line and field. When no single
// node fails (a check across sections), it returns cause as it is.
func locate(root *yaml.Node, t reflect.Type, cause error) error {
	if e := locateIn(root, t, ""); e != nil {
		return e
	}
	return &Error{Msg: cleanV2(cause.Error())}
}

func locateIn(n *yaml.Node, t reflect.Type, path string) *Error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	// Children first, so the innermost failing node wins.
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		if fields, hasSD, ok := yamlFields(t); ok {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if ft, found := fields[k.Value]; found {
					if e := locateIn(v, ft, join(path, k.Value)); e != nil {
						return e
					}
				}
			}
			// Discovery lists last: they are tried inside a copy of this
			// node, which must be sound apart from them.
			for i := 0; hasSD && i+1 < len(n.Content); i += 2 {
				if isSDKey(n.Content[i].Value) {
					if e := locateSD(n, i, t, path); e != nil {
						return e
					}
				}
			}
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			if e := locateIn(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); e != nil {
				return e
			}
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if e := locateIn(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value)); e != nil {
				return e
			}
		}
	}
	if path == "" {
		return nil
	}
	if err := decodeAlone(n, t); err != nil {
		return &Error{Line: n.Line, Field: path, Msg: cleanV2(err.Error())}
	}
	return nil
}

// locateSD finds the failing element of the service-discovery list at
// n.Content[i+1]. Prometheus decodes those through a registry whose types
// we cannot name, so each element is tried inside a copy of its parent
// that holds the parent's other fields and only that element.
func locateSD(n *yaml.Node, i int, t reflect.Type, path string) *Error {
	k, list := n.Content[i], n.Content[i+1]
	if list.Kind != yaml.SequenceNode {
		return nil
	}
	for j, elem := range list.Content {
		parent := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for m := 0; m+1 < len(n.Content); m += 2 {
			if isSDKey(n.Content[m].Value) {
				continue
			}
			parent.Content = append(parent.Content, n.Content[m], n.Content[m+1])
		}
		one := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: []*yaml.Node{elem}}
		parent.Content = append(parent.Content, k, one)
		if err := decodeAlone(parent, t); err != nil {
			return &Error{Line: elem.Line, Field: fmt.Sprintf("%s[%d]", join(path, k.Value), j), Msg: cleanV2(err.Error())}
		}
	}
	return nil
}

// decodeAlone decodes one node into a fresh value of type t the way
// Prometheus would (yaml.v2, strict).
func decodeAlone(n *yaml.Node, t reflect.Type) error {
	text, err := yaml.Marshal(n)
	if err != nil {
		return nil // not ours to judge
	}
	return yamlv2.UnmarshalStrict(text, reflect.New(t).Interface())
}

// cleanV2 drops yaml.v2's "yaml: unmarshal errors:" header and its line
// numbers, which refer to the fragment it was given.
func cleanV2(msg string) string {
	msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n")
	msg = v2LinePrefix.ReplaceAllString(msg, "")
	return strings.TrimSpace(strings.ReplaceAll(msg, "\n", "; "))
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
