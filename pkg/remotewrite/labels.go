package remotewrite

import (
	"fmt"
	"hash/maphash"
	"sync/atomic"

	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/rwagent/rwagent/pkg/hashindex"
)

// A series' labels are kept as references into a table of label pairs
// (pairTable), each pair stored once, the way a remote-write 1.0
// TimeSeries carries it: the field-1 tag, the length and a prompb.Label
// message (field 1 the name, field 2 the value, each left out when empty,
// as gogo does). Encoding a 1.0 request copies these bytes as they are, and
// the strings 2.0 and the logs need are slices of them. A series holds its
// pair ids, sorted by name, as varints: about 20 bytes where the encoded
// labels took about 220, since names and most values repeat across series
// (every series of a target shares job and instance, a pod's series share
// its pod and uid labels, a histogram's buckets all but le).
//
// Each Queue has its own table, made with its seriesTable and handed to
// its shards' encoders; a series does not point to its table (which would
// take it from 24 to 48 bytes), so whoever reads its labels passes the
// table along. The table is safe for concurrent use. Pairs are reference
// counted: a series forgotten by its table gives up its references only
// once no queued sample of it remains (seriesTable.release), so an id is
// never reused while an encoder may read it; a Queue gives every reference
// back when Run returns. Pages are never freed: their memory (24 bytes a
// pair) follows the most pairs ever held at once.

// Protobuf tags of the fields written here: field number << 3 | wire type 2.
const (
	tagLabels     = 1<<3 | 2 // TimeSeries.labels, and Label.name
	tagLabelValue = 2<<3 | 2 // Label.value
)

// appendEncodedLabel appends one label, encoded as above, to dst.
func appendEncodedLabel(dst []byte, name, value string) []byte {
	dst = append(dst, tagLabels)
	dst = protowire.AppendVarint(dst, uint64(labelSize(name, value)))
	dst = appendLabelField(dst, tagLabels, name)
	return appendLabelField(dst, tagLabelValue, value)
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

// decodeLabel splits the first label off enc, encoded labels as
// appendEncodedLabel writes them. ok is false at the end of enc or on bytes
// that are not such an encoding. The strings are slices of enc.
func decodeLabel(enc string) (name, value, rest string, ok bool) {
	if enc == "" || enc[0] != tagLabels {
		return "", "", "", false
	}
	msg, rest, ok := cutLengthPrefixed(enc[1:])
	if !ok {
		return "", "", "", false
	}
	for msg != "" {
		tag := msg[0]
		var field string
		if field, msg, ok = cutLengthPrefixed(msg[1:]); !ok {
			return "", "", "", false
		}
		switch tag {
		case tagLabels:
			name = field
		case tagLabelValue:
			value = field
		default:
			return "", "", "", false
		}
	}
	return name, value, rest, true
}

// cutLengthPrefixed splits a uvarint length and that many bytes off s.
func cutLengthPrefixed(s string) (field, rest string, ok bool) {
	n, s, ok := cutUvarint(s)
	if !ok || n > uint64(len(s)) {
		return "", "", false
	}
	return s[:n], s[n:], true
}

// cutUvarint splits a uvarint off s.
func cutUvarint(s string) (v uint64, rest string, ok bool) {
	for i := 0; i < len(s) && i < 10; i++ {
		b := s[i]
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			return v, s[i+1:], true
		}
	}
	return 0, "", false
}

// nextPairID splits the first pair id off ids, a non-empty run of varint
// ids as a series holds them. Most ids take one or two bytes.
func nextPairID(ids string) (uint32, string) {
	if b := ids[0]; b < 0x80 {
		return uint32(b), ids[1:]
	}
	if len(ids) > 1 && ids[1] < 0x80 {
		return uint32(ids[0]&0x7f) | uint32(ids[1])<<7, ids[2:]
	}
	v, rest, _ := cutUvarint(ids)
	return uint32(v), rest
}

// pairBits sets the pairs per page of the pair table: 1024.
const pairBits = 10

// pairPage holds the pairs of 1024 consecutive ids.
type pairPage struct {
	// enc is each pair's encoding. An id's entry is written before any
	// series with the id is handed to a shard and cleared only after no
	// queued sample has such a series, so encoders read it without
	// locking.
	enc [1 << pairBits]string
	// refs counts the series (and retired series) holding each id; hash
	// is the hash of enc, for the index. Only the table's writer uses them.
	refs [1 << pairBits]uint32
	hash [1 << pairBits]uint32
}

// pairTable interns label pairs. It has one writer, the goroutine that owns
// its seriesTable (the Queue's reader, then Run once the shards have
// stopped), which alone calls intern, release and len; pages may be read by
// any goroutine, and the entries of ids held by a series are stable while
// the series is.
type pairTable struct {
	dir atomic.Pointer[[]*pairPage] // a new slice header each time a page is added

	seed  maphash.Seed
	next  uint32          // ids below it have been handed out
	free  []uint32        // ids handed out and released, for reuse
	index hashindex.Index // ids by pairPage.hash
}

// minIndexSlots is the smallest index of a pair table: a queue holds
// thousands of pairs as soon as it has a few targets' series.
const minIndexSlots = 1024

func newPairTable() *pairTable {
	t := &pairTable{seed: maphash.MakeSeed(), index: hashindex.New(minIndexSlots)}
	t.dir.Store(new([]*pairPage))
	return t
}

// pages returns the pages, indexed by id >> pairBits.
func (t *pairTable) pages() []*pairPage { return *t.dir.Load() }

// intern returns the id of the pair encoded as enc, adding a reference to
// it, and the pair's encoding as stored.
func (t *pairTable) intern(enc []byte) (uint32, string) {
	h := uint32(maphash.Bytes(t.seed, enc))
	pages := t.pages()
	i := t.index.Home(uint64(h))
	for ; ; i = t.index.Next(i) {
		at := t.index.At(i)
		if at < 0 {
			break
		}
		id := uint32(at)
		p := pages[id>>pairBits]
		if k := id & (1<<pairBits - 1); p.hash[k] == h && p.enc[k] == string(enc) {
			p.refs[k]++
			return id, p.enc[k]
		}
	}
	var id uint32
	if n := len(t.free); n > 0 {
		id = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		id = t.next
		t.next++
		if int(id>>pairBits) == len(pages) {
			// Readers of an older slice never look past its length, so
			// appending in place is safe.
			grown := append(pages, new(pairPage))
			t.dir.Store(&grown)
			pages = grown
		}
	}
	p, k := pages[id>>pairBits], id&(1<<pairBits-1)
	p.enc[k], p.hash[k], p.refs[k] = string(enc), h, 1
	t.index.Insert(i, id, t.hash)
	return id, p.enc[k]
}

// release drops one reference to id; the last one frees it.
func (t *pairTable) release(id uint32) {
	pages := t.pages()
	p, k := pages[id>>pairBits], id&(1<<pairBits-1)
	if p.refs[k]--; p.refs[k] > 0 {
		return
	}
	i := t.index.Home(uint64(p.hash[k]))
	for ; ; i = t.index.Next(i) {
		at := t.index.At(i)
		if at < 0 {
			panic(fmt.Sprintf("pair table: id %d is not in its index", id))
		}
		if uint32(at) == id {
			break
		}
	}
	t.index.Delete(i, t.hash)
	p.enc[k], p.hash[k] = "", 0
	t.free = append(t.free, id)
}

// hash returns the hash of the pair id, as the index keeps it.
func (t *pairTable) hash(id uint32) uint64 {
	return uint64(t.pages()[id>>pairBits].hash[id&(1<<pairBits-1)])
}

// freeIndex gives back the index's table, which is off the Go heap once large
// (package offheap). The writer calls it once no pair will be interned or
// released again (Queue.Run, after seriesTable.close); the pages stay
// readable.
func (t *pairTable) freeIndex() { t.index.Free() }

// len returns the number of pairs held.
func (t *pairTable) len() int {
	return t.index.Len()
}

// labelIter walks a series' labels without allocating. The strings it
// returns are slices of the pair table's encodings.
type labelIter struct {
	ids   string // varint pair ids not yet walked
	pages []*pairPage
}

// next returns the next label, or ok false at the end.
func (it *labelIter) next() (name, value string, ok bool) {
	if it.ids == "" {
		return "", "", false
	}
	var id uint32
	id, it.ids = nextPairID(it.ids)
	name, value, _, ok = decodeLabel(it.pages[id>>pairBits].enc[id&(1<<pairBits-1)])
	return name, value, ok
}

// metricName returns the __name__ of s, whose pairs are in pt, or "".
func (s *series) metricName(pt *pairTable) string {
	it := s.labels(pt)
	for name, value, ok := it.next(); ok; name, value, ok = it.next() {
		if name == model.MetricNameLabel {
			return value
		}
	}
	return ""
}
