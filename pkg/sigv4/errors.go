package sigv4

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
)

// Error codes a Verifier returns in VerifyError.Code. They are the values AWS
// puts in the x-amzn-ErrorType response header.
//
// Where the facts come from:
//   - AMP's remote-write endpoint answers SigV4 failures with HTTP 403 and a
//     JSON body {"message":"..."}, the API-Gateway/Coral shape. Reports show
//     {"message":"Missing Authentication Token"} (prometheus-community/helm-charts
//     issues 2402 and 4687) and {"message":"The request signature we calculated
//     does not match ... Consult the service documentation for details.\n\nThe
//     Canonical String for this request should have been\n'POST\n/workspaces/..."}
//     (grafana/tempo issue 2973).
//   - Codes, message texts and the order of the checks are Coral's, as recorded
//     from live responses in mhart/dynalite (index.js), and AWS's knowledge-centre
//     article "How do I troubleshoot HTTP 403 errors from API Gateway?"
//     (MissingAuthenticationTokenException, InvalidSignatureException for an
//     expired signature, with "- 5 min." as EKS and API Gateway print it).
//   - AWS's IAM user guide, "Troubleshoot Signature Version 4 signing", lists the
//     credential-scope and expiry messages.
//
// Coral-fronted JSON services (AMP among them) name a bad signature
// InvalidSignatureException; SignatureDoesNotMatch is the S3/XML name for the
// same failure and is not what AMP sends.
const (
	// CodeMissingAuthenticationToken: the request has no Authorization header.
	CodeMissingAuthenticationToken = "MissingAuthenticationTokenException"
	// CodeIncompleteSignature: the Authorization header is malformed or lacks
	// a parameter, the date is unreadable, or the algorithm is not supported.
	CodeIncompleteSignature = "IncompleteSignatureException"
	// CodeInvalidSignature: the signature does not match, has expired or is
	// not yet current, or the credential scope is wrong.
	CodeInvalidSignature = "InvalidSignatureException"
	// CodeUnrecognizedClient: the access key is unknown, or the session token
	// is missing, unexpected or wrong.
	CodeUnrecognizedClient = "UnrecognizedClientException"
)

// Message texts as AWS words them. Messages built from parts live beside the
// check that builds them in verify.go.
const (
	msgMissingAuthenticationToken = "Missing Authentication Token"
	msgInvalidClientToken         = "The security token included in the request is invalid."
	// Coral checks the session token after the signature and, as recorded by
	// dynalite, words this one without the final full stop.
	msgInvalidSessionToken = "The security token included in the request is invalid"
	msgSignatureMismatch   = "The request signature we calculated does not match the signature you provided. " +
		"Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	msgHostNotSigned = "'Host' must be a 'SignedHeader' in the AWS Authorization."
)

// VerifyError is the error Verifier.Verify returns when a request fails a
// SigV4 check. Callers use errors.As to get it and WriteError to answer with it.
// Message never holds a secret key or a session token.
type VerifyError struct {
	Status  int    // HTTP status to answer with; AMP uses 403 for every SigV4 failure
	Code    string // one of the Code* constants; sent as x-amzn-ErrorType
	Message string // AWS's message text; sent as the JSON body's "message"
}

func (e *VerifyError) Error() string {
	return "sigv4: " + e.Code + ": " + e.Message
}

func newVerifyError(code, msg string) *VerifyError {
	return &VerifyError{Status: http.StatusForbidden, Code: code, Message: msg}
}

// WriteError answers an HTTP request with e the way AMP does: e.Status (403
// when zero), Content-Type application/json, an x-amzn-ErrorType header
// holding e.Code and the body {"message": e.Message}. It must be called before
// anything else is written to w.
func WriteError(w http.ResponseWriter, e *VerifyError) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // AWS sends ' and & as they are.
	// Encoding a struct of one string cannot fail.
	_ = enc.Encode(struct {
		Message string `json:"message"`
	}{e.Message})
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))

	h := w.Header()
	h.Set("Content-Type", "application/json")
	// Assigned directly to keep AWS's spelling on HTTP/1.1; Header.Get
	// canonicalises the name, so readers find it either way.
	h["x-amzn-ErrorType"] = []string{e.Code}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	status := e.Status
	if status == 0 {
		status = http.StatusForbidden
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
