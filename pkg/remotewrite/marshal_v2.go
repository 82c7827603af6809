package remotewrite

import (
	"fmt"
	"math"
	"slices"

	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"google.golang.org/protobuf/encoding/protowire"
)

// appendRequestV2 appends req in protobuf wire format to dst, the same bytes
// gogo's req.Marshal writes (fields in order, an empty metadata message per
// series included), without its per-series scratch allocation for packed
// label refs. Histograms are marshalled by gogo into dst's spare capacity.
// It returns an error only if gogo's histogram marshaller does.
func appendRequestV2(dst []byte, req *writev2.Request) ([]byte, error) {
	for _, s := range req.Symbols {
		dst = protowire.AppendTag(dst, 4, protowire.BytesType)
		dst = protowire.AppendString(dst, s)
	}
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		dst = protowire.AppendTag(dst, 5, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(ts.Size()))
		var err error
		if dst, err = appendTimeSeriesV2(dst, ts); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

func appendTimeSeriesV2(dst []byte, ts *writev2.TimeSeries) ([]byte, error) {
	dst = appendPackedRefs(dst, 1, ts.LabelsRefs)
	for i := range ts.Samples {
		s := &ts.Samples[i]
		dst = protowire.AppendTag(dst, 2, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(s.Size()))
		if s.Value != 0 {
			dst = protowire.AppendTag(dst, 1, protowire.Fixed64Type)
			dst = protowire.AppendFixed64(dst, math.Float64bits(s.Value))
		}
		dst = appendInt64(dst, 2, s.Timestamp)
		dst = appendInt64(dst, 3, s.StartTimestamp)
	}
	for i := range ts.Histograms {
		var err error
		if dst, err = appendMessage(dst, 3, &ts.Histograms[i]); err != nil {
			return dst, fmt.Errorf("marshal histogram: %w", err)
		}
	}
	for i := range ts.Exemplars {
		e := &ts.Exemplars[i]
		dst = protowire.AppendTag(dst, 4, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(e.Size()))
		dst = appendPackedRefs(dst, 1, e.LabelsRefs)
		if e.Value != 0 {
			dst = protowire.AppendTag(dst, 2, protowire.Fixed64Type)
			dst = protowire.AppendFixed64(dst, math.Float64bits(e.Value))
		}
		dst = appendInt64(dst, 3, e.Timestamp)
	}
	// gogo always writes the (non-nullable) metadata message.
	dst, err := appendMessage(dst, 5, &ts.Metadata)
	if err != nil {
		return dst, fmt.Errorf("marshal metadata: %w", err)
	}
	return dst, nil
}

// appendPackedRefs appends refs as a packed repeated varint field, nothing
// if refs is empty.
func appendPackedRefs(dst []byte, field protowire.Number, refs []uint32) []byte {
	if len(refs) == 0 {
		return dst
	}
	l := 0
	for _, r := range refs {
		l += protowire.SizeVarint(uint64(r))
	}
	dst = protowire.AppendTag(dst, field, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(l))
	for _, r := range refs {
		dst = protowire.AppendVarint(dst, uint64(r))
	}
	return dst
}

// appendInt64 appends a non-zero int64 varint field.
func appendInt64(dst []byte, field protowire.Number, v int64) []byte {
	if v == 0 {
		return dst
	}
	dst = protowire.AppendTag(dst, field, protowire.VarintType)
	return protowire.AppendVarint(dst, uint64(v))
}

// grow extends dst by n bytes, reusing its capacity when it can.
func grow(dst []byte, n int) []byte {
	return slices.Grow(dst, n)[:len(dst)+n]
}
