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

// states are the table of TestMarshalRoundTrip and seeds of FuzzUnmarshal.
var states = []State{
	{},
	{Acked: wal.Position{Segment: 1, Offset: 32768}},
	{Acked: wal.Position{Segment: 1<<31 - 1, Offset: 1<<63 - 1}},
	{SentKnown: true},
	{Acked: wal.Position{Segment: 3, Offset: 100}, Sent: wal.Position{Segment: 3, Offset: 100}, SentKnown: true},
	{Acked: wal.Position{Segment: 3, Offset: 100}, Sent: wal.Position{Segment: 5, Offset: 7}, SentKnown: true},
	{Acked: wal.Position{Segment: 1<<31 - 1, Offset: 1<<63 - 1}, Sent: wal.Position{Segment: 1<<31 - 1, Offset: 1<<63 - 1}, SentKnown: true},
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, st := range states {
		b := Marshal(nil, st)
		got, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("unmarshal %q: %v", b, err)
		}
		if got != st {
			t.Fatalf("round trip of %+v: got %+v", st, got)
		}
	}
	// Version 1, as older rwagents wrote it, still reads.
	if got := string(Marshal(nil, State{Acked: wal.Position{Segment: 12, Offset: 4567}})); got != "rwagent-send-position 1 12 4567 "+got[len(got)-9:] {
		t.Fatalf("version 1 format changed: %q", got)
	}
	if got := string(Marshal(nil, State{Acked: wal.Position{Segment: 12, Offset: 4567}, Sent: wal.Position{Segment: 13}, SentKnown: true})); got != "rwagent-send-position 2 12 4567 13 0 "+got[len(got)-9:] {
		t.Fatalf("version 2 format changed: %q", got)
	}
}

// TestUnmarshalCorrupt: every file that is not exactly what Marshal writes
// is corrupt, so that a damaged file is never taken for a position.
func TestUnmarshalCorrupt(t *testing.T) {
	good := string(Marshal(nil, State{Acked: wal.Position{Segment: 3, Offset: 100}}))
	good2 := string(Marshal(nil, State{Acked: wal.Position{Segment: 3, Offset: 100}, Sent: wal.Position{Segment: 4, Offset: 8}, SentKnown: true}))
	for name, in := range map[string]string{
		"empty":            "",
		"no newline":       strings.TrimSuffix(good, "\n"),
		"two lines":        good + good,
		"other magic":      strings.Replace(good, "rwagent-send-position 1", "rwagent-send-position 3", 1),
		"v1 called v2":     strings.Replace(good, "rwagent-send-position 1", "rwagent-send-position 2", 1),
		"v2 called v1":     strings.Replace(good2, "rwagent-send-position 2", "rwagent-send-position 1", 1),
		"v2 sent flipped":  strings.Replace(good2, " 4 8 ", " 4 9 ", 1),
		"v2 missing field": strings.Replace(good2, " 4 8 ", " 4 ", 1),
		"sent before ack":  string(Marshal(nil, State{Acked: wal.Position{Segment: 3, Offset: 100}, Sent: wal.Position{Segment: 3, Offset: 99}, SentKnown: true})),
		"negative sent":    string(Marshal(nil, State{Sent: wal.Position{Segment: -1}, SentKnown: true})),
		"digit flipped":    strings.Replace(good, " 100 ", " 101 ", 1),
		"segment flipped":  strings.Replace(good, " 3 ", " 4 ", 1),
		"leading zero":     strings.Replace(good, " 3 ", " 03 ", 1),
		"negative segment": string(Marshal(nil, State{Acked: wal.Position{Segment: -1}})),
		"negative offset":  string(Marshal(nil, State{Acked: wal.Position{Offset: -5}})),
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
	p := State{Acked: wal.Position{Segment: 2, Offset: 999}}
	for _, k := range []string{"amp", "url-0011"} {
		if err := s.Save(k, p); err != nil {
			t.Fatal(err)
		}
	}
	p.Acked.Offset++
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

func TestLive(t *testing.T) {
	s := New(filepath.Join(t.TempDir(), "positions"))
	if _, ok, err := s.LoadLive("amp"); ok || err != nil {
		t.Fatalf("load of nothing: %v, %v", ok, err)
	}
	l, err := s.OpenLive("amp")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, ok, err := s.LoadLive("amp"); ok || err != nil {
		t.Fatalf("load of a live file never written: %v, %v", ok, err)
	}
	long := State{Acked: wal.Position{Segment: 1234, Offset: 1234567}, Sent: wal.Position{Segment: 1234, Offset: 7654321}, SentKnown: true}
	short := State{Acked: wal.Position{Segment: 1, Offset: 2}, Sent: wal.Position{Segment: 1, Offset: 3}, SentKnown: true}
	for _, st := range []State{long, short} {
		if err := l.Write(st); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := s.LoadLive("amp"); !ok || err != nil || got != st {
			t.Fatalf("load after writing %+v: %+v, %v, %v", st, got, ok, err)
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := l.Invalidate(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.LoadLive("amp"); ok || err != nil {
		t.Fatalf("load after Invalidate: %v, %v", ok, err)
	}
	// Version 1 holds no sent mark: it is no live file.
	if err := l.Write(State{Acked: wal.Position{Segment: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.LoadLive("amp"); ok || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("load of a version 1 live line: ok=%v err=%v", ok, err)
	}
	if err := s.Remove("amp"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.LoadLive("amp"); ok || err != nil {
		t.Fatalf("load after remove: %v, %v", ok, err)
	}
}

func TestLatest(t *testing.T) {
	pos := func(seg int, off int64) wal.Position { return wal.Position{Segment: seg, Offset: off} }
	v1 := State{Acked: pos(2, 10)}
	v2 := State{Acked: pos(2, 10), Sent: pos(2, 50), SentKnown: true}
	for _, tc := range []struct {
		name          string
		durable, live *State
		want          State
		ok            bool
	}{
		{"nothing", nil, nil, State{}, false},
		{"v1 file only (older rwagent): sent unknown", &v1, nil, State{Acked: pos(2, 10)}, true},
		{"durable only: sent unknown", &v2, nil, State{Acked: pos(2, 10)}, true},
		{"live only", nil, &State{Acked: pos(2, 30), Sent: pos(3, 0), SentKnown: true}, State{Acked: pos(2, 30), Sent: pos(3, 0), SentKnown: true}, true},
		{"live newer", &v2, &State{Acked: pos(2, 30), Sent: pos(3, 0), SentKnown: true}, State{Acked: pos(2, 30), Sent: pos(3, 0), SentKnown: true}, true},
		{"live as new", &v2, &State{Acked: pos(2, 10), Sent: pos(2, 60), SentKnown: true}, State{Acked: pos(2, 10), Sent: pos(2, 60), SentKnown: true}, true},
		{"live newer than a v1 file", &v1, &State{Acked: pos(2, 30), Sent: pos(3, 0), SentKnown: true}, State{Acked: pos(2, 30), Sent: pos(3, 0), SentKnown: true}, true},
		{"live stale (power loss): sent unknown", &State{Acked: pos(3, 5), Sent: pos(3, 9), SentKnown: true}, &v2, State{Acked: pos(3, 5)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Latest(tc.durable, tc.live)
			if ok != tc.ok || got != tc.want {
				t.Fatalf("Latest = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
