package sigv4

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Credential is one access key a Verifier accepts. SessionToken is set for
// temporary credentials; a request signed with them must then carry it in
// X-Amz-Security-Token.
type Credential struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
}

// Verifier checks SigV4-signed requests (Authorization header form; not
// presigned URLs) the way AWS does, independently of the AWS SDK. Region and
// Service must be set; with no Credentials every request is rejected. It is
// safe for concurrent use as long as its fields are not changed after the
// first Verify. For every service but "s3" the canonical path is normalised
// and encoded again, as AWS does.
type Verifier struct {
	Region, Service string           // the credential scope requests must be signed for, e.g. "us-east-1", "aps"
	Credentials     []Credential     // accepted credentials; the first with a matching AccessKeyID is used
	Now             func() time.Time // zero: time.Now
	MaxSkew         time.Duration    // how far X-Amz-Date may be from Now; zero: 5m
}

// DefaultMaxSkew is how far AMP lets a request's date be from its clock.
const DefaultMaxSkew = 5 * time.Minute

// Verify checks that r, whose body is body, is signed by one of
// v.Credentials for v.Region and v.Service. It returns nil or a *VerifyError
// holding AWS's code and message for the first check that fails, in AWS's
// order: Authorization present, well-formed, dated within MaxSkew, signs
// Host, algorithm, credential scope, access key, X-Amz-Content-Sha256,
// signature, session token. The path and query are read as sent (from
// r.RequestURI on a server). Verify does not read r.Body; body is not kept.
func (v *Verifier) Verify(r *http.Request, body []byte) error {
	if err := v.verify(r, body); err != nil {
		return err
	}
	return nil
}

func (v *Verifier) verify(r *http.Request, body []byte) *VerifyError {
	authz := strings.TrimSpace(r.Header.Get("Authorization"))
	if authz == "" {
		return newVerifyError(CodeMissingAuthenticationToken, msgMissingAuthenticationToken)
	}
	a, verr := parseAuthorization(authz)
	if verr != nil {
		return verr
	}

	rawDate := r.Header.Get("X-Amz-Date")
	dateFromHTTP := rawDate == ""
	if dateFromHTTP {
		rawDate = r.Header.Get("Date")
	}
	if msg := a.missing(rawDate != ""); msg != "" {
		return newVerifyError(CodeIncompleteSignature, msg+"Authorization="+authz)
	}
	signedAt, err := parseRequestDate(rawDate, dateFromHTTP)
	if err != nil {
		return newVerifyError(CodeIncompleteSignature,
			fmt.Sprintf("Date must be in ISO-8601 'basic format'. Got '%s'. See http://en.wikipedia.org/wiki/ISO_8601", rawDate))
	}
	if verr := v.checkSkew(signedAt); verr != nil {
		return verr
	}
	if !a.signs("host") {
		return newVerifyError(CodeInvalidSignature, msgHostNotSigned)
	}
	if a.algorithm != signingAlgorithm {
		return newVerifyError(CodeIncompleteSignature,
			fmt.Sprintf("Unsupported AWS 'algorithm': '%s' (only %s for now). ", a.algorithm, signingAlgorithm))
	}
	scope := strings.Split(strings.TrimRight(a.credential, "/"), "/")
	if len(scope) != 5 {
		return newVerifyError(CodeIncompleteSignature,
			fmt.Sprintf("Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '%s'", a.credential))
	}
	if verr := v.checkScope(scope[1:], signedAt); verr != nil {
		return verr
	}
	cred, ok := v.credential(scope[0])
	if !ok {
		return newVerifyError(CodeUnrecognizedClient, msgInvalidClientToken)
	}

	// Services other than S3 hash the body they received; a body that differs
	// from the one signed fails as a signature mismatch.
	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	path, rawQuery := requestTarget(r)
	notS3 := v.Service != serviceS3
	creq := canonicalRequest(r, path, rawQuery, a.signedHeaders, payloadHash, notS3, notS3)
	sts := stringToSign(signedAt, strings.Join(scope[1:], "/"), creq)
	if claimed := r.Header.Get("X-Amz-Content-Sha256"); claimed != "" && claimed != payloadHash {
		return mismatchError(creq, sts)
	}
	want := signature(signingKey(cred.SecretAccessKey, signedAt, v.Region, v.Service), sts)
	if subtle.ConstantTimeCompare([]byte(want), []byte(a.signature)) != 1 {
		return mismatchError(creq, sts)
	}

	token := r.Header.Get("X-Amz-Security-Token")
	if subtle.ConstantTimeCompare([]byte(token), []byte(cred.SessionToken)) != 1 {
		return newVerifyError(CodeUnrecognizedClient, msgInvalidSessionToken)
	}
	return nil
}

// mismatchError is AWS's signature mismatch answer, which shows the canonical
// request and string to sign the service computed. The session token's value
// is replaced by <redacted> there (AWS shows it) so that a client logging the
// answer does not log the token; the string to sign is the real one.
func mismatchError(creq, sts string) *VerifyError {
	return newVerifyError(CodeInvalidSignature, msgSignatureMismatch+
		"\n\nThe Canonical String for this request should have been\n'"+redactToken(creq)+
		"'\n\nThe String-to-Sign should have been\n'"+sts+"'\n")
}

func redactToken(creq string) string {
	const prefix = "\nx-amz-security-token:"
	i := strings.Index(creq, prefix)
	if i < 0 {
		return creq
	}
	start := i + len(prefix)
	end := strings.IndexByte(creq[start:], '\n')
	if end < 0 {
		return creq
	}
	return creq[:start] + "<redacted>" + creq[start+end:]
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) checkSkew(signedAt time.Time) *VerifyError {
	skew := v.MaxSkew
	if skew <= 0 {
		skew = DefaultMaxSkew
	}
	now := v.now().UTC()
	f := func(t time.Time) string { return t.UTC().Format(amzDateFormat) }
	if earliest := now.Add(-skew); signedAt.Before(earliest) {
		return newVerifyError(CodeInvalidSignature, fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - %s.)",
			f(signedAt), f(earliest), f(now), skewText(skew)))
	}
	if latest := now.Add(skew); signedAt.After(latest) {
		return newVerifyError(CodeInvalidSignature, fmt.Sprintf("Signature not yet current: %s is still later than %s (%s + %s.)",
			f(signedAt), f(latest), f(now), skewText(skew)))
	}
	return nil
}

// skewText writes a skew as AWS does: "5 min".
func skewText(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%d min", d/time.Minute)
	}
	return d.String()
}

// checkScope checks date/region/service/terminator of the credential scope
// and reports every mismatch in one message, as AWS does.
func (v *Verifier) checkScope(scope []string, signedAt time.Time) *VerifyError {
	var msg strings.Builder
	if scope[1] != v.Region {
		fmt.Fprintf(&msg, "Credential should be scoped to a valid region, not '%s'. ", scope[1])
	}
	if scope[2] != v.Service {
		fmt.Fprintf(&msg, "Credential should be scoped to correct service: '%s'. ", v.Service)
	}
	if scope[3] != scopeTerminator {
		fmt.Fprintf(&msg, "Credential should be scoped with a valid terminator: '%s', not '%s'. ", scopeTerminator, scope[3])
	}
	if day := signedAt.UTC().Format(scopeDateFormat); scope[0] != day {
		fmt.Fprintf(&msg, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.",
			scope[0], day, signedAt.UTC().Format(amzDateFormat))
	}
	if msg.Len() == 0 {
		return nil
	}
	return newVerifyError(CodeInvalidSignature, msg.String())
}

func (v *Verifier) credential(accessKeyID string) (Credential, bool) {
	for _, c := range v.Credentials {
		if c.AccessKeyID == accessKeyID {
			return c, true
		}
	}
	return Credential{}, false
}

// parseRequestDate reads X-Amz-Date (ISO 8601 basic format) or, when
// fromHTTP, the HTTP Date header.
func parseRequestDate(s string, fromHTTP bool) (time.Time, error) {
	if fromHTTP {
		if t, err := http.ParseTime(s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Parse(amzDateFormat, s)
}

// authorization is a parsed SigV4 Authorization header.
type authorization struct {
	algorithm     string
	credential    string // keyid/date/region/service/aws4_request
	signedHeaders string // lower-case names joined by ';'
	signature     string // hex
}

// parseAuthorization splits an Authorization header the way AWS does: the
// algorithm up to the first space, then key=value parameters separated by
// commas and/or white space. A parameter without '=' is an
// IncompleteSignatureException.
func parseAuthorization(h string) (authorization, *VerifyError) {
	var a authorization
	alg, rest, _ := strings.Cut(h, " ")
	a.algorithm = alg
	for _, tok := range strings.FieldsFunc(rest, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t'
	}) {
		k, val, ok := strings.Cut(tok, "=")
		if !ok {
			return authorization{}, newVerifyError(CodeIncompleteSignature,
				fmt.Sprintf("'%s' not a valid key=value pair (missing equal-sign) in Authorization header: '%s'.", tok, h))
		}
		switch k {
		case "Credential":
			a.credential = val
		case "SignedHeaders":
			a.signedHeaders = val
		case "Signature":
			a.signature = val
		}
	}
	return a, nil
}

// missing returns AWS's message naming each absent parameter and a missing
// date, or "" when nothing is missing.
func (a authorization) missing(haveDate bool) string {
	var msg strings.Builder
	for _, p := range []struct{ name, val string }{
		{"Credential", a.credential}, {"Signature", a.signature}, {"SignedHeaders", a.signedHeaders},
	} {
		if p.val == "" {
			fmt.Fprintf(&msg, "Authorization header requires '%s' parameter. ", p.name)
		}
	}
	if !haveDate {
		msg.WriteString("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ")
	}
	return msg.String()
}

// signs reports whether the lower-case header name is in SignedHeaders.
func (a authorization) signs(name string) bool {
	for h := range strings.SplitSeq(a.signedHeaders, ";") {
		if strings.EqualFold(h, name) {
			return true
		}
	}
	return false
}
