package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"

	"github.com/rwagent/rwagent/pkg/atomicfile"
)

// Repair cuts only what is damaged. Prometheus' wlog.Repair deletes every
// segment after the damage, since its WAL is replayed once; ours is the
// send queue, so a flipped byte must not cost the intact segments after it.
//
// Open reads every segment with wlog's reader (scanSegment). A record that
// fails its checksum is rewritten in place, with the fragments continuing
// it on later pages, as a record of type record.Unknown, which every reader
// skips; when its header cannot be trusted, the rest of its page is zeroed
// (wlog's readers take zeros as padding). A segment that ends inside a
// record is cut after its last whole one, and a segment missing between
// others is replaced by an empty one (fillHoles). Every other record keeps
// its offset, so saved send positions stay valid. What was cut is
// remembered in the trim log (trimlog.go) with an upper bound of the
// samples it held, and every Reader that had not read past it reports it
// in a *GapError's Corrupt counts.

// minSampleBytes is the fewest bytes a sample takes in a WAL record: a ref
// and a timestamp varint of a byte each and an 8-byte value (tsdb/record's
// V1 and V2 sample encodings; histograms take more). Bytes cut divided by
// it bound the samples and histograms they held.
const minSampleBytes = 10

// cutStretch is a stretch of a segment that a repair cut, from offset From
// to To (where the segment could have ended, for one missing or cut short),
// and a bound of the samples and histograms it held.
type cutStretch struct {
	From, To int64
	Samples  int
}

// segmentIndexes returns the indices of the segment files in dir, in
// order. Unlike wlog's listing it accepts holes.
func segmentIndexes(dir string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list segments in %s: %w", dir, err)
	}
	var idx []int
	for _, e := range ents {
		if k, err := strconv.Atoi(e.Name()); err == nil && k >= 0 && !e.IsDir() {
			idx = append(idx, k)
		}
	}
	slices.Sort(idx)
	return idx, nil
}

// segmentRange returns the first and last segment in dir, -1 and -1 if
// there is none, and whether a segment between them is missing.
func segmentRange(dir string) (first, last int, holes bool, err error) {
	idx, err := segmentIndexes(dir)
	if err != nil {
		return 0, 0, false, err
	}
	if len(idx) == 0 {
		return -1, -1, false, nil
	}
	first, last = idx[0], idx[len(idx)-1]
	return first, last, last-first+1 != len(idx), nil
}

// fillHoles replaces each segment missing between the first and the last
// with an empty one, so that wlog (which refuses a WAL with holes) and the
// Readers go on with the next. A missing segment after the checkpoint is
// remembered as cut whole, logged and counted; its bound is a full
// segment's worth. The caller holds w.truncMu, or is Open.
func (w *WAL) fillHoles() error {
	idx, err := segmentIndexes(w.dir)
	if err != nil {
		return err
	}
	cpIdx := -1
	if _, i, err := wlog.LastCheckpoint(w.dir); err == nil {
		cpIdx = i
	} else if !errors.Is(err, record.ErrNotFound) {
		return fmt.Errorf("find checkpoint in %s: %w", w.dir, err)
	}
	if len(idx) < 2 || idx[len(idx)-1]-idx[0]+1 == len(idx) {
		return nil // no hole
	}
	var lost []int
	for i := 1; i < len(idx); i++ {
		for seg := idx[i-1] + 1; seg < idx[i]; seg++ {
			name := wlog.SegmentName(w.dir, seg)
			f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
			if err != nil {
				return fmt.Errorf("replace missing segment %s: %w", name, err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("replace missing segment %s: %w", name, err)
			}
			if seg > cpIdx { // else the checkpoint holds its series, and it goes at the next truncation
				lost = append(lost, seg)
			}
		}
	}
	if err := atomicfile.SyncDir(w.dir); err != nil {
		return err
	}
	if len(lost) == 0 {
		return nil
	}
	size := int64(w.opts.SegmentSize)
	for _, seg := range lost {
		w.trimmed.cut(seg, []cutStretch{{From: 0, To: size, Samples: int(size / minSampleBytes)}})
		w.metrics.repairs.Inc()
		w.metrics.repairCutSamples.Add(float64(size / minSampleBytes))
		w.logger.Error("WAL segment missing: replaced by an empty one, its samples are lost; endpoints that had not sent it count them as dropped (wal_corrupt)",
			"segment", wlog.SegmentName(w.dir, seg), "samples_at_most", size/minSampleBytes)
	}
	if err := w.trimmed.save(w.dir); err != nil {
		w.logger.Warn("remember what missing segments held; an endpoint resuming before them after a restart will not count its loss", "err", err)
	}
	return nil
}

// scanSegment reads segment seg to its end, calls fn with each good record
// (and whether a stretch before it was cut), repairs what is damaged in
// place as the package comment says, and returns the stretches cut. newest
// says seg is the last segment of the WAL, whose cut tail is all there
// was; a segment before it that ends early was written up to the segment
// size (or its size, if larger), which bounds what it lost. The record
// passed to fn is valid only during the call.
func (w *WAL) scanSegment(seg int, newest bool, fn func(rec []byte, afterCut bool)) ([]cutStretch, error) {
	name := wlog.SegmentName(w.dir, seg)
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open segment %s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat segment %s: %w", name, err)
	}
	size := fi.Size()
	var (
		cuts []cutStretch
		pos  int64 // where this pass reads from, a page boundary
		seen int64 // records ending up to here were passed to fn
		zero [pageSize]byte
	)
	for pos < size {
		r := wlog.NewReader(bufio.NewReaderSize(io.NewSectionReader(f, pos, size-pos), 16*pageSize))
		good := pos
		for r.Next() {
			good = pos + r.Offset()
			if good > seen {
				fn(r.Record(), len(cuts) > 0)
				seen = good
			}
		}
		cerr := r.Err()
		if cerr == nil {
			// The reader reads padding too: a clean end is the file's end,
			// save for a torn header without data, which it takes for one.
			break
		}
		// The record at good is damaged. If its header holds, only it is
		// cut, and reading goes on from the start of its page.
		end, ok, tail, err := disownRecord(f, good, size)
		if err != nil {
			return cuts, fmt.Errorf("cut damaged record at %d of segment %s: %w", good, name, err)
		}
		if ok && !tail {
			w.logger.Warn("WAL record damaged: cut it, reading on after it",
				"segment", name, "offset", good, "cut_bytes", end-good, "err", cerr)
			cuts = appendCut(cuts, cutStretch{From: good, To: end})
			w.metrics.repairCutBytes.Add(float64(end - good))
			pos, err = recordPage(f, pos, good)
			if err != nil {
				return cuts, fmt.Errorf("read segment %s: %w", name, err)
			}
			continue
		}
		// Else the stretch to the next page goes (wlog's framing finds
		// nothing in a page past a header it cannot trust), or to the end
		// of the file if that comes first or the record runs into it.
		pageEnd := (good/pageSize + 1) * pageSize
		if pageEnd >= size || tail {
			to := size
			if !newest {
				to = max(size, int64(w.opts.SegmentSize))
			}
			if err := f.Truncate(good); err != nil {
				return cuts, fmt.Errorf("cut damaged tail of segment %s at %d: %w", name, good, err)
			}
			w.logger.Warn("WAL segment damaged to its end: cut after the last good record",
				"segment", name, "offset", good, "cut_bytes", size-good, "err", cerr)
			cuts = appendCut(cuts, cutStretch{From: good, To: to})
			w.metrics.repairCutBytes.Add(float64(size - good))
			break
		}
		if _, err := f.WriteAt(zero[:pageEnd-good], good); err != nil {
			return cuts, fmt.Errorf("zero damaged stretch %d to %d of segment %s: %w", good, pageEnd, name, err)
		}
		to, _, err := disownFragments(f, pageEnd, size) // a record running into the end is cut at the next pass
		if err != nil {
			return cuts, fmt.Errorf("cut the rest of a damaged record in segment %s at %d: %w", name, pageEnd, err)
		}
		w.logger.Warn("WAL segment damaged: cut the rest of its page, reading on after it",
			"segment", name, "offset", good, "cut_bytes", to-good, "err", cerr)
		cuts = appendCut(cuts, cutStretch{From: good, To: to})
		w.metrics.repairCutBytes.Add(float64(to - good))
		pos = pageEnd
	}
	if len(cuts) == 0 {
		return nil, nil
	}
	if err := f.Sync(); err != nil {
		return cuts, fmt.Errorf("sync repaired segment %s: %w", name, err)
	}
	for i := range cuts {
		cuts[i].Samples = int((cuts[i].To - cuts[i].From) / minSampleBytes)
		w.metrics.repairCutSamples.Add(float64(cuts[i].Samples))
	}
	w.metrics.repairs.Inc()
	w.trimmed.cut(seg, cuts)
	return cuts, nil
}

// appendCut appends c to cuts, merged with the last one if they touch.
func appendCut(cuts []cutStretch, c cutStretch) []cutStretch {
	if n := len(cuts); n > 0 && cuts[n-1].To >= c.From {
		cuts[n-1].To = max(cuts[n-1].To, c.To)
		return cuts
	}
	return append(cuts, c)
}

// dirSize returns the bytes of the files under dir. Unlike fileutil.DirSize
// it skips files removed while it walks (a truncation, or a segment deleted
// by hand), so it reports what is there rather than failing.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		n += fi.Size()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("size wal dir %s: %w", dir, err)
	}
	return n, nil
}

// wlog's record framing (tsdb/wlog/wlog.go): a 7-byte header of type,
// length and CRC32 (Castagnoli) of the data, the type in the low 3 bits.
const (
	recordHeaderSize = 7
	recTypeMask      = 0x07
	recFull          = 1
	recFirst         = 2
	recMiddle        = 3
	recLast          = 4
)

// castagnoli is the CRC32 table of wlog's record checksums.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordPage returns the last page boundary from pos to good (both in a
// stretch read without damage, pos a page boundary) at which a record
// starts, rather than one continuing from the page before: where a reader
// can start again to read what follows good.
func recordPage(f *os.File, pos, good int64) (int64, error) {
	var b [1]byte
	for p := good - good%pageSize; p > pos; p -= pageSize {
		if _, err := f.ReadAt(b[:], p); err != nil {
			return pos, err
		}
		if t := b[0] & recTypeMask; t == recFull || t == recFirst || b[0] == 0 {
			return p, nil
		}
	}
	return pos, nil
}

// disownRecord rewrites the record starting at offset at, damaged, as a
// whole record of type record.Unknown, which every reader skips, so that
// the records after it in its page are kept: its first fragment (or whole
// record) and the fragments continuing it at the next pages. ok is false
// if the header at at is not one of a fragment that fits its page: the
// record's extent is then unknown, and nothing was written. tail says the
// record runs into the end of the file. end is the end of the last
// fragment rewritten.
func disownRecord(f *os.File, at, size int64) (end int64, ok, tail bool, err error) {
	typ, length, ok, err := fragmentAt(f, at, size)
	if !ok || err != nil {
		return at, false, false, err
	}
	if err := rewriteUnknown(f, at, length); err != nil {
		return at, false, false, err
	}
	end = at + recordHeaderSize + length
	if typ == recFull || typ == recLast {
		return end, true, false, nil
	}
	next := (at/pageSize + 1) * pageSize // a first or middle fragment fills its page
	if next >= size {
		return end, true, true, nil
	}
	e, eof, err := disownFragments(f, next, size)
	if err != nil {
		return end, true, false, err
	}
	if e > next {
		end = e
	}
	return end, true, eof, nil
}

// disownFragments rewrites the fragments from offset q, a page boundary,
// that continue a record whose start was cut (middle and last fragments,
// damaged or not) as whole records of type record.Unknown: the intact
// records after them in their page are kept, where zeroing would lose the
// page. A header that is not one of those, or does not fit its page, is
// left for the next scan to cut. It returns the end of the last fragment
// rewritten (q if none), and eof if the record runs into the end of the
// file before its last fragment.
func disownFragments(f *os.File, q, size int64) (end int64, eof bool, err error) {
	end = q
	for q < size {
		typ, length, ok, err := fragmentAt(f, q, size)
		if err != nil {
			return end, false, err
		}
		if typ != recMiddle && typ != recLast {
			return end, q+recordHeaderSize > size, nil
		}
		if !ok {
			return end, q+recordHeaderSize+length > size, nil
		}
		if err := rewriteUnknown(f, q, length); err != nil {
			return end, false, err
		}
		end = q + recordHeaderSize + length
		if typ == recLast {
			return end, false, nil
		}
		q = (q/pageSize + 1) * pageSize // a middle fragment fills its page
	}
	return end, true, nil
}

// fragmentAt reads the fragment header at offset at and returns its type
// and data length; ok is false if it is not a record fragment whose data
// fits its page and the file.
func fragmentAt(f *os.File, at, size int64) (typ byte, length int64, ok bool, err error) {
	if at+recordHeaderSize > size {
		return 0, 0, false, nil // typ 0: a torn header is no fragment
	}
	var hdr [recordHeaderSize]byte
	if _, err := f.ReadAt(hdr[:], at); err != nil {
		return 0, 0, false, err
	}
	typ = hdr[0] & recTypeMask
	length = int64(binary.BigEndian.Uint16(hdr[1:]))
	if typ < recFull || typ > recLast || at%pageSize+recordHeaderSize+length > pageSize || at+recordHeaderSize+length > size {
		return typ, length, false, nil
	}
	return typ, length, true, nil
}

// rewriteUnknown overwrites the fragment of length data bytes at offset at
// with a whole, uncompressed record of type record.Unknown and zeros, with
// its checksum.
func rewriteUnknown(f *os.File, at, length int64) error {
	var buf [pageSize]byte
	data := buf[recordHeaderSize : recordHeaderSize+length]
	if length > 0 {
		data[0] = byte(record.Unknown)
	}
	buf[0] = recFull
	binary.BigEndian.PutUint16(buf[1:], uint16(length))
	binary.BigEndian.PutUint32(buf[3:], crc32.Checksum(data, castagnoli))
	_, err := f.WriteAt(buf[:recordHeaderSize+length], at)
	return err
}
