package gateway

import (
	"encoding/binary"
	"errors"
	"io"
	"unicode/utf8"
	"unsafe"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"

	"github.com/rwagent/rwagent/pkg/config"
)

// decoder decodes remote write 1.0 and 2.0 requests into buffers it keeps
// from one request to the next: the gateway pools decoders, so a steady
// sender's requests allocate next to nothing. It reads the protobuf
// itself (wire.go, rwparse.go), accepting and refusing what prompb's and
// writev2's Unmarshal do, and checks in an order that refuses a request
// for the same first problem as decoding into those types did: the whole
// message first (malformed protobuf, max series), then, a block of series
// at a time, their structure (samples and histograms both, label refs),
// then, in the order of the series, their labels, histograms, exemplars
// and metadata (passes).
//
// A series whose labels arrive as bytes already seen, for the same
// tenant label, tenant and route (its key), takes its labels from the
// series cache: they were valid then and are the same now, so they are
// neither built nor checked again, and resolve finds its ref without
// hashing them. Only a series new to the cache has its labels built.
//
// The batch a decode returns, and everything in it, is valid until the
// next decode or release: the Help and Unit of its metadata are the
// request's bytes, not copies (its label sets are copies). A decoder is
// not safe for concurrent use.
type decoder struct {
	body      []byte // the request's body, as read
	raw       []byte // the decompressed body
	b         batch
	series    []wireSeries
	pairs     []wirePair // 1.0: each series' labels as given, in order
	refs      []uint32   // 2.0: each series' label refs
	syms      [][]byte   // 2.0: the symbols, in raw
	symOK     []uint8    // 2.0: the symbols' UTF-8 validity, checked when needed (symUnchecked...)
	types     []uint8    // WAL metadata types by 2.0 metadata type; nil until needed
	h1        []prompb.Histogram
	e1        []prompb.Exemplar
	h2        []writev2.Histogram
	e2        []writev2.Exemplar
	md        prompb.MetricMetadata // 1.0 metadata, checked then dropped
	prefix    []byte                // every key's start: the request's tenant label, tenant and route
	block     []span                // the keys of the series of a block, in blockKeys
	blockKeys []byte
	hashes    []keyHash // of the keys of the series of a block
	sb        seriesBuilder
	// The bookkeeping the request is estimated to hold (charge), and the
	// request's bounds of it and of its series.
	cost, maxCost, maxSeries int
	mem                      *reservation // what charge reserves from; nil: nothing
	// res is the reservation of the request the decoder serves, kept
	// here so that the handler allocates none; released before the
	// decoder goes back to the pool.
	res reservation
}

// wireSeries is a series as the first pass read it: ranges into the
// decoder's slices, and its 2.0 metadata.
type wireSeries struct {
	labels span // pairs (1.0) or refs (2.0)
	// wire is where a 1.0 series' label fields are in the request, if
	// they are adjacent (as every sender writes them); empty if not, and
	// in 2.0.
	wire       wireSpan
	samples    int  // how many, in b.samples
	histograms span // h1 or h2
	exemplars  span // e1 or e2
	meta       writev2.Metadata
}

type span struct{ from, to int }

// wireSpan is a span of bytes of the request.
type wireSpan struct{ from, to uint32 }

// wirePair is a label of a 1.0 series, in the decoder's raw bytes.
type wirePair struct{ name, value []byte }

// maxPooledBytes bounds the buffers a decoder keeps for the next
// request: a rare huge request, or one of very many tiny series, does not
// pin its memory in the pool. Prometheus' requests (2,000 samples by
// default) take well under 1 MiB.
const maxPooledBytes = 32 << 20

// release drops what the last batch refers to, so the pool holds no
// series the cache has let go, and keeps the buffers unless they hold
// more than maxPooledBytes.
func (d *decoder) release() {
	d.mem = nil
	if d.bufferBytes() > maxPooledBytes {
		*d = decoder{}
		return
	}
	clear(d.b.series)
	clear(d.b.hints)
	clear(d.b.histograms)
	clear(d.b.floatHistograms)
	clear(d.b.exemplars)
	clear(d.b.metadata)
	clear(d.h1)
	clear(d.e1)
	clear(d.h2)
	clear(d.e2)
}

// bufferBytes is about what the decoder's buffers hold, by capacity: the
// bodies and those of a size per series, label or sample.
func (d *decoder) bufferBytes() int {
	return cap(d.body) + cap(d.raw) + cap(d.blockKeys) +
		cap(d.hashes)*int(unsafe.Sizeof(keyHash{})) +
		cap(d.series)*int(unsafe.Sizeof(wireSeries{})) +
		cap(d.pairs)*int(unsafe.Sizeof(wirePair{})) +
		cap(d.refs)*int(unsafe.Sizeof(uint32(0))) +
		cap(d.syms)*int(unsafe.Sizeof([]byte(nil))) +
		cap(d.symOK) +
		cap(d.b.series)*int(unsafe.Sizeof(labels.Labels{})) +
		cap(d.b.hints)*int(unsafe.Sizeof((*cachedSeries)(nil))) +
		cap(d.b.keys)*int(unsafe.Sizeof(keyHash{})) +
		cap(d.b.samples)*int(unsafe.Sizeof(record.RefSample{})) +
		cap(d.b.refs)*int(unsafe.Sizeof(chunks.HeadSeriesRef(0))) + cap(d.b.fresh)
}

// reset readies the decoder for a request within l.
func (d *decoder) reset(l limits) {
	d.cost, d.maxCost, d.maxSeries, d.mem = 0, l.maxDecodeCost, l.maxRequestSeries, l.mem
	if d.maxCost <= 0 {
		d.maxCost = maxDecodeCost
	}
	if d.maxSeries <= 0 {
		d.maxSeries = config.MaxSeriesPerRequest
	}
	b := &d.b
	b.series, b.hints, b.keys = b.series[:0], b.hints[:0], b.keys[:0]
	b.samples, b.histograms, b.floatHistograms = b.samples[:0], b.histograms[:0], b.floatHistograms[:0]
	b.exemplars, b.metadata = b.exemplars[:0], b.metadata[:0]
	d.series, d.pairs, d.refs, d.syms, d.symOK = d.series[:0], d.pairs[:0], d.refs[:0], d.syms[:0], d.symOK[:0]
	d.h1, d.e1, d.h2, d.e2 = d.h1[:0], d.e1[:0], d.h2[:0], d.e2[:0]
}

// readBody reads r, which yields at most limit bytes, to its end into
// the decoder's body buffer and returns it, as readBody does, reserving
// it from mem.
func (d *decoder) readBody(r io.Reader, size, limit int64, mem *reservation) ([]byte, error) {
	buf, err := readBody(d.body, r, size, limit, mem)
	d.body = buf
	if err != nil {
		return nil, err
	}
	return buf, nil
}

// decompress decodes the snappy body into the decoder's buffer, checking
// its decoded length against the bound, and reserving it from mem,
// before growing the buffer.
func (d *decoder) decompress(body []byte, maxDecoded int, mem *reservation) ([]byte, error) {
	raw, err := decompressInto(d.raw[:0], body, maxDecoded, mem)
	if err != nil {
		return nil, err
	}
	d.raw = raw
	return raw, nil
}

// decodeV1 decodes a remote write 1.0 WriteRequest (uncompressed) into
// the decoder's batch, checking every bound; c, if not nil, gives the
// labels of series seen before. Its metadata (per metric family, not per
// series) is checked and not kept. Its errors are *decodeError.
func (d *decoder) decodeV1(raw []byte, l limits, c *seriesCache) (*batch, error) {
	d.reset(l)
	if err := d.parseV1(raw); err != nil {
		if de, ok := errors.AsType[*decodeError](err); ok {
			return nil, de // a bound of the gateway's
		}
		return nil, badRequest(reasonMalformed, "decode prometheus.WriteRequest: %v", err)
	}
	if l.maxSeries > 0 && len(d.series) > l.maxSeries {
		return nil, tooManySeries(len(d.series), l.maxSeries)
	}
	b := &d.b
	err := d.passes(l, c, seriesPasses{
		check: func(i int) error {
			if ws := &d.series[i]; ws.samples > 0 && ws.histograms.to > ws.histograms.from {
				return badRequest(reasonInvalidSample, "series %d has both samples and histograms", i)
			}
			return nil
		},
		key: func(key []byte, i int) []byte {
			ws := &d.series[i]
			if ws.wire.to > ws.wire.from {
				// The bytes as sent decode to the labels: no need to
				// rewrite them first.
				return append(append(key, keyWire), raw[ws.wire.from:ws.wire.to]...)
			}
			key = append(key, keyPairs)
			for _, p := range d.pairs[ws.labels.from:ws.labels.to] {
				key = appendKeyBytes(key, p.name)
				key = appendKeyBytes(key, p.value)
			}
			return key
		},
		labels: func(i int) (labels.Labels, error) {
			ws := &d.series[i]
			d.sb.reset()
			for _, p := range d.pairs[ws.labels.from:ws.labels.to] {
				d.sb.add(labelString(p.name), labelString(p.value))
			}
			return checkLabels(&d.sb, l)
		},
		rest: func(i int, ls labels.Labels) error {
			ws, ref := &d.series[i], chunks.HeadSeriesRef(i)
			for j := ws.histograms.from; j < ws.histograms.to; j++ {
				h := &d.h1[j]
				if err := b.addWireHistogram(ref, ls, 0, h.Timestamp, h); err != nil {
					return err
				}
			}
			for j := ws.exemplars.from; j < ws.exemplars.to; j++ {
				e := &d.e1[j]
				d.sb.reset()
				for _, lp := range e.Labels {
					d.sb.add(lp.Name, lp.Value)
				}
				el, err := checkExemplarLabels(&d.sb)
				if err != nil {
					return err
				}
				b.exemplars = append(b.exemplars, record.RefExemplar{Ref: ref, T: e.Timestamp, V: e.Value, Labels: el})
			}
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// decodeV2 decodes a remote write 2.0 Request (uncompressed) into the
// decoder's batch, checking every bound; c, if not nil, gives the labels
// of series seen before. Each series' metadata is kept. Its errors are
// *decodeError.
func (d *decoder) decodeV2(raw []byte, l limits, c *seriesCache) (*batch, error) {
	d.reset(l)
	if err := d.parseV2(raw); err != nil {
		if de, ok := errors.AsType[*decodeError](err); ok {
			return nil, de // a bound of the gateway's
		}
		return nil, badRequest(reasonMalformed, "decode io.prometheus.write.v2.Request: %v", err)
	}
	if l.maxSeries > 0 && len(d.series) > l.maxSeries {
		return nil, tooManySeries(len(d.series), l.maxSeries)
	}
	for range d.syms {
		d.symOK = append(d.symOK, symUnchecked)
	}
	b := &d.b
	err := d.passes(l, c, seriesPasses{
		check: func(i int) error {
			ws := &d.series[i]
			refs := d.refs[ws.labels.from:ws.labels.to]
			switch {
			case ws.samples > 0 && ws.histograms.to > ws.histograms.from:
				return badRequest(reasonInvalidSample, "series %d has both samples and histograms", i)
			case len(refs)%2 != 0:
				return badRequest(reasonMalformed, "series %d has an odd number of label refs", i)
			case !d.inSymbols(refs):
				return badRequest(reasonMalformed, "series %d: label ref outside the %d symbols", i, len(d.syms))
			}
			return nil
		},
		key: func(key []byte, i int) []byte {
			ws := &d.series[i]
			key = append(key, keyPairs)
			for _, r := range d.refs[ws.labels.from:ws.labels.to] {
				key = appendKeyBytes(key, d.syms[r])
			}
			return key
		},
		labels: func(i int) (labels.Labels, error) {
			ws := &d.series[i]
			d.sb.reset()
			d.addRefs(d.refs[ws.labels.from:ws.labels.to])
			return checkLabels(&d.sb, l)
		},
		rest: func(i int, ls labels.Labels) error {
			ws, ref := &d.series[i], chunks.HeadSeriesRef(i)
			for j := ws.histograms.from; j < ws.histograms.to; j++ {
				h := &d.h2[j]
				if err := b.addWireHistogram(ref, ls, h.StartTimestamp, h.Timestamp, h); err != nil {
					return err
				}
			}
			for j := ws.exemplars.from; j < ws.exemplars.to; j++ {
				e := &d.e2[j]
				if len(e.LabelsRefs)%2 != 0 {
					return badRequest(reasonMalformed, "series %d: exemplar with an odd number of label refs", i)
				}
				d.sb.reset()
				if !d.inSymbols(e.LabelsRefs) {
					return badRequest(reasonMalformed, "series %d: exemplar label ref outside the %d symbols", i, len(d.syms))
				}
				d.addRefs(e.LabelsRefs)
				el, err := checkExemplarLabels(&d.sb)
				if err != nil {
					return err
				}
				b.exemplars = append(b.exemplars, record.RefExemplar{Ref: ref, T: e.Timestamp, V: e.Value, Labels: el})
			}
			md := &ws.meta
			if md.Type == writev2.Metadata_METRIC_TYPE_UNSPECIFIED && md.HelpRef == 0 && md.UnitRef == 0 {
				return nil
			}
			if int(md.UnitRef) >= len(d.syms) {
				return badRequest(reasonMalformed, "series %d: metadata unit_ref %d outside of symbols table (size %d)", i, md.UnitRef, len(d.syms))
			}
			if int(md.HelpRef) >= len(d.syms) {
				return badRequest(reasonMalformed, "series %d: metadata help_ref %d outside of symbols table (size %d)", i, md.HelpRef, len(d.syms))
			}
			if !d.validSymbol(md.HelpRef) || !d.validSymbol(md.UnitRef) {
				return badRequest(reasonInvalidLabels, "series %s: metadata is not valid UTF-8", name(ls))
			}
			help, unit := d.syms[md.HelpRef], d.syms[md.UnitRef]
			b.metadata = append(b.metadata, record.RefMetadata{
				Ref:  ref,
				Type: d.metricType(md.Type),
				// The WAL's Log encodes them and keeps nothing.
				Unit: rawString(unit),
				Help: rawString(help),
			})
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// seriesPasses are what a version reads of series i in the passes after
// parsing, each returning a *decodeError: check its structure, append its
// labels as sent to its key, build and check its labels, and check and
// add its histograms, exemplars and metadata (labelled ls).
type seriesPasses struct {
	check  func(i int) error
	key    func(key []byte, i int) []byte
	labels func(i int) (labels.Labels, error)
	rest   func(i int, ls labels.Labels) error
}

// lookupBlock is how many series the passes take at a time: the keys of
// a block are built and looked up together (one lock of the cache), then
// dropped, so a request's keys cost memory only for its new series.
const lookupBlock = 256

// passes checks the series of the parsed request and fills the batch
// with their labels, in the order of the series and, within a series, in
// the order of p's functions, so that the first problem is the one
// reported. A series whose key c knows takes its labels from the cache;
// others have them built and checked, and keep their key for resolve.
func (d *decoder) passes(l limits, c *seriesCache, p seriesPasses) error {
	b := &d.b
	d.prefix = d.prefix[:0]
	d.prefix = appendKeyBytes(d.prefix, l.tenantLabel)
	d.prefix = appendKeyBytes(d.prefix, l.tenant)
	d.prefix = appendKeyBytes(d.prefix, l.route)
	next := 0 // the first sample of the series
	for start := 0; start < len(d.series); start += lookupBlock {
		end := min(start+lookupBlock, len(d.series))
		d.block, d.blockKeys = d.block[:0], d.blockKeys[:0]
		var structErr error
		for i := start; i < end; i++ {
			if structErr = p.check(i); structErr != nil {
				end = i
				break
			}
			from := len(d.blockKeys)
			d.blockKeys = append(d.blockKeys, d.prefix...)
			d.blockKeys = p.key(d.blockKeys, i)
			d.block = append(d.block, span{from, len(d.blockKeys)})
			b.hints = append(b.hints, nil)
		}
		d.hashes = d.hashes[:0]
		if c != nil {
			for _, k := range d.block {
				d.hashes = append(d.hashes, c.hashKey(d.blockKeys[k.from:k.to]))
			}
			c.lookup(d.hashes, b.hints[start:end])
		}
		for i := start; i < end; i++ {
			var ls labels.Labels
			key := keyHash{} // none: found by it, or no cache
			if e := b.hints[i]; e != nil {
				ls = e.labels
			} else {
				var err error
				if ls, err = p.labels(i); err != nil {
					return err
				}
				if err := d.charge(costLabelByte * labelBytes(ls)); err != nil {
					return err
				}
				if c != nil {
					key = d.hashes[i-start]
				}
			}
			b.series = append(b.series, ls)
			b.keys = append(b.keys, key)
			ref := chunks.HeadSeriesRef(i)
			n := d.series[i].samples
			for j := next; j < next+n; j++ {
				b.samples[j].Ref = ref
			}
			next += n
			if err := p.rest(i, ls); err != nil {
				return err
			}
		}
		if structErr != nil {
			return structErr
		}
	}
	return nil
}

// metricType is the WAL's metadata type of a 2.0 metadata type, as
// writev2 maps it (ToMetadata, given one symbol for its refs of 0), kept
// in d.types for the types writev2 defines.
func (d *decoder) metricType(t writev2.Metadata_MetricType) uint8 {
	if d.types == nil {
		d.types = make([]uint8, len(writev2.Metadata_MetricType_name))
		for i := range d.types {
			d.types[i] = d.metricTypeOf(writev2.Metadata_MetricType(i))
		}
	}
	if t >= 0 && int(t) < len(d.types) {
		return d.types[t]
	}
	return d.metricTypeOf(t)
}

func (d *decoder) metricTypeOf(t writev2.Metadata_MetricType) uint8 {
	m, _ := writev2.TimeSeries{Metadata: writev2.Metadata{Type: t}}.ToMetadata([]string{""})
	return record.GetMetricType(m.Type)
}

// validSymbol says whether symbol r is valid UTF-8, checked once per
// request.
func (d *decoder) validSymbol(r uint32) bool {
	switch d.symOK[r] {
	case symValid:
		return true
	case symInvalid:
		return false
	}
	ok := utf8.Valid(d.syms[r])
	d.symOK[r] = symInvalid
	if ok {
		d.symOK[r] = symValid
	}
	return ok
}

// The states of d.symOK's entries.
const (
	symUnchecked = iota
	symValid
	symInvalid
)

// labelBytes is the size of ls's names and values, and a byte each for
// their lengths.
func labelBytes(ls labels.Labels) int {
	n := 0
	ls.Range(func(l labels.Label) { n += len(l.Name) + len(l.Value) + 2 })
	return n
}

// The form of a key after its prefix (tenant label, tenant, route): the
// label pairs as appendKeyBytes writes them (2.0, and 1.0 whose label
// fields are not adjacent), or a 1.0 series' label fields as sent. Either
// determines the labels; the byte tells the two apart.
const (
	keyPairs = 0
	keyWire  = 1
)

// appendKeyBytes appends b to a key, length first, so that no two
// sequences of labels make the same key.
func appendKeyBytes[T string | []byte](key []byte, b T) []byte {
	key = binary.AppendUvarint(key, uint64(len(b)))
	return append(key, b...)
}

// inSymbols says whether every ref is a symbol.
func (d *decoder) inSymbols(refs []uint32) bool {
	for _, r := range refs {
		if int(r) >= len(d.syms) {
			return false
		}
	}
	return true
}

// addRefs adds the labels of 2.0 refs, pairs of symbols all in range, to
// d.sb.
func (d *decoder) addRefs(refs []uint32) {
	for j := 0; j+1 < len(refs); j += 2 {
		d.sb.add(d.symbol(refs[j]), d.symbol(refs[j+1]))
	}
}

// symbol is symbol r as a string to build labels of (labelString).
func (d *decoder) symbol(r uint32) string { return labelString(d.syms[r]) }

// rawString is b as a string without a copy: valid while the decoder's
// buffers are (until the next decode or release).
func rawString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// labelString is b as a string to check and build labels of: b itself
// (rawString) where labels.ScratchBuilder.Labels copies what it is given
// (labelsCopy), else a copy, so no label set the cache keeps points into
// a request. Error messages made of it are copies.
func labelString(b []byte) string {
	if labelsCopy {
		return rawString(b)
	}
	return string(b)
}
