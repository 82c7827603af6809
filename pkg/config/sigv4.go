package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

// SigV4Config is a `sigv4:` block as rwagent reads it: the fields of
// Prometheus' remote_write sigv4 block plus rwagent's extension. Under
// remote_write the extension keys are secret_key_file, role_session_name
// (Prometheus: session_name), service (Prometheus: service_name),
// sts_region and sts_endpoint; under scrape_configs the whole block is an
// rwagent extension. Every field's zero value means the SDK's default.
type SigV4Config struct {
	Region    string `yaml:"region"`
	AccessKey string `yaml:"access_key"`
	// SecretKey is never logged, dumped or put in an error. From
	// secret_key_file it is read when the configuration is loaded.
	SecretKey     string `yaml:"secret_key"`
	SecretKeyFile string `yaml:"secret_key_file"`
	Profile       string `yaml:"profile"`
	RoleARN       string `yaml:"role_arn"`
	ExternalID    string `yaml:"external_id"`
	// RoleSessionName is also read from Prometheus' session_name.
	RoleSessionName string `yaml:"role_session_name"`
	// Service is the signing name, also read from Prometheus'
	// service_name. Zero: "aps" under remote_write, DefaultScrapeSigV4Service
	// under scrape_configs.
	Service     string `yaml:"service"`
	STSRegion   string `yaml:"sts_region"`
	STSEndpoint string `yaml:"sts_endpoint"`
}

// DefaultScrapeSigV4Service is the signing name of a scrape's sigv4 block
// without `service`: an API Gateway (execute-api) in front of the target.
const DefaultScrapeSigV4Service = "execute-api"

var (
	sigV4Type = reflect.TypeFor[SigV4Config]()
	// sessionNamePattern is AWS's RoleSessionName constraint.
	sessionNamePattern = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
)

// remoteWriteSigV4Ext are the keys of a remote_write sigv4 block that
// Prometheus' strict loader does not know.
var remoteWriteSigV4Ext = map[string]bool{
	"secret_key_file": true, "role_session_name": true, "service": true, "sts_region": true, "sts_endpoint": true,
}

// sigV4Cut is what cutSigV4 took out of the document: the extension keys of
// each remote_write sigv4 block (by index) and each scrape sigv4 block (by
// scrape_configs index), with their nodes for errors.
type sigV4Cut struct {
	remoteWrite map[int]*yaml.Node // mapping of the cut keys, nil entries absent
	rwBlock     map[int]*yaml.Node // the sigv4 block they were cut from
	scrape      map[int]*yaml.Node // the whole sigv4 block
}

// cutSigV4 removes rwagent's sigv4 keys from root (a top-level mapping)
// before Prometheus' strict loader sees it. When a remote_write block has
// secret_key_file and no secret_key, a secret_key placeholder is left in
// its place so that Prometheus' check that access_key comes with a secret
// passes; applySigV4 replaces it.
func cutSigV4(root *yaml.Node) *sigV4Cut {
	cut := &sigV4Cut{remoteWrite: map[int]*yaml.Node{}, rwBlock: map[int]*yaml.Node{}, scrape: map[int]*yaml.Node{}}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if v.Kind != yaml.SequenceNode {
			continue
		}
		switch k.Value {
		case "remote_write":
			for j, rw := range v.Content {
				block := mappingValue(rw, "sigv4")
				if block == nil || block.Kind != yaml.MappingNode {
					continue
				}
				ext := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: block.Line, Column: block.Column}
				var keep []*yaml.Node
				for m := 0; m+1 < len(block.Content); m += 2 {
					if remoteWriteSigV4Ext[block.Content[m].Value] {
						ext.Content = append(ext.Content, block.Content[m], block.Content[m+1])
						continue
					}
					keep = append(keep, block.Content[m], block.Content[m+1])
				}
				if len(ext.Content) == 0 {
					continue
				}
				if mappingValue(ext, "secret_key_file") != nil && mappingValue(block, "secret_key") == nil {
					keep = append(keep, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "secret_key"},
						&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "<secret_key_file>"})
				}
				block.Content = keep
				cut.remoteWrite[j] = ext
				cut.rwBlock[j] = block
			}
		case "scrape_configs":
			for j, sc := range v.Content {
				if sc.Kind != yaml.MappingNode {
					continue
				}
				for m := 0; m+1 < len(sc.Content); m += 2 {
					if sc.Content[m].Value == "sigv4" {
						cut.scrape[j] = sc.Content[m+1]
						sc.Content = append(sc.Content[:m:m], sc.Content[m+2:]...)
						break
					}
				}
			}
		}
	}
	return cut
}

// mappingValue returns the value of key in mapping n, or nil.
func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// applySigV4 completes c from what cutSigV4 took out, once Prometheus has
// parsed the rest: c.RemoteWriteSigV4 and c.ScrapeSigV4. Relative
// secret_key_file paths are taken relative to dir. Errors name the line and
// field.
func applySigV4(c *Config, cut *sigV4Cut, dir string) error {
	pc := c.Prometheus
	c.RemoteWriteSigV4 = make([]*SigV4Config, len(pc.RemoteWriteConfigs))
	for i, rw := range pc.RemoteWriteConfigs {
		if rw.SigV4Config == nil {
			continue
		}
		path := fmt.Sprintf("remote_write[%d].sigv4", i)
		p := rw.SigV4Config
		s := &SigV4Config{Region: p.Region, AccessKey: p.AccessKey, SecretKey: string(p.SecretKey), Profile: p.Profile,
			RoleARN: p.RoleARN, ExternalID: p.ExternalID, RoleSessionName: p.SessionName, Service: p.ServiceName}
		if ext := cut.remoteWrite[i]; ext != nil {
			if err := checkFields(ext, sigV4Type, path); err != nil {
				return err
			}
			var e SigV4Config
			if err := ext.Decode(&e); err != nil {
				return &Error{Line: ext.Line, Field: path, Msg: err.Error()}
			}
			for _, dup := range []struct {
				prom, ours string
				set        bool
			}{
				{"session_name", "role_session_name", s.RoleSessionName != "" && e.RoleSessionName != ""},
				{"service_name", "service", s.Service != "" && e.Service != ""},
				{"secret_key", "secret_key_file", mappingValue(ext, "secret_key_file") != nil && s.SecretKey != "<secret_key_file>"},
			} {
				if dup.set {
					return &Error{Line: mappingValue(ext, dup.ours).Line, Field: path + "." + dup.ours,
						Msg: fmt.Sprintf("set either %s or %s, not both", dup.prom, dup.ours)}
				}
			}
			if e.RoleSessionName != "" {
				s.RoleSessionName = e.RoleSessionName
			}
			if e.Service != "" {
				s.Service = e.Service
			}
			s.STSRegion, s.STSEndpoint = e.STSRegion, e.STSEndpoint
			if e.SecretKeyFile != "" {
				s.SecretKeyFile = resolvePath(dir, e.SecretKeyFile)
				s.SecretKey = ""
			}
		}
		if err := s.validate(path, cut.rwBlock[i], cut.remoteWrite[i]); err != nil {
			return err
		}
		if s.SecretKeyFile != "" {
			// Read now so that a missing file fails the load; the signer
			// reads it again when it starts.
			if _, err := os.ReadFile(s.SecretKeyFile); err != nil {
				return &Error{Line: mappingValue(cut.remoteWrite[i], "secret_key_file").Line, Field: path + ".secret_key_file",
					Msg: fmt.Sprintf("read secret key: %v", err)}
			}
			// Prometheus' block keeps what Prometheus parsed, without
			// the placeholder cutSigV4 left for its check.
			p.SecretKey = ""
		}
		c.RemoteWriteSigV4[i] = s
	}

	c.ScrapeSigV4 = map[string]*SigV4Config{}
	for j, block := range cut.scrape {
		path := fmt.Sprintf("scrape_configs[%d].sigv4", j)
		if j >= len(pc.ScrapeConfigs) {
			return &Error{Line: block.Line, Field: path, Msg: "sigv4 of a scrape config that did not load"}
		}
		if err := checkFields(block, sigV4Type, path); err != nil {
			return err
		}
		s := &SigV4Config{}
		if block.Kind != yaml.MappingNode && !(block.Kind == yaml.ScalarNode && block.Tag == "!!null") {
			return &Error{Line: block.Line, Field: path, Msg: "must be a mapping of sigv4 fields"}
		}
		if err := block.Decode(s); err != nil {
			return &Error{Line: block.Line, Field: path, Msg: err.Error()}
		}
		if s.Service == "" {
			s.Service = DefaultScrapeSigV4Service
		}
		if s.SecretKeyFile != "" {
			s.SecretKeyFile = resolvePath(dir, s.SecretKeyFile)
		}
		if err := s.validate(path, block, block); err != nil {
			return err
		}
		c.ScrapeSigV4[pc.ScrapeConfigs[j].JobName] = s
	}
	return nil
}

// Validate reports a block that cannot work: fields that only go together,
// or that need role_arn, and values AWS would refuse. It is the one check of
// a sigv4 block, for the configuration file and for `rwagent sign`'s flags.
// The error is an *Error whose Field is the block's key (sts_endpoint, say)
// and whose Line is zero.
func (s *SigV4Config) Validate() error {
	fail := func(key, msg string) error { return &Error{Field: key, Msg: msg} }
	if s.SecretKey != "" && s.SecretKeyFile != "" {
		return fail("secret_key_file", "set either secret_key or secret_key_file, not both")
	}
	if (s.AccessKey == "") != (s.SecretKey == "" && s.SecretKeyFile == "") {
		return fail("access_key", "access_key and secret_key (or secret_key_file) must be set together")
	}
	if s.RoleARN == "" {
		for _, k := range []struct{ key, val string }{
			{"external_id", s.ExternalID}, {"role_session_name", s.RoleSessionName},
			{"sts_region", s.STSRegion}, {"sts_endpoint", s.STSEndpoint},
		} {
			if k.val != "" {
				return fail(k.key, "needs role_arn: it only applies to the sts:AssumeRole call")
			}
		}
	}
	if s.RoleSessionName != "" && !sessionNamePattern.MatchString(s.RoleSessionName) {
		return fail("role_session_name", fmt.Sprintf("%q must be 2-64 letters, digits and +=,.@-_", s.RoleSessionName))
	}
	if s.STSEndpoint != "" {
		u, err := url.Parse(s.STSEndpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fail("sts_endpoint", fmt.Sprintf("%s is not an http(s) URL", strconv.Quote(s.STSEndpoint)))
		}
	}
	return nil
}

// validate is Validate placed in the file: the field under path, at the
// line of its key in ext (the extension keys) or block (Prometheus' keys;
// the same node for a scrape block), else the block's line.
func (s *SigV4Config) validate(path string, block, ext *yaml.Node) error {
	err := s.Validate()
	e, ok := errors.AsType[*Error](err)
	if !ok {
		return err
	}
	line := 0
	for _, n := range []*yaml.Node{ext, block} {
		if v := mappingValue(n, e.Field); v != nil {
			line = v.Line
			break
		}
	}
	if line == 0 && block != nil {
		line = block.Line
	}
	return &Error{Line: line, Field: path + "." + e.Field, Msg: e.Msg}
}

func resolvePath(dir, p string) string {
	if dir == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}
