// Package sendpos keeps, per remote_write endpoint, the WAL position up to
// which the receiver has acknowledged everything (a send position), in a
// small file that survives restarts and crashes. On start a queue resumes
// from its saved position, so samples logged but not yet acknowledged are
// sent after a restart, and samples acknowledged before it are not sent
// again.
//
// Beside it the package keeps the sent high-water mark, the position past
// every record with a sample handed to an HTTP send: what lies between the
// two may have reached the receiver, so resending it after a restart may
// duplicate, and is counted.
//
// Each endpoint has two files. key.pos is written by Save, atomically and
// fsynced (about once a second). key.live is rewritten in place by Live
// after every acknowledgement and before every send that goes past the
// last high-water mark, without fsync: a process crash loses none of it
// (the kernel holds the write), a power loss may lose what it wrote since
// its last Sync or tear it. Latest picks what to resume from.
//
// A Keeper owns the positions of every endpoint of one WAL: it decides
// where each resumes, holds the live files the queues report to, saves
// them every second, and truncates and trims the WAL no further than the
// slowest endpoint allows. The WAL knows nothing of it, and remotewrite
// reports through the PositionWriter interface it declares.
package sendpos

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/rwagent/rwagent/pkg/atomicfile"
	"github.com/rwagent/rwagent/pkg/wal"
)

// magic1 and magic2 start a version 1 and a version 2 position line.
// Version 1 holds the acknowledged position only; version 2 adds the sent
// high-water mark. Both are read; Marshal writes version 2 whenever the
// high-water mark is known.
const (
	magic1 = "rwagent-send-position 1"
	magic2 = "rwagent-send-position 2"
)

// ext ends the name of every position file in a Store's directory;
// liveExt the name of its live file (see Live).
const (
	ext     = ".pos"
	liveExt = ".live"
)

// castagnoli is the CRC table of the checksum, as wlog uses.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is returned (wrapped) by Unmarshal, Store.Load and
// Store.LoadLive for a position file that is not one Marshal wrote.
var ErrCorrupt = errors.New("sendpos: corrupt position file")

// State is what a Store keeps for one endpoint.
type State struct {
	// Acked is the acknowledged position: every sample of the records
	// before it was delivered or dropped.
	Acked wal.Position
	// Sent is the sent high-water mark: no sample of a record at or after
	// it had been handed to an HTTP send. The records in [Acked, Sent)
	// may have reached the receiver; resending them may duplicate. It is
	// meaningful only when SentKnown, and then never before Acked.
	Sent      wal.Position
	SentKnown bool
}

// Marshal encodes s as one line of text: the magic, the acknowledged
// segment and offset, the sent segment and offset (version 2, when
// s.SentKnown; version 1 has neither) and a CRC-32C of what precedes it.
// It appends to dst and returns the extended slice.
func Marshal(dst []byte, s State) []byte {
	start := len(dst)
	if s.SentKnown {
		dst = append(dst, magic2...)
	} else {
		dst = append(dst, magic1...)
	}
	dst = appendPosition(dst, s.Acked)
	if s.SentKnown {
		dst = appendPosition(dst, s.Sent)
	}
	sum := crc32.Checksum(dst[start:], castagnoli)
	dst = append(dst, ' ')
	dst = fmt.Appendf(dst, "%08x", sum)
	return append(dst, '\n')
}

func appendPosition(dst []byte, p wal.Position) []byte {
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(p.Segment), 10)
	dst = append(dst, ' ')
	return strconv.AppendInt(dst, p.Offset, 10)
}

// Unmarshal decodes what Marshal wrote, of either version. Anything else,
// including a negative segment or offset, a sent mark before the
// acknowledged position, and a bad checksum, is an error wrapping
// ErrCorrupt. It does not retain b.
func Unmarshal(b []byte) (State, error) {
	line, ok := bytes.CutSuffix(b, []byte("\n"))
	if !ok || bytes.IndexByte(line, '\n') >= 0 {
		return State{}, fmt.Errorf("%w: not one line", ErrCorrupt)
	}
	var s State
	want := 3
	rest, ok := bytes.CutPrefix(line, []byte(magic1+" "))
	if !ok {
		rest, ok = bytes.CutPrefix(line, []byte(magic2+" "))
		s.SentKnown, want = true, 5
	}
	if !ok {
		return State{}, fmt.Errorf("%w: no %q or %q header", ErrCorrupt, magic1, magic2)
	}
	fields := strings.Split(string(rest), " ")
	if len(fields) != want {
		return State{}, fmt.Errorf("%w: %d fields, want %d", ErrCorrupt, len(fields), want)
	}
	var err error
	if s.Acked, err = parsePosition(fields[0], fields[1]); err != nil {
		return State{}, err
	}
	if s.SentKnown {
		if s.Sent, err = parsePosition(fields[2], fields[3]); err != nil {
			return State{}, err
		}
		if s.Sent.Compare(s.Acked) < 0 {
			return State{}, fmt.Errorf("%w: sent %s before acknowledged %s", ErrCorrupt, s.Sent, s.Acked)
		}
	}
	// The encoding is canonical: anything Marshal would not write (leading
	// zeros, a plus sign, upper-case hex) is corrupt, and so is a checksum
	// that does not match.
	if want := Marshal(nil, s); !bytes.Equal(want, b) {
		return State{}, fmt.Errorf("%w: checksum or format mismatch", ErrCorrupt)
	}
	return s, nil
}

func parsePosition(segment, offset string) (wal.Position, error) {
	seg, err := strconv.ParseInt(segment, 10, 32)
	if err != nil || seg < 0 {
		return wal.Position{}, fmt.Errorf("%w: segment %q", ErrCorrupt, segment)
	}
	off, err := strconv.ParseInt(offset, 10, 64)
	if err != nil || off < 0 {
		return wal.Position{}, fmt.Errorf("%w: offset %q", ErrCorrupt, offset)
	}
	return wal.Position{Segment: int(seg), Offset: off}, nil
}

// Key returns the file key of a remote_write endpoint: its name when it
// has one made of letters, digits, '_', '-' and '.', else a hash of the
// name, else (unnamed, as Prometheus names such queues) a hash of its URL.
// The URL, which may hold credentials, appears only hashed.
func Key(name, url string) string {
	if name != "" {
		if safeKey(name) {
			return name
		}
		return "name-" + hash(name)
	}
	return "url-" + hash(url)
}

func hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// safeKey reports whether k can be a file name in any directory.
func safeKey(k string) bool {
	if k == "" || len(k) > 128 || k[0] == '.' {
		return false
	}
	for _, c := range k {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}

// Store is a directory of position files, one per key (see Key). Its
// methods are safe for concurrent use with different keys; saving one key
// from two goroutines at once is not. The zero value is not usable; build
// it with New.
type Store struct {
	dir string
}

// New returns the Store of dir. It touches nothing on disk: Save creates
// dir when it first writes.
func New(dir string) *Store {
	return &Store{dir: filepath.Clean(dir)}
}

// Dir returns the Store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(key, ext string) (string, error) {
	if !safeKey(key) {
		return "", fmt.Errorf("send position key %q is not a safe file name", key)
	}
	return filepath.Join(s.dir, key+ext), nil
}

// Load returns the state saved durably for key (by Save). ok is false,
// with a nil error, when none was saved. A file that does not decode
// returns an error wrapping ErrCorrupt.
func (s *Store) Load(key string) (st State, ok bool, err error) {
	path, err := s.path(key, ext)
	if err != nil {
		return State{}, false, err
	}
	return load(path)
}

func load(path string) (State, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, fmt.Errorf("read send position %s: %w", path, err)
	}
	st, err := Unmarshal(b)
	if err != nil {
		return State{}, false, fmt.Errorf("decode send position %s: %w", path, err)
	}
	return st, true, nil
}

// Save stores st for key atomically: it writes a temporary file, fsyncs it,
// renames it over the old one and fsyncs the directory. A crash at any
// point leaves either the old state or the new one.
func (s *Store) Save(key string, st State) error {
	path, err := s.path(key, ext)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o777); err != nil {
		return fmt.Errorf("create send position dir %s: %w", s.dir, err)
	}
	if err := atomicfile.Write(path, Marshal(make([]byte, 0, 96), st), 0o666); err != nil {
		return fmt.Errorf("save send position: %w", err)
	}
	return nil
}

// Keys returns the keys that have a saved position or a live file, in
// lexical order. A
// missing directory has none.
func (s *Store) Keys() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list send positions in %s: %w", s.dir, err)
	}
	var keys []string
	for _, e := range ents {
		k, ok := strings.CutSuffix(e.Name(), ext)
		if !ok {
			k, ok = strings.CutSuffix(e.Name(), liveExt)
		}
		if ok && e.Type().IsRegular() && safeKey(k) && !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// Remove deletes the saved state and the live file of key; removing ones
// that do not exist is not an error.
func (s *Store) Remove(key string) error {
	for _, e := range []string{liveExt, ext} {
		path, err := s.path(key, e)
		if err != nil {
			return err
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove send position %s: %w", path, err)
		}
	}
	if err := atomicfile.SyncDir(s.dir); err != nil {
		return fmt.Errorf("remove send position: %w", err)
	}
	return nil
}

// Live is the live file of one endpoint: its state rewritten in place,
// cheaply, without fsync. It is not safe for concurrent use.
type Live struct {
	f   *os.File
	buf []byte
}

// OpenLive opens (creating it and the directory if needed) the live file
// of key. What it holds is left until the first Write.
func (s *Store) OpenLive(key string) (*Live, error) {
	path, err := s.path(key, liveExt)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.dir, 0o777); err != nil {
		return nil, fmt.Errorf("create send position dir %s: %w", s.dir, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, fmt.Errorf("open live send position %s: %w", path, err)
	}
	return &Live{f: f, buf: make([]byte, 0, 128)}, nil
}

// Write writes st over the start of the file with one system call and no
// fsync. A shorter line than the last leaves the old one's tail after its
// newline, which LoadLive ignores. A line is far smaller than a disk
// sector, so even a power loss leaves the old line or the new one, unless
// the device tears sectors: the checksum catches that.
func (l *Live) Write(st State) error {
	l.buf = Marshal(l.buf[:0], st)
	if _, err := l.f.WriteAt(l.buf, 0); err != nil {
		return fmt.Errorf("write live send position %s: %w", l.f.Name(), err)
	}
	return nil
}

// Invalidate empties the file, so that what it held is not taken for the
// state: call it when a Write failed. An empty live file is no live file.
func (l *Live) Invalidate() error {
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("empty live send position %s: %w", l.f.Name(), err)
	}
	return nil
}

// Sync fsyncs the file.
func (l *Live) Sync() error {
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("sync live send position %s: %w", l.f.Name(), err)
	}
	return nil
}

// Close closes the file.
func (l *Live) Close() error { return l.f.Close() }

// LoadLive returns the state in the live file of key, the first line of
// it. ok is false, with a nil error, when there is none (or it was never
// written). A line that does not decode, or has no sent mark, returns an
// error wrapping ErrCorrupt.
func (s *Store) LoadLive(key string) (st State, ok bool, err error) {
	path, err := s.path(key, liveExt)
	if err != nil {
		return State{}, false, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(b) == 0) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, fmt.Errorf("read live send position %s: %w", path, err)
	}
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i+1]
	}
	st, err = Unmarshal(b)
	if err == nil && !st.SentKnown {
		err = fmt.Errorf("%w: no sent position", ErrCorrupt)
	}
	if err != nil {
		return State{}, false, fmt.Errorf("decode live send position %s: %w", path, err)
	}
	return st, true, nil
}

// Latest returns the state to resume from, given the durable state saved
// by Save and the live one (nil when missing or unreadable). ok is false
// when both are nil.
//
// Every state written holds only true facts, so the one with the later
// acknowledged position is the newer. The live file is written more often
// and is newer unless a power loss lost its last writes: then its sent
// mark may be stale too, and the sent mark of the result is unknown, as
// it is without a live file. The caller must then take the end of the WAL
// as the sent mark, the only honest bound.
func Latest(durable, live *State) (st State, ok bool) {
	switch {
	case durable == nil && live == nil:
		return State{}, false
	case live == nil:
		st = *durable
		st.SentKnown = false
	case durable == nil || live.Acked.Compare(durable.Acked) >= 0:
		st = *live
	default:
		st = *durable
		st.SentKnown = false
	}
	if !st.SentKnown {
		st.Sent = wal.Position{}
	}
	return st, true
}
