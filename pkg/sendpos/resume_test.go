package sendpos

import (
	"bytes"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"

	"github.com/rwagent/rwagent/pkg/wal"
)

// TestPositionPastSegmentEnd: a saved send position whose offset lies past
// the end of its segment is logged and treated as a corrupt file: the
// endpoint sends again from the oldest data, all of it counted as resent.
func TestPositionPastSegmentEnd(t *testing.T) {
	state := t.TempDir()
	w, err := wal.Open(wal.Options{Dir: filepath.Join(state, "wal")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &wal.Records{Series: []record.RefSeries{{Ref: 1, Labels: labels.FromStrings("__name__", "x")}},
		Samples: []record.RefSample{{Ref: 1, T: 1, V: 1}}}
	if err := w.Log(r); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(wlog.SegmentName(filepath.Join(state, "wal"), 0))
	if err != nil {
		t.Fatal(err)
	}
	store := New(filepath.Join(state, "send_positions"))
	past := wal.Position{Segment: 0, Offset: fi.Size() + 100}
	if err := store.Save("sink", State{Acked: past, Sent: past, SentKnown: true}); err != nil {
		t.Fatal(err)
	}
	w2, err := wal.Open(wal.Options{Dir: filepath.Join(state, "wal")}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	u, _ := url.Parse("http://127.0.0.1:1/api/v1/write")
	logs := &bytes.Buffer{}
	got := resumePositions(store, w2, []Endpoint{{Name: "sink", URL: u}},
		slog.New(slog.NewTextHandler(logs, nil)))
	if len(got) != 1 || got[0].Start != (wal.Position{}) || got[0].ResendUntil != w2.Started() {
		t.Fatalf("resume from a position past its segment: %+v, want the start, resending up to %v", got, w2.Started())
	}
	if !strings.Contains(logs.String(), "send position corrupt") {
		t.Errorf("no log line calls the position corrupt:\n%s", logs.String())
	}
}
