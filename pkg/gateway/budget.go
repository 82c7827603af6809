package gateway

import (
	"fmt"
	"unsafe"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/config"
)

// The bounds of what decoding one remote-write request may hold, so that
// a request's bookkeeping stays bounded however small its parts are on
// the wire. A series can take 2 bytes of the decoded body and some 200
// bytes of bookkeeping, a label 2 bytes and 48, a histogram 2 bytes and
// 460: without these bounds one request at the decoded-size bound (80 MiB
// by default) could cost gigabytes before any check of its series.
// config.MaxSeriesPerRequest bounds the series.
//
// maxDecodeCost is config.MaxDecodeCost, the bound of the bookkeeping
// one request's decoding holds, as decodeCost estimates it from what the
// request holds as the parser reads it, before it allocates for it.
// Slices grow by doubling, so the memory held is at most about twice
// this, and twice what is charged is what a request reserves from the
// gateway's memory budget (membudget.go). 40,000 series of 15 labels and
// a sample, or 100,000 of 3 labels, are the most it takes.
const maxDecodeCost = config.MaxDecodeCost

// heldPerCharged is how many bytes a request reserves from the memory
// budget for each byte of bookkeeping charged: its slices grow by doubling.
const heldPerCharged = 2

// What decoding charges to maxDecodeCost for each part of a request: the
// decoder's entry for it, the batch's, and the WAL record's.
const (
	costSeries = int(unsafe.Sizeof(wireSeries{}) + unsafe.Sizeof(labels.Labels{}) + unsafe.Sizeof((*cachedSeries)(nil)) +
		unsafe.Sizeof(span{}) + unsafe.Sizeof(chunks.HeadSeriesRef(0)) + 1 + unsafe.Sizeof(record.RefSeries{}))
	costPair   = int(unsafe.Sizeof(wirePair{}))
	costRef    = int(unsafe.Sizeof(uint32(0)))
	costSymbol = int(unsafe.Sizeof([]byte(nil))) + 1
	costSample = int(unsafe.Sizeof(record.RefSample{})) + 16 // + its WAL record, deltas as varints
	// A histogram is unmarshalled, then converted; a byte of its packed
	// buckets can become an int64 in both.
	costHistogram     = int(max(unsafe.Sizeof(prompb.Histogram{}), unsafe.Sizeof(writev2.Histogram{}))+unsafe.Sizeof(histogram.FloatHistogram{})+unsafe.Sizeof(record.RefHistogramSample{})) + 16
	costHistogramByte = 16
	// An exemplar's labels are unmarshalled (a prompb.Label of 64 bytes
	// for 2 bytes), then built.
	costExemplar     = int(max(unsafe.Sizeof(prompb.Exemplar{}), unsafe.Sizeof(writev2.Exemplar{})) + unsafe.Sizeof(record.RefExemplar{}))
	costExemplarByte = 40
	// A new series' labels are built (a byte of their names and values,
	// and one for each length, in labelBytes) and kept in the cache.
	costLabelByte = 2
)

// charge adds n bytes to the request's estimated bookkeeping, refusing
// the request when that goes over the bound, and reserves what it holds
// from the gateway's memory budget.
func (d *decoder) charge(n int) error {
	d.cost += n
	if d.cost > d.maxCost {
		return &decodeError{status: 413, reason: reasonDecodeTooLarge, msg: fmt.Sprintf(
			"the request holds too much to decode at once: its series, labels, samples, histograms and exemplars take over %d MiB, the gateway's limit per request: send fewer per request",
			d.maxCost>>20)}
	}
	return d.mem.take(heldPerCharged * int64(n))
}

// addSeries charges a series and checks the gateway's series bound before
// the parser reads it.
func (d *decoder) addSeries() error {
	if len(d.series) >= d.maxSeries {
		return &decodeError{status: 413, reason: reasonTooManySeries, msg: fmt.Sprintf(
			"more than %d series in the request, the gateway's limit per request: send fewer per request", d.maxSeries)}
	}
	return d.charge(costSeries)
}
