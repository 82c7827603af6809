package wal

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/rwagent/rwagent/pkg/atomicfile"
)

// trimLogName is the file in the WAL directory that remembers what each
// segment Trim removed held, and what repairs cut from segments, so that a
// process started later can still count what an endpoint that had not
// sent them lost (Resume, Reader). wlog ignores it: its name is not a
// segment number. A trim line is "segment reason samples histograms
// exemplars"; a cut line is "segment wal_corrupt samples 0 0 from to", one
// per stretch cut.
const trimLogName = "trimmed"

// reasonCorrupt marks a stretch a repair cut in the trim log.
const reasonCorrupt = "wal_corrupt"

// trimLogHeader starts the file; the number is the format version.
const trimLogHeader = "rwagent-wal-trimmed 1\n"

// save writes every remembered segment to dir's trim log, replacing it
// atomically (atomicfile.Write); no segment: no file.
// t.mu must not be held.
func (t *trimmed) save(dir string) error {
	t.mu.Lock()
	segs := make([]int, 0, len(t.segs)+len(t.cuts))
	for seg := range t.segs {
		segs = append(segs, seg)
	}
	for seg := range t.cuts {
		if _, ok := t.segs[seg]; !ok {
			segs = append(segs, seg)
		}
	}
	slices.Sort(segs)
	var b bytes.Buffer
	b.WriteString(trimLogHeader)
	for _, seg := range segs {
		if s, ok := t.segs[seg]; ok {
			reason := reasonFull
			if s.tooOld {
				reason = reasonTooOld
			}
			fmt.Fprintf(&b, "%d %s %d %d %d\n", seg, reason, s.c.Samples, s.c.Histograms, s.c.Exemplars)
		}
		for _, c := range t.cuts[seg] {
			fmt.Fprintf(&b, "%d %s %d 0 0 %d %d\n", seg, reasonCorrupt, c.Samples, c.From, c.To)
		}
	}
	t.mu.Unlock()

	path := filepath.Join(dir, trimLogName)
	if len(segs) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", path, err)
		}
		return nil
	}
	if err := atomicfile.Write(path, b.Bytes(), 0o666); err != nil {
		return fmt.Errorf("save trim log: %w", err)
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
	segs, cuts, err := parseTrimLog(b)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	t.mu.Lock()
	t.segs, t.cuts = segs, cuts
	t.mu.Unlock()
	return nil
}

// parseTrimLog parses what save writes.
func parseTrimLog(b []byte) (map[int]trimmedSegment, map[int][]cutStretch, error) {
	rest, ok := bytes.CutPrefix(b, []byte(trimLogHeader))
	if !ok {
		return nil, nil, errors.New("no trim log header")
	}
	segs := map[int]trimmedSegment{}
	cuts := map[int][]cutStretch{}
	sc := bufio.NewScanner(bytes.NewReader(rest))
	for n := 2; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		want := 5
		if len(f) > 1 && f[1] == reasonCorrupt {
			want = 7
		}
		if len(f) != want || (f[1] != reasonFull && f[1] != reasonTooOld && f[1] != reasonCorrupt) {
			return nil, nil, fmt.Errorf("line %d: want segment, reason, samples, histograms, exemplars (and from, to for %s)", n, reasonCorrupt)
		}
		v := make([]int64, 0, 6)
		for i, s := range f {
			if i == 1 {
				continue
			}
			x, err := strconv.ParseInt(s, 10, 0)
			if err != nil || x < 0 {
				return nil, nil, fmt.Errorf("line %d: field %q is not a count", n, s)
			}
			v = append(v, x)
		}
		seg := int(v[0])
		if f[1] == reasonCorrupt {
			if v[5] < v[4] {
				return nil, nil, fmt.Errorf("line %d: cut ends at %d before it starts at %d", n, v[5], v[4])
			}
			cuts[seg] = append(cuts[seg], cutStretch{From: v[4], To: v[5], Samples: int(v[1])})
			continue
		}
		segs[seg] = trimmedSegment{tooOld: f[1] == reasonTooOld, c: Counts{Samples: int(v[1]), Histograms: int(v[2]), Exemplars: int(v[3])}}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	for _, cs := range cuts {
		slices.SortFunc(cs, func(a, b cutStretch) int { return cmp.Compare(a.From, b.From) })
	}
	return segs, cuts, nil
}
