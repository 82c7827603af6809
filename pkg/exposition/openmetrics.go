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
)

// omParser parses OpenMetrics 1.0 and presents it as textparse.Parser,
// entry for entry as textparse's OpenMetricsParser does, start timestamps
// included.
//
// The fast path takes lines of the shapes exporters write:
//
//	# HELP name text
//	# TYPE name counter|gauge|histogram|gaugehistogram|summary|info|stateset|unknown
//	# UNIT name unit
//	name[{label="value",...}] value [timestamp] [# {label="value",...} value [timestamp]]
//	# EOF
//
// with single spaces, unquoted names and no trailing comma. Like
// Prometheus' parser it returns as the series key the bytes of the line up
// to the value, and reads the labels only when Labels is called.
//
// The first line it does not take (a quoted name, a blank line, anything
// malformed, data after # EOF) hands the rest of the exposition to
// Prometheus' parser (fb), wrapped in createdLookahead as textparse's
// parser is elsewhere in this package. It is started at a TYPE line so
// that it reads le and quantile as the family's type says, and replayed
// through the entries the fast path already returned, with StartTimestamp
// called where it was called on the fast path, so that it carries the same
// start-timestamp state. From there on the output, errors included, is
// Prometheus'.
//
// Start timestamps follow Prometheus' parser to the letter, quirks
// included: StartTimestamp of a counter, histogram or summary sample looks
// ahead in its family (up to the next line starting with '#') for the
// first _created series, and answers its value if that series has the same
// labels (le and quantile aside) and its name, less _created, is the first
// bytes of the sample's line as long as the family's name. The first such
// call makes Next skip _created series of those types from then on. A found
// timestamp above 0 is cached for the samples with the same labels (a
// histogram's buckets). The look-ahead remembers where it found the next
// _created line, so a family is read ahead once, not once a sample, and a
// family without the bytes "_created" not at all.
// Where Prometheus' parser would take the family name from past the end of
// the exposition and panic, StartTimestamp returns 0 and changes nothing,
// as createdLookahead does.
//
// While a start timestamp is cached, a TYPE line does not move the
// fallback's restart (a fresh Prometheus parser could not recreate the
// cache), so stCalls then grows by 4 bytes a sample until one is not.
//
// omParser is not safe for concurrent use; what it returns is valid until
// the next call of Next or reset.
type omParser struct {
	in  []byte
	pos int // start of the next line
	st  *labels.SymbolTable

	fb      textparse.Parser // Prometheus' parser of the rest, once the fast path gave up
	created createdLookahead // fb's wrapper, reused

	known func([]byte) int // Parsers.KnownKey

	// restart is where a fallback starts: a TYPE line at which no start
	// timestamp was cached, or 0; restartSkip is skip there. emitted
	// counts the entries returned from there, stCalls the entries (counted
	// from 0 at restart) whose StartTimestamp was called, in order.
	restart, emitted int
	restartSkip      bool
	stCalls          []int32

	mtype     model.MetricType // of the last TYPE line
	mfNameLen int              // length of the name of the last HELP, TYPE or UNIT line

	// The current entry.
	name, text []byte // metric name and HELP text or unit
	line       int    // offset of the current series line
	cur        omLine

	// Start-timestamp state, as Prometheus' parser keeps it. skip makes
	// Next skip _created series; stKey and stVal are the cached start
	// timestamp, valid if cached.
	skip   bool
	cached bool
	stKey  []byte
	stVal  int64
	look   omLookahead
	key    []byte // the current series' appendSTKey

	builder labels.ScratchBuilder
	unesc   []byte // unescaped label values for Labels
	help    []byte // unescaped HELP text, valid until the next Help
}

// omLine is one series line the fast path took.
type omLine struct {
	series   []byte // the line up to the value
	nameLen  int
	val      float64
	ts       int64
	hasTS    bool
	ex       []byte // the exemplar's label set, braces included; nil if none
	exVal    float64
	exTS     int64
	exHasTS  bool
	exServed bool // Exemplar returned it
}

// reset readies p for the exposition b, keeping its buffers. skip is
// textparse.ParserOptions.OpenMetricsSkipSTSeries. The zero omParser is
// ready for reset.
func (p *omParser) reset(b []byte, st *labels.SymbolTable, skip bool) {
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
	p.restart, p.emitted, p.restartSkip, p.stCalls = 0, 0, skip, p.stCalls[:0]
	p.mtype, p.mfNameLen = "", 0
	p.name, p.text, p.cur = nil, nil, omLine{}
	p.skip, p.cached, p.look.valid = skip, false, false
	p.look.hashAt = -1
	// Prometheus' lexer skips a NUL in some places and not in others: all
	// of it goes to Prometheus' parser.
	if bytes.IndexByte(b, 0) >= 0 {
		p.fallback()
	}
}

// fallback hands the rest to Prometheus' parser, from p.restart, replaying
// the entries and StartTimestamp calls already made.
func (p *omParser) fallback() {
	body := p.in[p.restart:]
	var om textparse.Parser
	if p.restartSkip {
		om = textparse.NewOpenMetricsParser(body, p.st, textparse.WithOMParserSTSeriesSkipped())
	} else {
		om = textparse.NewOpenMetricsParser(body, p.st)
	}
	p.created.reset(om, body, p.st)
	p.fb = &p.created
	calls := p.stCalls
	for i := range p.emitted {
		if _, err := p.fb.Next(); err != nil {
			// Cannot happen: those lines parsed. Report it as the
			// entry that follows would.
			p.fb = errParser{err}
			return
		}
		for len(calls) > 0 && int(calls[0]) == i {
			p.fb.StartTimestamp()
			calls = calls[1:]
		}
	}
	if p.cur.exServed {
		var ex exemplar.Exemplar
		p.fb.Exemplar(&ex)
	}
}

// Next advances to the next entry. It returns (EntryInvalid, io.EOF) at
// # EOF.
func (p *omParser) Next() (textparse.Entry, error) {
	if p.fb != nil {
		return p.fb.Next()
	}
	p.cur.exServed = false
	for {
		rest := p.in[p.pos:]
		if len(rest) >= 5 && string(rest[:5]) == "# EOF" && (len(rest) == 5 || len(rest) == 6 && rest[5] == '\n') {
			return textparse.EntryInvalid, io.EOF
		}
		end := bytes.IndexByte(rest, '\n')
		if end <= 0 {
			// The end without # EOF, a last line without newline, or
			// a blank line: Prometheus' parser says what is wrong.
			return p.giveUp()
		}
		start := p.pos
		line := rest[:end]
		var e textparse.Entry
		if line[0] == '#' {
			var ok bool
			if e, ok = p.meta(line, start); !ok {
				return p.giveUp()
			}
		} else {
			if !parseOMLine(line, p.name, p.known, &p.cur) {
				return p.giveUp()
			}
			if p.skip && p.isCreated(p.cur.series[:p.cur.nameLen]) {
				p.pos = start + end + 1
				continue
			}
			e, p.line = textparse.EntrySeries, start
		}
		p.pos = start + end + 1
		p.emitted++
		return e, nil
	}
}

// giveUp falls back and returns the fallback's next entry.
func (p *omParser) giveUp() (textparse.Entry, error) {
	p.fallback()
	return p.fb.Next()
}

// meta parses a HELP, TYPE or UNIT line starting at offset start.
func (p *omParser) meta(line []byte, start int) (textparse.Entry, bool) {
	var e textparse.Entry
	switch {
	case bytes.HasPrefix(line, []byte("# HELP ")):
		e = textparse.EntryHelp
	case bytes.HasPrefix(line, []byte("# TYPE ")):
		e = textparse.EntryType
	case bytes.HasPrefix(line, []byte("# UNIT ")):
		e = textparse.EntryUnit
	default:
		return 0, false
	}
	rest := line[len("# HELP "):]
	n := metricNameLenAfter(rest, p.name)
	if n == 0 || n >= len(rest) || rest[n] != ' ' {
		return 0, false
	}
	name, text := rest[:n], rest[n+1:]
	switch e {
	case textparse.EntryHelp:
		if !utf8.Valid(text) {
			return 0, false
		}
	case textparse.EntryUnit:
		if len(text) > 0 && (len(name) < len(text)+1 || !bytes.HasSuffix(name, text) || name[len(name)-len(text)-1] != '_') {
			return 0, false
		}
	case textparse.EntryType:
		var t model.MetricType
		switch string(text) {
		case "counter":
			t = model.MetricTypeCounter
		case "gauge":
			t = model.MetricTypeGauge
		case "histogram":
			t = model.MetricTypeHistogram
		case "gaugehistogram":
			t = model.MetricTypeGaugeHistogram
		case "summary":
			t = model.MetricTypeSummary
		case "info":
			t = model.MetricTypeInfo
		case "stateset":
			t = model.MetricTypeStateset
		case "unknown":
			t = model.MetricTypeUnknown
		default:
			return 0, false
		}
		p.mtype = t
		if !p.cached {
			// A fallback from here starts as Prometheus' parser
			// stands here: no start timestamp cached, skip as now.
			p.restart, p.emitted, p.restartSkip, p.stCalls = start, 0, p.skip, p.stCalls[:0]
		}
	}
	p.name, p.text, p.mfNameLen = name, text, n
	return e, true
}

// parseOMLine parses a series line into l; it returns false for a line the
// fast path does not take. family is the name of the last HELP, TYPE or
// UNIT line, or nil (see metricNameLenAfter); known is Parsers.KnownKey,
// or nil.
func parseOMLine(line, family []byte, known func([]byte) int, l *omLine) bool {
	n := metricNameLenAfter(line, family)
	if n == 0 || n == len(line) {
		return false
	}
	l.nameLen = n
	if k := knownKeyLen(known, line); k > 0 {
		n = k
	} else if line[n] == '{' {
		ll := labelsLen(line[n:])
		if ll == 0 {
			return false
		}
		n += ll
		if n == len(line) {
			return false
		}
	}
	if line[n] != ' ' {
		return false
	}
	l.series = line[:n]
	rest := line[n+1:]
	tok, rest := omToken(rest)
	val, ok := parseValue(tok)
	if !ok {
		return false
	}
	l.val, l.hasTS, l.ex = val, false, nil
	if len(rest) == 0 {
		return true
	}
	if !isExemplarStart(rest) {
		tok, rest = omToken(rest[1:])
		if l.ts, ok = parseOMTimestamp(tok); !ok {
			return false
		}
		l.hasTS = true
		if len(rest) == 0 {
			return true
		}
		if !isExemplarStart(rest) {
			return false
		}
	}
	return parseOMExemplar(rest[len(" # "):], l)
}

// isExemplarStart says whether b starts an exemplar: " # {".
func isExemplarStart(b []byte) bool {
	return len(b) >= 4 && b[0] == ' ' && b[1] == '#' && b[2] == ' ' && b[3] == '{'
}

// omToken splits b, the rest of a line, at its first space: a value or
// timestamp token as Prometheus' lexer reads it (up to a space or the end
// of the line), and what follows. A token may be empty, which no parse of
// it takes.
func omToken(b []byte) (tok, rest []byte) {
	if sp := bytes.IndexByte(b, ' '); sp >= 0 {
		return b[:sp], b[sp:]
	}
	return b, nil
}

// parseOMExemplar parses an exemplar, "{...} value [timestamp]" up to the
// end of the line, into l.
func parseOMExemplar(b []byte, l *omLine) bool {
	n := labelsLen(b)
	if n == 0 || n == len(b) || b[n] != ' ' {
		return false
	}
	l.ex = b[:n]
	tok, rest := omToken(b[n+1:])
	v, ok := parseValue(tok)
	if !ok {
		return false
	}
	l.exVal, l.exHasTS = v, false
	if len(rest) == 0 {
		return true
	}
	tok, rest = omToken(rest[1:])
	if len(rest) != 0 {
		return false
	}
	l.exTS, l.exHasTS = parseOMTimestamp(tok)
	return l.exHasTS
}

// parseOMTimestamp parses a timestamp in seconds, a float, into ms as
// Prometheus' parser does: NaN and infinities are errors.
func parseOMTimestamp(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	for _, c := range b {
		if c == 'p' || c == 'P' || c == '_' {
			return 0, false
		}
	}
	f, err := strconv.ParseFloat(unsafeString(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return int64(f * 1000), true
}

// isCreated says whether a series of metric name name is a _created series
// of the current family, one Next skips once start timestamps are asked.
func (p *omParser) isCreated(name []byte) bool {
	return typeRequiresST(p.mtype) && bytes.HasSuffix(name, createdSuffix)
}

// Series returns the key (the line up to the value), timestamp and value
// of the current series.
func (p *omParser) Series() ([]byte, *int64, float64) {
	if p.fb != nil {
		return p.fb.Series()
	}
	if p.cur.hasTS {
		return p.cur.series, &p.cur.ts, p.cur.val
	}
	return p.cur.series, nil, p.cur.val
}

// Histogram returns nothing: OpenMetrics 1.0 has no native histograms.
func (p *omParser) Histogram() ([]byte, *int64, *histogram.Histogram, *histogram.FloatHistogram) {
	if p.fb != nil {
		return p.fb.Histogram()
	}
	return nil, nil, nil, nil
}

// Help returns the metric name and help text, unescaped.
func (p *omParser) Help() ([]byte, []byte) {
	if p.fb != nil {
		return p.fb.Help()
	}
	if bytes.IndexByte(p.text, '\\') >= 0 {
		p.help = unescape(p.help[:0], p.text, true)
		return p.name, p.help
	}
	return p.name, p.text
}

// Type returns the metric name and type.
func (p *omParser) Type() ([]byte, model.MetricType) {
	if p.fb != nil {
		return p.fb.Type()
	}
	return p.name, p.mtype
}

// Unit returns the metric name and unit.
func (p *omParser) Unit() ([]byte, []byte) {
	if p.fb != nil {
		return p.fb.Unit()
	}
	return p.name, p.text
}

// Comment returns nil: OpenMetrics has no comments.
func (p *omParser) Comment() []byte {
	if p.fb != nil {
		return p.fb.Comment()
	}
	return nil
}

// Labels writes the labels of the current series into l, as textParser's.
func (p *omParser) Labels(l *labels.Labels) {
	if p.fb != nil {
		p.fb.Labels(l)
		return
	}
	p.unesc = seriesLabels(l, &p.builder, p.unesc, p.cur.series, p.mtype)
}

// Exemplar writes the exemplar of the current series into e, once: a later
// call returns false. Its labels are copied from the exposition and kept
// escaped, as Prometheus' parser keeps them.
func (p *omParser) Exemplar(e *exemplar.Exemplar) bool {
	if p.fb != nil {
		return p.fb.Exemplar(e)
	}
	if p.cur.ex == nil || p.cur.exServed {
		return false
	}
	p.cur.exServed = true
	e.Value = p.cur.exVal
	if p.cur.exHasTS {
		e.HasTs, e.Ts = true, p.cur.exTS
	}
	s := string(p.cur.ex) // the labels keep their strings
	b := &p.builder
	b.Reset()
	for i := 1; i < len(s); {
		ln := labelNameLen(p.cur.ex[i:])
		if ln == 0 {
			break // "{}"
		}
		name := s[i : i+ln]
		i += ln + 2
		vs := i
		for s[i] != '"' {
			if s[i] == '\\' {
				i++
			}
			i++
		}
		b.Add(name, s[vs:i])
		i += 2
	}
	b.Sort()
	e.Labels = b.Labels()
	return true
}
