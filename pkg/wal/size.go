package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/prometheus/prometheus/tsdb/wlog"
)

// BytesAfter returns how many bytes of segments the WAL holds from p on:
// the rest of p's segment and every later segment, the one being written
// up to what Log has written. A p in segments already removed counts from
// the first segment left; a p at or past the end counts zero. The
// checkpoint is not counted. A finished segment's last page is padded with
// zeros (as Close pads the last one); that padding, under 32KiB a segment,
// is counted too. A segment removed while BytesAfter runs is
// skipped. It is safe for concurrent use, also after Close.
func (w *WAL) BytesAfter(p Position) (int64, error) {
	first, last, _, err := segmentRange(w.dir) // a missing segment counts nothing
	if err != nil {
		return 0, err
	}
	if first < 0 {
		return 0, nil
	}
	var n int64
	for seg := max(first, p.Segment); seg <= last; seg++ {
		fi, err := os.Stat(wlog.SegmentName(w.dir, seg))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return 0, fmt.Errorf("stat segment %d in %s: %w", seg, w.dir, err)
		}
		size := fi.Size()
		if seg == p.Segment {
			size = max(size-p.Offset, 0)
		}
		n += size
	}
	return n, nil
}
