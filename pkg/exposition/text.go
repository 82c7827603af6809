package exposition

import (
	"bytes"
	"io"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/model/value"
)

// textParser parses the Prometheus text format (version 0.0.4) and presents
// it as textparse.Parser, entry for entry as textparse's PromParser does.
//
// The fast path takes lines of the shapes exporters write:
//
//	# HELP name text
//	# TYPE name counter|gauge|histogram|summary|untyped
//	name value [timestamp]
//	name{label="value",...} value [timestamp]
//
// with single spaces, unquoted names and a float value. Like PromParser it
// returns as the series key the bytes of the line up to the value, and
// reads the labels only when Labels is called.
//
// The first line it does not take (a comment, a quoted name, extra
// whitespace, a malformed line) hands the rest of the exposition to
// PromParser (fb), started at the last TYPE line so that it reads le and
// quantile as the family's type says, and advanced past the entries the
// fast path already returned. From there on the output, errors included,
// is PromParser's.
type textParser struct {
	in  []byte
	pos int // start of the next line
	st  *labels.SymbolTable

	fb textparse.Parser // PromParser of the rest, once the fast path gave up

	known func([]byte) int // Parsers.KnownKey

	// restart is where a fallback starts: the last TYPE line, or 0.
	// emitted counts the entries returned from there.
	restart, emitted int

	mtype model.MetricType // of the last TYPE line, as PromParser keeps it

	// The current entry.
	name, text []byte // metric name and HELP text or comment
	series     []byte // the line up to the value
	val        float64
	ts         int64
	hasTS      bool

	builder labels.ScratchBuilder
	unesc   []byte // unescaped label values for Labels
	help    []byte // unescaped HELP text, valid until the next Help
}

// reset readies p for the exposition b, keeping its buffers. The zero
// textParser is ready for reset.
func (p *textParser) reset(b []byte, st *labels.SymbolTable) {
	if st == nil {
		st = labels.NewSymbolTable()
	}
	if st != p.st {
		p.st = st
		p.builder = labels.NewScratchBuilderWithSymbolTable(st, 16)
		// The strings added point into the exposition or p.unesc: a
		// labels implementation that keeps them must copy them.
		p.builder.SetUnsafeAdd(true)
	}
	p.in, p.pos, p.fb = b, 0, nil
	p.restart, p.emitted = 0, 0
	p.mtype = ""
	p.name, p.text, p.series = nil, nil, nil
	// PromParser's lexer reads a NUL as the end of the exposition, or
	// skips it, depending on where it is: all of it goes to PromParser.
	if bytes.IndexByte(b, 0) >= 0 {
		p.fallback()
	}
}

// fallback hands the rest to PromParser, from p.restart, skipping the
// entries already returned.
func (p *textParser) fallback() {
	p.fb = textparse.NewPromParser(p.in[p.restart:], p.st, false)
	for range p.emitted {
		if _, err := p.fb.Next(); err != nil {
			// Cannot happen: those lines parsed. Report it as the
			// entry that follows would.
			p.fb = errParser{err}
			return
		}
	}
}

// Next advances to the next entry. It returns (EntryInvalid, io.EOF) at the
// end of the exposition.
func (p *textParser) Next() (textparse.Entry, error) {
	if p.fb != nil {
		return p.fb.Next()
	}
	for {
		if p.pos >= len(p.in) {
			return textparse.EntryInvalid, io.EOF
		}
		line := p.in[p.pos:]
		end := bytes.IndexByte(line, '\n')
		if end < 0 {
			// No final newline: PromParser adds one.
			p.fallback()
			return p.fb.Next()
		}
		line = line[:end]
		start := p.pos
		if len(line) == 0 {
			p.pos++
			continue
		}
		var (
			e  textparse.Entry
			ok bool
		)
		if line[0] == '#' {
			e, ok = p.meta(line, start)
		} else {
			ok = p.sample(line)
			e = textparse.EntrySeries
		}
		if !ok {
			p.fallback()
			return p.fb.Next()
		}
		p.pos = start + end + 1
		p.emitted++
		return e, nil
	}
}

// meta parses a HELP or TYPE line starting at offset start.
func (p *textParser) meta(line []byte, start int) (textparse.Entry, bool) {
	var e textparse.Entry
	switch {
	case bytes.HasPrefix(line, []byte("# HELP ")):
		e = textparse.EntryHelp
	case bytes.HasPrefix(line, []byte("# TYPE ")):
		e = textparse.EntryType
	default:
		return 0, false
	}
	rest := line[len("# HELP "):]
	n := metricNameLenAfter(rest, p.name)
	// The name ends with a space (PromParser drops the first byte of the
	// text, whatever it is) and the text, perhaps empty, follows.
	if n == 0 || n >= len(rest) || rest[n] != ' ' {
		return 0, false
	}
	p.name, p.text = rest[:n], rest[n+1:]
	if blank(p.text) {
		// Blanks only: PromParser's lexer takes them as whitespace
		// before an empty text.
		p.text = p.text[:0]
	}
	if e == textparse.EntryHelp {
		if !utf8.Valid(p.text) {
			return 0, false
		}
		return e, true
	}
	switch string(p.text) {
	case "counter":
		p.mtype = model.MetricTypeCounter
	case "gauge":
		p.mtype = model.MetricTypeGauge
	case "histogram":
		p.mtype = model.MetricTypeHistogram
	case "summary":
		p.mtype = model.MetricTypeSummary
	case "untyped":
		p.mtype = model.MetricTypeUnknown
	default:
		return 0, false
	}
	p.restart, p.emitted = start, 0
	return e, true
}

// blank says whether b holds only spaces and tabs (bytes.TrimLeft, which
// this replaced, built its set of two bytes on every HELP and TYPE line).
func blank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}

// sample parses a series line: name, labels, value, timestamp.
func (p *textParser) sample(line []byte) bool {
	n := knownKeyLen(p.known, line)
	if n == 0 {
		n = metricNameLenAfter(line, p.name)
		if n == 0 || n == len(line) {
			return false
		}
		if line[n] == '{' {
			l := labelsLen(line[n:])
			if l == 0 {
				return false
			}
			n += l
			if n == len(line) {
				return false
			}
		}
		if line[n] != ' ' {
			return false
		}
	}
	p.series = line[:n]
	rest := line[n+1:]
	v := rest
	sp := bytes.IndexByte(rest, ' ')
	if sp >= 0 {
		v = rest[:sp]
	}
	val, ok := parseValue(v)
	if !ok {
		return false
	}
	p.val, p.hasTS = val, false
	if sp >= 0 {
		ts, ok := parseTimestamp(rest[sp+1:])
		if !ok {
			return false
		}
		p.ts, p.hasTS = ts, true
	}
	return true
}

// parseValue parses a sample value as PromParser does, and NaN as the
// canonical NaN. ok is false where PromParser would fail.
func parseValue(b []byte) (float64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	// Integers and decimals (1.5, as OpenMetrics writes 1 as 1.0) of up
	// to 15 digits: the digits convert to a float64 exactly, and so does
	// the power of ten, so one division, correctly rounded, gives what
	// strconv.ParseFloat would.
	if len(b) <= 16 {
		var n int64
		i := 0
		neg := b[0] == '-'
		if neg {
			i = 1
		}
		digits := i
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			n = n*10 + int64(b[i]-'0')
		}
		digits, frac := i-digits, 0
		if i < len(b) && b[i] == '.' && digits > 0 {
			i++
			f := i
			for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
				n = n*10 + int64(b[i]-'0')
			}
			frac = i - f
			if frac == 0 {
				i = -1 // "1.": ParseFloat's
			}
		}
		if i == len(b) && digits > 0 && digits+frac <= 15 {
			v := float64(n)
			if frac > 0 {
				v /= exactPow10[frac]
			}
			if neg {
				v = -v
			}
			return v, true
		}
	}
	for _, c := range b {
		// PromParser refuses p, P and _; a brace or tab ends its value token.
		if c == 'p' || c == 'P' || c == '_' || c == '{' || c == '\t' {
			return 0, false
		}
	}
	v, err := strconv.ParseFloat(unsafeString(b), 64)
	if err != nil {
		return 0, false
	}
	if math.IsNaN(v) {
		v = math.Float64frombits(value.NormalNaN)
	}
	return v, true
}

// exactPow10 are the powers of ten a float64 holds exactly that
// parseValue divides by.
var exactPow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// parseTimestamp parses a timestamp in ms: digits only, as PromParser.
func parseTimestamp(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// Series returns the key (the line up to the value), timestamp and value
// of the current series.
func (p *textParser) Series() ([]byte, *int64, float64) {
	if p.fb != nil {
		return p.fb.Series()
	}
	if p.hasTS {
		return p.series, &p.ts, p.val
	}
	return p.series, nil, p.val
}

// Histogram returns nothing: the text format has no native histograms.
func (p *textParser) Histogram() ([]byte, *int64, *histogram.Histogram, *histogram.FloatHistogram) {
	if p.fb != nil {
		return p.fb.Histogram()
	}
	return nil, nil, nil, nil
}

// Help returns the metric name and help text, unescaped.
func (p *textParser) Help() ([]byte, []byte) {
	if p.fb != nil {
		return p.fb.Help()
	}
	if bytes.IndexByte(p.text, '\\') >= 0 {
		p.help = unescape(p.help[:0], p.text, false)
		return p.name, p.help
	}
	return p.name, p.text
}

// Type returns the metric name and type.
func (p *textParser) Type() ([]byte, model.MetricType) {
	if p.fb != nil {
		return p.fb.Type()
	}
	return p.name, p.mtype
}

// Unit returns nil: the text format has no units.
func (p *textParser) Unit() ([]byte, []byte) {
	if p.fb != nil {
		return p.fb.Unit()
	}
	return nil, nil
}

// Comment returns the comment: only from the fallback, as the fast path
// leaves comments to it.
func (p *textParser) Comment() []byte {
	if p.fb != nil {
		return p.fb.Comment()
	}
	return nil
}

// Labels writes the labels of the current series into l: the metric name,
// the labels with their values unescaped, le of a histogram and quantile
// of a summary in OpenMetrics' float format, sorted by name.
func (p *textParser) Labels(l *labels.Labels) {
	if p.fb != nil {
		p.fb.Labels(l)
		return
	}
	p.unesc = seriesLabels(l, &p.builder, p.unesc, p.series, p.mtype)
}

// seriesLabels writes into l the labels of the series key s, a line up to
// its value as the fast paths of both text formats take it: the metric
// name, the labels with \\, \n and \" unescaped, le of a histogram and
// quantile of a summary in OpenMetrics' float format, sorted by name, as
// textparse's parsers do. It returns unesc, the buffer of the unescaped
// values, which the labels point into.
func seriesLabels(l *labels.Labels, b *labels.ScratchBuilder, unesc, s []byte, mtype model.MetricType) []byte {
	b.Reset()
	n := metricNameLen(s)
	b.Add(labels.MetricName, unsafeString(s[:n]))
	unesc = unesc[:0]
	for i := n + 1; i < len(s); {
		ln := labelNameLen(s[i:])
		if ln == 0 {
			break // "{}"
		}
		name := unsafeString(s[i : i+ln])
		i += ln + 2
		vs := i
		esc := false
		for s[i] != '"' {
			if s[i] == '\\' {
				esc = true
				i++
			}
			i++
		}
		v := s[vs:i]
		if esc {
			start := len(unesc)
			unesc = unescape(unesc, v, true)
			v = unesc[start:]
		}
		val := unsafeString(v)
		if (mtype == model.MetricTypeHistogram && name == model.BucketLabel) || (mtype == model.MetricTypeSummary && name == model.QuantileLabel) {
			if f, err := strconv.ParseFloat(val, 64); err == nil {
				val = labels.FormatOpenMetricsFloat(f)
			}
		}
		b.Add(name, val)
		i += 2 // the quote and the comma or brace
	}
	b.Sort()
	*l = b.Labels()
	return unesc
}

// unescape appends s to dst with \\ and \n replaced, and \" if quote, as
// PromParser's replacers do: other escapes stay as they are.
func unescape(dst, s []byte, quote bool) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case '\\':
				dst = append(dst, '\\')
				i++
				continue
			case 'n':
				dst = append(dst, '\n')
				i++
				continue
			case '"':
				if quote {
					dst = append(dst, '"')
					i++
					continue
				}
			}
		}
		dst = append(dst, c)
	}
	return dst
}

// Exemplar returns false: the text format has no exemplars.
func (p *textParser) Exemplar(ex *exemplar.Exemplar) bool {
	if p.fb != nil {
		return p.fb.Exemplar(ex)
	}
	return false
}

// StartTimestamp returns 0: the text format has no start timestamps.
func (p *textParser) StartTimestamp() int64 {
	if p.fb != nil {
		return p.fb.StartTimestamp()
	}
	return 0
}

// errParser returns err from Next. It stands in for a fallback whose
// replay failed, which would be a bug of the fast path.
type errParser struct{ err error }

func (e errParser) Next() (textparse.Entry, error) { return textparse.EntryInvalid, e.err }
func (errParser) Series() ([]byte, *int64, float64) {
	return nil, nil, 0
}

func (errParser) Histogram() ([]byte, *int64, *histogram.Histogram, *histogram.FloatHistogram) {
	return nil, nil, nil, nil
}
func (errParser) Help() ([]byte, []byte)           { return nil, nil }
func (errParser) Type() ([]byte, model.MetricType) { return nil, "" }
func (errParser) Unit() ([]byte, []byte)           { return nil, nil }
func (errParser) Comment() []byte                  { return nil }
func (errParser) Labels(*labels.Labels)            {}
func (errParser) Exemplar(*exemplar.Exemplar) bool { return false }
func (errParser) StartTimestamp() int64            { return 0 }
