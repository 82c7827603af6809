package receive

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
)

// writeRequest is a decoded remote-write request, 1.0 or 2.0, that ampemu's
// limits and HA deduplication read and rewrite before Prometheus' handler
// stores it. It is not safe for concurrent use.
type writeRequest struct {
	v1 *prompb.WriteRequest // set for 1.0
	v2 *writev2.Request     // set for 2.0
	// labels holds each series' labels, in order; dropLabel and filter keep
	// it in step with the message.
	labels []labels.Labels
}

// maxSnappyRatio bounds how much a valid snappy stream can expand: its
// densest element, a 3-byte copy, yields 64 bytes.
const maxSnappyRatio = 22

// errDecodedTooLarge is returned by decodeWriteRequest for a body whose
// snappy header claims more than any valid body of its size can hold: a
// header may claim up to 4 GiB, which snappy.Decode would allocate at once.
var errDecodedTooLarge = errors.New("snappy-decoded length larger than the body can hold")

// decodeWriteRequest decodes a remote-write body the way Prometheus' handler
// reads it (Content-Type proto parameter, snappy). It returns
// errDecodedTooLarge for a lying snappy header, and another error for a
// request that handler would refuse itself (unknown message, other encoding,
// corrupt body, a label reference out of the symbols table); the caller then
// leaves the request to it, so the sender gets Prometheus' own answer.
func decodeWriteRequest(r *http.Request, body []byte) (*writeRequest, error) {
	v2 := false
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/x-protobuf" {
			return nil, fmt.Errorf("content type %q", ct)
		}
		switch params["proto"] {
		case "", "prometheus.WriteRequest":
		case "io.prometheus.write.v2.Request":
			v2 = true
		default:
			return nil, fmt.Errorf("message %q", params["proto"])
		}
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "snappy") {
		return nil, fmt.Errorf("content encoding %q", enc)
	}
	if n, err := snappy.DecodedLen(body); err == nil && n > maxSnappyRatio*len(body)+64 {
		return nil, fmt.Errorf("%w: %d bytes from a body of %d", errDecodedTooLarge, n, len(body))
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	wr := &writeRequest{}
	var b labels.ScratchBuilder
	if v2 {
		wr.v2 = &writev2.Request{}
		if err := wr.v2.Unmarshal(raw); err != nil {
			return nil, fmt.Errorf("decode 2.0 request: %w", err)
		}
		wr.labels = make([]labels.Labels, len(wr.v2.Timeseries))
		for i, ts := range wr.v2.Timeseries {
			if wr.labels[i], err = ts.ToLabels(&b, wr.v2.Symbols); err != nil {
				return nil, fmt.Errorf("series %d: %w", i, err)
			}
		}
		return wr, nil
	}
	wr.v1 = &prompb.WriteRequest{}
	if err := wr.v1.Unmarshal(raw); err != nil {
		return nil, fmt.Errorf("decode 1.0 request: %w", err)
	}
	wr.labels = make([]labels.Labels, len(wr.v1.Timeseries))
	for i, ts := range wr.v1.Timeseries {
		b.Reset()
		for _, l := range ts.Labels {
			b.Add(l.Name, l.Value)
		}
		b.Sort()
		wr.labels[i] = b.Labels()
	}
	return wr, nil
}

// samples returns the float samples and histograms of series i.
func (wr *writeRequest) samples(i int) int {
	if wr.v2 != nil {
		ts := &wr.v2.Timeseries[i]
		return len(ts.Samples) + len(ts.Histograms)
	}
	ts := &wr.v1.Timeseries[i]
	return len(ts.Samples) + len(ts.Histograms)
}

// totalSamples returns the samples of the series keep marks (all when keep
// is nil).
func (wr *writeRequest) totalSamples(keep []bool) int {
	n := 0
	for i := range wr.labels {
		if keep == nil || keep[i] {
			n += wr.samples(i)
		}
	}
	return n
}

// metadataCount is the metadata entries of a 1.0 request, which Cortex counts
// against the ingestion rate with the samples; 2.0 metadata rides on its
// series.
func (wr *writeRequest) metadataCount() int {
	if wr.v1 != nil {
		return len(wr.v1.Metadata)
	}
	return 0
}

// dropLabel removes the label name from every series.
func (wr *writeRequest) dropLabel(name string) {
	for i := range wr.labels {
		if !wr.labels[i].Has(name) {
			continue
		}
		wr.labels[i] = labels.NewBuilder(wr.labels[i]).Del(name).Labels()
		if wr.v2 != nil {
			ts := &wr.v2.Timeseries[i]
			refs := ts.LabelsRefs[:0]
			for j := 0; j+1 < len(ts.LabelsRefs); j += 2 {
				if wr.v2.Symbols[ts.LabelsRefs[j]] != name {
					refs = append(refs, ts.LabelsRefs[j], ts.LabelsRefs[j+1])
				}
			}
			ts.LabelsRefs = refs
			continue
		}
		ts := &wr.v1.Timeseries[i]
		ts.Labels = slices.DeleteFunc(ts.Labels, func(l prompb.Label) bool { return l.Name == name })
	}
}

// filter keeps the series keep marks, in order.
func (wr *writeRequest) filter(keep []bool) {
	j := 0
	for i := range wr.labels {
		if !keep[i] {
			continue
		}
		wr.labels[j] = wr.labels[i]
		if wr.v2 != nil {
			wr.v2.Timeseries[j] = wr.v2.Timeseries[i]
		} else {
			wr.v1.Timeseries[j] = wr.v1.Timeseries[i]
		}
		j++
	}
	wr.labels = wr.labels[:j]
	if wr.v2 != nil {
		wr.v2.Timeseries = wr.v2.Timeseries[:j]
	} else {
		wr.v1.Timeseries = wr.v1.Timeseries[:j]
	}
}

// metadata calls f with the metadata the request carries: 1.0's metadata
// list, or each 2.0 series' metadata under its metric name.
func (wr *writeRequest) metadata(f func(metric string, md metricMetadata)) {
	if wr.v1 != nil {
		for _, md := range wr.v1.Metadata {
			f(md.MetricFamilyName, metricMetadata{Type: strings.ToLower(md.Type.String()), Help: md.Help, Unit: md.Unit})
		}
		return
	}
	for i, ts := range wr.v2.Timeseries {
		md, err := ts.ToMetadata(wr.v2.Symbols)
		if err != nil || (ts.Metadata.Type == writev2.Metadata_METRIC_TYPE_UNSPECIFIED && md.Help == "" && md.Unit == "") {
			continue
		}
		f(wr.labels[i].Get(labels.MetricName), metricMetadata{Type: string(md.Type), Help: md.Help, Unit: md.Unit})
	}
}

// encode returns the request marshalled and snappy-compressed again.
func (wr *writeRequest) encode() ([]byte, error) {
	var raw []byte
	var err error
	if wr.v2 != nil {
		raw, err = wr.v2.Marshal()
	} else {
		raw, err = wr.v1.Marshal()
	}
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	return snappy.Encode(nil, raw), nil
}
