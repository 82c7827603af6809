package sigv4

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/logging"

	"github.com/rwagent/rwagent/pkg/awsregion"
)

// Config is what a signer needs: the region, the service, and where its
// credentials come from. It is not a configuration block: the caller builds
// it from one it has validated (cmd/rwagent from pkg/config's SigV4Config,
// whose Validate is the one check of a sigv4 block), and it is used as it
// is. The zero value signs for "aps" with the default credential chain and
// the SDK's region.
type Config struct {
	// Region is the signing region. Zero: the region in URL's host (an AMP
	// or other *.amazonaws.com endpoint), else AWS_REGION,
	// AWS_DEFAULT_REGION or the profile's region.
	Region string
	// URL is the endpoint signed for, used only to find the region when
	// Region is empty. It may be empty.
	URL       string
	AccessKey string // with SecretKey: static credentials; zero: the default chain
	SecretKey string // never logged nor put in an error
	// SecretKeyFile holds the secret key when SecretKey is empty; it is
	// read once, by NewRoundTripper. Surrounding white space is dropped.
	SecretKeyFile string
	Profile       string // shared config/credentials profile; zero: AWS_PROFILE or "default"
	// RoleARN, when set, is assumed with sts:AssumeRole using the
	// credentials above; ExternalID and RoleSessionName go with the call
	// (RoleSessionName zero: one the SDK makes up).
	RoleARN, ExternalID, RoleSessionName string
	// STSRegion is the region of the STS endpoint for RoleARN. Zero: Region.
	STSRegion string
	// STSEndpoint is the STS endpoint URL for RoleARN (a VPC endpoint,
	// say). Zero: AWS_ENDPOINT_URL_STS, else the regional endpoint.
	STSEndpoint string
	Service     string // signing name; zero: DefaultService
}

// DefaultService is the signing name of Amazon Managed Service for Prometheus.
const DefaultService = "aps"

func (c Config) service() string {
	if c.Service == "" {
		return DefaultService
	}
	return c.Service
}

// loadCredentials resolves the credential provider and region of cfg and
// retrieves credentials once, bounded by ctx, so that a configuration
// without credentials fails here, with the chain's error. The provider
// returned is safe for concurrent use.
func loadCredentials(ctx context.Context, cfg Config, logger *slog.Logger) (*credentialCache, string, error) {
	tried := credentialSources(cfg)
	if cfg.SecretKeyFile != "" {
		b, err := os.ReadFile(cfg.SecretKeyFile)
		if err != nil {
			return nil, "", fmt.Errorf("sigv4: read secret_key_file: %w", err)
		}
		cfg.SecretKey = strings.TrimSpace(string(b))
	}
	redactErr := func(err error) error { return redact(err, cfg) }
	opts := []func(*config.LoadOptions) error{
		config.WithLogger(sdkLogger{logger}),
		// No expiry window (the SDK sets 5 minutes for container
		// credentials): credentialCache decides when to refresh, and
		// must see when credentials really expire.
		config.WithCredentialsCacheOptions(func(o *aws.CredentialsCacheOptions) {
			o.ExpiryWindow, o.ExpiryWindowJitterFrac = 0, 0
		}),
	}
	region, regionFrom := cfg.Region, "region of the sigv4 config"
	if region == "" {
		if region = awsregion.FromURL(cfg.URL); region != "" {
			regionFrom = "host of " + redactURL(cfg.URL)
		}
	}
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	if cfg.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(cfg.Profile))
	}
	if cfg.AccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, "", fmt.Errorf("sigv4: load AWS config (%s): %w", tried, redactErr(err))
	}
	if awsCfg.Region == "" {
		return nil, "", fmt.Errorf("sigv4: no AWS region: none in the sigv4 config (region), the URL's host "+
			"(<service>.<region>.amazonaws.com), AWS_REGION, AWS_DEFAULT_REGION or %s", profileName(cfg))
	}
	if region == "" {
		regionFrom = "AWS SDK (AWS_REGION, AWS_DEFAULT_REGION or " + profileName(cfg) + ")"
	}
	provider := awsCfg.Credentials
	if provider == nil {
		return nil, "", fmt.Errorf("sigv4: no AWS credentials (tried %s)", tried)
	}
	if cfg.RoleARN != "" {
		stsClient := sts.NewFromConfig(awsCfg, func(o *sts.Options) {
			if cfg.STSRegion != "" {
				o.Region = cfg.STSRegion
			}
			if cfg.STSEndpoint != "" {
				o.BaseEndpoint = aws.String(cfg.STSEndpoint)
			}
		})
		provider = stscreds.NewAssumeRoleProvider(stsClient, cfg.RoleARN, func(o *stscreds.AssumeRoleOptions) {
			if cfg.ExternalID != "" {
				o.ExternalID = aws.String(cfg.ExternalID)
			}
			o.RoleSessionName = cfg.RoleSessionName
		})
	}
	src, ok := provider.(*aws.CredentialsCache)
	if !ok {
		src = aws.NewCredentialsCache(provider)
	}
	cache := newCredentialCache(src, logger, redactErr)
	creds, err := cache.load(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("sigv4: retrieve AWS credentials (tried %s): %w", tried, redactErr(err))
	}
	attrs := []any{"source", creds.Source, "access_key_id", keyIDPrefix(creds.AccessKeyID),
		"region", awsCfg.Region, "region_from", regionFrom, "service", cfg.service(),
		"temporary", creds.SessionToken != ""}
	if cfg.RoleARN != "" {
		attrs = append(attrs, "role_arn", cfg.RoleARN)
	}
	if creds.CanExpire {
		attrs = append(attrs, "expires", creds.Expires)
	}
	logger.Info("sigv4 credentials loaded", attrs...)
	return cache, awsCfg.Region, nil
}

// credentialSources describes, for errors, where cfg makes the SDK look for
// credentials.
func credentialSources(cfg Config) string {
	var s string
	switch {
	case cfg.AccessKey != "":
		s = "static access_key/secret_key of the sigv4 config"
	case cfg.Profile != "":
		s = fmt.Sprintf("shared config and credentials files, profile %q", cfg.Profile)
	default:
		s = "environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), web identity (AWS_WEB_IDENTITY_TOKEN_FILE), " +
			"shared config and credentials files (" + profileName(cfg) + "), " +
			"container credentials endpoint (AWS_CONTAINER_CREDENTIALS_*), EC2 instance metadata"
	}
	if cfg.RoleARN != "" {
		s += ", then sts:AssumeRole " + cfg.RoleARN
	}
	return s
}

func profileName(cfg Config) string {
	switch {
	case cfg.Profile != "":
		return fmt.Sprintf("profile %q", cfg.Profile)
	case os.Getenv("AWS_PROFILE") != "":
		return fmt.Sprintf("profile %q of AWS_PROFILE", os.Getenv("AWS_PROFILE"))
	}
	return `profile "default"`
}

// redact hides the secrets this process knows of in err's text: the
// configured secret key and the environment's secret key and session token.
// errors.Is and errors.As still see err.
func redact(err error, cfg Config) error {
	return &redactedError{err: err, secrets: []string{
		cfg.SecretKey, os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_SESSION_TOKEN"),
	}}
}

type redactedError struct {
	err     error
	secrets []string
}

func (e *redactedError) Error() string {
	s := e.err.Error()
	for _, secret := range e.secrets {
		if len(secret) >= 4 {
			s = strings.ReplaceAll(s, secret, "<redacted>")
		}
	}
	return s
}

func (e *redactedError) Unwrap() error { return e.err }

// sdkLogger sends the AWS SDK's log lines to slog: warnings as warnings,
// everything else at debug. Signing logs stay off, so no line holds a token.
type sdkLogger struct{ l *slog.Logger }

func (s sdkLogger) Logf(c logging.Classification, format string, v ...any) {
	level := slog.LevelDebug
	if c == logging.Warn {
		level = slog.LevelWarn
	}
	s.l.Log(context.Background(), level, "aws sdk: "+fmt.Sprintf(format, v...))
}
