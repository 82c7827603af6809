package sendpos

import (
	"context"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/rwagent/rwagent/pkg/wal"
)

// TestKeeperSavesOnStop: what a queue reports after the last periodic
// save is saved durably when Run stops, and the endpoints of an earlier
// configuration lose their files at Open.
func TestKeeperSavesOnStop(t *testing.T) {
	state := t.TempDir()
	w, err := wal.Open(wal.Options{Dir: filepath.Join(state, "wal")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	dir := filepath.Join(state, "send_positions")
	if err := New(dir).Save("gone", State{}); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("http://127.0.0.1:1/api/v1/write")
	k, err := Open(Options{Dir: dir, WAL: w, Endpoints: []Endpoint{{Name: "sink", URL: u}},
		SaveInterval: time.Hour, TruncateFrequency: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if rs := k.Resume(0); rs.Key != "sink" || rs.Start != (wal.Position{}) {
		t.Fatalf("resume without a saved position: %+v, want key sink from the start", rs)
	}
	if keys, _ := New(dir).Keys(); len(keys) != 1 || keys[0] != "sink" {
		t.Fatalf("keys after Open: %v, want [sink]", keys)
	}
	acked, sent := wal.Position{Segment: 0, Offset: 10}, wal.Position{Segment: 0, Offset: 20}
	k.Writer(0).WritePositions(acked, sent)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := k.Run(ctx); err != nil {
		t.Fatal(err)
	}
	want := State{Acked: acked, Sent: sent, SentKnown: true}
	if st, ok, err := New(dir).Load("sink"); err != nil || !ok || st != want {
		t.Fatalf("saved after Run stopped: %+v, %v, %v; want %+v", st, ok, err, want)
	}
}

// fixedQueue is a queue whose acknowledged position is set by the test.
type fixedQueue struct{ acked wal.Position }

func (q *fixedQueue) Acked() wal.Position { return q.acked }

// TestKeeperAddContinueRemove: endpoints changed by a reload. An added
// endpoint resumes at its saved position; a continued one resumes where
// its old queue acknowledged, with the old sent mark to count resends; a
// removed one loses its files and no longer holds the WAL's truncation.
func TestKeeperAddContinueRemove(t *testing.T) {
	state := t.TempDir()
	w, err := wal.Open(wal.Options{Dir: filepath.Join(state, "wal")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	dir := filepath.Join(state, "send_positions")
	u, _ := url.Parse("http://127.0.0.1:1/api/v1/write")
	k, err := Open(Options{Dir: dir, WAL: w, Endpoints: []Endpoint{{Name: "a", URL: u}},
		SaveInterval: time.Hour, TruncateFrequency: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()

	// Continue: the new queue starts at the old one's acknowledged
	// position, and what the old one sent past it counts as resent.
	old := &fixedQueue{acked: wal.Position{Segment: 0, Offset: 7}}
	k.Attach(k.Writer(0), old)
	k.Writer(0).WritePositions(wal.Position{Segment: 0, Offset: 5}, wal.Position{Segment: 0, Offset: 30})
	rs, wr, err := k.Continue("a")
	if err != nil {
		t.Fatal(err)
	}
	if rs.Start != old.acked || rs.ResendUntil != (wal.Position{Segment: 0, Offset: 30}) || wr != k.Writer(0) {
		t.Fatalf("Continue: %+v, want start %v, resend until 0/30, the same writer", rs, old.acked)
	}
	if _, _, err := k.Continue("nope"); err == nil {
		t.Fatal("Continue of an unknown key: no error")
	}

	// Add: an endpoint with no saved position starts at the oldest data;
	// adding it twice is an error.
	rs, wb, err := k.Add(Endpoint{Name: "b", URL: u}, "b")
	if err != nil {
		t.Fatal(err)
	}
	if rs.Key != "b" || rs.Start != (wal.Position{}) {
		t.Fatalf("Add: %+v, want key b from the start", rs)
	}
	if _, _, err := k.Add(Endpoint{Name: "b", URL: u}, "b"); err == nil {
		t.Fatal("Add of a kept key: no error")
	}
	wb.WritePositions(wal.Position{Segment: 0, Offset: 3}, wal.Position{Segment: 0, Offset: 3})
	k.saveAll()
	if keys, _ := New(dir).Keys(); len(keys) != 2 {
		t.Fatalf("keys after Add and a save: %v, want [a b]", keys)
	}

	// Remove: its files go, and saves no longer bring them back.
	if err := k.Remove("b"); err != nil {
		t.Fatal(err)
	}
	wb.WritePositions(wal.Position{Segment: 0, Offset: 4}, wal.Position{Segment: 0, Offset: 4})
	k.saveAll()
	if keys, _ := New(dir).Keys(); len(keys) != 1 || keys[0] != "a" {
		t.Fatalf("keys after Remove: %v, want [a]", keys)
	}
	if err := k.Remove("b"); err == nil {
		t.Fatal("Remove of a removed key: no error")
	}

	// A re-added endpoint resumes as a new one: its position was removed.
	rs, _, err = k.Add(Endpoint{Name: "b", URL: u}, "b")
	if err != nil || rs.Start != (wal.Position{}) {
		t.Fatalf("re-Add: %+v, %v; want from the start", rs, err)
	}
}
