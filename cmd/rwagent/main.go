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
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/rwagent/rwagent/pkg/config"
	"github.com/rwagent/rwagent/pkg/sdnotify"
	"github.com/rwagent/rwagent/pkg/sigv4"
	"github.com/rwagent/rwagent/pkg/web"
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
		case "convert":
			return convertCommand(args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("rwagent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		configFile  = fs.String("config.file", "rwagent.yaml", "Configuration file: Prometheus' format plus a wal section, or a Grafana Agent static-mode file.")
		storagePath = fs.String("storage.path", "", "Directory for the agent's state (WAL, send positions). Overrides wal.dir of the configuration.")
		listenAddr  = fs.String("web.listen-address", "127.0.0.1:12345", "Address for the status page and APIs (/, /api/v1/), /metrics, /-/healthy, /-/ready and, if enabled, /debug/pprof/.")
		enablePprof = fs.Bool("web.enable-pprof", false, "Serve Go's profiles under /debug/pprof/. Default: on when --web.listen-address is a loopback address, off otherwise; =false or =true overrides.")
		externalURL = fs.String("web.external-url", "", "The URL under which rwagent is reached (behind a proxy, say); its path is the default --web.route-prefix.")
		routePrefix = fs.String("web.route-prefix", "", "Path every route is served under (/metrics, /-/ready, the page...). Default: the path of --web.external-url, else /.")
		logLevel    = fs.String("log.level", "info", "Log level: debug, info, warn, error.")
		logFormat   = fs.String("log.format", "logfmt", "Log format: logfmt or json.")
		showVersion = fs.Bool("version", false, "Print the version and exit.")
		ampPrice    = fs.Float64("web.amp-price-per-10m-samples", web.DefaultAMPPricePer10M, "US dollars per 10 million samples ingested, for the status page's AMP cost estimate (default: AMP's first tier in us-east-1).")
		shardFlags  shardArgs
		// Grafana Agent's flag, so its command line runs unchanged:
		// rwagent always expands ${VAR} and ${VAR:-default}.
		expandEnv = fs.Bool("config.expand-env", true, "Accepted for Grafana Agent's command line: ${VAR} is always expanded; false is refused.")
	)
	fs.StringVar(&shardFlags.count, "shard.count", "", "Number of agents sharing the targets (env "+envShardCount+"); 0 or 1: scrape every target.")
	fs.StringVar(&shardFlags.index, "shard.index", "", "This agent's shard, 0..count-1 (env "+envShardIndex+"); default: the ordinal ending $POD_NAME or $HOSTNAME, as in rwagent-2.")
	fs.StringVar(&shardFlags.replication, "shard.replication", "", "Number of agents scraping each target, 1..count (env "+envShardReplication+"); default 1.")
	fs.Usage = func() { printUsage(stderr, fs) }
	if len(args) > 0 && args[0] == "help" {
		printUsage(stdout, fs)
		return 0
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "rwagent: unexpected argument %q (see rwagent --help)\n", fs.Arg(0))
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "rwagent %s\n", versionString())
		return 0
	}
	if *ampPrice <= 0 {
		fmt.Fprintf(stderr, "rwagent: --web.amp-price-per-10m-samples: %v is not a positive price\n", *ampPrice)
		return 2
	}
	if !*expandEnv {
		fmt.Fprintln(stderr, "rwagent: --config.expand-env=false is not supported: rwagent always expands ${VAR} in the configuration (write $${VAR} for a literal)")
		return 2
	}
	// A Grafana Agent file's server: block stands in for the flags the
	// command line does not give.
	applyServerBlock(fs, *configFile)
	pprofGiven := false
	fs.Visit(func(f *flag.Flag) { pprofGiven = pprofGiven || f.Name == "web.enable-pprof" })
	*enablePprof = pprofEnabled(pprofGiven, *enablePprof, *listenAddr)
	extURL, err := parseExternalURL(*externalURL)
	if err != nil {
		fmt.Fprintf(stderr, "rwagent: %v\n", err)
		return 2
	}
	prefix, err := resolveRoutePrefix(*routePrefix, extURL)
	if err != nil {
		fmt.Fprintf(stderr, "rwagent: %v\n", err)
		return 2
	}
	logger, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "rwagent: %v\n", err)
		return 2
	}
	shard, shardFrom, err := resolveShard(shardFlags, os.Getenv)
	if err != nil {
		fmt.Fprintf(stderr, "rwagent: %v\n", err)
		return 2
	}
	if shard.Count > 1 {
		logger.Info("sharding targets", "shard", shard.String(), "index_from", shardFrom)
	}

	watchdog, err := sdnotify.WatchdogInterval(os.Getenv, os.Getpid())
	if err != nil {
		fmt.Fprintf(stderr, "rwagent: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP reloads the configuration (systemctl reload, kill -HUP).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	err = runAgent(ctx, agentOptions{
		ConfigFile:       *configFile,
		StoragePath:      *storagePath,
		ListenAddr:       *listenAddr,
		RoutePrefix:      prefix,
		EnablePprof:      *enablePprof,
		Logger:           logger,
		Shard:            shard,
		Flags:            flagValues(fs),
		AMPPrice:         *ampPrice,
		Notifier:         sdnotify.FromEnv(os.Getenv),
		WatchdogInterval: watchdog,
		HUP:              hup,
	})
	if err != nil {
		logger.Error("rwagent stopped", "err", err)
		return 1
	}
	return 0
}

// flagValues is every flag with its value, for /api/v1/status/flags. No
// flag of rwagent holds a secret.
func flagValues(fs *flag.FlagSet) map[string]string {
	out := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { out[f.Name] = f.Value.String() })
	return out
}

// checkConfig is `rwagent check-config [--check-credentials] FILE...`: it
// validates each file and says what is wrong, exit 0 or 1 (2 for a bad
// command line). With --check-credentials it also resolves the credentials
// of every sigv4 block as the agent does at start.
func checkConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rwagent check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	checkCreds := fs.Bool("check-credentials", false, "Also resolve the AWS credentials and region of every sigv4 block (remote_write and scrape) "+
		"as the agent does at start, and fail naming the endpoint and the places looked when there are none.")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: rwagent check-config [--check-credentials] FILE...\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	files := fs.Args()
	if len(files) == 0 {
		fs.Usage()
		return 2
	}
	code := 0
	for _, f := range files {
		c, err := config.LoadFile(f, nil, nil)
		if err == nil && *checkCreds {
			err = checkCredentials(context.Background(), c, stdout)
		}
		if err != nil {
			fmt.Fprintf(stderr, "FAILED: %v\n", err)
			code = 1
			continue
		}
		if c.Shape == config.ShapeGrafanaAgent {
			printGrafanaAgent(stdout, f, c)
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

// credentialTimeout bounds the resolution of one sigv4 block's credentials
// by check-config: long enough for the SDK's retries against instance
// metadata or STS, short enough for a systemd ExecStartPre.
const credentialTimeout = 30 * time.Second

// checkCredentials resolves the credentials and region of every sigv4
// block of c with sigv4.NewRoundTripper, the call the agent makes at start,
// and writes a line per block to w (the source, the first characters of
// the access key id, the region; never a secret). The first block without
// credentials fails it, naming the endpoint; the error lists the places
// the AWS SDK looked.
func checkCredentials(ctx context.Context, c *config.Config, w io.Writer) error {
	type block struct {
		name, url string
		cfg       *config.SigV4Config
	}
	var blocks []block
	for _, p := range c.Pipelines() {
		prefix := ""
		if p.Instance.Name != "" {
			prefix = "instance " + p.Instance.Name + " "
		}
		for i, rw := range p.Prometheus.RemoteWriteConfigs {
			if s := p.RemoteWriteSigV4[i]; s != nil {
				blocks = append(blocks, block{fmt.Sprintf("%sremote_write[%d] %s", prefix, i, rw.URL.Redacted()), rw.URL.String(), s})
			}
		}
		for i, sc := range p.Prometheus.ScrapeConfigs {
			if s := p.ScrapeSigV4[sc.JobName]; s != nil {
				blocks = append(blocks, block{fmt.Sprintf("%sscrape_configs[%d] job %q", prefix, i, sc.JobName), "", s})
			}
		}
	}
	for _, b := range blocks {
		logger := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})).With("endpoint", b.name)
		bctx, cancel := context.WithTimeout(ctx, credentialTimeout)
		_, err := sigv4.NewRoundTripper(bctx, *sigv4Config(b.cfg, b.url), sendNothing{}, sigv4.Options{Logger: logger})
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %s: %w", c.File, b.name, err)
		}
	}
	return nil
}

// sendNothing is the transport under a signer built only to resolve its
// credentials: it is never meant to be called.
type sendNothing struct{}

func (sendNothing) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("check-config sends no request")
}

// applyGoGC applies runtime.gogc of the configuration, when set, over GOGC
// and defaultGCPercent (as Prometheus does), and returns the previous
// setting and whether it changed anything.
func applyGoGC(gogc *int) (previous int, applied bool) {
	if gogc == nil {
		return 0, false
	}
	return debug.SetGCPercent(*gogc), true
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

// pprofEnabled is --web.enable-pprof's value when given, else whether
// the listen address is a loopback one.
func pprofEnabled(given, value bool, listenAddr string) bool {
	if given {
		return value
	}
	return isLoopback(listenAddr)
}

// isLoopback says whether the listen address addr only accepts local
// connections: localhost or a loopback IP. An empty host listens on
// every interface.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parseExternalURL checks --web.external-url: empty, or an absolute
// http(s) URL with a host and no credentials (it ends up in links).
func parseExternalURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("--web.external-url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--web.external-url: %q is not an absolute http or https URL", u.Redacted())
	}
	if u.User != nil {
		return nil, fmt.Errorf("--web.external-url: %q carries credentials; links must not", u.Redacted())
	}
	return u, nil
}

// resolveRoutePrefix is --web.route-prefix when given, else the path of
// the external URL, else "/"; always starting with "/" and without a
// trailing one (but "/" itself).
func resolveRoutePrefix(flagValue string, external *url.URL) (string, error) {
	p := flagValue
	if p == "" && external != nil {
		p = external.Path
	}
	if p == "" {
		return "/", nil
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("--web.route-prefix: %q does not start with /", p)
	}
	if strings.ContainsAny(p, "?#{}") {
		return "", fmt.Errorf("--web.route-prefix: %q is not a plain path", p)
	}
	if p = strings.TrimRight(p, "/"); p == "" {
		return "/", nil
	}
	return p, nil
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
