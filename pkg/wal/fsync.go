package wal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/prometheus/tsdb/wlog"
)

// Run syncs the WAL to disk every Options.FsyncInterval when the policy is
// FsyncInterval, and does nothing otherwise. It blocks until ctx is done
// and then returns nil; Close does the final sync. Call it at most once.
func (w *WAL) Run(ctx context.Context) error {
	if w.opts.Fsync != FsyncInterval {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(w.opts.FsyncInterval)
	defer t.Stop()
	failing := false    // log the first failure and the recovery, not each tick; the metric counts them all
	fillFailed := false // likewise for replacing a missing segment
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if w.closed.Load() {
				continue
			}
			holes, err := w.syncSegments()
			if holes {
				// A segment deleted while running: fill it, log it, and
				// have Readers count it, before anything else trips on it.
				w.truncMu.Lock()
				var ferr error
				if !w.closed.Load() {
					ferr = w.fillHoles()
				}
				w.truncMu.Unlock()
				if ferr != nil && !fillFailed {
					w.logger.Error("replace a missing WAL segment, retrying every interval", "err", ferr)
				}
				fillFailed = ferr != nil
			}
			switch {
			case err != nil && !failing:
				w.logger.Error("sync WAL, retrying every interval", "err", err)
			case err == nil && failing:
				w.logger.Info("sync WAL recovered")
			}
			failing = err != nil
		}
	}
}

// syncSegments fsyncs every segment that may hold data not yet on disk:
// the active one and any finished since the last call (wlog syncs those
// itself, but asynchronously). It opens its own handle on each file, so it
// does not block Log. A segment missing between others (deleted by hand)
// does not stop it: it syncs the rest and reports holes.
func (w *WAL) syncSegments() (holes bool, err error) {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	first, last, holes, err := segmentRange(w.dir)
	if err != nil {
		w.metrics.fsyncFailures.Inc()
		return false, err
	}
	start := time.Now()
	for i := max(w.syncFrom, first); i <= last; i++ {
		if err := syncFile(wlog.SegmentName(w.dir, i)); err != nil {
			w.metrics.fsyncFailures.Inc()
			return holes, err
		}
	}
	w.metrics.fsyncDuration.Observe(time.Since(start).Seconds())
	w.syncFrom = last
	return holes, nil
}

// syncFile fsyncs the file at path. A file removed by a truncation needs no
// sync.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open segment %s for sync: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync segment %s: %w", path, err)
	}
	return f.Close()
}
