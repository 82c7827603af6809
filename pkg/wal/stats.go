package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"
)

// Stats is what a status page shows of the WAL, read from its directory.
type Stats struct {
	Dir string
	// Bytes is the size of the segments and the checkpoint.
	Bytes int64
	// Segments is the number of segments; FirstSegment and LastSegment
	// their range (-1 when there are none).
	Segments                  int
	FirstSegment, LastSegment int
	// OldestWrite is when the oldest segment was last written: the WAL
	// holds nothing older than that segment's data, which ends there.
	// Zero when there are no segments.
	OldestWrite time.Time
	// Checkpoint is the last checkpoint's directory name and time
	// written; empty and zero when there is none.
	Checkpoint     string
	CheckpointTime time.Time
	// Started is where this process started writing: the replay covered
	// everything before it.
	Started Position
	// Fsync is the fsync policy, and FsyncInterval its period for
	// FsyncInterval.
	Fsync         FsyncPolicy
	FsyncInterval time.Duration
	SegmentSize   int
}

// Stats reads the WAL's directory. Segments or a checkpoint removed while
// it runs are skipped. It is safe for concurrent use, also after Close.
func (w *WAL) Stats() (Stats, error) {
	s := Stats{
		Dir: w.dir, FirstSegment: -1, LastSegment: -1, Started: w.Started(),
		Fsync: w.opts.Fsync, FsyncInterval: w.opts.FsyncInterval, SegmentSize: w.opts.SegmentSize,
	}
	first, last, _, err := segmentRange(w.dir)
	if err != nil {
		return s, fmt.Errorf("list segments of %s: %w", w.dir, err)
	}
	for seg := first; first >= 0 && seg <= last; seg++ {
		fi, err := os.Stat(wlog.SegmentName(w.dir, seg))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return s, fmt.Errorf("stat segment %d in %s: %w", seg, w.dir, err)
		}
		if s.Segments == 0 {
			s.FirstSegment, s.OldestWrite = seg, fi.ModTime()
		}
		s.Segments++
		s.LastSegment = seg
		s.Bytes += fi.Size()
	}
	name, _, err := wlog.LastCheckpoint(w.dir)
	switch {
	case errors.Is(err, record.ErrNotFound):
		return s, nil
	case err != nil:
		return s, fmt.Errorf("find the checkpoint of %s: %w", w.dir, err)
	}
	s.Checkpoint = filepath.Base(name)
	err = filepath.WalkDir(name, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			s.CheckpointTime = fi.ModTime()
			return nil
		}
		s.Bytes += fi.Size()
		s.CheckpointTime = fi.ModTime()
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return s, fmt.Errorf("read checkpoint %s: %w", name, err)
	}
	return s, nil
}
