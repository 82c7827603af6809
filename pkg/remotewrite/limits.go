package remotewrite

import (
	"strings"
	"time"

	"github.com/rwagent/rwagent/pkg/ampquota"
)

// Receiver limits. AMP's request size limit is not on its quota page;
// users report 413 above 1 MB of (compressed) payload
// (ampquota.RequestBytes).
const (
	// DefaultMaxRequestBytes is the largest compressed request sent as is:
	// a batch that encodes larger is split in halves until each fits (a
	// single sample is sent whatever its size). Prometheus' default 2,000
	// samples per send make 50-100 KiB, so only unusually large batches or
	// labels split. A 413 answer splits the same way.
	DefaultMaxRequestBytes = ampquota.RequestBytes
)

// split413Floor is the body size under which a 413 is not answered by
// splitting: no receiver we know limits requests below 64 KiB (AMP's limit
// is 1 MB, Prometheus' 32 MiB decoded), so one that refuses such a body
// refuses everything, and halving down to single samples would cost 2N-1
// requests for N samples.
const split413Floor = 64 << 10

// Limits are what the receiver refuses, enforced before sending so that one
// series or sample it would refuse cannot make it refuse a whole request.
// Series over a limit are dropped and counted (too_many_labels,
// label_too_long); so are samples out of the time window (too_old,
// too_far_in_future). A zero field means no limit. The zero Limits suit a
// receiver whose limits are unknown: it refuses what it refuses, and each
// refusal is counted by the reason its answer gives.
type Limits struct {
	MaxLabels     int // labels per series, __name__ included
	MaxNameBytes  int // bytes of a label name
	MaxValueBytes int // bytes of a label value
	// SampleAgeLimit applies when queue_config's sample_age_limit is
	// zero; a sample_age_limit that is set is honoured as it is.
	SampleAgeLimit time.Duration
	// MaxFuture is how far ahead of the clock a sample may be.
	MaxFuture time.Duration
}

// AMPLimits are the limits of Amazon Managed Service for Prometheus
// (package ampquota says where each comes from): its quota of labels per
// series, Cortex's label lengths, its hour of sample age and Cortex's ten
// minutes ahead. Series over them are dropped before sending, so one bad
// series cannot make AMP refuse a whole batch of good ones.
func AMPLimits() Limits {
	return Limits{
		MaxLabels: ampquota.LabelsPerSeries, MaxNameBytes: ampquota.LabelNameBytes, MaxValueBytes: ampquota.LabelValueBytes,
		SampleAgeLimit: ampquota.MaxSampleAge, MaxFuture: ampquota.MaxFuture,
	}
}

// series returns the per-series part of l.
func (l Limits) series() seriesLimits {
	return seriesLimits{maxLabels: l.MaxLabels, maxNameBytes: l.MaxNameBytes, maxValueBytes: l.MaxValueBytes}
}

// Reasons derived from a receiver's 400 (and 413) answer, for
// samples_dropped_total. A 400 refuses the whole request (AMP) or does not
// say what it kept (Prometheus), so the whole batch is counted under the
// reason of the first error its message names.
const (
	reasonOutOfOrder    = "out_of_order"
	reasonOutOfBounds   = "out_of_bounds"
	reasonDuplicate     = "duplicate_sample"
	reasonTooManyLabels = "too_many_labels"
	reasonLabelTooLong  = "label_too_long"
	reasonTooLarge      = "request_too_large"
	// reasonPartial: a 2.0 receiver answered 2xx but its
	// X-Prometheus-Remote-Write-*-Written headers count fewer than sent.
	reasonPartial = "receiver_partial"
	// reasonOrphanExemplar: an exemplar whose series has no sample in the
	// same 2.0 request (Prometheus' receiver refuses the request).
	reasonOrphanExemplar = "exemplar_without_sample"
	// reasonTooNew: a timestamp further ahead than the receiver accepts
	// (Limits.MaxFuture), dropped before sending.
	reasonTooNew = "too_far_in_future"
)

// rejectTexts maps what Prometheus' (storage.Err*) and AMP's (Cortex's
// validation) 400 messages say to a reason, first match wins.
var rejectTexts = [...]struct{ text, reason string }{
	{"out of order", reasonOutOfOrder},
	{"duplicate sample", reasonDuplicate},
	{"too many labels", reasonTooManyLabels},
	{"too long", reasonLabelTooLong}, // "label name too long", "label value too long"
	{"out of bounds", reasonOutOfBounds},
	{"too old", reasonOutOfBounds},
	{"too new", reasonOutOfBounds},
}

// rejectReason returns the drop reason for a 400 answer with body msg.
func rejectReason(msg string) string {
	msg = strings.ToLower(msg)
	for _, r := range rejectTexts {
		if strings.Contains(msg, r.text) {
			return r.reason
		}
	}
	return reasonRejected
}

// rejectReasons lists every reason sendPart can drop a batch or part of
// one for, so each gets its own log limiter.
var rejectReasons = [...]string{
	reasonRejected, reasonOutOfOrder, reasonOutOfBounds, reasonDuplicate,
	reasonTooManyLabels, reasonLabelTooLong, reasonTooLarge, reasonPartial, reasonOrphanExemplar,
	reasonTooOld, reasonTooNew,
}

// logOverLimit logs the series the last Series record brought that the
// receiver would refuse. Each series is stored, so logged, once; the
// limiters keep a flood of them to one line per interval each.
func (q *Queue) logOverLimit() {
	lim := q.series.limits
	for _, o := range q.series.overLimit {
		switch o.reason {
		case dropTooManyLabels:
			q.limitLog.Log(q.logger, "series has more labels than the receiver accepts, its samples are dropped",
				"reason", reasonTooManyLabels, "series", o.labels.String(), "labels", o.size, "limit", lim.maxLabels)
		case dropLabelTooLong:
			// The series is cut short: its labels may be kilobytes.
			q.lengthLog.Log(q.logger, "series has a label longer than the receiver accepts, its samples are dropped",
				"reason", reasonLabelTooLong, "name", o.labels.Get("__name__"), "label", truncate(o.label, 64), "bytes", o.size,
				"max_name_bytes", lim.maxNameBytes, "max_value_bytes", lim.maxValueBytes)
		}
	}
}

// truncate returns s cut to at most n bytes, marked with "..." if cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
