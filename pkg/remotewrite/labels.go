package remotewrite

import (
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/protobuf/encoding/protowire"
)

// A series' labels are kept the way a remote-write 1.0 TimeSeries carries
// them: for each label, sorted by name, the field-1 tag, the length and a
// prompb.Label message (field 1 the name, field 2 the value, each left out
// when empty, as gogo does). Encoding a 1.0 request copies these bytes as
// they are, and the strings 2.0 and the logs need are slices of them: one
// string per series, about a third of a []prompb.Label's size.

// Protobuf tags of the fields written here: field number << 3 | wire type 2.
const (
	tagLabels     = 1<<3 | 2 // TimeSeries.labels, and Label.name
	tagLabelValue = 2<<3 | 2 // Label.value
)

// appendEncodedLabels appends ls, encoded as above, to dst.
func appendEncodedLabels(dst []byte, ls labels.Labels) []byte {
	ls.Range(func(l labels.Label) {
		dst = append(dst, tagLabels)
		dst = protowire.AppendVarint(dst, uint64(labelSize(l.Name, l.Value)))
		dst = appendLabelField(dst, tagLabels, l.Name)
		dst = appendLabelField(dst, tagLabelValue, l.Value)
	})
	return dst
}

// labelSize is the size of a prompb.Label message.
func labelSize(name, value string) int {
	n := 0
	if name != "" {
		n += 1 + protowire.SizeVarint(uint64(len(name))) + len(name)
	}
	if value != "" {
		n += 1 + protowire.SizeVarint(uint64(len(value))) + len(value)
	}
	return n
}

func appendLabelField(dst []byte, tag byte, s string) []byte {
	if s == "" {
		return dst
	}
	dst = append(dst, tag)
	dst = protowire.AppendVarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// labelIter walks encoded labels without allocating. The strings it
// returns are slices of the encoding.
type labelIter struct {
	rest string
	bad  bool
}

// next returns the next label, or ok false at the end or on bytes that are
// not an encoding appendEncodedLabels wrote (then bad is set).
func (it *labelIter) next() (name, value string, ok bool) {
	if it.rest == "" || it.bad {
		return "", "", false
	}
	if it.rest[0] != tagLabels {
		it.bad = true
		return "", "", false
	}
	msg, rest, ok := cutLengthPrefixed(it.rest[1:])
	if !ok {
		it.bad = true
		return "", "", false
	}
	it.rest = rest
	for msg != "" {
		tag := msg[0]
		var field string
		if field, msg, ok = cutLengthPrefixed(msg[1:]); !ok {
			it.bad = true
			return "", "", false
		}
		switch tag {
		case tagLabels:
			name = field
		case tagLabelValue:
			value = field
		default:
			it.bad = true
			return "", "", false
		}
	}
	return name, value, true
}

// cutLengthPrefixed splits a uvarint length and that many bytes off s.
func cutLengthPrefixed(s string) (field, rest string, ok bool) {
	var n uint64
	for i := 0; i < len(s) && i < 10; i++ {
		b := s[i]
		n |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			s = s[i+1:]
			if n > uint64(len(s)) {
				return "", "", false
			}
			return s[:n], s[n:], true
		}
	}
	return "", "", false
}

// encodedMetricName returns the __name__ of encoded labels, or "".
func encodedMetricName(enc string) string {
	it := labelIter{rest: enc}
	for name, value, ok := it.next(); ok; name, value, ok = it.next() {
		if name == model.MetricNameLabel {
			return value
		}
	}
	return ""
}
