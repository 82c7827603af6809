package exposition

import (
	"bytes"

	"github.com/prometheus/common/model"
)

// omLookahead remembers a look-ahead: the lines from from up to to are
// series lines the fast path takes, none of them a _created series; at to
// starts the first _created series (line, with key, its appendSTKey) if
// found, or else the end of the look-ahead.
type omLookahead struct {
	valid    bool
	from, to int
	found    bool
	line     omLine
	key      []byte

	// hashAt is the offset of the first line starting with '#' at or after
	// some line's start at most hashAt (len(in) if none), -1 before the
	// first look-ahead; created says whether the bytes from that line to
	// hashAt hold "_created". Both hold for every line up to hashAt, so an
	// exposition's regions are searched once.
	hashAt  int
	created bool
}

// region returns the offset of the first line starting with '#' at or
// after pos, a line's start, or len(in); created is false only if no
// "_created" is between them (it may be true for a "_created" before pos,
// in the region's earlier lines).
func (la *omLookahead) region(in []byte, pos int) (end int, created bool) {
	if la.hashAt < pos {
		// '#' is rare inside lines (exemplars only): looking for it
		// alone is faster than for "\n#", whose '\n' ends every line.
		q := pos
		for {
			i := bytes.IndexByte(in[q:], '#')
			if i < 0 {
				q = len(in)
				break
			}
			if q += i; q == pos || in[q-1] == '\n' {
				break
			}
			q++
		}
		la.hashAt = q
		la.created = bytes.Contains(in[pos:q], createdSuffix)
	}
	return la.hashAt, la.created
}

// StartTimestamp returns the start timestamp of the current series in ms,
// or 0, as Prometheus' parser does (see omParser).
func (p *omParser) StartTimestamp() int64 {
	if p.fb != nil {
		return p.fb.StartTimestamp()
	}
	if !typeRequiresST(p.mtype) {
		p.stCalls = append(p.stCalls, int32(p.emitted-1))
		p.cached = false
		return 0
	}
	// The family name as Prometheus' parser takes it: the first bytes of
	// the line, as many as the last metadata line's name has. Past the
	// end, its StartTimestamp would panic: 0, as createdLookahead answers.
	end := p.line + p.mfNameLen
	if end > len(p.in) {
		return 0
	}
	name := p.in[p.line:end]
	keyed := false
	if p.cached {
		p.key, keyed = appendSTKey(p.key[:0], p.cur.series, name, p.mtype), true
		if bytes.Equal(p.key, p.stKey) {
			p.stCalls = append(p.stCalls, int32(p.emitted-1))
			return p.stVal
		}
	}
	la, ok := p.lookahead()
	if !ok {
		return p.giveUpST()
	}
	p.stCalls = append(p.stCalls, int32(p.emitted-1))
	p.skip = true
	if !la.found {
		p.cached = false
		return 0
	}
	if !keyed {
		p.key = appendSTKey(p.key[:0], p.cur.series, name, p.mtype)
	}
	if !bytes.Equal(p.key, la.key) {
		p.cached = false
		return 0
	}
	st := int64(la.line.val * 1000.0)
	p.stKey, p.stVal = append(p.stKey[:0], p.key...), st
	p.cached = st > 0
	return st
}

// giveUpST falls back and asks the fallback for the start timestamp.
func (p *omParser) giveUpST() int64 {
	p.fallback()
	return p.fb.StartTimestamp()
}

// lookahead finds, from the line after the current series to the next line
// starting with '#' or the end, the first _created series. ok is false if
// a line on the way is one the fast path does not take; a region without
// the bytes "_created" is not read line by line, and ok is true.
func (p *omParser) lookahead() (la *omLookahead, ok bool) {
	la = &p.look
	if la.valid && la.from <= p.pos && p.pos <= la.to {
		return la, true
	}
	la.valid, la.from, la.found = false, p.pos, false
	// Where the region holds no "_created", no line of it can be a
	// _created series, whether the fast path takes it or not: the answer
	// is 0, as Prometheus' parser's, without reading a line. A line on
	// the way the fast path does not take falls back when Next meets it,
	// and the fallback, replayed through stCalls, asks Prometheus' parser
	// here and gets the same 0 and the same state.
	if end, created := la.region(p.in, p.pos); !created {
		la.valid, la.to = true, end
		return la, true
	}
	q := p.pos
	for q < len(p.in) && p.in[q] != '#' {
		end := bytes.IndexByte(p.in[q:], '\n')
		if end <= 0 || !parseOMLine(p.in[q:q+end], p.name, nil, &la.line) {
			return nil, false
		}
		c := &la.line
		if name := c.series[:c.nameLen]; bytes.HasSuffix(name, createdSuffix) {
			// The type cannot change before the look-ahead's end.
			la.found = true
			la.key = appendSTKey(la.key[:0], c.series, name[:len(name)-len(createdSuffix)], p.mtype)
			break
		}
		q += end + 1
	}
	la.valid, la.to = true, q
	return la, true
}

// appendSTKey appends to dst what Prometheus' parser hashes to match a
// series with its _created series: the name and raw value of each label of
// the series key s (le of a histogram and quantile of a summary aside),
// then name.
func appendSTKey(dst, s, name []byte, mtype model.MetricType) []byte {
	for i := metricNameLen(s) + 1; i < len(s); {
		ln := labelNameLen(s[i:])
		if ln == 0 {
			break // "{}"
		}
		lname := s[i : i+ln]
		i += ln + 2
		vs := i
		for s[i] != '"' {
			if s[i] == '\\' {
				i++
			}
			i++
		}
		skip := (mtype == model.MetricTypeSummary && string(lname) == model.QuantileLabel) ||
			(mtype == model.MetricTypeHistogram && string(lname) == model.BucketLabel)
		if !skip {
			dst = append(dst, lname...)
			dst = append(dst, s[vs:i]...)
		}
		i += 2
	}
	return append(dst, name...)
}
