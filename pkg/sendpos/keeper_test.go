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
