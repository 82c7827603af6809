package receive

import (
	"encoding/json"
	"errors"
	"net/http"
)

// StatusError is an error that chooses the HTTP answer to a refused request:
// its status code, its x-amzn-ErrorType (for example "InvalidSignatureException")
// and, through Error, its message. Options.Verify returns one to refuse a
// request the way AWS would; Reject builds one.
type StatusError interface {
	error
	StatusCode() int
	ErrorCode() string
}

// Reject returns a StatusError answering status with x-amzn-ErrorType code and
// message. Tests use it in Options.Verify to inject faults, for example
// Reject(http.StatusTooManyRequests, "ThrottlingException", "Rate exceeded").
func Reject(status int, code, message string) error {
	return &rejectError{status: status, code: code, message: message}
}

type rejectError struct {
	status        int
	code, message string
}

func (e *rejectError) Error() string     { return e.message }
func (e *rejectError) StatusCode() int   { return e.status }
func (e *rejectError) ErrorCode() string { return e.code }

// AWS error codes we answer with ourselves.
const (
	codeAccessDenied     = "AccessDeniedException"
	codeResourceNotFound = "ResourceNotFoundException"
	codeValidation       = "ValidationException"
	codeTooLarge         = "RequestEntityTooLargeException"
	codeUnavailable      = "ServiceUnavailableException"
	codeThrottling       = "ThrottlingException"
	codeInternal         = "InternalServerException"
)

// awsError is the JSON body of an AWS REST-JSON error.
type awsError struct {
	Message      string `json:"message"`
	ResourceID   string `json:"resourceId,omitempty"`
	ResourceType string `json:"resourceType,omitempty"`
}

// writeAWSError answers status with header x-amzn-ErrorType: code and body e.
func writeAWSError(w http.ResponseWriter, status int, code string, e awsError) {
	body, err := json.Marshal(e)
	if err != nil { // a struct of strings always marshals
		panic(err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("x-amzn-ErrorType", code)
	h.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeVerifyError answers a request that Options.Verify refused with err.
func writeVerifyError(w http.ResponseWriter, err error) {
	if se, ok := errors.AsType[StatusError](err); ok {
		writeAWSError(w, se.StatusCode(), se.ErrorCode(), awsError{Message: se.Error()})
		return
	}
	writeAWSError(w, http.StatusForbidden, codeAccessDenied, awsError{Message: err.Error()})
}
