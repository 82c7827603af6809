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
	tagV2MetadataType  = 1<<3 | 0 // Metadata.type
	tagV2MetadataHelp  = 3<<3 | 0 // Metadata.help_ref
	tagV2MetadataUnit  = 4<<3 | 0 // Metadata.unit_ref
)

// appendRequestV2 appends req in protobuf wire format to dst, the same bytes
// gogo's req.Marshal writes (fields in order, an empty metadata message per
// series included), without its per-series scratch allocation for packed
// label refs, and sizing each series' samples and label refs once rather
// than once for the length prefix and again to write them. Histograms and
// exemplars, rare, are marshalled by gogo, histograms into dst's spare
// capacity. It returns an error only if
// gogo's histogram marshaller does.
func appendRequestV2(dst []byte, req *writev2.Request) ([]byte, error) {
	for _, s := range req.Symbols {
		dst = append(dst, tagV2Symbols)
		dst = protowire.AppendString(dst, s)
	}
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		size, refsLen := timeSeriesSizeV2(ts)
		dst = append(dst, tagV2Timeseries)
		dst = protowire.AppendVarint(dst, uint64(size))
		var err error
		if dst, err = appendTimeSeriesV2(dst, ts, refsLen); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// timeSeriesSizeV2 returns ts.Size(), gogo's size of ts, and the length of
// its packed label refs.
func timeSeriesSizeV2(ts *writev2.TimeSeries) (size, refsLen int) {
	refsLen = packedRefsLen(ts.LabelsRefs)
	if refsLen > 0 {
		size = 1 + protowire.SizeVarint(uint64(refsLen)) + refsLen
	}
	for i := range ts.Samples {
		n := sampleSizeV2(&ts.Samples[i])
		size += 1 + protowire.SizeVarint(uint64(n)) + n
	}
	for i := range ts.Histograms {
		n := ts.Histograms[i].Size()
		size += 1 + protowire.SizeVarint(uint64(n)) + n
	}
	for i := range ts.Exemplars {
		n := ts.Exemplars[i].Size()
		size += 1 + protowire.SizeVarint(uint64(n)) + n
	}
	size += 2 + metadataSizeV2(&ts.Metadata) // tag, a one-byte length
	return size, refsLen
}

// sampleSizeV2 is s.Size(): gogo leaves out a zero value (+0 and -0) and
// zero timestamps.
func sampleSizeV2(s *writev2.Sample) int {
	n := 0
	if s.Value != 0 {
		n += 1 + 8
	}
	if s.Timestamp != 0 {
		n += 1 + protowire.SizeVarint(uint64(s.Timestamp))
	}
	if s.StartTimestamp != 0 {
		n += 1 + protowire.SizeVarint(uint64(s.StartTimestamp))
	}
	return n
}

// appendTimeSeriesV2 appends the fields of ts; refsLen is the length of
// its packed label refs (packedRefsLen).
func appendTimeSeriesV2(dst []byte, ts *writev2.TimeSeries, refsLen int) ([]byte, error) {
	dst = appendPackedRefs(dst, tagV2LabelsRefs, ts.LabelsRefs, refsLen)
	for i := range ts.Samples {
		s := &ts.Samples[i]
		dst = append(dst, tagV2Samples, byte(sampleSizeV2(s))) // at most 31: one byte
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
		dst = appendPackedRefs(dst, tagV2LabelsRefs, e.LabelsRefs, packedRefsLen(e.LabelsRefs))
		if e.Value != 0 {
			dst = append(dst, tagV2ExemplarValue)
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(e.Value))
		}
		dst = appendInt64(dst, tagV2ExemplarTime, e.Timestamp)
	}
	// gogo always writes the (non-nullable) metadata message.
	return appendMetadataV2(dst, &ts.Metadata), nil
}

// metadataSizeV2 is m.Size(): gogo leaves out zero fields.
func metadataSizeV2(m *writev2.Metadata) int {
	n := 0
	if m.Type != 0 {
		n += 1 + protowire.SizeVarint(uint64(m.Type))
	}
	if m.HelpRef != 0 {
		n += 1 + protowire.SizeVarint(uint64(m.HelpRef))
	}
	if m.UnitRef != 0 {
		n += 1 + protowire.SizeVarint(uint64(m.UnitRef))
	}
	return n
}

// appendMetadataV2 appends the TimeSeries.metadata field holding m.
func appendMetadataV2(dst []byte, m *writev2.Metadata) []byte {
	dst = append(dst, tagV2Metadata, byte(metadataSizeV2(m))) // at most 23: one byte
	if m.Type != 0 {
		dst = append(dst, tagV2MetadataType)
		dst = protowire.AppendVarint(dst, uint64(m.Type))
	}
	if m.HelpRef != 0 {
		dst = append(dst, tagV2MetadataHelp)
		dst = protowire.AppendVarint(dst, uint64(m.HelpRef))
	}
	if m.UnitRef != 0 {
		dst = append(dst, tagV2MetadataUnit)
		dst = protowire.AppendVarint(dst, uint64(m.UnitRef))
	}
	return dst
}

// packedRefsLen is the length of refs as a packed repeated varint field,
// without tag and length.
func packedRefsLen(refs []uint32) int {
	l := 0
	for _, r := range refs {
		switch {
		case r < 1<<7:
			l++
		case r < 1<<14:
			l += 2
		default:
			l += protowire.SizeVarint(uint64(r))
		}
	}
	return l
}

// appendPackedRefs appends refs, l bytes long packed (packedRefsLen), as
// a packed repeated varint field with tag, nothing if refs is empty.
func appendPackedRefs(dst []byte, tag byte, refs []uint32, l int) []byte {
	if len(refs) == 0 {
		return dst
	}
	dst = append(dst, tag)
	dst = protowire.AppendVarint(dst, uint64(l))
	for _, r := range refs {
		// Refs are ordered by use: most take one or two bytes.
		switch {
		case r < 1<<7:
			dst = append(dst, byte(r))
		case r < 1<<14:
			dst = append(dst, byte(r)|0x80, byte(r>>7))
		default:
			dst = protowire.AppendVarint(dst, uint64(r))
		}
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
