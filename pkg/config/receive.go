package config

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/alecthomas/units"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"gopkg.in/yaml.v3"
)

// ReceiveConfig is the `receive:` section: rwagent as a gateway that takes
// remote write from other senders, authenticated by API keys, into the
// same WAL, queues and signing as its scrapes. Nil in Config when the file
// has no such section: no gateway listens.
type ReceiveConfig struct {
	// ListenAddress is host:port of the gateway's own listener, separate
	// from the admin server. Required.
	ListenAddress string `yaml:"listen_address"`
	// TLSConfig serves HTTPS when set. Nil: plain HTTP.
	TLSConfig *ReceiveTLSConfig `yaml:"tls_config"`
	// APIKeys are the keys accepted, each naming its tenant. At least one:
	// the gateway never takes unauthenticated writes.
	APIKeys []APIKeyConfig `yaml:"api_keys"`
	// TenantLabel is the label set to the key's tenant on every series
	// received with it, replacing a label of that name the sender set.
	// Zero ("") adds none; a file without the field gets "tenant".
	TenantLabel string `yaml:"tenant_label"`
	// MaxRequestBytes bounds a request's (compressed) body. Zero means
	// DefaultReceiveConfig.MaxRequestBytes.
	MaxRequestBytes ByteSize `yaml:"max_request_bytes"`
	// MaxMemoryInFlight bounds what the gateway's requests in flight hold
	// at once (bodies, decoded bodies, decoding), at least what one
	// request may need (RequestMemory). Zero in the file means
	// DefaultMaxMemoryInFlight, or RequestMemory(MaxRequestBytes) if more;
	// once loaded it holds the budget (MemoryInFlight).
	MaxMemoryInFlight ByteSize `yaml:"max_memory_in_flight"`
}

// ReceiveTLSConfig is the gateway's server certificate. Load makes
// relative paths relative to the configuration file's directory.
type ReceiveTLSConfig struct {
	CertFile string `yaml:"cert_file"` // PEM certificate (chain); required
	KeyFile  string `yaml:"key_file"`  // PEM private key; required
}

// APIKeyConfig is one accepted API key and what its tenant may do. Exactly
// one of Key, KeyFile and SHA256 is set in the file; once loaded only
// Digest is: the key itself is never kept, logged or put in an error.
type APIKeyConfig struct {
	Tenant string `yaml:"tenant"` // required; several keys may share one tenant (rotation)
	// Key is the key itself (usually ${ENV}); cleared once hashed.
	Key string `yaml:"key"`
	// KeyFile holds the key; surrounding white space is trimmed. It is
	// read when the configuration is loaded, relative to the file's
	// directory.
	KeyFile string `yaml:"key_file"`
	// SHA256 is the hex SHA-256 of the key, so the key is not at rest here.
	SHA256 string `yaml:"sha256"`
	// Digest is the SHA-256 of the key, set by Load.
	Digest [sha256.Size]byte `yaml:"-"`

	// SamplesPerSecond limits the tenant's samples and histograms; over
	// it a request is answered 429. Zero: no limit. Keys of one tenant
	// share one limit and must agree on it.
	SamplesPerSecond float64 `yaml:"samples_per_second"`
	// Burst is how many samples the tenant may send at once above the
	// rate; a request with more is answered 413. Zero: one second's worth
	// (SamplesPerSecond, at least 1).
	Burst int `yaml:"burst"`
	// MaxSeriesPerRequest refuses larger requests with 413. Zero: no limit
	// beyond the gateway's own (MaxSeriesPerRequest, 100,000 series); a
	// higher value is refused.
	MaxSeriesPerRequest int `yaml:"max_series_per_request"`
	// RemoteWriteNames routes the tenant's series to the remote_write
	// endpoints of these names only. Each must be the name: of a
	// remote_write (unnamed endpoints cannot be routed to). Empty: every
	// endpoint, as for scrapes. Keys of one tenant must agree on it.
	RemoteWriteNames []string `yaml:"remote_write_names"`
}

// DefaultReceiveConfig is what a `receive:` section starts from.
var DefaultReceiveConfig = ReceiveConfig{
	TenantLabel: "tenant",
	// 10 MiB of snappy is some 100k samples: ten times what Prometheus
	// sends at most per request (2,000 samples, 50-100 KiB) and what the
	// OTel Collector's default batches make, while a request in flight
	// costs at most that, plus its decoded form.
	MaxRequestBytes: 10 << 20,
}

// The gateway's bounds of one request, whatever the tenant: package
// gateway applies them, and they are here so that Validate (and so
// check-config) refuses a setting the gateway would refuse.
const (
	// MaxSeriesPerRequest is the most series the gateway takes in one
	// request, for every tenant: 50 times the 2,000 samples Prometheus
	// sends per request by default, and 10 times the OTel Collector's or
	// vmagent's usual batches. A tenant's max_series_per_request may only
	// be lower.
	MaxSeriesPerRequest = 100_000
	// MaxDecodeCost bounds the bookkeeping one request's decoding holds,
	// as the gateway estimates it before allocating (its slices grow by
	// doubling, so it holds at most about twice this). An ordinary large
	// request (20,000 series of 15 labels and a sample, ten times
	// Prometheus' default) is charged half of it.
	MaxDecodeCost = 64 << 20
	// minMaxDecodedBytes is the least decoded-size bound: Prometheus' own
	// receiver takes 32 MiB decoded.
	minMaxDecodedBytes = 32 << 20
	// DefaultMaxMemoryInFlight is the budget of the requests in flight
	// when max_memory_in_flight is not set: two requests at the largest
	// the per-request bounds allow at the default max_request_bytes
	// (RequestMemory: 218 MiB each). A request of Prometheus' default
	// size (2,000 series of 10 labels) reserves about 6 MiB, so the
	// gateway's 16 turns of those take a fifth of it.
	DefaultMaxMemoryInFlight = 512 << 20
)

// MaxDecodedBytes is the bound of a request's decompressed body at
// maxRequestBytes compressed: 8 times that (snappy rarely compresses
// remote write more than 5 times), at least 32 MiB.
func MaxDecodedBytes(maxRequestBytes int64) int64 {
	return max(minMaxDecodedBytes, 8*maxRequestBytes)
}

// RequestMemory is the most one request may reserve from the gateway's
// max_memory_in_flight when bodies are bounded by maxRequestBytes: its
// body and its decompressed body (each with the byte of the read that
// finds its end), and twice MaxDecodeCost for its decoding's bookkeeping.
func RequestMemory(maxRequestBytes int64) int64 {
	return maxRequestBytes + 1 + MaxDecodedBytes(maxRequestBytes) + 1 + 2*MaxDecodeCost
}

// MemoryInFlight is the gateway's budget for the requests in flight set
// by max_memory_in_flight m with max_request_bytes maxRequestBytes: m, or
// when m is zero DefaultMaxMemoryInFlight, raised to RequestMemory so that
// a lone request at the bounds always fits.
func MemoryInFlight(m, maxRequestBytes int64) int64 {
	if m > 0 {
		return m
	}
	return max(DefaultMaxMemoryInFlight, RequestMemory(maxRequestBytes))
}

// CheckMemoryInFlight refuses a max_memory_in_flight m smaller than what
// one request at maxRequestBytes may need: such a request could never be
// taken, and its sender, answered "retry later", would retry it for ever.
// Zero is the default, always enough.
func CheckMemoryInFlight(m, maxRequestBytes int64) error {
	if m < 0 {
		return fmt.Errorf("max_memory_in_flight must not be negative, got %d", m)
	}
	if need := RequestMemory(maxRequestBytes); m > 0 && m < need {
		return fmt.Errorf("max_memory_in_flight %d bytes is less than one request may need at max_request_bytes %d: %d bytes (%d MiB: its body, its decompressed body up to %d MiB and twice the %d MiB its decoding may hold); raise it, or lower max_request_bytes",
			m, maxRequestBytes, need, need>>20, MaxDecodedBytes(maxRequestBytes)>>20, MaxDecodeCost>>20)
	}
	return nil
}

// CheckSeriesPerRequest refuses a tenant's max_series_per_request n over
// MaxSeriesPerRequest, which the gateway cannot raise.
func CheckSeriesPerRequest(tenant string, n int) error {
	if n > MaxSeriesPerRequest {
		return fmt.Errorf("max_series_per_request %d of tenant %q is over the gateway's own limit of %d series per request, which it cannot raise: set at most %d", n, tenant, MaxSeriesPerRequest, MaxSeriesPerRequest)
	}
	return nil
}

// ByteSize is a size in bytes, written as an integer or with a unit
// (10MiB, 512KB), as Prometheus' body_size_limit.
type ByteSize int64

// UnmarshalYAML reads an integer or a size with a unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if i, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
		*b = ByteSize(i)
		return nil
	}
	v, err := units.ParseBase2Bytes(n.Value)
	if err != nil {
		return fmt.Errorf("%q is not a size in bytes (like 10MiB)", n.Value)
	}
	*b = ByteSize(v)
	return nil
}

// UnmarshalYAML applies defaults, then the document, then Validate.
func (c *ReceiveConfig) UnmarshalYAML(n *yaml.Node) error {
	*c = DefaultReceiveConfig
	type plain ReceiveConfig // no methods, so no recursion
	if err := n.Decode((*plain)(c)); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	c.MaxMemoryInFlight = ByteSize(MemoryInFlight(int64(c.MaxMemoryInFlight), int64(c.MaxRequestBytes)))
	return nil
}

// Validate reports the first invalid field as an *Error naming its YAML
// path. It reads no file: Load reads the key files after it.
func (c *ReceiveConfig) Validate() error {
	bad := func(field, format string, a ...any) error {
		return &Error{Field: "receive" + field, Msg: fmt.Sprintf(format, a...)}
	}
	if c.ListenAddress == "" {
		return bad(".listen_address", "required: the host:port the gateway listens on (its own, not --web.listen-address)")
	}
	if _, _, err := net.SplitHostPort(c.ListenAddress); err != nil {
		return bad(".listen_address", "%q is not host:port", c.ListenAddress)
	}
	if t := c.TLSConfig; t != nil && (t.CertFile == "" || t.KeyFile == "") {
		return bad(".tls_config", "set both cert_file and key_file")
	}
	if c.TenantLabel != "" && !model.LegacyValidation.IsValidLabelName(c.TenantLabel) {
		return bad(".tenant_label", "%q is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)", c.TenantLabel)
	}
	if strings.HasPrefix(c.TenantLabel, "__") {
		return bad(".tenant_label", "%q starts with __, which is reserved for internal labels", c.TenantLabel)
	}
	if c.MaxRequestBytes <= 0 {
		return bad(".max_request_bytes", "must be positive, got %d", c.MaxRequestBytes)
	}
	if err := CheckMemoryInFlight(int64(c.MaxMemoryInFlight), int64(c.MaxRequestBytes)); err != nil {
		return bad(".max_memory_in_flight", "%v", err)
	}
	if len(c.APIKeys) == 0 {
		return bad(".api_keys", "at least one key: the gateway does not take unauthenticated writes")
	}
	first := map[string]int{} // tenant → index of its first key
	for i := range c.APIKeys {
		k := &c.APIKeys[i]
		field := fmt.Sprintf(".api_keys[%d]", i)
		if k.Tenant == "" {
			return bad(field+".tenant", "required")
		}
		set := 0
		for _, s := range []string{k.Key, k.KeyFile, k.SHA256} {
			if s != "" {
				set++
			}
		}
		if set != 1 {
			return bad(field, "set exactly one of key, key_file and sha256")
		}
		if k.SHA256 != "" {
			if b, err := hex.DecodeString(k.SHA256); err != nil || len(b) != sha256.Size {
				return bad(field+".sha256", "must be the 64 hex digits of the key's SHA-256 (sha256sum)")
			}
		}
		for _, n := range k.RemoteWriteNames {
			if n == "" || strings.Contains(n, ",") {
				return bad(field+".remote_write_names", "tenant %q: %q cannot be the name of a remote_write to route to (empty, or a comma in it)", k.Tenant, n)
			}
		}
		if k.SamplesPerSecond < 0 {
			return bad(field+".samples_per_second", "must not be negative")
		}
		if k.Burst < 0 {
			return bad(field+".burst", "must not be negative")
		}
		if k.Burst > 0 && k.SamplesPerSecond == 0 {
			return bad(field+".burst", "needs samples_per_second")
		}
		if k.MaxSeriesPerRequest < 0 {
			return bad(field+".max_series_per_request", "must not be negative")
		}
		if err := CheckSeriesPerRequest(k.Tenant, k.MaxSeriesPerRequest); err != nil {
			return bad(field+".max_series_per_request", "%v", err)
		}
		if j, ok := first[k.Tenant]; ok {
			o := c.APIKeys[j]
			if o.SamplesPerSecond != k.SamplesPerSecond || o.Burst != k.Burst || o.MaxSeriesPerRequest != k.MaxSeriesPerRequest {
				return bad(field, "tenant %q has other limits in api_keys[%d]: keys of one tenant share its limits, give them the same", k.Tenant, j)
			}
			if !slices.Equal(nameSet(o.RemoteWriteNames), nameSet(k.RemoteWriteNames)) {
				return bad(field+".remote_write_names", "tenant %q has other remote_write_names in api_keys[%d]: keys of one tenant share its routing, give them the same", k.Tenant, j)
			}
		} else {
			first[k.Tenant] = i
		}
	}
	return nil
}

// nameSet is names sorted, without duplicates: the routing it means.
func nameSet(names []string) []string {
	s := slices.Clone(names)
	slices.Sort(s)
	return slices.Compact(s)
}

// checkRoutes checks that every name in the remote_write_names of c (the
// section at v) is the name: of one of rws, the remote_write endpoints.
func checkRoutes(c *ReceiveConfig, v *yaml.Node, rws []*promconfig.RemoteWriteConfig) error {
	named := map[string]bool{}
	var names []string
	for _, rw := range rws {
		if rw.Name != "" {
			named[rw.Name] = true
			names = append(names, strconv.Quote(rw.Name))
		}
	}
	for i, k := range c.APIKeys {
		for _, n := range k.RemoteWriteNames {
			if named[n] {
				continue
			}
			field := fmt.Sprintf("receive.api_keys[%d].remote_write_names", i)
			known := "no remote_write has a name: (only named endpoints can be routed to)"
			if len(names) > 0 {
				known = "the named ones are " + strings.Join(names, ", ")
			}
			return &Error{Line: lineOf(v, field), Field: field, Msg: fmt.Sprintf("tenant %q: no remote_write is named %q; %s", k.Tenant, n, known)}
		}
	}
	return nil
}

var receiveType = reflect.TypeFor[ReceiveConfig]()

// loadReceive decodes and validates the `receive:` section v, reads the
// key files (relative to dir) and hashes every key. Errors name the line
// and field, never a key.
func loadReceive(v *yaml.Node, dir string) (*ReceiveConfig, error) {
	if err := checkFields(v, receiveType, "receive"); err != nil {
		return nil, err
	}
	c := new(ReceiveConfig)
	if err := v.Decode(c); err != nil {
		if e, ok := errors.AsType[*Error](err); ok {
			e.Line = lineOf(v, e.Field)
			return nil, e
		}
		if e := locateIn(v, receiveType, "receive"); e != nil && e.Field != "receive" {
			if _, ok := errors.AsType[*yaml.TypeError](err); !ok {
				e.Msg = err.Error() // ours (ByteSize), clearer than yaml.v2's
			}
			return nil, e
		}
		return nil, &Error{Line: v.Line, Field: "receive", Msg: err.Error()}
	}
	if t := c.TLSConfig; t != nil {
		t.CertFile, t.KeyFile = relativeTo(dir, t.CertFile), relativeTo(dir, t.KeyFile)
	}
	for i := range c.APIKeys {
		k := &c.APIKeys[i]
		field := fmt.Sprintf("receive.api_keys[%d]", i)
		switch {
		case k.Key != "":
			k.Digest = sha256.Sum256([]byte(k.Key))
			k.Key = ""
		case k.KeyFile != "":
			path := relativeTo(dir, k.KeyFile)
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, &Error{Line: lineOf(v, field+".key_file"), Field: field + ".key_file", Msg: fmt.Sprintf("read key: %v", err)}
			}
			key := strings.TrimSpace(string(b))
			if key == "" {
				return nil, &Error{Line: lineOf(v, field+".key_file"), Field: field + ".key_file", Msg: fmt.Sprintf("%s holds no key", path)}
			}
			k.Digest = sha256.Sum256([]byte(key))
		default:
			hex.Decode(k.Digest[:], []byte(k.SHA256)) // checked by Validate
		}
		for j := range i {
			if subtle.ConstantTimeCompare(c.APIKeys[j].Digest[:], k.Digest[:]) == 1 {
				return nil, &Error{Line: lineOf(v, field), Field: field, Msg: fmt.Sprintf("the same key as api_keys[%d]: each key names one tenant", j)}
			}
		}
	}
	return c, nil
}

// relativeTo returns path taken relative to dir, as Prometheus takes the
// paths of a configuration file relative to its directory; an absolute
// path, or an empty dir, leaves it as it is.
func relativeTo(dir, path string) string {
	if dir != "" && path != "" && !filepath.IsAbs(path) {
		return filepath.Join(dir, path)
	}
	return path
}

// lineOf returns the line of the node at field ("receive.api_keys[1].key")
// under the section v, or of the deepest node found on the way.
func lineOf(v *yaml.Node, field string) int {
	n := v
	for _, part := range strings.Split(field, ".")[1:] {
		name, idx, indexed := strings.Cut(part, "[")
		c := mappingValue(n, name)
		if c == nil {
			break
		}
		n = c
		if indexed {
			i, err := strconv.Atoi(strings.TrimSuffix(idx, "]"))
			if err != nil || n.Kind != yaml.SequenceNode || i >= len(n.Content) {
				break
			}
			n = n.Content[i]
		}
	}
	return n.Line
}
