// Package awsemu holds local stand-ins for the AWS services that hand out
// credentials: EC2 instance metadata (IMDSv2), the ECS / EKS Pod Identity
// container credentials endpoint, and STS (AssumeRole,
// AssumeRoleWithWebIdentity), plus a credential_process answer. Each is an
// http.Handler to serve on 127.0.0.1; the AWS SDK reaches them through its
// usual environment variables (AWS_EC2_METADATA_SERVICE_ENDPOINT,
// AWS_CONTAINER_CREDENTIALS_FULL_URI, AWS_ENDPOINT_URL_STS).
//
// Every stand-in mints credentials through an Issuer, which makes them
// expire within seconds and remembers them, so that a receiver can accept
// exactly the credentials valid at the moment (Issuer.Valid) and a test can
// watch them rotate under a long-running sender.
//
// Issued secret keys and session tokens start with SecretMarker and
// TokenMarker, so that a test can search logs for any of them.
package awsemu

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync"
	"time"

	"github.com/rwagent/rwagent/pkg/sigv4"
)

// DefaultTTL is how long issued credentials last when Issuer.TTL is zero:
// long enough for a request to cross loopback many times over, short
// enough that a test sees several rotations in a few seconds.
const DefaultTTL = 3 * time.Second

// Markers at the start of every issued secret key and session token.
const (
	SecretMarker = "awsemuSECRET"
	TokenMarker  = "awsemuTOKEN"
)

// Issued is one set of temporary credentials an Issuer handed out.
type Issued struct {
	sigv4.Credential
	IssuedAt, Expires time.Time
}

// Issuer mints temporary credentials and remembers them. Its exported
// fields must be set before first use and not changed after. It is safe for
// concurrent use. The zero value issues "ASIA"-prefixed keys lasting
// DefaultTTL.
type Issuer struct {
	// Prefix starts every access key id, after "ASIA" (the prefix of AWS
	// temporary keys); it names the stand-in in a test's failure.
	Prefix string
	TTL    time.Duration    // zero: DefaultTTL
	Now    func() time.Time // zero: time.Now

	mu     sync.Mutex
	issued []Issued
}

func (i *Issuer) now() time.Time {
	if i.Now != nil {
		return i.Now()
	}
	return time.Now()
}

// Issue mints, records and returns new credentials.
func (i *Issuer) Issue() Issued {
	ttl := i.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	now := i.now()
	i.mu.Lock()
	defer i.mu.Unlock()
	c := Issued{
		Credential: sigv4.Credential{
			AccessKeyID:     fmt.Sprintf("ASIA%s%04d%s", i.Prefix, len(i.issued), random(4)),
			SecretAccessKey: SecretMarker + random(24),
			SessionToken:    TokenMarker + random(48),
		},
		IssuedAt: now,
		// Expiration travels as RFC 3339 with whole seconds at most; keep
		// what the SDK will read.
		Expires: now.Add(ttl).Truncate(time.Second).Add(time.Second),
	}
	i.issued = append(i.issued, c)
	return c
}

// Issued returns a copy of every credential issued so far, oldest first.
func (i *Issuer) Issued() []Issued {
	i.mu.Lock()
	defer i.mu.Unlock()
	return append([]Issued(nil), i.issued...)
}

// Valid returns the credentials that have not expired at the Issuer's now,
// for a sigv4.Verifier. The slice is the caller's.
func (i *Issuer) Valid() []sigv4.Credential {
	now := i.now()
	i.mu.Lock()
	defer i.mu.Unlock()
	var out []sigv4.Credential
	for _, c := range i.issued {
		if now.Before(c.Expires) {
			out = append(out, c.Credential)
		}
	}
	return out
}

// random returns n bytes from crypto/rand as unpadded URL-safe base64.
func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}
