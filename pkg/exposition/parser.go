// Package exposition parses scraped expositions for the scrape loop.
//
// It is Prometheus' textparse with parsers of our own for the protobuf
// format, the Prometheus text format and OpenMetrics 1.0. Their series
// keys (what Series and Histogram return) are raw bytes of the exposition
// rather than a label set built and sorted for every sample, so that a
// scrape whose series are all known costs a hash and a map lookup per
// sample and no label work. Labels are built only when asked for, which
// the scrape cache does once per new series. What the fast paths do not
// handle (native histograms, comments, quoted names, and anything unusual
// or malformed) is parsed by Prometheus' parsers, so the output, errors
// and OpenMetrics start timestamps included, is Prometheus'. Prometheus'
// OpenMetrics parser, where it still parses, is spared start-timestamp
// look-aheads that cannot succeed, and guarded against the inputs that
// make that look-ahead loop forever or panic (createdLookahead).
package exposition

import (
	"mime"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

const (
	protobufMediaType    = "application/vnd.google.protobuf"
	textMediaType        = "text/plain"
	openMetricsMediaType = "application/openmetrics-text"

	// openMetrics2Version is the version parameter textparse reads as
	// OpenMetrics 2.0, which our parser does not take.
	openMetrics2Version = "2.0.0"
)

// New returns a parser for the exposition b of media type contentType, as
// textparse.New does. The series keys of a protobuf exposition differ from
// those of textparse's protobuf parser: they identify a series within one
// target's expositions, which is all a scrape cache needs, but are not a
// rendering of its labels.
func New(b []byte, contentType string, st *labels.SymbolTable, opts textparse.ParserOptions) (textparse.Parser, error) {
	var ps Parsers
	return ps.New(b, contentType, st, opts)
}

// Parsers makes parsers that reuse their buffers from one exposition to the
// next, for the scrape loop of one target. A parser it returns is valid
// until the next call of New. Parsers is not safe for concurrent use; the
// zero value is ready to use.
type Parsers struct {
	// KnownKey, if not nil, is asked by the fast paths of the text
	// formats, with each series line, before they scan its series key (a
	// third of a scrape's CPU on long label sets). It returns the length
	// of the key the line starts with if those bytes are a key a fast path
	// returned before (FastSeries), else 0: the fast path then takes the
	// key without scanning it, as a scan of the same bytes would. An
	// answer not followed by a space is ignored. A scrape cache answers
	// from the key it expects next, which it hashes for its lookup anyway.
	KnownKey func(line []byte) int

	proto   *protobufParser
	text    *textParser
	om      *omParser
	created createdLookahead
}

// New is the package's New with buffers reused.
func (ps *Parsers) New(b []byte, contentType string, st *labels.SymbolTable, opts textparse.ParserOptions) (textparse.Parser, error) {
	if fast(contentType, textMediaType, opts) {
		if ps.text == nil {
			ps.text = new(textParser)
		}
		ps.text.reset(b, st)
		ps.text.known = ps.KnownKey
		return ps.text, nil
	}
	if fast(contentType, openMetricsMediaType, opts) {
		if ps.om == nil {
			ps.om = new(omParser)
		}
		ps.om.reset(b, st, opts.OpenMetricsSkipSTSeries)
		ps.om.known = ps.KnownKey
		return ps.om, nil
	}
	if !fast(contentType, protobufMediaType, opts) {
		return ps.prometheus(b, contentType, st, opts)
	}
	if ps.proto == nil {
		ps.proto = newProtobufParser(nil, st, opts)
	}
	ps.proto.reset(b, st, opts)
	return ps.proto, nil
}

// FastSeries says whether the current series of p, a parser New returned,
// was read by a fast path of the text formats, so that its key is one
// Parsers.KnownKey may answer for when it comes again. It is false for
// protobuf and Prometheus' parsers, and once a fast path has handed the
// rest of its exposition to Prometheus' parser.
func FastSeries(p textparse.Parser) bool {
	switch p := p.(type) {
	case *textParser:
		return p.fb == nil
	case *omParser:
		return p.fb == nil
	}
	return false
}

// prometheus returns textparse's parser, as textparse.New does, with its
// OpenMetrics 1.0 parser wrapped in createdLookahead, under the conversion
// of classic histograms too.
func (ps *Parsers) prometheus(b []byte, contentType string, st *labels.SymbolTable, opts textparse.ParserOptions) (textparse.Parser, error) {
	if st == nil {
		st = labels.NewSymbolTable()
	}
	// textparse.New wraps its OpenMetrics parser for the conversion, out
	// of our reach: ask for it without, and wrap it as New would.
	base := opts
	base.ConvertClassicHistogramsToNHCB = false
	p, err := textparse.New(b, contentType, st, base)
	om, ok := p.(*textparse.OpenMetricsParser)
	if !ok {
		if opts.ConvertClassicHistogramsToNHCB {
			return textparse.New(b, contentType, st, opts)
		}
		return p, err
	}
	ps.created.reset(om, b, st)
	if opts.ConvertClassicHistogramsToNHCB {
		return textparse.NewNHCBParser(&ps.created, st, opts.KeepClassicOnClassicAndNativeHistograms, opts.OpenMetricsSkipSTSeries), err
	}
	return &ps.created, err
}

// fast says whether our own parser of mediaType serves contentType with
// opts: a well-formed contentType of that media type (for text/plain, the
// Prometheus text format, which textparse reads whatever its version
// parameter says; for OpenMetrics, any version but 2.0.0, which textparse
// reads as 1.0), and no option that changes the series (conversion of
// classic histograms, type and unit labels).
func fast(contentType, mediaType string, opts textparse.ParserOptions) bool {
	if opts.ConvertClassicHistogramsToNHCB || opts.EnableTypeAndUnitLabels {
		return false
	}
	if len(contentType) < len(mediaType) || contentType[:len(mediaType)] != mediaType {
		return false
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != mediaType {
		return false
	}
	return mediaType != openMetricsMediaType || params["version"] != openMetrics2Version
}
