package gateway

import (
	"time"

	"github.com/rwagent/rwagent/pkg/tokenbucket"
	"github.com/rwagent/rwagent/pkg/wal"
)

// tenantState is what the gateway keeps per tenant: its rate limit and
// its route.
type tenantState struct {
	t      *Tenant
	bucket *tokenbucket.Bucket // nil: no rate limit
	route  string              // the wal.RouteLabel value; "": every endpoint
}

func newTenantState(t *Tenant, now time.Time) *tenantState {
	ts := &tenantState{t: t}
	if t.SamplesPerSecond > 0 {
		ts.bucket = tokenbucket.New(t.SamplesPerSecond, t.Burst, now)
	}
	if len(t.RemoteWriteNames) > 0 {
		ts.route = wal.RouteValue(t.RemoteWriteNames)
	}
	return ts
}
