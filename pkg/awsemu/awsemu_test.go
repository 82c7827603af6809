package awsemu

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestIssuer_Valid(t *testing.T) {
	c := &clock{t: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	iss := &Issuer{Prefix: "T", TTL: 3 * time.Second, Now: c.now}
	a := iss.Issue()
	c.add(2 * time.Second)
	b := iss.Issue()
	if !strings.HasPrefix(a.AccessKeyID, "ASIAT") || !strings.HasPrefix(a.SecretAccessKey, SecretMarker) ||
		!strings.HasPrefix(a.SessionToken, TokenMarker) || a.AccessKeyID == b.AccessKeyID {
		t.Fatalf("issued %+v and %+v", a, b)
	}
	if got := iss.Valid(); len(got) != 2 {
		t.Fatalf("valid %d, want 2", len(got))
	}
	c.add(2 * time.Second) // a expired at 4s (3s rounded up to the next second)
	if got := iss.Valid(); len(got) != 1 || got[0].AccessKeyID != b.AccessKeyID {
		t.Fatalf("valid %v, want only the second", got)
	}
	c.add(10 * time.Second)
	if got := iss.Valid(); len(got) != 0 || len(iss.Issued()) != 2 {
		t.Fatalf("valid %v, issued %d", got, len(iss.Issued()))
	}
}

func do(t *testing.T, method, u string, header map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		srv.Close()
	})
	return srv.URL
}

// TestIMDS_RequiresToken checks IMDSv2: no credentials without a session
// token, the role name, then credentials.
func TestIMDS_RequiresToken(t *testing.T) {
	iss := &Issuer{}
	u := serve(t, NewIMDS(iss, "web"))
	if code, _ := do(t, http.MethodGet, u+imdsCredsPath+"web", nil, ""); code != http.StatusUnauthorized {
		t.Errorf("IMDSv1 request: %d, want 401", code)
	}
	if code, _ := do(t, http.MethodPut, u+imdsTokenPath, nil, ""); code != http.StatusBadRequest {
		t.Errorf("token without TTL: %d, want 400", code)
	}
	code, token := do(t, http.MethodPut, u+imdsTokenPath, map[string]string{imdsTTLHeader: "60"}, "")
	if code != http.StatusOK || token == "" {
		t.Fatalf("token: %d %q", code, token)
	}
	h := map[string]string{imdsTokenHeader: token}
	if code, role := do(t, http.MethodGet, u+imdsCredsPath, h, ""); code != http.StatusOK || role != "web" {
		t.Errorf("role: %d %q", code, role)
	}
	code, body := do(t, http.MethodGet, u+imdsCredsPath+"web", h, "")
	var creds struct{ Code, AccessKeyId, Expiration string }
	if err := json.Unmarshal([]byte(body), &creds); code != http.StatusOK || err != nil || creds.Code != "Success" ||
		creds.AccessKeyId != iss.Issued()[0].AccessKeyID {
		t.Errorf("credentials: %d %s %v", code, body, err)
	}
	if code, _ := do(t, http.MethodGet, u+imdsCredsPath+"other", h, ""); code != http.StatusNotFound {
		t.Errorf("other role: %d, want 404", code)
	}
}

func TestContainer_RequiresToken(t *testing.T) {
	iss := &Issuer{}
	u := serve(t, &Container{Issuer: iss, Token: "tok"})
	if code, _ := do(t, http.MethodGet, u, map[string]string{"Authorization": "bad"}, ""); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", code)
	}
	if code, body := do(t, http.MethodGet, u, map[string]string{"Authorization": "tok"}, ""); code != http.StatusOK ||
		!strings.Contains(body, iss.Issued()[0].AccessKeyID) {
		t.Errorf("credentials: %d %s", code, body)
	}
}

// TestSTS_Refusals checks that STS refuses what it should, in STS's XML
// error shape, and records each call.
func TestSTS_Refusals(t *testing.T) {
	sts := &STS{Issuer: &Issuer{}, WebIdentityToken: "good", ExternalID: "ext",
		Verify: func(*http.Request, []byte) error { return nil }}
	u := serve(t, sts)
	form := func(kv ...string) string {
		v := url.Values{"RoleArn": {"arn:aws:iam::1:role/r"}, "RoleSessionName": {"s"}, "Version": {"2011-06-15"}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	ct := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	for _, tc := range []struct {
		body     string
		wantCode int
		wantErr  string
	}{
		{form("Action", "AssumeRoleWithWebIdentity", "WebIdentityToken", "bad"), 400, "InvalidIdentityToken"},
		{form("Action", "AssumeRole", "ExternalId", "wrong"), 403, "AccessDenied"},
		{form("Action", "GetCallerIdentity"), 400, "InvalidAction"},
		{form("Action", "AssumeRoleWithWebIdentity", "WebIdentityToken", "good"), 200, ""},
		{form("Action", "AssumeRole", "ExternalId", "ext"), 200, ""},
	} {
		code, body := do(t, http.MethodPost, u, ct, tc.body)
		if code != tc.wantCode || !strings.Contains(body, tc.wantErr) {
			t.Errorf("%s: %d %s", tc.body, code, body)
		}
	}
	calls := sts.Calls()
	if len(calls) != 5 || calls[0].Err != "InvalidIdentityToken" || calls[4].AccessKeyID == "" || calls[4].ExternalID != "ext" {
		t.Errorf("calls %+v", calls)
	}
}
