package sendpos

import (
	"bytes"
	"testing"

	"github.com/rwagent/rwagent/pkg/wal"
)

// FuzzUnmarshal: no input panics, and whatever decodes encodes back to the
// same bytes.
func FuzzUnmarshal(f *testing.F) {
	for _, st := range states {
		f.Add(Marshal(nil, st))
	}
	f.Add([]byte(""))
	f.Add([]byte("rwagent-send-position 1 2 1000 00000000\n"))
	f.Add([]byte("rwagent-send-position 1 -1 0 00000000\n"))
	f.Add([]byte("rwagent-send-position 2 1 2 1 1 00000000\n"))
	f.Add([]byte("rwagent-send-position 2 1 2 1 00000000\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := Unmarshal(b)
		if err != nil {
			return
		}
		if st.Acked.Segment < 0 || st.Acked.Offset < 0 || st.Sent.Segment < 0 || st.Sent.Offset < 0 {
			t.Fatalf("decoded a negative position %+v from %q", st, b)
		}
		if st.SentKnown && st.Sent.Compare(st.Acked) < 0 {
			t.Fatalf("decoded a sent mark before the acknowledged position %+v from %q", st, b)
		}
		if !st.SentKnown && st.Sent != (wal.Position{}) {
			t.Fatalf("decoded an unknown sent mark %+v from %q", st, b)
		}
		if got := Marshal(nil, st); !bytes.Equal(got, b) {
			t.Fatalf("round trip of %q: %q", b, got)
		}
	})
}
