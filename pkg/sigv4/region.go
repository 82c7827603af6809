package sigv4

import "net/url"

// redactURL is rawURL with its password hidden, for messages; a URL that
// does not parse is left out.
func redactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "the URL"
	}
	return u.Redacted()
}
