package gateway

import (
	"errors"
	"fmt"
	"io"
)

// The protobuf reading of the remote-write decoders. Each function reads
// as the Unmarshal methods gogo/protobuf generates for prompb and
// writev2 do, quirks included (a tag's field number is truncated to
// int32, a packed varint may run past its field), so the gateway accepts
// and refuses exactly the bytes Prometheus' own types do, with the same
// messages. FuzzDecodeDifferential compares them.

// Errors of malformed protobuf, worded as gogo/protobuf's.
var (
	errIntOverflow     = errors.New("proto: integer overflow")
	errInvalidLength   = errors.New("proto: negative length found during unmarshaling")
	errUnexpectedGroup = errors.New("proto: unexpected end of group")
)

// Wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// uvarint reads a varint at b[i:] and returns it and the index after it.
func uvarint(b []byte, i int) (uint64, int, error) {
	if i < len(b) && b[i] < 0x80 {
		return uint64(b[i]), i + 1, nil
	}
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if shift >= 64 {
			return 0, i, errIntOverflow
		}
		if i >= len(b) {
			return 0, i, io.ErrUnexpectedEOF
		}
		c := b[i]
		i++
		v |= uint64(c&0x7F) << shift
		if c < 0x80 {
			return v, i, nil
		}
	}
}

// tag reads a field's tag at b[i:] in a message of type msg (for errors).
func tag(b []byte, i int, msg string) (field int32, typ int, next int, err error) {
	if i < len(b) && b[i] < 0x80 && b[i] >= 8 && b[i]&7 != 4 { // one byte, a field, not an end of group
		return int32(b[i] >> 3), int(b[i] & 7), i + 1, nil
	}
	return tagSlow(b, i, msg)
}

func tagSlow(b []byte, i int, msg string) (field int32, typ int, next int, err error) {
	w, i, err := uvarint(b, i)
	if err != nil {
		return 0, 0, i, err
	}
	field, typ = int32(w>>3), int(w&7)
	if typ == 4 {
		return 0, 0, i, fmt.Errorf("proto: %s: wiretype end group for non-group", msg)
	}
	if field <= 0 {
		return 0, 0, i, fmt.Errorf("proto: %s: illegal tag %d (wire type %d)", msg, field, w)
	}
	return field, typ, i, nil
}

// wrongType is the error of a known field of the wrong wire type.
func wrongType(typ int, field string) error {
	return fmt.Errorf("proto: wrong wireType = %d for field %s", typ, field)
}

// delimited reads the length of a length-delimited field at b[i:] and
// returns the bounds of its content.
func delimited(b []byte, i int) (start, end int, err error) {
	if i < len(b) && b[i] < 0x80 && i+1+int(b[i]) <= len(b) {
		return i + 1, i + 1 + int(b[i]), nil
	}
	return delimitedSlow(b, i)
}

func delimitedSlow(b []byte, i int) (start, end int, err error) {
	v, i, err := uvarint(b, i)
	if err != nil {
		return 0, 0, err
	}
	n := int(v)
	if n < 0 {
		return 0, 0, errInvalidLength
	}
	end = i + n
	if end < 0 {
		return 0, 0, errInvalidLength
	}
	if end > len(b) {
		return 0, 0, io.ErrUnexpectedEOF
	}
	return i, end, nil
}

// fixed64 reads the 8 bytes of a fixed64 field at b[i:].
func fixed64(b []byte, i int) (uint64, int, error) {
	if i+8 > len(b) {
		return 0, i, io.ErrUnexpectedEOF
	}
	_ = b[i+7]
	v := uint64(b[i]) | uint64(b[i+1])<<8 | uint64(b[i+2])<<16 | uint64(b[i+3])<<24 |
		uint64(b[i+4])<<32 | uint64(b[i+5])<<40 | uint64(b[i+6])<<48 | uint64(b[i+7])<<56
	return v, i + 8, nil
}

// skip skips the unknown field whose tag starts at b[from] and returns
// the index after it.
func skip(b []byte, from int) (int, error) {
	n, err := skipLen(b[from:])
	if err != nil {
		return 0, err
	}
	if n < 0 || from+n < 0 {
		return 0, errInvalidLength
	}
	if from+n > len(b) {
		return 0, io.ErrUnexpectedEOF
	}
	return from + n, nil
}

// skipLen is the length of the field (a group with what it holds) at the
// start of b, as gogo's skipTypes measures it: it may be past len(b).
func skipLen(b []byte) (int, error) {
	i, depth := 0, 0
	for i < len(b) {
		w, next, err := uvarint(b, i)
		if err != nil {
			return 0, err
		}
		i = next
		switch typ := int(w & 7); typ {
		case wireVarint:
			for shift := uint(0); ; shift += 7 {
				if shift >= 64 {
					return 0, errIntOverflow
				}
				if i >= len(b) {
					return 0, io.ErrUnexpectedEOF
				}
				i++
				if b[i-1] < 0x80 {
					break
				}
			}
		case wireFixed64:
			i += 8
		case wireBytes:
			v, next, err := uvarint(b, i)
			if err != nil {
				return 0, err
			}
			i = next
			n := int(v)
			if n < 0 {
				return 0, errInvalidLength
			}
			i += n
		case 3:
			depth++
		case 4:
			if depth == 0 {
				return 0, errUnexpectedGroup
			}
			depth--
		case wireFixed32:
			i += 4
		default:
			return 0, fmt.Errorf("proto: illegal wireType %d", typ)
		}
		if i < 0 {
			return 0, errInvalidLength
		}
		if depth == 0 {
			return i, nil
		}
	}
	return 0, io.ErrUnexpectedEOF
}
