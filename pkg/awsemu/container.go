package awsemu

import (
	"net/http"
	"time"
)

// Container is the container credentials endpoint of ECS tasks and EKS Pod
// Identity: a GET, with the Authorization header holding the token the
// agent mounts (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE) or passes
// (AWS_CONTAINER_AUTHORIZATION_TOKEN), answered with fresh credentials from
// Issuer. A missing or wrong token gets 401. Point the SDK at it with
// AWS_CONTAINER_CREDENTIALS_FULL_URI (loopback hosts are allowed over
// http). It is safe for concurrent use.
type Container struct {
	Issuer *Issuer
	// Token is the authorization token required; empty requires none (as
	// ECS's AWS_CONTAINER_CREDENTIALS_RELATIVE_URI endpoint).
	Token string
}

func (c *Container) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if c.Token != "" && r.Header.Get("Authorization") != c.Token {
		w.WriteHeader(http.StatusUnauthorized)
		writeJSON(w, struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}{"AccessDeniedException", "invalid authorization token"})
		return
	}
	cr := c.Issuer.Issue()
	writeJSON(w, struct {
		AccessKeyID     string `json:"AccessKeyId"`
		SecretAccessKey string
		Token           string
		AccountID       string `json:"AccountId"`
		Expiration      string
	}{cr.AccessKeyID, cr.SecretAccessKey, cr.SessionToken, "123456789012", cr.Expires.UTC().Format(time.RFC3339)})
}

// Process answers any GET with fresh credentials from Issuer in the JSON
// shape a credential_process prints (Version 1). A test's
// credential_process script fetches and prints it. It is safe for
// concurrent use.
type Process struct {
	Issuer *Issuer
}

func (p *Process) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cr := p.Issuer.Issue()
	writeJSON(w, struct {
		Version         int
		AccessKeyID     string `json:"AccessKeyId"`
		SecretAccessKey string
		SessionToken    string
		Expiration      string
	}{1, cr.AccessKeyID, cr.SecretAccessKey, cr.SessionToken, cr.Expires.UTC().Format(time.RFC3339)})
}
