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

// TestLoop_TimestampsIncrease: scrapes that start at the same aligned time
// (a frozen clock makes every one do so) still get increasing timestamps,
// so no series gets two samples at one time.
func TestLoop_TimestampsIncrease(t *testing.T) {
	ex := newExporter(t)
	srv := newTestServer(t, ex.handler)
	host := hostOf(srv.URL)
	frozen := time.Unix(1_700_000_000, 0)
	s := newMemStorage()
	h := startManagerOpts(t, loadScrapeConfigs(t, jobYAML("100ms", "")), ManagerOptions{Storage: s, Now: func() time.Time { return frozen }})
	h.s = s
	h.setTargets("test", host)
	waitFor(t, "three scrapes", func() bool { return len(s.floats(t, "__name__", "up")) >= 3 })
	h.stop()
	ups := s.floats(t, "__name__", "up")
	if len(ups) < 3 {
		t.Fatalf("%d up samples, want at least 3", len(ups))
	}
	for i := 1; i < len(ups); i++ {
		if ups[i].T <= ups[i-1].T {
			t.Fatalf("up sample %d at %d after %d: timestamps must increase", i, ups[i].T, ups[i-1].T)
		}
	}
}
