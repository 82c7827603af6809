package sigv4

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzVerifyAuthorization feeds arbitrary Authorization and X-Amz-Date
// headers to the parser and to Verify, seeded from the suite's signed
// requests. Verify must not panic and must answer nil or a *VerifyError.
func FuzzVerifyAuthorization(f *testing.F) {
	for _, c := range loadSuite(f) {
		sreq := parseRawRequest(f, c.file(f, "header-signed-request.txt"))
		authz, _ := sreq.header("Authorization")
		date, _ := sreq.header("X-Amz-Date")
		f.Add(authz, date, sreq.target)
	}
	f.Add("AWS4-HMAC-SHA256 Credential=a/b/c/d/e/f, SignedHeaders=, Signature=", "2015", "/")
	f.Add("AWS4-HMAC-SHA256 ,,,= Credential==", "", "//..")
	v := &Verifier{Region: "us-east-1", Service: "service",
		Now:         func() time.Time { return time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC) },
		Credentials: []Credential{{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}}}
	f.Fuzz(func(t *testing.T, authz, date, target string) {
		if a, verr := parseAuthorization(authz); verr == nil {
			_ = a.missing(date != "")
			_ = a.signs("host")
		} else if verr.Code != CodeIncompleteSignature {
			t.Fatalf("parse error code %s", verr.Code)
		}
		path, query, _ := strings.Cut(target, "?")
		r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: path, RawQuery: query}, RequestURI: target,
			Host: "example.amazonaws.com", Header: http.Header{}}
		r.Header["Authorization"] = []string{authz}
		r.Header["X-Amz-Date"] = []string{date}
		err := v.Verify(r, nil)
		var ve *VerifyError
		if err != nil && !errors.As(err, &ve) {
			t.Fatalf("Verify returned %T %v", err, err)
		}
	})
}

// FuzzCanonical checks the canonicaliser's parts never panic and are
// idempotent, seeded from the suite's request targets and header values.
func FuzzCanonical(f *testing.F) {
	for _, c := range loadSuite(f) {
		req := parseRawRequest(f, c.file(f, "request.txt"))
		path, query, _ := strings.Cut(req.target, "?")
		value := ""
		for _, h := range req.headers {
			value = h[1]
		}
		f.Add(path, query, value)
	}
	f.Add("a/../../b/./", "a=%zz&=&&b+c=%2B", "  a \r\n\t b  \t")
	f.Fuzz(func(t *testing.T, path, query, value string) {
		p := normalizePath(path)
		if !strings.HasPrefix(p, "/") || normalizePath(p) != p {
			t.Fatalf("normalizePath(%q) = %q, again %q", path, p, normalizePath(p))
		}
		if strings.Contains(p, "//") {
			t.Fatalf("normalizePath(%q) = %q keeps //", path, p)
		}
		uri := appendCanonicalURI(nil, path, true, true)
		for _, c := range uri {
			if !isUnreserved(c) && c != '/' && c != '%' {
				t.Fatalf("canonical URI %q has %q", uri, c)
			}
		}
		q := appendCanonicalQuery(nil, query)
		if q2 := appendCanonicalQuery(nil, string(q)); !bytes.Equal(q, q2) {
			t.Fatalf("canonical query of %q: %q, again %q", query, q, q2)
		}
		v := appendTrimmedValue(nil, value)
		if v2 := appendTrimmedValue(nil, string(v)); !bytes.Equal(v, v2) {
			t.Fatalf("trimmed %q: %q, again %q", value, v, v2)
		}
		if bytes.ContainsAny(v, "\r\n") || bytes.Contains(v, []byte("  ")) {
			t.Fatalf("trimmed %q: %q", value, v)
		}
		if f := foldLines(value); strings.ContainsAny(f, "\r\n") {
			t.Fatalf("foldLines(%q) = %q", value, f)
		}
		r := &http.Request{Method: "GET", URL: &url.URL{}, Host: "h", Header: http.Header{"X-V": {value}}}
		_ = canonicalRequest(r, path, query, "host;x-v", emptyPayloadHash, true, true)
	})
}
