package sigv4

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"
)

// maxPeek is how much of a 403 body is read for its message: AWS's longest,
// the signature mismatch with its canonical request, fits.
const maxPeek = 4 << 10

// clockSkew keeps the offset of the receiver's clock from ours, learnt from
// the Date header of a 403 that says the signature expired or is not yet
// current (AWS refuses a signature more than 5 minutes off). Requests are
// then signed at now+offset. It is safe for concurrent use; a nil
// *clockSkew corrects nothing.
type clockSkew struct {
	offset atomic.Int64 // nanoseconds to add to our clock
	gauge  prometheus.Gauge
	logger *slog.Logger
}

func newClockSkew(g prometheus.Gauge, logger *slog.Logger) *clockSkew {
	return &clockSkew{gauge: g, logger: logger}
}

// skewTolerance is how far the offset learnt from a refusal may be from the
// offset a request was signed with and still count as the same: the Date
// header has whole seconds and a request spends time in flight, while AWS
// refuses a signature only when it is five minutes off. A request signed
// within this of the receiver's time and refused as off in time is not
// refused for our clock, and is not signed again.
const skewTolerance = time.Minute

// current returns the learnt offset (zero for a nil *clockSkew).
func (c *clockSkew) current() time.Duration {
	if c == nil {
		return 0
	}
	return time.Duration(c.offset.Load())
}

// observe looks at a 403 with message msg, answered at about now (our
// uncorrected clock), to a request signed with offset signed. When the
// message says the signature's time was off and the Date header shows the
// receiver's time is more than skewTolerance from the time signed, it
// stores the new offset and returns true: the request is worth signing
// again. It logs only an offset that differs from the one already learnt, so
// the requests in flight while the offset is learnt (all signed with the old
// one) log it once.
func (c *clockSkew) observe(resp *http.Response, msg string, now time.Time, signed time.Duration) bool {
	if c == nil || !isSkewMessage(msg) {
		return false
	}
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		c.logger.Warn("sigv4: the receiver says our clock is off but sends no readable Date header; fix this host's clock (NTP)",
			"message", msg)
		return false
	}
	offset := date.Sub(now).Truncate(time.Second)
	if (offset - signed).Abs() < skewTolerance {
		return false // signed at the receiver's time already: not a clock problem
	}
	old := time.Duration(c.offset.Swap(int64(offset)))
	c.gauge.Set(offset.Seconds())
	if (offset - old).Abs() < skewTolerance {
		return true // learnt already, from another request in flight
	}
	c.logger.Warn("sigv4: the receiver refused a signature as off in time; this host's clock differs from the receiver's, "+
		"signing with the receiver's time from now on. Fix this host's clock (NTP).",
		"offset", offset.String(), "receiver_date", date.UTC().Format(time.RFC3339), "local_time", now.UTC().Format(time.RFC3339),
		"message", msg)
	return true
}

// isSkewMessage reports whether a 403 message is AWS's "Signature expired:
// ... is now earlier than ..." or "Signature not yet current: ... is still
// later than ...".
func isSkewMessage(msg string) bool {
	return strings.Contains(msg, "Signature expired") || strings.Contains(msg, "Signature not yet current") ||
		strings.Contains(msg, "RequestTimeTooSkewed")
}

// peekMessage reads the start of resp's body for the receiver's message and
// leaves resp.Body sending the whole body again. The message is the
// "message" of a JSON body, the <Message> of an XML body, else the text.
func peekMessage(resp *http.Response) string {
	if resp.Body == nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxPeek))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b), resp.Body), resp.Body}
	var j struct {
		Message  string `json:"message"`
		Message2 string `json:"Message"`
	}
	if json.Unmarshal(b, &j) == nil {
		if j.Message != "" {
			return j.Message
		}
		if j.Message2 != "" {
			return j.Message2
		}
	}
	s := string(b)
	if _, rest, ok := strings.Cut(s, "<Message>"); ok {
		if m, _, ok := strings.Cut(rest, "</Message>"); ok {
			return m
		}
	}
	return strings.ToValidUTF8(strings.TrimSpace(s), "?")
}

// drainClose discards what is left of resp's body (bounded) and closes it,
// so the connection can be reused.
func drainClose(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxPeek))
	_ = resp.Body.Close()
}

// reportDenied logs a 403 the receiver answered to req: its message and what
// was signed, so a user can tell a wrong region or service from missing IAM
// permissions or the wrong credentials. Secrets are never logged: the access
// key id is shortened and the secret key, session token and signature are
// left out, and the receiver's message goes through redactDenied.
func (rt *roundTripper) reportDenied(req *http.Request, resp *http.Response, msg string, creds aws.Credentials) {
	if rt.logger == nil || rt.denied == nil {
		return
	}
	msg = redactDenied(msg, req, append([]string{creds.SecretAccessKey, creds.SessionToken}, rt.secrets...))
	rt.denied.Log(rt.logger, "sigv4: the receiver refused a signed request (403)",
		"url", req.URL.Redacted(), "error_type", resp.Header.Get("x-amzn-ErrorType"), "message", msg,
		"signed_service", rt.params.service, "signed_region", rt.params.region,
		"access_key_id", keyIDPrefix(creds.AccessKeyID), "credential_source", creds.Source,
		"temporary_credentials", creds.SessionToken != "")
}

// redacted replaces what a log line must not show.
const redacted = "<redacted>"

// shownHeaders are the headers whose values the log of a refused request
// shows in the receiver's canonical request: those SigV4 itself sets or a
// user needs to compare with what was signed. Any other value (the session
// token, remote_write `headers:`, a proxy's credentials) is redacted.
var shownHeaders = map[string]bool{
	"host": true, "x-amz-date": true, "x-amz-content-sha256": true,
	"content-type": true, "content-encoding": true, "content-length": true,
}

// canonicalMarker precedes, in AWS's signature mismatch message, the
// canonical request the receiver computed, in single quotes.
const canonicalMarker = "Canonical String for this request should have been"

// redactDenied returns a receiver's 403 message fit for a log line: in the
// canonical request it quotes, every header value not in shownHeaders is
// replaced by <redacted> (the string to sign stays whole, so it can still be
// compared with `rwagent sign --dry-run`); any value of such a header of
// req, and every secret of at least 4 bytes, is replaced wherever else it
// appears, for receivers that word their message otherwise.
func redactDenied(msg string, req *http.Request, secrets []string) string {
	msg = redactCanonicalHeaders(msg)
	for name, values := range req.Header {
		if shownHeaders[strings.ToLower(name)] {
			continue
		}
		secrets = append(secrets, values...)
	}
	for _, s := range secrets {
		if s = strings.TrimSpace(s); len(s) >= 4 {
			msg = strings.ReplaceAll(msg, s, redacted)
		}
	}
	return msg
}

// redactCanonicalHeaders redacts the values of the header lines of the
// canonical request quoted after canonicalMarker: its lines are the method,
// the path, the query, then "name:value" lines up to an empty line.
func redactCanonicalHeaders(msg string) string {
	i := strings.Index(msg, canonicalMarker)
	if i < 0 {
		return msg
	}
	q := strings.IndexByte(msg[i:], '\'')
	if q < 0 {
		return msg
	}
	start := i + q + 1
	lines := strings.SplitAfter(msg[start:], "\n")
	for k := 3; k < len(lines); k++ {
		line, nl := strings.CutSuffix(lines[k], "\n")
		name, _, ok := strings.Cut(line, ":")
		if line == "" || !ok {
			break
		}
		if !shownHeaders[name] {
			lines[k] = name + ":" + redacted
			if nl {
				lines[k] += "\n"
			}
		}
	}
	return msg[:start] + strings.Join(lines, "")
}
