package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rwagent/rwagent/pkg/config"
	"github.com/rwagent/rwagent/pkg/gateway"
	"github.com/rwagent/rwagent/pkg/wal"
)

// gatewayRun is the receive: section's gateway, or nothing when the
// configuration has none.
type gatewayRun struct {
	g      *gateway.Gateway // nil: no receive: section
	addr   net.Addr         // where it listens; nil without a gateway
	logger *slog.Logger
}

// startGateway builds the gateway of the receive: section and binds its
// listener, on the open WAL; the caller runs it with run, as an input
// stage (stopped with the scrapes, before the queues flush and the WAL
// closes), and closes it after.
func (p *pipeline) startGateway() (*gatewayRun, error) {
	rc := p.cfg.Load().Receive
	if rc == nil {
		return &gatewayRun{}, nil
	}
	opts := gatewayOptions(rc)
	opts.Storage = p.wal
	opts.Full = walFull(p.wal, p.cfg.Load().WAL.MaxSize, int64(p.cfg.Load().WAL.SegmentSize))
	opts.Logger = p.logger
	opts.Registerer = p.reg
	g, err := gateway.New(opts)
	if err != nil {
		return nil, err
	}
	addr, err := g.Listen()
	if err != nil {
		g.Close()
		return nil, err
	}
	p.logger.Info("gateway listening", "addr", addr.String(), "tls", opts.TLSCertFile != "", "tenants", tenantCount(opts.Keys))
	return &gatewayRun{g: g, addr: addr, logger: p.logger}, nil
}

// gatewayOptions returns the gateway options the receive: section rc
// sets: the listener, the TLS files, the keys with their tenants (one
// Tenant per tenant name, shared by its keys), the tenant label, the
// body bound and the memory budget. startGateway adds the rest; reload applies these.
func gatewayOptions(rc *config.ReceiveConfig) gateway.Options {
	tenants := map[string]*gateway.Tenant{}
	keys := make([]gateway.Key, 0, len(rc.APIKeys))
	for _, k := range rc.APIKeys {
		t := tenants[k.Tenant]
		if t == nil { // config.Validate: keys of one tenant agree on its limits and routes
			t = &gateway.Tenant{Name: k.Tenant, SamplesPerSecond: k.SamplesPerSecond, Burst: k.Burst, MaxSeriesPerRequest: k.MaxSeriesPerRequest, RemoteWriteNames: k.RemoteWriteNames}
			tenants[k.Tenant] = t
		}
		keys = append(keys, gateway.Key{Digest: k.Digest, Tenant: t})
	}
	opts := gateway.Options{
		Addr:              rc.ListenAddress,
		Keys:              keys,
		TenantLabel:       rc.TenantLabel,
		MaxRequestBytes:   int64(rc.MaxRequestBytes),
		MaxMemoryInFlight: int64(rc.MaxMemoryInFlight),
	}
	if t := rc.TLSConfig; t != nil {
		opts.TLSCertFile, opts.TLSKeyFile = t.CertFile, t.KeyFile
	}
	return opts
}

// tenantCount is the number of tenants keys name.
func tenantCount(keys []gateway.Key) int {
	seen := map[*gateway.Tenant]bool{}
	for _, k := range keys {
		seen[k.Tenant] = true
	}
	return len(seen)
}

// reload applies the receive: section of cfg to the running gateway:
// keys, tenants, the tenant label, limits, routes, max_request_bytes,
// max_memory_in_flight, and the TLS certificate and key read again from their files. Adding or
// removing the section, moving listen_address, or turning TLS on or off
// needs a restart: reload refuses them with an error naming the setting,
// as it refuses a certificate that does not load, and then the gateway
// serves as before. It is safe to call while run runs.
func (r *gatewayRun) reload(cfg *config.Config) error {
	rc := cfg.Receive
	switch {
	case r.g == nil && rc == nil:
		return nil
	case r.g == nil:
		return errors.New("receive: added: starting the gateway needs a restart")
	case rc == nil:
		return errors.New("receive: removed: stopping the gateway needs a restart")
	}
	opts := gatewayOptions(rc)
	if err := r.g.Reload(opts); err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	r.logger.Info("gateway reloaded", "addr", r.addr.String(), "tls", opts.TLSCertFile != "", "tenants", tenantCount(opts.Keys), "keys", len(opts.Keys))
	return nil
}

// run serves until ctx is done. Without a gateway it waits for ctx all
// the same: a stage that returns early stops the agent.
func (r *gatewayRun) run(ctx context.Context) error {
	if r.g == nil {
		<-ctx.Done()
		return nil
	}
	return r.g.Run(ctx)
}

// close unregisters the gateway's metrics, after run has returned.
func (r *gatewayRun) close() {
	if r.g != nil {
		r.g.Close()
	}
}

// walFull reports whether the WAL's segments are within one segment of
// wal.max_size, where the next trim would remove unsent data to make
// room: the gateway then answers 429 rather than take samples that would
// push out others already acknowledged. The size is measured at most once
// a second. Zero maxSize: never full.
func walFull(w *wal.WAL, maxSize, segmentSize int64) func() bool {
	if maxSize <= 0 {
		return nil
	}
	var (
		mu      sync.Mutex
		checked time.Time
		full    atomic.Bool
	)
	return func() bool {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(checked) >= time.Second {
			checked = time.Now()
			n, err := w.BytesAfter(wal.Position{})
			full.Store(err == nil && n+segmentSize >= maxSize)
		}
		return full.Load()
	}
}
