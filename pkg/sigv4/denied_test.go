package sigv4

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// headerSecret is a value a user put in remote_write `headers:` (an API
// key, say): it is signed and sent, and must never be logged.
const headerSecret = "rwagentHEADERsecret-4711-abcdefgh"

// awsLikeReceiver answers every request as AWS answers a signature
// mismatch: 403 InvalidSignatureException with the canonical request it
// computed, every header value in the clear (AMP shows the session token
// too), and the string to sign.
func awsLikeReceiver(t *testing.T) string {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a, verr := parseAuthorization(r.Header.Get("Authorization"))
		if verr != nil {
			t.Errorf("receiver: %v", verr)
		}
		path, query := requestTarget(r)
		creq := canonicalRequest(r, path, query, a.signedHeaders, sha256Hex(body), true, true)
		msg := msgSignatureMismatch + "\n\nThe Canonical String for this request should have been\n'" + creq +
			"'\n\nThe String-to-Sign should have been\n'" + stringToSign(testBase, credentialScope(testBase, testRegion, "aps"), creq) + "'\n"
		b, _ := json.Marshal(map[string]string{"message": msg})
		w.Header().Set("x-amzn-ErrorType", "InvalidSignatureException")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write(b)
	})
	srv := httptest.NewUnstartedServer(h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestReportDenied_RedactsHeaders sends a request with a session token and
// a secret header to a receiver that echoes both in its canonical request,
// and checks every log line: neither appears, while the headers SigV4 needs
// to compare (host, x-amz-date, ...) and the string to sign still do.
func TestReportDenied_RedactsHeaders(t *testing.T) {
	isolateAWSEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", testAccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecretKey)
	t.Setenv("AWS_SESSION_TOKEN", testSessionToken)
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rt, err := NewRoundTripper(context.Background(), Config{Region: testRegion}, http.DefaultTransport.(*http.Transport).Clone(),
		Options{Logger: logger, Now: func() time.Time { return testBase }})
	if err != nil {
		t.Fatal(err)
	}
	req := remoteWriteRequest(t, awsLikeReceiver(t), []byte("payload"))
	req.Header.Set("X-Api-Key", headerSecret)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), headerSecret) {
		t.Fatalf("receiver answered %d %q; want a 403 that echoes the header, as AWS does", resp.StatusCode, body)
	}

	out := logs.String()
	if !strings.Contains(out, "refused a signed request") {
		t.Fatalf("no 403 logged:\n%s", out)
	}
	for i, line := range strings.Split(out, "\n") {
		for _, secret := range []string{headerSecret, testSessionToken, testSecretKey} {
			if strings.Contains(line, secret) {
				t.Errorf("log line %d holds a secret (%.8s…): %s", i+1, secret, line)
			}
		}
	}
	for _, want := range []string{
		`x-api-key:<redacted>`, `x-amz-security-token:<redacted>`, `x-prometheus-remote-write-version:<redacted>`,
		`host:127.0.0.1:`, `x-amz-date:20240101T000000Z`, `content-type:application/x-protobuf`,
		`x-amz-content-sha256:` + sha256Hex([]byte("payload")), `The String-to-Sign should have been`,
		`host;x-amz-content-sha256;x-amz-date;x-amz-security-token;x-api-key`, // the signed header names stay
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestRedactCanonicalHeaders(t *testing.T) {
	const head = "The Canonical String for this request should have been\n'"
	for _, tc := range []struct{ name, in, want string }{
		{"no canonical request", "Access denied: x-api-key:abc", "Access denied: x-api-key:abc"},
		{"empty query",
			head + "POST\n/w\n\nhost:h\nx-api-key:k3y\nx-amz-date:d\n\nhost;x-api-key;x-amz-date\nabc'\n",
			head + "POST\n/w\n\nhost:h\nx-api-key:<redacted>\nx-amz-date:d\n\nhost;x-api-key;x-amz-date\nabc'\n"},
		{"query",
			head + "GET\n/api/v1/query\nquery=up\nauthorization-extra:x\nhost:h\n\nauthorization-extra;host\nabc'",
			head + "GET\n/api/v1/query\nquery=up\nauthorization-extra:<redacted>\nhost:h\n\nauthorization-extra;host\nabc'"},
		{"cut in a header value",
			head + "POST\n/w\n\nhost:h\nx-api-key:k3y-and-mo",
			head + "POST\n/w\n\nhost:h\nx-api-key:<redacted>"},
		{"cut before the headers", head + "POST\n/w", head + "POST\n/w"},
	} {
		if got := redactCanonicalHeaders(tc.in); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

// FuzzRedactCanonicalHeaders checks that redaction never panics, is
// idempotent, and leaves no value of a header outside shownHeaders in the
// canonical request's header lines.
func FuzzRedactCanonicalHeaders(f *testing.F) {
	f.Add("The Canonical String for this request should have been\n'POST\n/w\n\nhost:h\nx-api-key:k\n\nhost\nabc'")
	f.Add("no marker")
	f.Add("Canonical String for this request should have been'")
	f.Fuzz(func(t *testing.T, msg string) {
		once := redactCanonicalHeaders(msg)
		if twice := redactCanonicalHeaders(once); twice != once {
			t.Fatalf("not idempotent: %q -> %q", once, twice)
		}
	})
}
