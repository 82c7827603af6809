package remotewrite

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"google.golang.org/protobuf/encoding/protowire"
)

// Protobuf tags of a 2.0 request, written as batch.go's 1.0 tags are.
const (
	tagV2Symbols       = 4<<3 | 2 // Request.symbols
	tagV2Timeseries    = 5<<3 | 2 // Request.timeseries
	tagV2LabelsRefs    = 1<<3 | 2 // TimeSeries.labels_refs, Exemplar.labels_refs (packed)
	tagV2Samples       = 2<<3 | 2 // TimeSeries.samples
	tagV2Histograms    = 3<<3 | 2 // TimeSeries.histograms
	tagV2Exemplars     = 4<<3 | 2 // TimeSeries.exemplars
	tagV2Metadata      = 5<<3 | 2 // TimeSeries.metadata
	tagV2SampleValue   = 1<<3 | 1 // Sample.value
	tagV2SampleTime    = 2<<3 | 0 // Sample.timestamp
	tagV2SampleStart   = 3<<3 | 0 // Sample.start_timestamp
	tagV2ExemplarValue = 2<<3 | 1 // Exemplar.value
	tagV2ExemplarTime  = 3<<3 | 0 // Exemplar.timestamp
)

// appendRequestV2 appends req in protobuf wire format to dst, the same bytes
// gogo's req.Marshal writes (fields in order, an empty metadata message per
// series included), without its per-series scratch allocation for packed
// label refs. Histograms are marshalled by gogo into dst's spare capacity.
// It returns an error only if gogo's histogram marshaller does.
func appendRequestV2(dst []byte, req *writev2.Request) ([]byte, error) {
	for _, s := range req.Symbols {
		dst = append(dst, tagV2Symbols)
		dst = protowire.AppendString(dst, s)
	}
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		dst = append(dst, tagV2Timeseries)
		dst = protowire.AppendVarint(dst, uint64(ts.Size()))
		var err error
		if dst, err = appendTimeSeriesV2(dst, ts); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

func appendTimeSeriesV2(dst []byte, ts *writev2.TimeSeries) ([]byte, error) {
	dst = appendPackedRefs(dst, tagV2LabelsRefs, ts.LabelsRefs)
	for i := range ts.Samples {
		s := &ts.Samples[i]
		dst = append(dst, tagV2Samples)
		dst = protowire.AppendVarint(dst, uint64(s.Size()))
		if s.Value != 0 {
			dst = append(dst, tagV2SampleValue)
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(s.Value))
		}
		dst = appendInt64(dst, tagV2SampleTime, s.Timestamp)
		dst = appendInt64(dst, tagV2SampleStart, s.StartTimestamp)
	}
	for i := range ts.Histograms {
		var err error
		if dst, err = appendMessage(dst, tagV2Histograms, &ts.Histograms[i]); err != nil {
			return dst, fmt.Errorf("marshal histogram: %w", err)
		}
	}
	for i := range ts.Exemplars {
		e := &ts.Exemplars[i]
		dst = append(dst, tagV2Exemplars)
		dst = protowire.AppendVarint(dst, uint64(e.Size()))
		dst = appendPackedRefs(dst, tagV2LabelsRefs, e.LabelsRefs)
		if e.Value != 0 {
			dst = append(dst, tagV2ExemplarValue)
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(e.Value))
		}
		dst = appendInt64(dst, tagV2ExemplarTime, e.Timestamp)
	}
	// gogo always writes the (non-nullable) metadata message.
	dst, err := appendMessage(dst, tagV2Metadata, &ts.Metadata)
	if err != nil {
		return dst, fmt.Errorf("marshal metadata: %w", err)
	}
	return dst, nil
}

// appendPackedRefs appends refs as a packed repeated varint field with tag,
// nothing if refs is empty.
func appendPackedRefs(dst []byte, tag byte, refs []uint32) []byte {
	if len(refs) == 0 {
		return dst
	}
	l := 0
	for _, r := range refs {
		l += protowire.SizeVarint(uint64(r))
	}
	dst = append(dst, tag)
	dst = protowire.AppendVarint(dst, uint64(l))
	for _, r := range refs {
		dst = protowire.AppendVarint(dst, uint64(r))
	}
	return dst
}

// appendInt64 appends a non-zero int64 varint field with tag.
func appendInt64(dst []byte, tag byte, v int64) []byte {
	if v == 0 {
		return dst
	}
	dst = append(dst, tag)
	return protowire.AppendVarint(dst, uint64(v))
}

// grow extends dst by n bytes, reusing its capacity when it can.
func grow(dst []byte, n int) []byte {
	return slices.Grow(dst, n)[:len(dst)+n]
}
