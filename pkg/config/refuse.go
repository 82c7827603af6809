package config

import (
	"fmt"
	"reflect"

	promconfig "github.com/prometheus/prometheus/config"
	"gopkg.in/yaml.v3"

	"github.com/rwagent/rwagent/pkg/awsregion"
)

// Prometheus' loader accepts settings rwagent has no code for. A setting
// accepted must be honoured, so each of those is refused here, by name and
// with what to do instead, as soon as it asks for anything other than what
// rwagent does anyway: `round_robin_dns: false` or an empty `storage:`
// passes, `round_robin_dns: true` does not. Server-only sections that
// configure something an agent does not have (rule_files, alerting,
// remote_read, otlp) are accepted and listed in Config.Ignored instead, so a
// prometheus.yml shared with a server keeps loading.

// refuseUnhonoured returns the first setting of pc that rwagent cannot
// honour, with the line of its key in root (the top-level mapping pc was
// loaded from).
func refuseUnhonoured(root *yaml.Node, pc *promconfig.Config) error {
	rws := child(root, "remote_write")
	for i, rw := range pc.RemoteWriteConfigs {
		var n *yaml.Node
		if rws != nil && i < len(rws.Content) {
			n = deref(rws.Content[i])
		}
		path := fmt.Sprintf("remote_write[%d]", i)
		for _, r := range []struct {
			key  string
			set  bool
			what string
		}{
			{"azuread", rw.AzureADConfig != nil,
				"rwagent cannot authenticate with Azure AD, and will not send unauthenticated where authentication was asked for; use authorization, oauth2 or basic_auth, or remove it"},
			{"google_iam", rw.GoogleIAMConfig != nil,
				"rwagent cannot authenticate with Google IAM, and will not send unauthenticated where authentication was asked for; use authorization or oauth2, or remove it"},
			{"round_robin_dns", rw.RoundRobinDNS,
				"rwagent dials the host as Go's HTTP client does (the resolver's first working address, connections reused); remove it"},
			{"convert_nhcb_to_classic", rw.ConvertNHCBToClassic,
				"rwagent does not convert native histograms with custom buckets to classic ones; remove it, or do not set convert_classic_histograms_to_nhcb on the scrape configs"},
			{"failed_request_logging", rw.FailedRequestLogging,
				"rwagent does not dump failed requests; it logs the status and the receiver's message of every refused batch. Remove it"},
		} {
			if r.set {
				return refusal(n, path, r.key, r.what)
			}
		}
		if s := rw.SigV4Config; s != nil {
			block := child(n, "sigv4")
			if s.UseFIPSSTSEndpoint {
				return refusal(block, path+".sigv4", "use_fips_sts_endpoint",
					"rwagent does not choose the FIPS STS endpoint itself; set sts_endpoint: https://sts-fips.<region>.amazonaws.com instead")
			}
			if len(s.Tags) > 0 {
				return refusal(block, path+".sigv4", "tags",
					"rwagent does not pass session tags to sts:AssumeRole; remove tags and grant what they would through the role's policy")
			}
		}
	}

	storage := child(root, "storage")
	if t := pc.StorageConfig.TSDBConfig; t != nil {
		tsdb := child(storage, "tsdb")
		retention := child(tsdb, "retention")
		for _, r := range []struct {
			n    *yaml.Node
			path string
			key  string
			set  bool
		}{
			{tsdb, "storage.tsdb", "out_of_order_time_window", t.OutOfOrderTimeWindowFlag != 0},
			{tsdb, "storage.tsdb", "stale_series_compaction_threshold", t.StaleSeriesCompactionThreshold != 0},
			{child(tsdb, "chunk_encoding"), "storage.tsdb.chunk_encoding", "floats", t.ChunkEncoding.Floats != ""},
			{retention, "storage.tsdb.retention", "time", t.Retention != nil && t.Retention.Time != 0},
			{retention, "storage.tsdb.retention", "size", t.Retention != nil && t.Retention.Size != 0},
			{retention, "storage.tsdb.retention", "percentage", t.Retention != nil && t.Retention.Percentage != 0},
		} {
			if r.set {
				return refusal(r.n, r.path, r.key, noTSDB)
			}
		}
	}
	if e := pc.StorageConfig.ExemplarsConfig; e != nil && e.MaxExemplars != promconfig.DefaultExemplarsConfig.MaxExemplars {
		return refusal(child(storage, "exemplars"), "storage.exemplars", "max_exemplars", noTSDB)
	}

	if !reflect.DeepEqual(pc.TracingConfig, promconfig.TracingConfig{}) {
		return refusal(root, "", "tracing", "rwagent exports no traces of its own; remove the section")
	}

	runtime := child(root, "runtime")
	if lvl := pc.Runtime.LogLevel; lvl != "" && lvl != promconfig.DefaultRuntimeConfig.LogLevel {
		return refusal(runtime, "runtime", "log_level",
			fmt.Sprintf("rwagent takes its log level from the command line; remove it and run with --log.level=%s", lvl))
	}
	return nil
}

// noTSDB is why a storage setting is refused.
const noTSDB = "rwagent keeps no TSDB, so there is nothing for it to apply to; remove it (the WAL is bounded by wal.max_size and wal.max_age)"

// refusal is the *Error for key of mapping n at path, on the key's line
// (the mapping's when the key is not in it).
func refusal(n *yaml.Node, path, key, msg string) error {
	line := 0
	if n = deref(n); n != nil {
		line = n.Line
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				line = n.Content[i].Line
				break
			}
		}
	}
	return &Error{Line: line, Field: join(path, key), Msg: "not supported: " + msg}
}

// child is the value of key in mapping n, aliases followed, or nil.
func child(n *yaml.Node, key string) *yaml.Node {
	return deref(mappingValue(deref(n), key))
}

// deref follows an alias to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// otlpSet reports whether the otlp section changes anything from
// Prometheus' defaults.
func otlpSet(pc *promconfig.Config) bool {
	return !reflect.DeepEqual(pc.OTLPConfig, promconfig.DefaultOTLPConfig)
}

// gogc returns runtime.gogc when the file sets it, else nil: then the
// environment's GOGC or rwagent's default stands. It is the value written,
// not Prometheus' (which, for a runtime section holding only gogc: 0,
// is GOGC or 75); 0 is refused, since it would collect garbage
// continuously, and a negative value turns the collector off, as GOGC=off.
func gogc(root *yaml.Node) (*int, error) {
	runtime := child(root, "runtime")
	n := child(runtime, "gogc")
	if n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
		return nil, nil
	}
	var v int
	if err := n.Decode(&v); err != nil {
		return nil, &Error{Line: n.Line, Field: "runtime.gogc", Msg: err.Error()}
	}
	if v == 0 {
		return nil, &Error{Line: keyLine(runtime, "gogc"), Field: "runtime.gogc",
			Msg: "0 would collect garbage continuously; remove it for the default (GOGC, else 50) or set a percentage"}
	}
	return &v, nil
}

// checkAWS checks the AWS side of every remote_write and signed scrape:
// region names have AWS's shape, a sigv4 region agrees with the region of
// an AWS endpoint's host, and an AMP workspace URL (which refuses unsigned
// requests with 403) comes with a sigv4 block.
func checkAWS(root *yaml.Node, c *Config, cut *sigV4Cut) error {
	rws := child(root, "remote_write")
	for i, rw := range c.Prometheus.RemoteWriteConfigs {
		var n *yaml.Node
		if rws != nil && i < len(rws.Content) {
			n = deref(rws.Content[i])
		}
		path := fmt.Sprintf("remote_write[%d]", i)
		url := rw.URL.String()
		s := c.RemoteWriteSigV4[i]
		if s == nil {
			if awsregion.IsAMP(url) {
				return &Error{Line: keyLine(n, "url"), Field: path + ".url",
					Msg: "an Amazon Managed Service for Prometheus workspace refuses unsigned requests (403): add a sigv4: block (sigv4: {} takes the region from the URL and credentials from the AWS default chain)"}
			}
			continue
		}
		if err := checkRegion(child(n, "sigv4"), path+".sigv4", s.Region, url); err != nil {
			return err
		}
		if s.STSRegion != "" && !awsregion.Valid(s.STSRegion) {
			return &Error{Line: keyLine(cut.remoteWrite[i], "sts_region"), Field: path + ".sigv4.sts_region", Msg: notARegion(s.STSRegion)}
		}
	}
	for j, sc := range c.Prometheus.ScrapeConfigs {
		s := c.ScrapeSigV4[sc.JobName]
		if s == nil {
			continue
		}
		block := cut.scrape[j]
		path := fmt.Sprintf("scrape_configs[%d].sigv4", j)
		if err := checkRegion(block, path, s.Region, ""); err != nil {
			return err
		}
		if s.STSRegion != "" && !awsregion.Valid(s.STSRegion) {
			return &Error{Line: keyLine(block, "sts_region"), Field: path + ".sts_region", Msg: notARegion(s.STSRegion)}
		}
	}
	return nil
}

// checkRegion checks the region of the sigv4 block at path (node block)
// against AWS's shape and the region of url's host.
func checkRegion(block *yaml.Node, path, region, url string) error {
	if region == "" {
		return nil
	}
	if !awsregion.Valid(region) {
		return &Error{Line: keyLine(block, "region"), Field: path + ".region", Msg: notARegion(region)}
	}
	if fromURL := awsregion.FromURL(url); fromURL != "" && fromURL != region {
		return &Error{Line: keyLine(block, "region"), Field: path + ".region",
			Msg: fmt.Sprintf("%s contradicts the region %s of the URL's host: requests signed for %s are refused there; set region: %s or remove it", region, fromURL, region, fromURL)}
	}
	return nil
}

func notARegion(name string) string {
	return fmt.Sprintf("%q is not an AWS region name (like us-east-1, eu-central-2 or us-gov-west-1)", name)
}

// keyLine is the line of key in mapping n, else n's own line, else zero.
func keyLine(n *yaml.Node, key string) int {
	n = deref(n)
	if n == nil {
		return 0
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return n.Line
}
