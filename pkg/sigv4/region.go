package sigv4

import (
	"net/url"
	"regexp"
	"strings"
)

// regionPattern matches AWS region names: us-east-1, eu-central-2,
// us-gov-west-1, cn-north-1, us-isob-east-1.
var regionPattern = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]+$`)

// RegionFromURL returns the region an AWS endpoint URL names in its host, as
// in https://aps-workspaces.us-west-2.amazonaws.com/workspaces/ws-1/... (AMP),
// https://abc123.execute-api.eu-west-1.amazonaws.com/prod/metrics (API
// Gateway) or aps-workspaces-fips.us-gov-west-1.amazonaws.com, and "" for
// any other URL. It is safe for concurrent use.
func RegionFromURL(rawURL string) string {
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
			if len(labels) >= 2 && regionPattern.MatchString(labels[len(labels)-1]) {
				return labels[len(labels)-1]
			}
			return ""
		}
	}
	return ""
}

// redactURL is rawURL with its password hidden, for messages; a URL that
// does not parse is left out.
func redactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "the URL"
	}
	return u.Redacted()
}
