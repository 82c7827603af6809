package sigv4

import (
	"bytes"
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file builds the SigV4 canonical request and string to sign from a
// request as it arrived, independently of the AWS SDK, for the Verifier. The
// rules are those of AWS's "Create a signed AWS API request" (IAM user guide)
// and AWS's test suite (aws-c-auth's aws-signing-test-suite/v4, read by
// TestSuite_Verifier):
//   - the canonical URI is the path as sent, normalised (dot segments and
//     empty segments removed) and URI-encoded once more, for every service but
//     S3, which uses the path as sent;
//   - the canonical query sorts the URI-encoded name=value pairs after encoding;
//   - each signed header's values are trimmed, runs of spaces and folded lines
//     become one space, and repeated headers are joined with commas.

const (
	signingAlgorithm = "AWS4-HMAC-SHA256"
	amzDateFormat    = "20060102T150405Z"
	scopeDateFormat  = "20060102"
	scopeTerminator  = "aws4_request"
	// emptyPayloadHash is the hex SHA-256 of an empty body.
	emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	serviceS3        = "s3"
)

// normalizePath removes "." and ".." segments and empty segments ("//") from
// an escaped URI path, keeping a trailing slash. It returns "/" for an empty
// result. AWS normalises the path this way for every service but S3
// ("/a/./b/../c//" → "/a/c/"). It returns p itself when p is already normal.
func normalizePath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] == '/' && !strings.Contains(p, "//") && !strings.Contains(p, "/.") {
		return p
	}
	segs := make([]string, 0, strings.Count(p, "/")+1)
	for seg := range strings.SplitSeq(p, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, seg)
		}
	}
	if len(segs) == 0 {
		return "/"
	}
	var b strings.Builder
	b.Grow(len(p))
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(s)
	}
	if strings.HasSuffix(p, "/") {
		b.WriteByte('/')
	}
	return b.String()
}

const upperHex = "0123456789ABCDEF"

// isUnreserved reports whether SigV4 leaves c unencoded (RFC 3986 unreserved).
func isUnreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '~'
}

// appendURIEncode appends s to dst with every byte outside the unreserved set
// percent-encoded in upper-case hex. A '/' is kept unless encodeSlash is set.
func appendURIEncode(dst []byte, s string, encodeSlash bool) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) || c == '/' && !encodeSlash {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
	}
	return dst
}

// appendCanonicalURI appends the canonical URI of wirePath, the escaped path
// as sent on the request line: normalised when normalize is set, URI-encoded
// once more when encode is set. AWS does both for every service but S3, and
// neither for S3.
func appendCanonicalURI(dst []byte, wirePath string, normalize, encode bool) []byte {
	if wirePath == "" {
		wirePath = "/"
	}
	if normalize {
		wirePath = normalizePath(wirePath)
	}
	if !encode {
		return append(dst, wirePath...)
	}
	return appendURIEncode(dst, wirePath, false)
}

// queryPair is one encoded name=value of a canonical query.
type queryPair struct{ name, value string }

// appendCanonicalQuery appends the canonical query string of rawQuery, the
// query as sent. Each name and value is decoded (a '+' is a space, as
// url.ParseQuery reads it; an undecodable one is taken as it is), encoded
// again and the pairs sorted by encoded name, then value.
func appendCanonicalQuery(dst []byte, rawQuery string) []byte {
	if rawQuery == "" {
		return dst
	}
	pairs := make([]queryPair, 0, strings.Count(rawQuery, "&")+1)
	for part := range strings.SplitSeq(rawQuery, "&") {
		if part == "" {
			continue
		}
		name, value, _ := strings.Cut(part, "=")
		pairs = append(pairs, queryPair{encodeQueryComponent(name), encodeQueryComponent(value)})
	}
	slices.SortFunc(pairs, func(a, b queryPair) int {
		return cmp.Or(strings.Compare(a.name, b.name), strings.Compare(a.value, b.value))
	})
	for i, p := range pairs {
		if i > 0 {
			dst = append(dst, '&')
		}
		dst = append(dst, p.name...)
		dst = append(dst, '=')
		dst = append(dst, p.value...)
	}
	return dst
}

func encodeQueryComponent(s string) string {
	if d, err := url.QueryUnescape(s); err == nil {
		s = d
	}
	return string(appendURIEncode(nil, s, true))
}

// appendCanonicalValues appends the canonical form of one header's values:
// each trimmed, runs of spaces and line folds (CR/LF and the spaces or tabs
// after them) turned into one space, joined with commas.
func appendCanonicalValues(dst []byte, values []string) []byte {
	for i, v := range values {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendTrimmedValue(dst, v)
	}
	return dst
}

func appendTrimmedValue(dst []byte, v string) []byte {
	start := len(dst)
	space := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case ' ':
			space = true
		case '\r', '\n':
			space = true
			for i+1 < len(v) && (v[i+1] == ' ' || v[i+1] == '\t' || v[i+1] == '\r' || v[i+1] == '\n') {
				i++
			}
		default:
			if space && len(dst) > start {
				dst = append(dst, ' ')
			}
			space = false
			dst = append(dst, c)
		}
	}
	// Leading and trailing white space of any kind goes, as strings.TrimSpace
	// (used by the AWS SDK) removes it.
	trimmed := bytes.TrimSpace(dst[start:])
	n := copy(dst[start:], trimmed)
	return dst[:start+n]
}

// foldLines replaces every line break in v, with the spaces and tabs after it,
// by one space: an obsolete folded header value becomes one line, as a
// receiver reads it.
func foldLines(v string) string {
	var b strings.Builder
	b.Grow(len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '\r' && c != '\n' {
			b.WriteByte(c)
			continue
		}
		for i+1 < len(v) && (v[i+1] == ' ' || v[i+1] == '\t' || v[i+1] == '\r' || v[i+1] == '\n') {
			i++
		}
		b.WriteByte(' ')
	}
	return b.String()
}

// requestTarget returns the escaped path and raw query of r as they were
// sent: from r.RequestURI for a request a server received, else from r.URL
// (its Opaque form when set, as the AWS SDK reads it).
func requestTarget(r *http.Request) (path, rawQuery string) {
	if uri := r.RequestURI; uri != "" && uri != "*" {
		if !strings.HasPrefix(uri, "/") { // absolute form: scheme://host/path?query
			if u, err := url.Parse(uri); err == nil {
				return u.EscapedPath(), u.RawQuery
			}
		}
		path, rawQuery, _ = strings.Cut(uri, "?")
		return path, rawQuery
	}
	return urlPath(r.URL), r.URL.RawQuery
}

// urlPath returns the escaped path of u the way the AWS SDK's signer reads
// it: the path part of u.Opaque ("//host/path") when set, else
// u.EscapedPath(); "/" when empty.
func urlPath(u *url.URL) string {
	p := u.EscapedPath()
	if u.Opaque != "" {
		p = ""
		o, _, _ := strings.Cut(u.Opaque, "?")
		o = strings.TrimPrefix(o, "//")
		if i := strings.IndexByte(o, '/'); i >= 0 {
			p = o[i:]
		}
	}
	if p == "" {
		p = "/"
	}
	return p
}

// headerValues returns the values of the lower-case header name in r.
// "host" is r.Host (r.URL.Host when empty); "content-length" falls back to
// r.ContentLength, since a request built by a client carries it there.
func headerValues(r *http.Request, name string) []string {
	switch name {
	case "host":
		if r.Host != "" {
			return []string{r.Host}
		}
		return []string{r.URL.Host}
	case "content-length":
		if vs := r.Header.Values("Content-Length"); len(vs) > 0 {
			return vs
		}
		if r.ContentLength >= 0 {
			return []string{strconv.FormatInt(r.ContentLength, 10)}
		}
		return nil
	}
	if vs := r.Header.Values(name); len(vs) > 0 {
		return vs
	}
	// A header map built by hand may hold non-canonical names.
	var vs []string
	for k, v := range r.Header {
		if strings.EqualFold(k, name) {
			vs = append(vs, v...)
		}
	}
	return vs
}

// canonicalRequest builds the canonical request of r with path and rawQuery
// as sent (see requestTarget), for the SignedHeaders list signedHeaders
// (semicolon-separated, lower case) and the hex payload hash. normalize and
// encode are the path rules of appendCanonicalURI.
func canonicalRequest(r *http.Request, path, rawQuery, signedHeaders, payloadHash string, normalize, encode bool) string {
	b := make([]byte, 0, 512)
	b = append(b, r.Method...)
	b = append(b, '\n')
	b = appendCanonicalURI(b, path, normalize, encode)
	b = append(b, '\n')
	b = appendCanonicalQuery(b, rawQuery)
	b = append(b, '\n')
	for name := range strings.SplitSeq(signedHeaders, ";") {
		if name == "" {
			continue
		}
		b = append(b, name...)
		b = append(b, ':')
		b = appendCanonicalValues(b, headerValues(r, strings.ToLower(name)))
		b = append(b, '\n')
	}
	b = append(b, '\n')
	b = append(b, signedHeaders...)
	b = append(b, '\n')
	b = append(b, payloadHash...)
	return string(b)
}

// credentialScope returns "date/region/service/aws4_request".
func credentialScope(t time.Time, region, service string) string {
	return t.UTC().Format(scopeDateFormat) + "/" + region + "/" + service + "/" + scopeTerminator
}

// stringToSign returns the SigV4 string to sign of a canonical request.
func stringToSign(t time.Time, scope, canonicalReq string) string {
	sum := sha256.Sum256([]byte(canonicalReq))
	return signingAlgorithm + "\n" + t.UTC().Format(amzDateFormat) + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

// signingKey derives the SigV4 signing key of secret for the scope's date,
// region and service.
func signingKey(secret string, t time.Time, region, service string) []byte {
	k := hmacSHA256([]byte("AWS4"+secret), t.UTC().Format(scopeDateFormat))
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, scopeTerminator)
}

// signature returns the hex signature of a string to sign.
func signature(key []byte, sts string) string {
	return hex.EncodeToString(hmacSHA256(key, sts))
}
