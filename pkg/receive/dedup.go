package receive

import (
	"fmt"
	"sync"
	"time"
)

// haTracker elects one replica per HA cluster, as AMP does for senders that
// label their series with cluster and __replica__ ("Deduplicating high
// availability metrics", AMP-ingest-dedupe.html): samples of the elected
// replica are stored, without the replica label; those of any other replica
// of the cluster are answered 202 and dropped, until the elected one has sent
// nothing for the failover timeout. Then the next replica to send is elected.
//
// It follows Cortex's HATracker.CheckReplica (pkg/ha/ha_tracker.go) with one
// simplification: Cortex refreshes the elected replica's time in its KV store
// only every 15s (ha_tracker_update_timeout, plus jitter), so it may fail over
// up to that much sooner than 30s after the last sample; ampemu refreshes it
// on every request and fails over exactly failover after the last one. Like
// Cortex, clusters are never forgotten while the process runs (Cortex forgets
// one after 30 minutes without samples); they are not kept across restarts.
//
// It is safe for concurrent use.
type haTracker struct {
	failover    time.Duration
	maxClusters int // <= 0: no limit

	mu      sync.Mutex
	elected map[string]electedReplica // by cluster; guarded by mu
}

type electedReplica struct {
	replica string
	seen    time.Time // the elected replica's last request
}

func newHATracker(failover time.Duration, maxClusters int) *haTracker {
	return &haTracker{failover: failover, maxClusters: maxClusters, elected: map[string]electedReplica{}}
}

// replicasNotMatchError is the answer to a non-elected replica: 202 with
// Cortex's text.
type replicasNotMatchError struct {
	replica, elected string
}

func (e *replicasNotMatchError) Error() string {
	return fmt.Sprintf("replicas did not match, rejecting sample: replica=%s, elected=%s", e.replica, e.elected)
}

// tooManyClustersError refuses a new cluster past Limits.MaxHAClusters, with
// AMP's text ("too many HA clusters (limit: 500)").
type tooManyClustersError struct{ limit int }

func (e *tooManyClustersError) Error() string {
	return fmt.Sprintf("too many HA clusters (limit: %d)", e.limit)
}

// check decides whether a request of replica of cluster, received at now, is
// stored. It returns nil (and elects or refreshes replica), a
// *replicasNotMatchError or a *tooManyClustersError.
func (t *haTracker) check(cluster, replica string, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.elected[cluster]
	switch {
	case !ok:
		if t.maxClusters > 0 && len(t.elected) >= t.maxClusters {
			return &tooManyClustersError{limit: t.maxClusters}
		}
	case e.replica == replica:
	case now.Sub(e.seen) < t.failover:
		return &replicasNotMatchError{replica: replica, elected: e.replica}
	}
	t.elected[cluster] = electedReplica{replica: replica, seen: now}
	return nil
}

// electedFor returns the replica elected for cluster, "" if none.
func (t *haTracker) electedFor(cluster string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.elected[cluster].replica
}
