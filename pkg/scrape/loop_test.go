package scrape

import (
	"testing"
	"time"
)

func TestLoop_Offset(t *testing.T) {
	const interval = 10 * time.Second
	now := time.Unix(1_700_000_003, 250_000_000)
	for _, hash := range []uint64{0, 1, 4_999_999_999, 9_999_999_999, 1 << 63, 12345678901234567} {
		l := &loop{interval: interval, hash: hash}
		off := l.offset(now)
		if off <= 0 || off > interval {
			t.Errorf("hash %d: offset %s outside (0, %s]", hash, off, interval)
		}
		phase := now.Add(off).UnixNano() % int64(interval)
		if want := int64(hash % uint64(interval)); phase != want {
			t.Errorf("hash %d: first scrape at phase %d, want %d", hash, phase, want)
		}
		if again := l.offset(now.Add(3 * interval)); again != off {
			t.Errorf("hash %d: offset %s one interval later, want %s (fixed phase)", hash, again, off)
		}
	}
}
