package sigv4

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/logging"
)

// Config mirrors the `sigv4:` block of a Prometheus remote_write section.
// The zero value signs for "aps" with the default credential chain and the
// SDK's region.
type Config struct {
	Region    string // zero: AWS_REGION, AWS_DEFAULT_REGION or the profile's region
	AccessKey string // with SecretKey: static credentials; zero: the default chain
	SecretKey string // never logged nor put in an error
	Profile   string // shared config/credentials profile; zero: AWS_PROFILE or "default"
	RoleARN   string // when set, sts:AssumeRole this role with the credentials above
	Service   string // signing name; zero: DefaultService
}

// DefaultService is the signing name of Amazon Managed Service for Prometheus.
const DefaultService = "aps"

// Validate reports a configuration that cannot work. Messages name the YAML
// fields of the sigv4 block.
func (c Config) Validate() error {
	if (c.AccessKey == "") != (c.SecretKey == "") {
		return errors.New("sigv4: access_key and secret_key must be set together")
	}
	return nil
}

func (c Config) service() string {
	if c.Service == "" {
		return DefaultService
	}
	return c.Service
}

// Credentials are cached until this long before they expire, minus up to
// half of it at random so that many agents do not refresh at once. A
// refresh happens on the request path; a minute leaves room for a slow STS
// call while every request is still signed with credentials valid when sent.
const (
	credentialsExpiryWindow = time.Minute
	credentialsExpiryJitter = 0.5
)

// loadCredentials resolves the credential provider and region of cfg and
// retrieves credentials once, bounded by ctx, so that a configuration
// without credentials fails here, with the chain's error. The provider
// returned is a cache, safe for concurrent use.
func loadCredentials(ctx context.Context, cfg Config, logger *slog.Logger) (aws.CredentialsProvider, string, error) {
	tried := credentialSources(cfg)
	cacheOpts := func(o *aws.CredentialsCacheOptions) {
		o.ExpiryWindow = credentialsExpiryWindow
		o.ExpiryWindowJitterFrac = credentialsExpiryJitter
	}
	opts := []func(*config.LoadOptions) error{
		config.WithLogger(sdkLogger{logger}),
		config.WithCredentialsCacheOptions(cacheOpts),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
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
		return nil, "", fmt.Errorf("sigv4: load AWS config (%s): %w", tried, redact(err, cfg))
	}
	if awsCfg.Region == "" {
		return nil, "", fmt.Errorf("sigv4: no AWS region: none in the sigv4 config (region), AWS_REGION, AWS_DEFAULT_REGION or %s", profileName(cfg))
	}
	provider := awsCfg.Credentials
	if provider == nil {
		return nil, "", fmt.Errorf("sigv4: no AWS credentials (tried %s)", tried)
	}
	if cfg.RoleARN != "" {
		provider = stscreds.NewAssumeRoleProvider(sts.NewFromConfig(awsCfg), cfg.RoleARN)
	}
	if _, ok := provider.(*aws.CredentialsCache); !ok {
		provider = aws.NewCredentialsCache(provider, cacheOpts)
	}
	creds, err := provider.Retrieve(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("sigv4: retrieve AWS credentials (tried %s): %w", tried, redact(err, cfg))
	}
	attrs := []any{"source", creds.Source, "region", awsCfg.Region, "service", cfg.service(),
		"temporary", creds.SessionToken != ""}
	if cfg.RoleARN != "" {
		attrs = append(attrs, "role_arn", cfg.RoleARN)
	}
	if creds.CanExpire {
		attrs = append(attrs, "expires", creds.Expires)
	}
	logger.Info("sigv4 credentials loaded", attrs...)
	return provider, awsCfg.Region, nil
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
