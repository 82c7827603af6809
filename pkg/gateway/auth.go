package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Key is one accepted API key: its SHA-256 and its tenant.
type Key struct {
	Digest [sha256.Size]byte
	Tenant *Tenant
}

// Tenant is who a key writes as, and the limits it shares with its other
// keys. Zero limits mean none.
type Tenant struct {
	Name string
	// SamplesPerSecond and Burst bound the samples and histograms the
	// tenant writes: a token bucket of Burst (zero: SamplesPerSecond, at
	// least 1) filled at SamplesPerSecond. Zero SamplesPerSecond: no limit.
	SamplesPerSecond float64
	Burst            int
	// MaxSeriesPerRequest refuses larger requests with 413. Zero: the
	// gateway's own limit only (config.MaxSeriesPerRequest); New and Reload
	// refuse a higher one.
	MaxSeriesPerRequest int
	// RemoteWriteNames, when not empty, routes the tenant's series to the
	// remote_write endpoints of these names only: each series record
	// carries them in wal.RouteLabel. Empty: every endpoint.
	RemoteWriteNames []string
}

// keyFrom returns the key a request presents: `Authorization: Bearer
// <key>` (Prometheus' authorization:, the OTel Collector's
// bearertokenauth) or else `X-API-Key`. ok is false when it has none.
func keyFrom(r *http.Request) (key string, ok bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, token, found := strings.Cut(h, " ")
		if found && strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(token) != "" {
			return strings.TrimSpace(token), true
		}
	}
	if k := r.Header.Get("X-API-Key"); k != "" {
		return k, true
	}
	return "", false
}

// lookup returns the tenant of key, or nil. It compares the key's digest
// with every configured digest in constant time and looks at all of them,
// so the time it takes says nothing about which keys exist.
func lookup(keys []Key, key string) *Tenant {
	d := sha256.Sum256([]byte(key))
	var found *Tenant
	for i := range keys {
		if subtle.ConstantTimeCompare(keys[i].Digest[:], d[:]) == 1 {
			found = keys[i].Tenant
		}
	}
	return found
}
