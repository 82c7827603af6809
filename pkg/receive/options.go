// Package receive is an in-process stand-in for an Amazon Managed Service for
// Prometheus (AMP) workspace: it checks each request with an optional
// signature hook, stores remote-write requests (1.0 and 2.0) in a local
// Prometheus TSDB and answers AMP's Prometheus-compatible query API over it
// with Prometheus' PromQL engine.
//
// It serves the demo, the end-to-end tests and users without an AWS account.
// cmd/ampemu is its main.
//
// What it copies from AMP, with sources:
//   - Paths: POST /workspaces/<id>/api/v1/remote_write, GET|POST
//     /workspaces/<id>/api/v1/query, query_range, series, labels,
//     label/<name>/values, query_exemplars, GET metadata ("Prometheus-compatible APIs",
//     https://docs.aws.amazon.com/prometheus/latest/userguide/AMP-APIReference-Prometheus-Compatible-Apis.html).
//   - A successful remote write answers 200 with an empty body, and every
//     answer carries Date and x-amzn-RequestId headers (sample response in
//     https://docs.aws.amazon.com/prometheus/latest/userguide/AMP-APIReference-RemoteWrite.html).
//   - Errors carry an x-amzn-ErrorType header and a JSON body {"message": ...}
//     (AMP's API reference lists x-amzn-errortype among the exposed headers;
//     botocore's amp ResourceNotFoundException has message, resourceId and
//     resourceType: https://docs.aws.amazon.com/botocore/latest/reference/services/amp/client/exceptions/ResourceNotFoundException.html).
//   - Bodies over about 1 MB are refused with 413 (users report AMP's 1 MB
//     payload limit: https://github.com/open-telemetry/opentelemetry-collector-contrib/issues/20289;
//     AMP's quota page does not list it).
//   - AMP's ingestion quotas, HA deduplication and their error texts: see
//     Limits for each number's source and serveRemoteWrite for the order.
//   - /api/v1/metadata answers the metadata remote write sent (kept in
//     memory, not in the TSDB).
//
// A test that wants some other 4xx or a 5xx can return one from
// Options.Verify with Reject.
package receive

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rwagent/rwagent/pkg/ampquota"
)

// DefaultWorkspaceID is the workspace served when Options.WorkspaceID is empty.
const DefaultWorkspaceID = "ws-local"

// DefaultMaxBodyBytes caps a request body (as sent, i.e. snappy-compressed for
// remote write) at AMP's limit, above which it answers 413 (ampquota.RequestBytes).
// A sender with Prometheus' default of 2,000 samples per request sends well
// under 100 KiB.
const DefaultMaxBodyBytes = ampquota.RequestBytes

// OutOfOrderWindow is how far behind the newest sample of the workspace a
// sample may be and still be stored. Senders that retry or replay a WAL after
// an outage send old samples; a week keeps every realistic replay.
const OutOfOrderWindow = 7 * 24 * time.Hour

// maxWorkspaceIDLen is AMP's limit on workspace ids (UpdateWorkspaceConfiguration:
// "Length Constraints: Minimum length of 1. Maximum length of 64.").
const maxWorkspaceIDLen = 64

// Options configures a Server. Only Dir is required.
type Options struct {
	// Dir is the TSDB directory. Required. It is created if missing.
	Dir string
	// WorkspaceID is the only workspace served; requests for any other id get
	// 404. Zero: DefaultWorkspaceID.
	WorkspaceID string
	// Verify checks each request once its body is read (and found within
	// MaxBodyBytes), before the workspace id is looked at. body is the raw
	// request body, also readable from r.Body (empty for a GET); Verify must
	// not keep either past its return. A returned StatusError (see Reject) sets the
	// status, x-amzn-ErrorType and message of the answer; any other error
	// answers 403 AccessDeniedException with its text. Nil: no check.
	// It is called concurrently.
	Verify func(r *http.Request, body []byte) error
	// Now is the server's clock, used for the Date header and as the default
	// evaluation time of queries. Zero: time.Now.
	Now func() time.Time
	// Logger receives request errors. Nil: logs are discarded.
	Logger *slog.Logger
	// Registerer gets the ampemu_* metrics and, prefixed with "ampemu_", those
	// of the TSDB, the PromQL engine and the remote-write handler. Everything
	// is unregistered by Close, so a Server can be reopened on the same
	// Registerer; two open Servers cannot share one. Nil: nothing is
	// registered.
	Registerer prometheus.Registerer
	// MaxBodyBytes caps request bodies; larger ones get 413. Zero:
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Limits are AMP's ingestion quotas and HA deduplication. A zero field
	// takes AMP's default (DefaultLimits); a negative number turns that
	// limit off. They are timed by Now.
	Limits Limits
}

// Validate reports the first invalid field. Zero fields that have defaults are
// valid.
func (o *Options) Validate() error {
	if o.Dir == "" {
		return errors.New("receive: Options.Dir (TSDB directory) is required")
	}
	if id := o.WorkspaceID; id != "" {
		if len(id) > maxWorkspaceIDLen {
			return fmt.Errorf("receive: Options.WorkspaceID %q is longer than %d characters", id, maxWorkspaceIDLen)
		}
		if strings.ContainsAny(id, "/?#% ") {
			return fmt.Errorf("receive: Options.WorkspaceID %q has a character that cannot be in a URL path segment", id)
		}
	}
	if o.MaxBodyBytes < 0 {
		return fmt.Errorf("receive: Options.MaxBodyBytes %d is negative", o.MaxBodyBytes)
	}
	return o.Limits.Validate()
}

// withDefaults returns o with every zero field that has a default set.
func (o Options) withDefaults() Options {
	if o.WorkspaceID == "" {
		o.WorkspaceID = DefaultWorkspaceID
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	o.Limits = o.Limits.withDefaults()
	return o
}
