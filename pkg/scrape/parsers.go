package scrape

import "github.com/rwagent/rwagent/pkg/exposition"

// parserPool lends exposition.Parsers to the appenders of one Manager. A
// Parsers keeps buffers as large as the largest metric family it has
// parsed; lent only for the length of a parse, they exist about once per
// concurrent parse instead of once per target (at 50 targets of 10k series,
// 21 MB of 290 MB of heap when each loop kept its own).
type parserPool struct {
	free chan *exposition.Parsers
}

// newParserPool keeps up to n idle Parsers.
func newParserPool(n int) *parserPool {
	return &parserPool{free: make(chan *exposition.Parsers, n)}
}

// get returns an idle Parsers, or a new one if none is idle.
func (p *parserPool) get() *exposition.Parsers {
	select {
	case ps := <-p.free:
		return ps
	default:
		return new(exposition.Parsers)
	}
}

// put returns ps, which its borrower no longer uses; beyond the pool's
// capacity it is left to the garbage collector.
func (p *parserPool) put(ps *exposition.Parsers) {
	select {
	case p.free <- ps:
	default:
	}
}
