// Package server is rwagent's own HTTP endpoint: its metrics, health and
// readiness, profiles, and the status page and APIs (Options.UI).
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configure a Server.
type Options struct {
	// Addr is the listen address, host:port. Port 0 picks a free port.
	Addr string
	// Gatherer serves /metrics. Nil serves an empty registry.
	Gatherer prometheus.Gatherer
	// NotReady says why the agent is not ready ("replaying the WAL"), or
	// "" when it is. /-/ready answers 503 with the reason in the body.
	// Nil means always ready.
	NotReady func() string
	// Logger receives serving errors. Nil discards them.
	Logger *slog.Logger
	// UI serves the status page at / and the APIs under /api/v1/ (see
	// pkg/web); it answers every path the server does not. Nil: / lists
	// the endpoints.
	UI http.Handler
	// ShutdownTimeout bounds the wait for in-flight requests on stop.
	// Zero means 5s.
	ShutdownTimeout time.Duration
	// EnablePprof serves Go's profiles under /debug/pprof/. False (the
	// zero value) serves none.
	EnablePprof bool
	// RoutePrefix is the path every route is served under, as Prometheus'
	// --web.route-prefix: "/rwagent" serves /rwagent/metrics,
	// /rwagent/-/ready, the page at /rwagent/, and redirects /rwagent and
	// / there. Zero or "/": the root.
	RoutePrefix string
	// Reload re-reads the configuration for POST and PUT /-/reload, which
	// answer 200, or the error's text with 400 when it wraps
	// ErrReloadRefused (the configuration was refused) and 500 otherwise.
	// Nil: /-/reload is 404.
	Reload func(context.Context) error
}

// ErrReloadRefused marks a reload error caused by the configuration
// itself (it does not load, validate, or changes what cannot change
// while running), rather than by applying it.
var ErrReloadRefused = errors.New("configuration refused")

// Server serves /metrics, /-/healthy, /-/ready and, if enabled, /debug/pprof/. Create it with New,
// bind with Listen, then serve with Run.
type Server struct {
	opts Options
	ln   net.Listener
	srv  *http.Server
}

// New builds a Server; it does not listen yet.
func New(opts Options) *Server {
	if opts.Gatherer == nil {
		opts.Gatherer = prometheus.NewRegistry()
	}
	if opts.NotReady == nil {
		opts.NotReady = func() string { return "" }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 5 * time.Second
	}
	s := &Server{opts: opts}
	s.srv = &http.Server{
		Handler:           s.routed(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}
	return s
}

// routed is Handler under Options.RoutePrefix.
func (s *Server) routed() http.Handler {
	prefix := strings.TrimSuffix(s.opts.RoutePrefix, "/")
	if prefix == "" {
		return s.Handler()
	}
	mux := http.NewServeMux()
	mux.Handle(prefix+"/", http.StripPrefix(prefix, s.Handler()))
	// As Prometheus: the prefix without its slash, and the root, lead to
	// the page.
	mux.Handle(prefix, http.RedirectHandler(prefix+"/", http.StatusFound))
	mux.Handle("/{$}", http.RedirectHandler(prefix+"/", http.StatusFound))
	return mux
}

// Handler returns the server's routes at the root, for tests and
// embedding.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.opts.Gatherer, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(s.opts.Logger.Handler(), slog.LevelWarn),
	}))
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "rwagent is healthy.")
	})
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if why := s.opts.NotReady(); why != "" {
			http.Error(w, "rwagent is not ready: "+why+".", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "rwagent is ready.")
	})
	// Profiles of the running agent, as Prometheus serves them, on the
	// same address, when enabled (the command line enables them on a
	// loopback address only, unless told otherwise).
	index := "rwagent: see /metrics, /-/healthy, /-/ready"
	if s.opts.EnablePprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		index += ", /debug/pprof/"
	}
	if s.opts.Reload != nil {
		// As Prometheus: POST or PUT, but with no --web.enable-lifecycle
		// needed (the listen address decides who may reach it).
		reload := func(w http.ResponseWriter, r *http.Request) {
			err := s.opts.Reload(r.Context())
			switch {
			case err == nil:
				fmt.Fprintln(w, "configuration reloaded.")
			case errors.Is(err, ErrReloadRefused):
				http.Error(w, "reload refused: "+err.Error(), http.StatusBadRequest)
			default:
				http.Error(w, "reload failed: "+err.Error(), http.StatusInternalServerError)
			}
		}
		mux.HandleFunc("POST /-/reload", reload)
		mux.HandleFunc("PUT /-/reload", reload)
		index += ", /-/reload (POST)"
	}
	if s.opts.UI != nil {
		mux.Handle("/", s.opts.UI)
	} else {
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, index)
		})
	}
	return mux
}

// Listen binds the address, so that the caller learns a picked port
// before Run and so that a taken port fails at start.
func (s *Server) Listen() (net.Addr, error) {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", s.opts.Addr, err)
	}
	s.ln = ln
	return ln.Addr(), nil
}

// Run serves until ctx is done, then waits up to ShutdownTimeout for
// requests in flight. Listen must have succeeded first.
func (s *Server) Run(ctx context.Context) error {
	if s.ln == nil {
		return errors.New("server: Run before Listen")
	}
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve on %s: %w", s.ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
