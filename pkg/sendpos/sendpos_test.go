package sendpos

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/rwagent/rwagent/pkg/wal"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, p := range []wal.Position{{}, {Segment: 1, Offset: 32768}, {Segment: 1<<31 - 1, Offset: 1<<63 - 1}} {
		b := Marshal(nil, p)
		got, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("unmarshal %q: %v", b, err)
		}
		if got != p {
			t.Fatalf("round trip of %v: got %v", p, got)
		}
	}
	if got := string(Marshal(nil, wal.Position{Segment: 12, Offset: 4567})); got != "rwagent-send-position 1 12 4567 "+got[len(got)-9:] {
		t.Fatalf("format changed: %q", got)
	}
}

// TestUnmarshalCorrupt: every file that is not exactly what Marshal writes
// is corrupt, so that a damaged file is never taken for a position.
func TestUnmarshalCorrupt(t *testing.T) {
	good := string(Marshal(nil, wal.Position{Segment: 3, Offset: 100}))
	for name, in := range map[string]string{
		"empty":            "",
		"no newline":       strings.TrimSuffix(good, "\n"),
		"two lines":        good + good,
		"other magic":      strings.Replace(good, "rwagent-send-position 1", "rwagent-send-position 2", 1),
		"digit flipped":    strings.Replace(good, " 100 ", " 101 ", 1),
		"segment flipped":  strings.Replace(good, " 3 ", " 4 ", 1),
		"leading zero":     strings.Replace(good, " 3 ", " 03 ", 1),
		"negative segment": string(Marshal(nil, wal.Position{Segment: -1})),
		"negative offset":  string(Marshal(nil, wal.Position{Offset: -5})),
		"missing field":    "rwagent-send-position 1 3 100\n",
		"upper-case crc":   strings.ToUpper(good[:len(good)-9]) + strings.ToUpper(good[len(good)-9:]),
		"zeroed":           string(make([]byte, len(good))),
	} {
		t.Run(name, func(t *testing.T) {
			if p, err := Unmarshal([]byte(in)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Unmarshal(%q) = %v, %v; want ErrCorrupt", in, p, err)
			}
		})
	}
}

func TestKey(t *testing.T) {
	for _, tc := range []struct{ name, url, want string }{
		{"amp", "https://a/b", "amp"},
		{"amp.prod-1_x", "https://a/b", "amp.prod-1_x"},
		{"", "https://a/b", "url-" + hash("https://a/b")},
		{"../etc", "https://a/b", "name-" + hash("../etc")},
		{".hidden", "", "name-" + hash(".hidden")},
		{"a b", "", "name-" + hash("a b")},
	} {
		if got := Key(tc.name, tc.url); got != tc.want {
			t.Errorf("Key(%q, %q) = %q, want %q", tc.name, tc.url, got, tc.want)
		}
		if !safeKey(Key(tc.name, tc.url)) {
			t.Errorf("Key(%q, %q) is not a safe file name", tc.name, tc.url)
		}
	}
	if Key("", "https://user:secret@a/b") == Key("", "https://a/b") {
		t.Error("different URLs share a key")
	}
}

func TestStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "positions")
	s := New(dir)
	if keys, err := s.Keys(); err != nil || len(keys) != 0 {
		t.Fatalf("keys of a missing dir: %v, %v", keys, err)
	}
	if _, ok, err := s.Load("amp"); ok || err != nil {
		t.Fatalf("load of nothing: %v, %v", ok, err)
	}
	p := wal.Position{Segment: 2, Offset: 999}
	for _, k := range []string{"amp", "url-0011"} {
		if err := s.Save(k, p); err != nil {
			t.Fatal(err)
		}
	}
	p.Offset++
	if err := s.Save("amp", p); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Load("amp")
	if err != nil || !ok || got != p {
		t.Fatalf("load after save: %v, %v, %v; want %v", got, ok, err, p)
	}
	keys, err := s.Keys()
	if err != nil || !slices.Equal(keys, []string{"amp", "url-0011"}) {
		t.Fatalf("keys: %v, %v", keys, err)
	}
	if err := s.Remove("url-0011"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("url-0011"); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if keys, _ := s.Keys(); !slices.Equal(keys, []string{"amp"}) {
		t.Fatalf("keys after remove: %v", keys)
	}
	if err := s.Save("../x", p); err == nil {
		t.Fatal("saved under an unsafe key")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}

	// A damaged file is reported as corrupt, not taken for a position.
	if err := os.WriteFile(filepath.Join(dir, "amp.pos"), []byte("rwagent-send-position 1 2 1000 00000000\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Load("amp"); ok || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("load of a corrupt file: ok=%v err=%v", ok, err)
	}
}
