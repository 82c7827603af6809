package sendpos

import (
	"bytes"
	"testing"

	"github.com/rwagent/rwagent/pkg/wal"
)

// FuzzUnmarshal: no input panics, and whatever decodes encodes back to the
// same bytes.
func FuzzUnmarshal(f *testing.F) {
	for _, p := range []wal.Position{{}, {Segment: 3, Offset: 100}, {Segment: 1<<31 - 1, Offset: 1<<63 - 1}} {
		f.Add(Marshal(nil, p))
	}
	f.Add([]byte(""))
	f.Add([]byte("rwagent-send-position 1 2 1000 00000000\n"))
	f.Add([]byte("rwagent-send-position 1 -1 0 00000000\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Unmarshal(b)
		if err != nil {
			return
		}
		if p.Segment < 0 || p.Offset < 0 {
			t.Fatalf("decoded a negative position %v from %q", p, b)
		}
		if got := Marshal(nil, p); !bytes.Equal(got, b) {
			t.Fatalf("round trip of %q: %q", b, got)
		}
	})
}
