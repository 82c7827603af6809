package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Explanation is what signing one request produced, for `rwagent sign
// --dry-run`: the canonical request and string to sign AWS will compute
// again, and the headers sent. The session token's value is replaced by
// <redacted> in CanonicalRequest and Header; nothing here is a secret.
type Explanation struct {
	CanonicalRequest string
	StringToSign     string
	Header           http.Header // the signed request's headers, Host first-class in Host
	Host             string
	Source           string // credential source, e.g. EnvConfigCredentials
	Region, Service  string
}

// Explain signs a copy of req (whose body, if any, must be replayable
// through GetBody) the way the round tripper would, with credentials from
// the same chain, and returns what was signed. It sends nothing.
func Explain(ctx context.Context, cfg Config, req *http.Request, opts Options) (*Explanation, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	if cfg.URL == "" {
		cfg.URL = req.URL.String()
	}
	creds, region, err := loadCredentials(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	c, err := creds.Retrieve(ctx)
	if err != nil {
		return nil, err
	}
	body := []byte{}
	if req.GetBody != nil {
		rc, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		body, err = io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
	} else if req.Body != nil && req.Body != http.NoBody {
		return nil, errors.New("sigv4: explain a request whose body has no GetBody")
	}
	out := req.Clone(ctx)
	out.Body = io.NopCloser(bytes.NewReader(body))
	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	service := cfg.service()
	p := signParams{service: service, region: region, setContentSHA256: true, normalizePath: service != serviceS3}
	t := now()
	if err := signRequest(ctx, v4.NewSigner(), out, payloadHash, c, t, p); err != nil {
		return nil, err
	}
	a, verr := parseAuthorization(out.Header.Get("Authorization"))
	if verr != nil {
		return nil, verr
	}
	notS3 := service != serviceS3
	creq := canonicalRequest(out, urlPath(out.URL), out.URL.RawQuery, a.signedHeaders, payloadHash, notS3, notS3)
	e := &Explanation{
		CanonicalRequest: redactToken(creq),
		StringToSign:     stringToSign(t, credentialScope(t, region, service), creq),
		Header:           out.Header.Clone(),
		Host:             headerValues(out, "host")[0],
		Source:           c.Source,
		Region:           region,
		Service:          service,
	}
	if e.Header.Get("X-Amz-Security-Token") != "" {
		e.Header.Set("X-Amz-Security-Token", "<redacted>")
	}
	return e, nil
}

// String writes e as `rwagent sign --dry-run` prints it.
func (e *Explanation) String() string {
	var b strings.Builder
	b.WriteString("# Canonical request\n" + e.CanonicalRequest + "\n\n# String to sign\n" + e.StringToSign +
		"\n\n# Signed headers (region " + e.Region + ", service " + e.Service + ", credentials from " + e.Source + ")\n")
	b.WriteString("Host: " + e.Host + "\n")
	_ = e.Header.Write(&b)
	return b.String()
}
