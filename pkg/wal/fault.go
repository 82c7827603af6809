package wal

import (
	"fmt"
	"os"
	"time"

	"github.com/prometheus/prometheus/tsdb/wlog"
	"github.com/prometheus/prometheus/util/compression"
)

// A write that fails (a full disk, a file system turned read-only, an I/O
// error) leaves wlog's writer unfit for the next one. Its page buffer keeps
// what it could not write: whole records of the failed batch, and maybe the
// first part of a record split across pages whose other parts were
// dropped. wlog would write that page ahead of the next batch, and a
// Reader would then meet a record cut in two followed by a whole one: a
// corrupt segment, which Open's repair would cut together with everything
// logged after it (TestWALDiskFull in test/durability shows it on a full
// tmpfs).
//
// So after a failed write the writer is not written to again. The next Log
// first replaces it (replaceWriter): it closes it, which writes its page
// out once the disk takes it (until then the Log fails, and so does every
// Log after it); cuts a record torn at the end of the segment, so that the
// segment ends with its last whole record; and opens a writer on
// a new segment. Readers read the old segment to its end, as they do at
// every segment change, then go on with the new one; Open, checkpoints and
// Trim read it as a segment ending in padding.
//
// Whole records of the first failed batch of an episode may thus reach the
// WAL after all, once the disk takes the page: Log has reported that batch
// as failed, so its caller counts it as dropped, an upper bound. Nothing
// logged before the failure is lost, and nothing logged after the recovery.

// write logs recs with the active writer, replacing it first if a write
// failed; w.mu is held.
func (w *WAL) write(recs [][]byte) error {
	if w.failing {
		if err := w.replaceWriter(); err != nil {
			w.failedWrites++
			return err
		}
	}
	var err error
	if w.logTo != nil {
		err = w.logTo(w.wl, recs)
	} else {
		err = w.wl.Log(recs...)
	}
	if err != nil {
		w.failing = true
		w.failedWrites++
		if w.failSince.IsZero() {
			w.failSince = time.Now()
			w.logger.Error("write WAL; dropping what cannot be logged and retrying with a new segment at each write until one succeeds", "err", err)
		}
		return err
	}
	if !w.failSince.IsZero() {
		w.logger.Info("WAL writes recovered", "failed_writes", w.failedWrites, "failing_for", time.Since(w.failSince))
		w.failSince, w.failedWrites = time.Time{}, 0
	}
	return nil
}

// replaceWriter closes the writer a write failed on, cuts a record torn at
// the end of its segment, and opens a writer on a new segment; w.mu is
// held. Each step is done once: on an error the next call goes on from the
// step that failed.
func (w *WAL) replaceWriter() error {
	if w.replaceErr != nil {
		if err := w.replaceErr(); err != nil {
			return err
		}
	}
	if !w.wlClosed {
		if err := w.wl.Close(); err != nil {
			return fmt.Errorf("close wal segment after a write error in %s: %w", w.dir, err)
		}
		w.wlClosed = true
	}
	if !w.tailCut {
		if err := w.cutTornTail(); err != nil {
			return err
		}
		w.tailCut = true
	}
	wl, err := wlog.NewSize(w.logger, nil, w.dir, w.opts.SegmentSize, compression.None)
	if err != nil {
		return fmt.Errorf("open new wal segment in %s after a write error: %w", w.dir, err)
	}
	w.wl = wl
	w.failing, w.wlClosed, w.tailCut = false, false, false
	_, last, _ := wlog.Segments(w.dir)
	w.logger.Info("WAL writer replaced after a write error", "segment", last)
	return nil
}

// cutTornTail cuts the last segment after its last whole record when it
// ends inside one; shrinking a file needs no free space. The segment then
// ends inside a page, which wlog's readers take as padded with zeros. It is
// not padded on disk: a Reader that had read the start of the torn record
// finds the file ending before it rather than zeros where the rest of the
// record was, which it would take for damage. w.wl must be closed.
func (w *WAL) cutTornTail() error {
	_, last, err := wlog.Segments(w.dir)
	if err != nil {
		return fmt.Errorf("list segments in %s: %w", w.dir, err)
	}
	if last < 0 {
		return nil
	}
	name := wlog.SegmentName(w.dir, last)
	good, size, err := lastWholeRecord(name)
	if err != nil || good == size {
		return err
	}
	if err := os.Truncate(name, good); err != nil {
		return fmt.Errorf("cut torn record in segment %s: %w", name, err)
	}
	if err := syncFile(name); err != nil {
		return err
	}
	w.metrics.repairCutBytes.Add(float64(size - good))
	w.logger.Warn("cut a record torn by a failed write", "segment", name, "offset", good, "cut_bytes", size-good)
	return nil
}

// lastWholeRecord reads segment file name and returns its size and, when it
// is damaged or ends inside a record, the offset just after its last whole
// record; else good is size.
func lastWholeRecord(name string) (good, size int64, err error) {
	seg, err := wlog.OpenReadSegment(name)
	if err != nil {
		return 0, 0, fmt.Errorf("open segment %s: %w", name, err)
	}
	sr := wlog.NewSegmentBufReader(seg)
	defer sr.Close()
	fi, err := seg.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("stat segment %s: %w", name, err)
	}
	r := wlog.NewReader(sr)
	for r.Next() {
		good = r.Offset()
	}
	if r.Err() == nil {
		return fi.Size(), fi.Size(), nil
	}
	return good, fi.Size(), nil
}
