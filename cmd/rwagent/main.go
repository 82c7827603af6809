// Command rwagent scrapes Prometheus targets, logs every sample to a
// write-ahead log and ships it with remote write, signed with AWS SigV4
// when the endpoint asks for it. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"

	"github.com/rwagent/rwagent/pkg/config"
	"github.com/rwagent/rwagent/pkg/sdnotify"
)

// version is set at link time: -ldflags '-X main.version=v1.2.3'.
var version = ""

func main() {
	setGCPercent(os.Getenv("GOGC"))
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// defaultGCPercent is the agent's GOGC unless the environment sets one. The
// heap is mostly long-lived series state and the per-sample paths allocate
// little, so collecting at +50% instead of Go's +100% costs little CPU and
// keeps the peak heap at 1.5x the live one instead of 2x (vmagent makes the
// same choice).
const defaultGCPercent = 50

// setGCPercent applies defaultGCPercent when env (GOGC's value) is empty;
// otherwise the runtime already applied the user's.
func setGCPercent(env string) {
	if env == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}

// run is main without the exit, so tests can drive the command line.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "check-config":
			return checkConfig(args[1:], stdout, stderr)
		case "sign":
			return signCommand(context.Background(), args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("rwagent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		configFile  = fs.String("config.file", "rwagent.yaml", "Configuration file (Prometheus' format plus a `wal:` section).")
		storagePath = fs.String("storage.path", "", "Directory for the agent's state (WAL). Overrides wal.dir of the configuration.")
		listenAddr  = fs.String("web.listen-address", "127.0.0.1:12345", "Address for /metrics, /-/healthy and /-/ready.")
		logLevel    = fs.String("log.level", "info", "Log level: debug, info, warn, error.")
		logFormat   = fs.String("log.format", "logfmt", "Log format: logfmt or json.")
		showVersion = fs.Bool("version", false, "Print the version and exit.")
	)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage:\n  rwagent --config.file=FILE [flags]\n  rwagent check-config FILE...\n  rwagent --version\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "rwagent: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "rwagent %s\n", versionString())
		return 0
	}
	logger, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "rwagent: %v\n", err)
		return 2
	}

	watchdog, err := sdnotify.WatchdogInterval(os.Getenv, os.Getpid())
	if err != nil {
		fmt.Fprintf(stderr, "rwagent: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var refusing sync.WaitGroup
	defer refusing.Wait()
	hupCtx, stopHUP := context.WithCancel(ctx)
	defer stopHUP()
	refusing.Go(func() { refuseReload(hupCtx, hup, logger) })
	err = runAgent(ctx, agentOptions{
		ConfigFile:       *configFile,
		StoragePath:      *storagePath,
		ListenAddr:       *listenAddr,
		Logger:           logger,
		Notifier:         sdnotify.FromEnv(os.Getenv),
		WatchdogInterval: watchdog,
	})
	if err != nil {
		logger.Error("rwagent stopped", "err", err)
		return 1
	}
	return 0
}

// refuseReload logs each SIGHUP on hup until ctx is done. Without it a
// SIGHUP (systemctl reload, kill -HUP) would end the process; until
// rwagent can reload, it only says a restart is needed.
func refuseReload(ctx context.Context, hup <-chan os.Signal, logger *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			logger.Warn("reload is not supported yet; restart to apply a changed configuration")
		}
	}
}

// checkConfig validates each file and says what is wrong, exit 0 or 1.
func checkConfig(files []string, stdout, stderr io.Writer) int {
	if len(files) == 0 {
		fmt.Fprintln(stderr, "usage: rwagent check-config FILE...")
		return 2
	}
	code := 0
	for _, f := range files {
		c, err := config.LoadFile(f, nil, nil)
		if err != nil {
			fmt.Fprintf(stderr, "FAILED: %v\n", err)
			code = 1
			continue
		}
		fmt.Fprintf(stdout, "SUCCESS: %s is valid: %d scrape config(s), %d remote_write endpoint(s), WAL in %s\n",
			f, len(c.Prometheus.ScrapeConfigs), len(c.Prometheus.RemoteWriteConfigs), c.WAL.Dir)
		for _, s := range c.Ignored {
			fmt.Fprintf(stdout, "  note: %s is ignored: rwagent is an agent\n", s)
		}
	}
	return code
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log.level: %q is not one of debug, info, warn, error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "logfmt":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log.format: %q is not one of logfmt, json", format)
}

// versionString is the link-time version, else the module version.
func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return strings.TrimPrefix(bi.Main.Version, "v")
	}
	return "dev"
}
