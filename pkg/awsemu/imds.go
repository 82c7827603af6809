package awsemu

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// IMDS is an EC2 instance metadata service (IMDSv2 only) serving the role
// credentials of an instance profile: PUT /latest/api/token, then GET
// /latest/meta-data/iam/security-credentials/ (the role name) and
// .../security-credentials/<role> (fresh credentials from Issuer on every
// call, as the SDK fetches them only when it refreshes). Requests without a
// valid session token get 401, as on an instance that requires IMDSv2.
// Point the SDK at it with AWS_EC2_METADATA_SERVICE_ENDPOINT.
//
// Create it with NewIMDS. It is safe for concurrent use.
type IMDS struct {
	issuer *Issuer
	role   string

	mu     sync.Mutex
	tokens map[string]time.Time // session token → expiry
}

// NewIMDS serves credentials from issuer for the instance profile role.
func NewIMDS(issuer *Issuer, role string) *IMDS {
	return &IMDS{issuer: issuer, role: role, tokens: map[string]time.Time{}}
}

const (
	imdsTokenPath   = "/latest/api/token"
	imdsCredsPath   = "/latest/meta-data/iam/security-credentials/"
	imdsTTLHeader   = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
	imdsTokenHeader = "X-Aws-Ec2-Metadata-Token"
)

func (m *IMDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == imdsTokenPath {
		m.serveToken(w, r)
		return
	}
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !m.validToken(r.Header.Get(imdsTokenHeader)) {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	switch rest, ok := strings.CutPrefix(r.URL.Path, imdsCredsPath); {
	case !ok:
		http.NotFound(w, r)
	case rest == "":
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(m.role))
	case rest == m.role:
		c := m.issuer.Issue()
		writeJSON(w, struct {
			Code            string
			LastUpdated     string
			Type            string
			AccessKeyID     string `json:"AccessKeyId"`
			SecretAccessKey string
			Token           string
			Expiration      string
		}{"Success", c.IssuedAt.UTC().Format(time.RFC3339), "AWS-HMAC", c.AccessKeyID, c.SecretAccessKey,
			c.SessionToken, c.Expires.UTC().Format(time.RFC3339)})
	default:
		http.NotFound(w, r)
	}
}

// serveToken answers PUT /latest/api/token with a session token lasting the
// requested 1-21600 seconds.
func (m *IMDS) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ttl, err := strconv.Atoi(r.Header.Get(imdsTTLHeader))
	if err != nil || ttl < 1 || ttl > 21600 {
		http.Error(w, "invalid "+imdsTTLHeader, http.StatusBadRequest)
		return
	}
	token := "imds-" + random(24)
	m.mu.Lock()
	m.tokens[token] = m.issuer.now().Add(time.Duration(ttl) * time.Second)
	m.mu.Unlock()
	w.Header().Set(imdsTTLHeader, strconv.Itoa(ttl))
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(token))
}

func (m *IMDS) validToken(token string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	exp, ok := m.tokens[token]
	return ok && m.issuer.now().Before(exp)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
