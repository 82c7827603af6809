package wal

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/prometheus/tsdb/fileutil"
)

// trimLogName is the file in the WAL directory that remembers what each
// segment Trim removed held, so that a process started after the trim can
// still count what an endpoint that had not sent those segments lost
// (Resume). wlog ignores it: its name is not a segment number.
const trimLogName = "trimmed"

// trimLogHeader starts the file; the number is the format version.
const trimLogHeader = "rwagent-wal-trimmed 1\n"

// save writes every remembered segment to dir's trim log, replacing it
// atomically (temporary file, fsync, rename); no segment: no file.
// t.mu must not be held.
func (t *trimmed) save(dir string) error {
	t.mu.Lock()
	segs := make([]int, 0, len(t.segs))
	for seg := range t.segs {
		segs = append(segs, seg)
	}
	slices.Sort(segs)
	var b bytes.Buffer
	b.WriteString(trimLogHeader)
	for _, seg := range segs {
		s := t.segs[seg]
		reason := reasonFull
		if s.tooOld {
			reason = reasonTooOld
		}
		fmt.Fprintf(&b, "%d %s %d %d %d\n", seg, reason, s.c.Samples, s.c.Histograms, s.c.Exemplars)
	}
	t.mu.Unlock()

	path := filepath.Join(dir, trimLogName)
	if len(segs) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", path, err)
		}
		return nil
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	_, err = f.Write(b.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fileutil.Replace(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp) // the error that matters is err
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// load reads dir's trim log into t. A missing file is no segment; a file
// that does not parse is an error (the caller logs it and goes on: the
// counts are lost, not the data).
func (t *trimmed) load(dir string) error {
	path := filepath.Join(dir, trimLogName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	segs, err := parseTrimLog(b)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	t.mu.Lock()
	t.segs = segs
	t.mu.Unlock()
	return nil
}

// parseTrimLog parses what save writes.
func parseTrimLog(b []byte) (map[int]trimmedSegment, error) {
	rest, ok := bytes.CutPrefix(b, []byte(trimLogHeader))
	if !ok {
		return nil, errors.New("no trim log header")
	}
	segs := map[int]trimmedSegment{}
	sc := bufio.NewScanner(bytes.NewReader(rest))
	for n := 2; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) != 5 || (f[1] != reasonFull && f[1] != reasonTooOld) {
			return nil, fmt.Errorf("line %d: want segment, reason, samples, histograms, exemplars", n)
		}
		var v [4]int
		for i, s := range []string{f[0], f[2], f[3], f[4]} {
			x, err := strconv.Atoi(s)
			if err != nil || x < 0 {
				return nil, fmt.Errorf("line %d: field %q is not a count", n, s)
			}
			v[i] = x
		}
		segs[v[0]] = trimmedSegment{tooOld: f[1] == reasonTooOld, c: Counts{Samples: v[1], Histograms: v[2], Exemplars: v[3]}}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return segs, nil
}
