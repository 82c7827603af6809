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
	return f, nil
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
		"storage", dir, "clock_offset", f.clockOffset, "signed", verify != nil)

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
