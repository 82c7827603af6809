package exposition

import (
	"bytes"
	"errors"
	"io"
	"unsafe"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
)

// createdLookahead wraps Prometheus' OpenMetrics 1.0 parser to spare it
// start-timestamp look-aheads that cannot find anything.
//
// For every counter, summary or histogram sample, that parser's
// StartTimestamp parses the following lines until it meets a _created
// series or the next metadata line, and gives up with 0. Where a family
// has no _created lines (client_golang serves none unless asked), every
// sample re-parses the rest of its family: quadratic in the family's size,
// 40 times the cost of the parse itself at 100 series per family.
//
// The wrapper splits the exposition into regions, each from a metadata
// line to the next line starting with '#' (the end of every look-ahead
// begun inside it: a metadata line, # EOF, or an error). In a region
// without the bytes "_created" no look-ahead can succeed, so once a
// StartTimestamp call in it has returned 0 (which leaves Prometheus'
// parser with no cached start timestamp, and set up to skip _created
// series, as any further call would) the rest return 0 without asking.
// The output is Prometheus' to the byte: the fuzz test compares them.
//
// Another guards against a panic of that parser: it takes the family name
// of a sample as the bytes of the series from where its name starts, as
// many as the last metadata line's name has, and slices past the end of
// the exposition where the series is shorter than that name near the end
// (`# TYPE aaaaaaaaaaaaaaaaaaaa counter` then `b 1`), or before the
// name's start where a quoted name follows a label (`{x="1","a"} 1`).
// A target could stop the agent with it. Where it would slice out of the
// exposition, StartTimestamp returns 0 without asking it, and changes
// nothing of its state (outOfRange).
//
// One exception guards against a bug of that parser: its look-ahead spins
// forever on a malformed exemplar (`a_total 2 # {d=x"} 5`), which would
// hang the scrape loop. A region with _created lines and exemplars is
// first parsed once in full; if it is malformed, its StartTimestamps are 0
// without a look-ahead. Parsing then fails at the malformed line as
// Prometheus' does, so the whole scrape fails and no start timestamp of
// it is kept.
type createdLookahead struct {
	textparse.Parser
	body []byte
	st   *labels.SymbolTable

	// pending is the offset of the last metadata entry; stale says the
	// region there is not yet examined: startRegion runs at the region's
	// first StartTimestamp, so a scrape that asks for none scans nothing.
	pending int
	stale   bool

	// nameLen and mtype are those of the last metadata entry and the
	// last TYPE entry, as Prometheus' parser has them.
	nameLen int
	mtype   model.MetricType

	start   int  // offset of the current region's first line
	created bool // the current region contains "_created"
	zero    bool // a StartTimestamp in the current region returned 0

	// risky: the region has _created lines and exemplars. checked: it
	// was parsed in full; malformed: that parse failed.
	risky, checked, malformed bool
}

var createdSuffix = []byte("_created")

// reset readies c for Prometheus' parser p of the exposition body.
func (c *createdLookahead) reset(p textparse.Parser, body []byte, st *labels.SymbolTable) {
	c.Parser, c.body, c.st = p, body, st
	c.pending, c.stale = 0, true
	c.nameLen, c.mtype = 0, ""
}

// Next is the wrapped parser's Next; a metadata entry starts a region.
func (c *createdLookahead) Next() (textparse.Entry, error) {
	e, err := c.Parser.Next()
	if err == nil && (e == textparse.EntryHelp || e == textparse.EntryType || e == textparse.EntryUnit) {
		// The OpenMetrics parser returns the family name of any metadata
		// entry from Type, as a slice of the body, without copying.
		name, t := c.Parser.Type()
		c.pending, c.stale = offsetIn(c.body, name), true
		c.nameLen = len(name)
		if e == textparse.EntryType {
			c.mtype = t
		}
	}
	return e, err
}

// startRegion starts the region at offset pos of the body; a negative pos
// (unknown) makes it one whose calls all go to Prometheus' parser.
func (c *createdLookahead) startRegion(pos int) {
	c.zero, c.risky, c.checked, c.malformed = false, false, false, false
	if pos < 0 {
		c.created = true
		c.start, c.risky = 0, true
		return
	}
	c.start = bytes.LastIndexByte(c.body[:pos], '\n') + 1
	rest := c.body[pos:]
	if end := bytes.Index(rest, []byte("\n#")); end >= 0 {
		rest = rest[:end]
	}
	c.created = bytes.Contains(rest, createdSuffix)
	if c.created {
		// Exemplars: a '#' after the region's first line.
		if nl := bytes.IndexByte(rest, '\n'); nl >= 0 {
			c.risky = bytes.IndexByte(rest[nl:], '#') >= 0
		}
	}
}

// check parses the current region in full with a parser of its own and
// records whether it is malformed.
func (c *createdLookahead) check() {
	c.checked = true
	p := textparse.NewOpenMetricsParser(c.body[c.start:], c.st)
	for i := 0; ; i++ {
		e, err := p.Next()
		if err != nil {
			// # EOF ends the exposition well; anything else is malformed.
			c.malformed = !errors.Is(err, io.EOF)
			return
		}
		if i > 0 && e != textparse.EntrySeries {
			return // the next region
		}
	}
}

// StartTimestamp is the wrapped parser's, without the look-ahead where it
// cannot succeed.
func (c *createdLookahead) StartTimestamp() int64 {
	if c.outOfRange() {
		return 0
	}
	if c.stale {
		c.startRegion(c.pending)
		c.stale = false
	}
	if c.zero && !c.created {
		return 0
	}
	if c.risky && !c.checked {
		c.check()
	}
	if c.malformed {
		return 0
	}
	st := c.Parser.StartTimestamp()
	if st == 0 {
		c.zero = true
	}
	return st
}

// offsetIn returns the offset of s in b, or -1 if s is not a slice of b.
func offsetIn(b, s []byte) int {
	if len(s) == 0 || len(b) == 0 {
		return -1
	}
	off := uintptr(unsafe.Pointer(unsafe.SliceData(s))) - uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if off >= uintptr(len(b)) || int(off)+len(s) > len(b) {
		return -1
	}
	return int(off)
}

// outOfRange says whether Prometheus' StartTimestamp would take the family
// name of the current series from outside the exposition, and panic.
func (c *createdLookahead) outOfRange() bool {
	if !typeRequiresST(c.mtype) {
		return false // it answers 0 before
	}
	series, _, _ := c.Parser.Series()
	off := offsetIn(c.body, series)
	if off < 0 {
		return true
	}
	lo, hi := nameStart(series), c.nameLen
	if len(series) > 1 && series[0] == '{' && series[1] == '"' {
		hi += 2
	}
	return lo < 0 || lo > hi || off+hi > len(c.body)
}

// nameStart returns the offset of the metric name in a series key as
// Prometheus' OpenMetrics parser reads it: 0 for a name before the
// braces, else the first byte inside the quoted string in the braces that
// is not followed by '=', or -1 if there is none.
func nameStart(s []byte) int {
	if len(s) == 0 || s[0] != '{' {
		return 0
	}
	for i := 1; i < len(s); {
		switch s[i] {
		case '=':
			i = skipQuoted(s, i+1) // the value
		case '"':
			j := skipQuoted(s, i)
			if j >= len(s) || s[j] != '=' {
				return i + 1
			}
			i = j
		default:
			i++
		}
	}
	return -1
}

// skipQuoted returns the offset after the quoted string starting at s[i],
// escapes included, or len(s).
func skipQuoted(s []byte, i int) int {
	if i >= len(s) || s[i] != '"' {
		return i
	}
	for i++; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(s)
}

// typeRequiresST says whether samples of type t have start timestamps.
func typeRequiresST(t model.MetricType) bool {
	return t == model.MetricTypeCounter || t == model.MetricTypeSummary || t == model.MetricTypeHistogram
}
