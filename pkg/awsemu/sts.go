package awsemu

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// STS answers sts:AssumeRole and sts:AssumeRoleWithWebIdentity (the Query
// API over POST, as the SDK sends it) with credentials from Issuer, and
// records every call. Point the SDK at it with AWS_ENDPOINT_URL_STS or a
// client's BaseEndpoint. Its exported fields must be set before it serves
// and not changed after; it is safe for concurrent use.
type STS struct {
	Issuer *Issuer
	// Verify checks the SigV4 signature of an AssumeRole call (the caller's
	// base credentials), normally a sigv4.Verifier for service "sts". Nil
	// refuses every AssumeRole.
	Verify func(r *http.Request, body []byte) error
	// WebIdentityToken is the token AssumeRoleWithWebIdentity accepts
	// (the projected service-account token of IRSA). Empty refuses every
	// AssumeRoleWithWebIdentity.
	WebIdentityToken string
	// ExternalID, when set, must come with every AssumeRole.
	ExternalID string

	mu    sync.Mutex
	calls []STSCall
}

// STSCall is one call STS answered or refused.
type STSCall struct {
	Action, RoleARN, RoleSessionName, ExternalID string
	AccessKeyID                                  string // issued; empty when refused
	Err                                          string // the refusal's code, empty on success
}

// Calls returns a copy of the calls so far, oldest first.
func (s *STS) Calls() []STSCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]STSCall(nil), s.calls...)
}

func (s *STS) record(c STSCall) {
	s.mu.Lock()
	s.calls = append(s.calls, c)
	s.mu.Unlock()
}

func (s *STS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || r.Method != http.MethodPost {
		stsError(w, http.StatusBadRequest, "InvalidAction", "expected a POST with a form body")
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		stsError(w, http.StatusBadRequest, "MalformedQueryString", err.Error())
		return
	}
	call := STSCall{Action: form.Get("Action"), RoleARN: form.Get("RoleArn"),
		RoleSessionName: form.Get("RoleSessionName"), ExternalID: form.Get("ExternalId")}
	refuse := func(status int, code, msg string) {
		call.Err = code
		s.record(call)
		stsError(w, status, code, msg)
	}
	if call.RoleARN == "" || call.RoleSessionName == "" {
		refuse(http.StatusBadRequest, "ValidationError", "RoleArn and RoleSessionName are required")
		return
	}
	switch call.Action {
	case "AssumeRole":
		if s.Verify == nil {
			refuse(http.StatusForbidden, "AccessDenied", "AssumeRole is not allowed")
			return
		}
		if err := s.Verify(r, body); err != nil {
			refuse(http.StatusForbidden, "SignatureDoesNotMatch", err.Error())
			return
		}
		if s.ExternalID != "" && call.ExternalID != s.ExternalID {
			refuse(http.StatusForbidden, "AccessDenied", "not authorized to perform sts:AssumeRole (external id)")
			return
		}
	case "AssumeRoleWithWebIdentity":
		if s.WebIdentityToken == "" || form.Get("WebIdentityToken") != s.WebIdentityToken {
			refuse(http.StatusBadRequest, "InvalidIdentityToken", "the web identity token is not valid")
			return
		}
	default:
		refuse(http.StatusBadRequest, "InvalidAction", fmt.Sprintf("action %q is not served", call.Action))
		return
	}
	c := s.Issuer.Issue()
	call.AccessKeyID = c.AccessKeyID
	s.record(call)

	type credentials struct {
		AccessKeyID     string `xml:"AccessKeyId"`
		SecretAccessKey string
		SessionToken    string
		Expiration      string
	}
	type user struct {
		Arn           string
		AssumedRoleID string `xml:"AssumedRoleId"`
	}
	type result struct {
		Credentials     credentials
		AssumedRoleUser user
	}
	resp := struct {
		XMLName  xml.Name
		Xmlns    string `xml:"xmlns,attr"`
		Inner    any
		Metadata struct {
			RequestID string `xml:"RequestId"`
		} `xml:"ResponseMetadata"`
	}{Xmlns: "https://sts.amazonaws.com/doc/2011-06-15/"}
	resp.XMLName.Local = call.Action + "Response"
	res := result{
		Credentials: credentials{c.AccessKeyID, c.SecretAccessKey, c.SessionToken, c.Expires.UTC().Format(time.RFC3339)},
		AssumedRoleUser: user{Arn: "arn:aws:sts::123456789012:assumed-role/" + call.RoleSessionName,
			AssumedRoleID: "AROAAWSEMU:" + call.RoleSessionName},
	}
	resp.Inner = struct {
		XMLName xml.Name
		result
	}{xml.Name{Local: call.Action + "Result"}, res}
	resp.Metadata.RequestID = random(12)
	w.Header().Set("Content-Type", "text/xml")
	_ = xml.NewEncoder(w).Encode(resp)
}

// stsError answers with STS's XML error shape.
func stsError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	_ = xml.NewEncoder(w).Encode(struct {
		XMLName xml.Name `xml:"ErrorResponse"`
		Error   struct {
			Type, Code, Message string
		}
		RequestID string `xml:"RequestId"`
	}{Error: struct{ Type, Code, Message string }{"Sender", code, msg}, RequestID: random(12)})
}
