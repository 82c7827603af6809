package scrape

import "testing"

func TestParserPool(t *testing.T) {
	p := newParserPool(1)
	a, b := p.get(), p.get()
	if a == nil || b == nil || a == b {
		t.Fatalf("get on an empty pool: %p and %p, want two new Parsers", a, b)
	}
	p.put(a)
	p.put(b) // over capacity: dropped
	if got := p.get(); got != a {
		t.Errorf("get after put: %p, want the idle %p", got, a)
	}
	if got := p.get(); got == a || got == b {
		t.Errorf("get with none idle returned a lent or dropped Parsers %p", got)
	}
}
