package tokenbucket

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	b := New(10, 20, t0)
	steps := []struct {
		at   time.Duration
		take int
		give int           // given back after the take
		wait time.Duration // 0: taken
	}{
		{at: 0, take: 15}, // 20 → 5
		{at: 0, take: 6, wait: 100 * time.Millisecond}, // 5 left: all or nothing; 1 more in 0.1s
		{at: 0, take: 5},                      // → 0
		{at: 500 * time.Millisecond, take: 5}, // refilled 5 → 0
		{at: 500 * time.Millisecond, take: 1, wait: 100 * time.Millisecond}, // same instant: nothing more
		{at: 400 * time.Millisecond, take: 1, wait: 100 * time.Millisecond}, // clock stepped back: no refill
		{at: 10 * time.Second, take: 21, wait: 100 * time.Millisecond},      // full at 20: more than the burst never passes
		{at: 10 * time.Second, take: 20, give: 8},                           // the whole burst does; 8 given back
		{at: 10 * time.Second, take: 8},                                     // the 8 given back
		{at: 10 * time.Second, take: 1, wait: 100 * time.Millisecond},
		{at: 12 * time.Second, take: 20}, // 2s refill 20
	}
	for i, s := range steps {
		if got := b.Take(s.take, t0.Add(s.at)); got != s.wait {
			t.Fatalf("step %d: Take(%d) at +%v = %v, want %v", i, s.take, s.at, got, s.wait)
		}
		b.Give(s.give)
	}
	if off := New(-1, 0, t0); off.Take(1e9, t0) != 0 {
		t.Error("a negative rate limits")
	}
	if d := New(0.5, 0, t0); d.Burst() != 1 {
		t.Errorf("default burst at 0.5/s = %v, want 1", d.Burst())
	}
	if d := New(300, 0, t0); d.Burst() != 300 {
		t.Errorf("default burst at 300/s = %v, want one second's worth", d.Burst())
	}
}
