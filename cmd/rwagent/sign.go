package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/rwagent/rwagent/pkg/config"
	"github.com/rwagent/rwagent/pkg/sigv4"
)

// headerFlags collects repeated -H 'Name: value' flags.
type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

// signCommand is `rwagent sign`: sign one request with the agent's credential
// chain and send it (like awscurl), or with --dry-run print what was signed.
// It is the first thing to reach for when a receiver answers 403.
func signCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rwagent sign", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		block   config.SigV4Config // the flags are a sigv4 block's fields
		method  = fs.String("X", "", "HTTP method. Default: GET, or POST with -d.")
		data    = fs.String("d", "", "Request body; @FILE reads it from FILE.")
		dryRun  = fs.Bool("dry-run", false, "Print the canonical request, string to sign and signed headers; send nothing.")
		timeout = fs.Duration("timeout", 30*time.Second, "Timeout of the request.")
		headers headerFlags
	)
	fs.StringVar(&block.Region, "region", "", "Signing region. Default: from an AMP URL, else the AWS SDK's (AWS_REGION, profile).")
	fs.StringVar(&block.Service, "service", sigv4.DefaultService, "Signing service name (execute-api for an API Gateway).")
	fs.StringVar(&block.Profile, "profile", "", "Shared config profile. Default: AWS_PROFILE or default.")
	fs.StringVar(&block.RoleARN, "role-arn", "", "Role to assume with sts:AssumeRole on top of the credentials found.")
	fs.StringVar(&block.ExternalID, "external-id", "", "External id for --role-arn.")
	fs.Var(&headers, "H", "Header 'Name: value' to send (and sign); repeatable.")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage:\n  rwagent sign [--region R] [--service aps] [-X METHOD] [-d DATA|@FILE] [-H 'K: V']... [--dry-run] URL\n\n"+
			"Signs one request with SigV4, with credentials from the same chain the agent uses, sends it and\n"+
			"prints the status and body. Flags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	target := fs.Arg(0)
	var body []byte
	if *data != "" {
		if name, ok := strings.CutPrefix(*data, "@"); ok {
			b, err := os.ReadFile(name)
			if err != nil {
				fmt.Fprintf(stderr, "rwagent sign: read -d file: %v\n", err)
				return 2
			}
			body = b
		} else {
			body = []byte(*data)
		}
	}
	m := *method
	if m == "" {
		m = http.MethodGet
		if body != nil {
			m = http.MethodPost
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, strings.ToUpper(m), target, bytes.NewReader(body))
	if err != nil {
		fmt.Fprintf(stderr, "rwagent sign: %v\n", err)
		return 2
	}
	if body == nil {
		req.Body, req.GetBody, req.ContentLength = http.NoBody, nil, 0
	}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			fmt.Fprintf(stderr, "rwagent sign: -H %q is not 'Name: value'\n", h)
			return 2
		}
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if err := block.Validate(); err != nil {
		if e, ok := errors.AsType[*config.Error](err); ok {
			// The field is a flag here: external_id is -external-id.
			err = fmt.Errorf("-%s: %s", strings.ReplaceAll(e.Field, "_", "-"), e.Msg)
		}
		fmt.Fprintf(stderr, "rwagent sign: %v\n", err)
		return 2
	}
	cfg := *sigv4Config(&block, target)
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts := sigv4.Options{Logger: logger}

	if *dryRun {
		e, err := sigv4.Explain(ctx, cfg, req, opts)
		if err != nil {
			fmt.Fprintf(stderr, "rwagent sign: %v\n", err)
			return 1
		}
		fmt.Fprint(stdout, e.String())
		return 0
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	rt, err := sigv4.NewRoundTripper(ctx, cfg, tr, opts)
	if err != nil {
		fmt.Fprintf(stderr, "rwagent sign: %v\n", err)
		return 1
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		fmt.Fprintf(stderr, "rwagent sign: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	fmt.Fprintf(stdout, "%s %s\n", resp.Proto, resp.Status)
	if _, err := io.Copy(stdout, resp.Body); err != nil {
		fmt.Fprintf(stderr, "rwagent sign: read response: %v\n", err)
		return 1
	}
	if resp.StatusCode/100 != 2 {
		return 1
	}
	return 0
}
