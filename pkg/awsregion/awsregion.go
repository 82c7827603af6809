// Package awsregion knows the shape of AWS region names and finds the
// region an AWS endpoint's host names. It imports nothing of rwagent's, so
// that both the configuration (pkg/config) and the signer (pkg/sigv4) can
// check regions the same way. Everything here is safe for concurrent use.
package awsregion

import (
	"net/url"
	"regexp"
	"strings"
)

// namePattern matches AWS region names: a partition prefix of two to four
// letters (us, eu, ap, cn, mx, eusc), one to three words and a number, as in
// us-east-1, eu-central-2, us-gov-west-1, cn-north-1, ap-southeast-7,
// mx-central-1, us-isob-east-1 and eusc-de-east-1. An availability zone
// (us-east-1a) or a name without its number (us-east) does not match.
var namePattern = regexp.MustCompile(`^[a-z]{2,4}(-[a-z]+){1,3}-[0-9]{1,2}$`)

// Valid reports whether name has the shape of an AWS region name. It does
// not know which regions exist: a new region is valid without a release.
func Valid(name string) bool {
	return namePattern.MatchString(name)
}

// FromURL returns the region an AWS endpoint URL names in its host, as in
// https://aps-workspaces.us-west-2.amazonaws.com/workspaces/ws-1/... (AMP),
// https://abc123.execute-api.eu-west-1.amazonaws.com/prod/metrics (API
// Gateway) or aps-workspaces-fips.us-gov-west-1.amazonaws.com, and "" for
// any other URL.
func FromURL(rawURL string) string {
	if rawURL == "" {
		return ""
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	host := strings.ToLower(u.Hostname())
	for _, suffix := range []string{".amazonaws.com", ".amazonaws.com.cn", ".api.aws"} {
		if rest, ok := strings.CutSuffix(host, suffix); ok {
			labels := strings.Split(rest, ".")
			if len(labels) >= 2 && Valid(labels[len(labels)-1]) {
				return labels[len(labels)-1]
			}
			return ""
		}
	}
	return ""
}

// IsAMP reports whether rawURL's host is an Amazon Managed Service for
// Prometheus workspace endpoint (aps-workspaces.<region>.amazonaws.com, or
// its -fips variant), which refuses any request not signed with SigV4.
func IsAMP(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	host := strings.ToLower(u.Hostname())
	return (strings.HasPrefix(host, "aps-workspaces.") || strings.HasPrefix(host, "aps-workspaces-fips.")) && FromURL(rawURL) != ""
}
