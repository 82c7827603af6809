// Package conntrack stands in for github.com/mwitkow/go-conntrack in
// rwagent's build (the replace directive in rwagent's go.mod). It is
// rwagent's own code, not a copy: the dialer API that
// github.com/prometheus/common/config calls, dialing directly.
//
// The original wraps every connection to count it on the global
// Prometheus registry and, with DialWithTracing (which common/config
// always sets), to log it to golang.org/x/net/trace. rwagent serves
// neither: its /metrics is its own registry, and x/net/trace's pages are
// on http.DefaultServeMux, which rwagent does not serve. Importing
// x/net/trace costs the binary about 15 MB: its init registers handlers
// that execute html/template, and a linked template execution makes the
// linker keep every exported method of every type (README, "Service
// discovery").
package conntrack

import (
	"context"
	"net"
)

// dialerOpts is what the options set.
type dialerOpts struct {
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// dialerOpt sets a dialer option.
type dialerOpt func(*dialerOpts)

// DialWithName names the dialer. Nothing here uses the name.
func DialWithName(string) dialerOpt { return func(*dialerOpts) {} }

// DialWithTracing is accepted and does nothing: no connection is traced.
func DialWithTracing() dialerOpt { return func(*dialerOpts) {} }

// DialWithoutMonitoring is accepted and does nothing: no connection is
// counted.
func DialWithoutMonitoring() dialerOpt { return func(*dialerOpts) {} }

// DialWithDialer dials with d.
func DialWithDialer(d *net.Dialer) dialerOpt { return DialWithDialContextFunc(d.DialContext) }

// DialWithDialContextFunc dials with f instead of a zero net.Dialer.
func DialWithDialContextFunc(f func(ctx context.Context, network, addr string) (net.Conn, error)) dialerOpt {
	return func(o *dialerOpts) { o.dial = f }
}

// NewDialContextFunc returns a DialContext for an http.Transport: the
// option's dial function, by default a zero net.Dialer's DialContext. The
// connections it returns are the dial function's own.
func NewDialContextFunc(opts ...dialerOpt) func(ctx context.Context, network, addr string) (net.Conn, error) {
	o := dialerOpts{dial: (&net.Dialer{}).DialContext}
	for _, f := range opts {
		f(&o)
	}
	return o.dial
}

// NewDialFunc is NewDialContextFunc without a context.
func NewDialFunc(opts ...dialerOpt) func(network, addr string) (net.Conn, error) {
	dial := NewDialContextFunc(opts...)
	return func(network, addr string) (net.Conn, error) { return dial(context.Background(), network, addr) }
}
