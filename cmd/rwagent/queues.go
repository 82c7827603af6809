package main

import (
	"context"
	"reflect"
	"time"

	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/rwagent/rwagent/pkg/config"
	"github.com/rwagent/rwagent/pkg/remotewrite"
	"github.com/rwagent/rwagent/pkg/sendpos"
	"github.com/rwagent/rwagent/pkg/web"
)

// endpointSpec is everything of the configuration a remote_write queue is
// built from: a reload keeps the queue of an endpoint whose spec is
// unchanged.
type endpointSpec struct {
	rw       *promconfig.RemoteWriteConfig
	sigv4    *config.SigV4Config // nil: unsigned
	external labels.Labels       // global external_labels
	flush    time.Duration       // flush deadline; zero: remotewrite's default
}

// newEndpointSpec is the spec of cfg's remote_write i.
func newEndpointSpec(cfg *config.Config, i int, flush time.Duration) endpointSpec {
	return endpointSpec{
		rw:       cfg.Prometheus.RemoteWriteConfigs[i],
		sigv4:    cfg.RemoteWriteSigV4[i],
		external: cfg.Prometheus.GlobalConfig.ExternalLabels,
		flush:    flush,
	}
}

// same says whether a queue built from s would be built from t alike.
// Secrets are compared too: a rotated password rebuilds the queue.
func (s endpointSpec) same(t endpointSpec) bool { return reflect.DeepEqual(s, t) }

// endpoint is one running remote_write queue.
type endpoint struct {
	key   string // its send-position key
	spec  endpointSpec
	q     *remotewrite.Queue
	shown web.Endpoint
	stop  context.CancelFunc // ends its Run, which then flushes; set by start
	done  chan struct{}      // closed when its Run has returned
}

// newTransport builds the transport of spec (the fallible part of an
// endpoint: a signer resolves its credentials), logging as its queue.
func (p *pipeline) newTransport(ctx context.Context, spec endpointSpec) (endpointTransport, error) {
	return newEndpointTransport(ctx, spec.rw, spec.sigv4,
		p.logger.With("component", "remote_write", "remote_name", spec.rw.Name, "url", spec.rw.URL.Redacted()), p.signerMetrics)
}

// newEndpoint builds the queue of spec resuming at rs (its key rs.Key), reporting to w,
// sending with et; start runs it.
func (p *pipeline) newEndpoint(spec endpointSpec, rs sendpos.Resume, w *sendpos.Writer, et endpointTransport) (*endpoint, error) {
	errLog := &remotewrite.ErrorLog{} // the status page's last error
	q, err := remotewrite.New(p.ctx, remotewrite.Options{
		Config:         spec.rw,
		ExternalLabels: spec.external,
		Log:            remotewrite.WALLog(p.wal),
		Start:          rs.Start,
		ResendUntil:    rs.ResendUntil,
		Lost:           rs.Lost,
		Positions:      w,
		Transport:      et.transport,
		Signed:         et.signed,
		Limits:         et.limits,
		UserAgent:      "rwagent/" + versionString(),
		FlushDeadline:  spec.flush,
		Logger:         errLog.Logger(p.logger.With("component", "remote_write")),
		Registerer:     p.reg,
	})
	if err != nil {
		return nil, err
	}
	p.positions.Attach(w, q)
	return &endpoint{key: rs.Key, spec: spec, q: q, shown: web.Endpoint{Queue: q, Errors: errLog}, done: make(chan struct{})}, nil
}

// start runs ep's queue under p.queueCtx until ep.stop.
func (p *pipeline) start(ep *endpoint) {
	ctx, stop := context.WithCancel(p.queueCtx)
	ep.stop = stop
	p.sending.Go(func() {
		defer close(ep.done)
		defer stop()
		p.fails.add(ep.q.Run(ctx))
	})
}
