// Command ampemu emulates one Amazon Managed Service for Prometheus workspace
// on the local machine: remote write (checked with SigV4 when keys are
// given), stored in a local TSDB, and AMP's Prometheus-compatible query API.
// Its own metrics are served at /metrics.
//
//	AMPEMU_SECRET_KEY=... ampemu --access-key AKIDEXAMPLE --workspace-id ws-local
//
// Remote write then goes to
// http://127.0.0.1:9095/workspaces/ws-local/api/v1/remote_write with
// sigv4 region us-east-1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rwagent/rwagent/pkg/receive"
	"github.com/rwagent/rwagent/pkg/sigv4"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "ampemu:", err)
		stop()
		os.Exit(1)
	}
}

// flags are ampemu's command line.
type flags struct {
	listen, workspaceID, storagePath, region string
	accessKey, secretKey, sessionToken       string
	clockOffset                              time.Duration
	logLevel                                 slog.Level
	// limits are AMP's quotas as the flags set them, zero fields already
	// turned into "off" (negative) where the flag said 0.
	limits receive.Limits
	// secretsInArgs names the flags that carried a secret on the command
	// line, where any user of the host sees it (ps, /proc/PID/cmdline).
	secretsInArgs []string
}

func parseFlags(args []string, getenv func(string) string, out io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("ampemu", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&f.listen, "web.listen-address", "127.0.0.1:9095", "address to listen on")
	fs.StringVar(&f.workspaceID, "workspace-id", receive.DefaultWorkspaceID, "id of the emulated workspace")
	fs.StringVar(&f.storagePath, "storage.path", "", "TSDB directory (default: a temporary directory removed on exit)")
	fs.StringVar(&f.region, "region", "us-east-1", "SigV4 region requests must be signed for")
	fs.StringVar(&f.accessKey, "access-key", getenv("AMPEMU_ACCESS_KEY"), "accepted access key id (env AMPEMU_ACCESS_KEY); none: unsigned requests are accepted")
	secretKeyFile := fs.String("secret-key-file", "", "file holding the secret key (preferred: a key given with --secret-key shows in ps); env AMPEMU_SECRET_KEY works too")
	fs.StringVar(&f.secretKey, "secret-key", getenv("AMPEMU_SECRET_KEY"), "its secret key; visible to every user in ps, prefer --secret-key-file or env AMPEMU_SECRET_KEY")
	sessionTokenFile := fs.String("session-token-file", "", "file holding the session token, if any (preferred over --session-token); env AMPEMU_SESSION_TOKEN works too")
	fs.StringVar(&f.sessionToken, "session-token", getenv("AMPEMU_SESSION_TOKEN"), "its session token, if any; visible in ps, prefer --session-token-file or env AMPEMU_SESSION_TOKEN")
	fs.DurationVar(&f.clockOffset, "clock-offset", 0, "added to the emulator's clock, to test clock skew")
	fs.TextVar(&f.logLevel, "log.level", slog.LevelInfo, "log level: debug, info, warn or error")
	d := receive.DefaultLimits
	lim := &f.limits
	lim.HAClusterLabel, lim.HAReplicaLabel = d.HAClusterLabel, d.HAReplicaLabel // fixed in AMP
	fs.Float64Var(&lim.IngestionRate, "ingestion.rate", d.IngestionRate, "samples per second the workspace's token bucket refills (AMP's \"Ingestion rate per workspace\"); 0: no throttling")
	fs.IntVar(&lim.IngestionBurst, "ingestion.burst", d.IngestionBurst, "size of the token bucket in samples (AMP's \"Ingestion burst size per workspace\")")
	fs.IntVar(&lim.MaxLabelNamesPerSeries, "limits.labels-per-series", d.MaxLabelNamesPerSeries, "labels a series may have, __name__ included (AMP's \"Labels per metric series\"); 0: no limit")
	fs.IntVar(&lim.MaxLabelNameLength, "limits.label-name-length", d.MaxLabelNameLength, "bytes a label name may have (Cortex's default, which AMP applies); 0: no limit")
	fs.IntVar(&lim.MaxLabelValueLength, "limits.label-value-length", d.MaxLabelValueLength, "bytes a label value may have (Cortex's default, which AMP applies); 0: no limit")
	fs.IntVar(&lim.MaxActiveSeries, "limits.active-series", d.MaxActiveSeries, "series with a sample in the last 2h the workspace accepts (AMP's \"Active series per workspace\"); 0: no limit")
	fs.IntVar(&lim.MaxMetadataMetrics, "limits.metadata-metrics", d.MaxMetadataMetrics, "metrics whose metadata is kept (AMP's \"Active metrics with metadata per workspace\"); 0: no limit")
	fs.DurationVar(&lim.HAFailoverTimeout, "ha.failover-timeout", d.HAFailoverTimeout, "how long an HA cluster's elected replica may send nothing before another is elected (Cortex's default, on which AMP runs)")
	fs.IntVar(&lim.MaxHAClusters, "ha.max-clusters", d.MaxHAClusters, "HA clusters the workspace tracks (AMP's \"Maximum HA clusters\"); 0: no limit")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	for _, sf := range []struct {
		flag, file string
		dst        *string
	}{
		{"secret-key", *secretKeyFile, &f.secretKey},
		{"session-token", *sessionTokenFile, &f.sessionToken},
	} {
		if set[sf.flag] {
			f.secretsInArgs = append(f.secretsInArgs, "--"+sf.flag)
		}
		if sf.file == "" {
			continue
		}
		if set[sf.flag] {
			return f, fmt.Errorf("give either --%s or --%s-file, not both", sf.flag, sf.flag)
		}
		b, err := os.ReadFile(sf.file)
		if err != nil {
			return f, fmt.Errorf("--%s-file: %w", sf.flag, err)
		}
		// Without surrounding white space: editors end files with a newline.
		*sf.dst = strings.TrimSpace(string(b))
		if *sf.dst == "" {
			return f, fmt.Errorf("--%s-file: %s is empty", sf.flag, sf.file)
		}
	}
	if (f.accessKey == "") != (f.secretKey == "") {
		return f, errors.New("--access-key and --secret-key (or --secret-key-file) must be given together")
	}
	if f.sessionToken != "" && f.accessKey == "" {
		return f, errors.New("--session-token needs --access-key and --secret-key")
	}
	if err := f.limitsFromFlags(); err != nil {
		return f, err
	}
	return f, nil
}

// limitsFromFlags checks the limit flags and turns each 0 ("no limit" on
// the command line) into receive's negative "off", since a zero Limits field
// means AMP's default.
func (f *flags) limitsFromFlags() error {
	lim := &f.limits
	switch {
	case lim.IngestionRate < 0:
		return fmt.Errorf("--ingestion.rate %v is negative", lim.IngestionRate)
	case lim.IngestionRate > 0 && lim.IngestionBurst <= 0:
		return fmt.Errorf("--ingestion.burst %d must be positive while --ingestion.rate is set (a request takes its samples from the bucket at once)", lim.IngestionBurst)
	case lim.HAFailoverTimeout <= 0:
		return fmt.Errorf("--ha.failover-timeout %v must be positive", lim.HAFailoverTimeout)
	}
	if lim.IngestionRate == 0 {
		lim.IngestionRate = -1
	}
	for _, v := range []struct {
		name string
		p    *int
	}{
		{"limits.labels-per-series", &lim.MaxLabelNamesPerSeries},
		{"limits.label-name-length", &lim.MaxLabelNameLength},
		{"limits.label-value-length", &lim.MaxLabelValueLength},
		{"limits.active-series", &lim.MaxActiveSeries},
		{"limits.metadata-metrics", &lim.MaxMetadataMetrics},
		{"ha.max-clusters", &lim.MaxHAClusters},
	} {
		switch {
		case *v.p < 0:
			return fmt.Errorf("--%s %d is negative; 0 turns the limit off", v.name, *v.p)
		case *v.p == 0:
			*v.p = -1
		}
	}
	return nil
}

// run serves until ctx is done, then shuts down. ready, if not nil, is called
// with the listen address once requests are accepted.
func run(ctx context.Context, args []string, getenv func(string) string, logOut io.Writer, ready func(addr string)) error {
	f, err := parseFlags(args, getenv, logOut)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: f.logLevel}))
	for _, name := range f.secretsInArgs {
		logger.Warn("A secret given on the command line is visible to every user of this host (ps); use the -file flag or the environment variable instead", "flag", name)
	}
	now := func() time.Time { return time.Now().Add(f.clockOffset) }

	dir := f.storagePath
	if dir == "" {
		if dir, err = os.MkdirTemp("", "ampemu-"); err != nil {
			return fmt.Errorf("create storage directory: %w", err)
		}
		defer os.RemoveAll(dir)
	}

	var verify func(*http.Request, []byte) error
	if f.accessKey != "" {
		verify = verifier(&sigv4.Verifier{
			Region:      f.region,
			Service:     sigv4.DefaultService,
			Credentials: []sigv4.Credential{{AccessKeyID: f.accessKey, SecretAccessKey: f.secretKey, SessionToken: f.sessionToken}},
			Now:         now,
		})
	} else {
		logger.Warn("No --access-key given: accepting unsigned requests")
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := receive.New(receive.Options{
		Dir: dir, WorkspaceID: f.workspaceID, Verify: verify, Now: now, Logger: logger, Registerer: reg,
		Limits: f.limits,
	})
	if err != nil {
		return err
	}
	defer srv.Close()

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/", srv.Handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", f.listen, err)
	}
	root := "http://" + ln.Addr().String()
	logger.Info("Listening", "address", ln.Addr().String(), "workspace", srv.URL(root),
		"remote_write", srv.URL(root)+"/api/v1/remote_write", "region", f.region,
		"storage", dir, "clock_offset", f.clockOffset, "signed", verify != nil,
		"ingestion_rate", f.limits.IngestionRate, "ingestion_burst", f.limits.IngestionBurst,
		"ha_failover_timeout", f.limits.HAFailoverTimeout)

	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	logger.Info("Shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err = hs.Shutdown(sctx)
	<-serveErr // http.ErrServerClosed
	if err != nil {
		return fmt.Errorf("shut down HTTP server: %w", err)
	}
	return srv.Close()
}

// verifier adapts a sigv4.Verifier to receive.Options.Verify, answering its
// errors with their AWS status, code and message.
func verifier(v *sigv4.Verifier) func(*http.Request, []byte) error {
	return func(r *http.Request, body []byte) error {
		err := v.Verify(r, body)
		if ve, ok := errors.AsType[*sigv4.VerifyError](err); ok {
			return receive.Reject(ve.Status, ve.Code, ve.Message)
		}
		return err
	}
}
