package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/rwagent/rwagent/pkg/config"
)

// state is what a reload replaces: the settings of the receive: section
// that apply live. Each request reads the current state once, at its start,
// and uses it to its end; a state is never modified once stored.
type state struct {
	keys            []Key
	tenants         map[*Tenant]*tenantState // by the Tenant of each key
	tenantLabel     string
	maxRequestBytes int64
	maxDecodedBytes int64
	maxMemory       int64            // the memory budget's size (MaxMemoryInFlight)
	cert            *tls.Certificate // the server's; nil: plain HTTP
}

// newState validates the live settings of opts (Keys and their tenants'
// limits, TenantLabel, MaxRequestBytes, MaxDecodedBytes,
// MaxMemoryInFlight, the TLS files, which it reads) and
// builds a state of them. A tenant of old with the same name and rate
// limit keeps its token bucket, so a reload neither refills nor empties it.
func newState(opts Options, old *state, now time.Time) (*state, error) {
	if len(opts.Keys) == 0 {
		return nil, errors.New("gateway: no API keys: the gateway does not take unauthenticated writes")
	}
	if (opts.TLSCertFile == "") != (opts.TLSKeyFile == "") {
		return nil, errors.New("gateway: set both TLS cert and key files, or neither")
	}
	st := &state{
		keys:            opts.Keys,
		tenants:         map[*Tenant]*tenantState{},
		tenantLabel:     opts.TenantLabel,
		maxRequestBytes: opts.MaxRequestBytes,
		maxDecodedBytes: opts.MaxDecodedBytes,
	}
	if st.maxRequestBytes <= 0 {
		st.maxRequestBytes = DefaultMaxRequestBytes
	}
	if st.maxDecodedBytes <= 0 {
		st.maxDecodedBytes = config.MaxDecodedBytes(st.maxRequestBytes)
	}
	if err := config.CheckMemoryInFlight(opts.MaxMemoryInFlight, st.maxRequestBytes); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	st.maxMemory = config.MemoryInFlight(opts.MaxMemoryInFlight, st.maxRequestBytes)
	if opts.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(opts.TLSCertFile, opts.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("load the gateway's TLS certificate %s and key %s: %w", opts.TLSCertFile, opts.TLSKeyFile, err)
		}
		st.cert = &cert
	}
	before := map[string]*tenantState{}
	if old != nil {
		for _, ts := range old.tenants {
			before[ts.t.Name] = ts
		}
	}
	for _, k := range opts.Keys {
		if err := config.CheckSeriesPerRequest(k.Tenant.Name, k.Tenant.MaxSeriesPerRequest); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		if st.tenants[k.Tenant] != nil {
			continue
		}
		ts := newTenantState(k.Tenant, now)
		if o := before[k.Tenant.Name]; o != nil && o.bucket != nil && ts.bucket != nil &&
			o.t.SamplesPerSecond == k.Tenant.SamplesPerSecond && o.t.Burst == k.Tenant.Burst {
			ts.bucket = o.bucket
		}
		st.tenants[k.Tenant] = ts
	}
	return st, nil
}

// limits are the decoders' bounds and labels for the tenant of ts.
func (st *state) limits(ts *tenantState) limits {
	return limits{
		maxDecodedBytes: int(st.maxDecodedBytes),
		maxSeries:       ts.t.MaxSeriesPerRequest,
		tenantLabel:     st.tenantLabel,
		tenant:          ts.t.Name,
		route:           ts.route,
	}
}

// Reload applies the live settings of opts to the running gateway, at
// once for every request that starts after it: Keys (an old key is
// refused from then on), TenantLabel, MaxRequestBytes, MaxDecodedBytes,
// MaxMemoryInFlight (requests in flight keep what they reserved, so the
// memory held may exceed a smaller budget until they end), each tenant's limits and routes (a tenant whose samples_per_second and
// burst did not change keeps its token bucket), and the TLS certificate
// and key, read again from their files so a rotated certificate is served
// to new connections. The other fields of opts are New's and not read,
// except Addr: the listen address, and TLS being on or off, cannot change
// without a restart. On any error (those, a certificate that does not
// load, no keys) nothing changes and the gateway serves as before. Reload
// is safe for concurrent use with the handler and with itself.
func (g *Gateway) Reload(opts Options) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	if opts.Addr != g.opts.Addr {
		return fmt.Errorf("gateway: listen_address cannot change on a reload (%s to %s): restart rwagent to move the listener", g.opts.Addr, opts.Addr)
	}
	old := g.cur.Load()
	if tlsOn := opts.TLSCertFile != "" || opts.TLSKeyFile != ""; tlsOn != (old.cert != nil) {
		return fmt.Errorf("gateway: tls_config cannot be added or removed on a reload (TLS on: %t to %t): restart rwagent to change how it listens", old.cert != nil, tlsOn)
	}
	st, err := newState(opts, old, g.opts.Now())
	if err != nil {
		return err
	}
	g.cur.Store(st)
	return nil
}

// certificate serves the current state's certificate (tls.Config.GetCertificate).
func (g *Gateway) certificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := g.cur.Load().cert; c != nil {
		return c, nil
	}
	return nil, errors.New("gateway: no TLS certificate")
}
