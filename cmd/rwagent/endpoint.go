package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	config_util "github.com/prometheus/common/config"
	promconfig "github.com/prometheus/prometheus/config"

	"github.com/rwagent/rwagent/pkg/awsregion"
	"github.com/rwagent/rwagent/pkg/config"
	"github.com/rwagent/rwagent/pkg/remotewrite"
	"github.com/rwagent/rwagent/pkg/sigv4"
)

// endpointTransport is what cmd decides for one remote_write from its configuration
// and hands remotewrite.Options: how requests are sent, whether they are
// signed, and the receiver's limits.
type endpointTransport struct {
	transport http.RoundTripper
	signed    bool
	limits    remotewrite.Limits
}

// newEndpointTransport builds the transport of remote_write rw: the HTTP
// client of its http_client_config, wrapped by the SigV4 signer when sv (its
// sigv4 block) is set. Building the signer resolves credentials once, bounded
// by ctx, so that missing ones fail the start naming the endpoint. logger and
// metrics (registered by the caller, shared by the endpoints) are the signer's.
func newEndpointTransport(ctx context.Context, rw *promconfig.RemoteWriteConfig, sv *config.SigV4Config,
	logger *slog.Logger, metrics *sigv4.Metrics,
) (endpointTransport, error) {
	redacted := rw.URL.Redacted()
	rt, err := config_util.NewRoundTripperFromConfigWithContext(ctx, rw.HTTPClientConfig, "remote_storage_write_client")
	if err != nil {
		return endpointTransport{}, fmt.Errorf("build http transport for %s: %w", redacted, err)
	}
	e := endpointTransport{transport: rt, signed: sv != nil, limits: receiverLimits(rw.URL.String(), sv)}
	if sv != nil {
		e.transport, err = sigv4.NewRoundTripper(ctx, *sigv4Config(sv, rw.URL.String()), rt, sigv4.Options{Logger: logger, Metrics: metrics})
		if err != nil {
			return endpointTransport{}, fmt.Errorf("set up sigv4 for %s: %w", redacted, err)
		}
	}
	return e, nil
}

// receiverLimits are the limits of the receiver at url: AMP's for an AMP
// workspace URL, or for an endpoint signed for AMP's service (aps, the
// default) behind another name (a VPC endpoint, a proxy); none otherwise.
func receiverLimits(url string, sv *config.SigV4Config) remotewrite.Limits {
	if awsregion.IsAMP(url) || (sv != nil && (sv.Service == "" || sv.Service == sigv4.DefaultService)) {
		return remotewrite.AMPLimits()
	}
	return remotewrite.Limits{}
}

// sigv4Config is the one mapping of a sigv4 block (validated by pkg/config)
// to what the signer needs, for remote_write, signed scrapes,
// check-config --check-credentials and rwagent sign; nil stays nil. url
// helps find the region of an AMP endpoint.
func sigv4Config(c *config.SigV4Config, url string) *sigv4.Config {
	if c == nil {
		return nil
	}
	return &sigv4.Config{
		Region: c.Region, URL: url,
		AccessKey: c.AccessKey, SecretKey: c.SecretKey, SecretKeyFile: c.SecretKeyFile,
		Profile: c.Profile, RoleARN: c.RoleARN, ExternalID: c.ExternalID, RoleSessionName: c.RoleSessionName,
		STSRegion: c.STSRegion, STSEndpoint: c.STSEndpoint, Service: c.Service,
	}
}
