// Package sendpos keeps, per remote_write endpoint, the WAL position up to
// which the receiver has acknowledged everything (a send position), in a
// small file that survives restarts and crashes. On start a queue resumes
// from its saved position, so samples logged but not yet acknowledged are
// sent after a restart, and samples acknowledged before it are not sent
// again.
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
	"strconv"
	"strings"

	"github.com/rwagent/rwagent/pkg/wal"
)

// magic starts every position file; the number after it is the format
// version.
const magic = "rwagent-send-position 1"

// ext ends the name of every position file in a Store's directory.
const ext = ".pos"

// castagnoli is the CRC table of the checksum, as wlog uses.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is returned (wrapped) by Unmarshal and Store.Load for a
// position file that is not one Marshal wrote.
var ErrCorrupt = errors.New("sendpos: corrupt position file")

// Marshal encodes p as one line of text: the magic, the segment, the
// offset and a CRC-32C of what precedes it. It appends to dst and returns
// the extended slice.
func Marshal(dst []byte, p wal.Position) []byte {
	start := len(dst)
	dst = append(dst, magic...)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(p.Segment), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, p.Offset, 10)
	sum := crc32.Checksum(dst[start:], castagnoli)
	dst = append(dst, ' ')
	dst = fmt.Appendf(dst, "%08x", sum)
	return append(dst, '\n')
}

// Unmarshal decodes what Marshal wrote. Anything else, including a
// negative segment or offset and a bad checksum, is an error wrapping
// ErrCorrupt. It does not retain b.
func Unmarshal(b []byte) (wal.Position, error) {
	line, ok := bytes.CutSuffix(b, []byte("\n"))
	if !ok || bytes.IndexByte(line, '\n') >= 0 {
		return wal.Position{}, fmt.Errorf("%w: not one line", ErrCorrupt)
	}
	rest, ok := bytes.CutPrefix(line, []byte(magic+" "))
	if !ok {
		return wal.Position{}, fmt.Errorf("%w: no %q header", ErrCorrupt, magic)
	}
	fields := strings.Split(string(rest), " ")
	if len(fields) != 3 {
		return wal.Position{}, fmt.Errorf("%w: %d fields, want 3", ErrCorrupt, len(fields))
	}
	seg, err := strconv.ParseInt(fields[0], 10, 32)
	if err != nil || seg < 0 {
		return wal.Position{}, fmt.Errorf("%w: segment %q", ErrCorrupt, fields[0])
	}
	off, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil || off < 0 {
		return wal.Position{}, fmt.Errorf("%w: offset %q", ErrCorrupt, fields[1])
	}
	p := wal.Position{Segment: int(seg), Offset: off}
	// The encoding is canonical: anything Marshal would not write (leading
	// zeros, a plus sign, upper-case hex) is corrupt, and so is a checksum
	// that does not match.
	if want := Marshal(nil, p); !bytes.Equal(want, b) {
		return wal.Position{}, fmt.Errorf("%w: checksum or format mismatch", ErrCorrupt)
	}
	return p, nil
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

func (s *Store) path(key string) (string, error) {
	if !safeKey(key) {
		return "", fmt.Errorf("send position key %q is not a safe file name", key)
	}
	return filepath.Join(s.dir, key+ext), nil
}

// Load returns the position saved for key. ok is false, with a nil error,
// when none was saved. A file that does not decode returns an error
// wrapping ErrCorrupt.
func (s *Store) Load(key string) (p wal.Position, ok bool, err error) {
	path, err := s.path(key)
	if err != nil {
		return wal.Position{}, false, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return wal.Position{}, false, nil
	}
	if err != nil {
		return wal.Position{}, false, fmt.Errorf("read send position %s: %w", path, err)
	}
	p, err = Unmarshal(b)
	if err != nil {
		return wal.Position{}, false, fmt.Errorf("decode send position %s: %w", path, err)
	}
	return p, true, nil
}

// Save stores p for key atomically: it writes a temporary file, fsyncs it,
// renames it over the old one and fsyncs the directory. A crash at any
// point leaves either the old position or the new one.
func (s *Store) Save(key string, p wal.Position) error {
	path, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o777); err != nil {
		return fmt.Errorf("create send position dir %s: %w", s.dir, err)
	}
	tmp := path + ".tmp"
	if err := writeSynced(tmp, Marshal(make([]byte, 0, 64), p)); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename send position %s: %w", tmp, err)
	}
	return syncDir(s.dir)
}

// writeSynced writes b to a new file at path and fsyncs it.
func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
	if err != nil {
		return fmt.Errorf("create send position %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write send position %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync send position %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close send position %s: %w", path, err)
	}
	return nil
}

// syncDir fsyncs a directory so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open send position dir %s: %w", dir, err)
	}
	err = d.Sync()
	d.Close()
	if err != nil {
		return fmt.Errorf("sync send position dir %s: %w", dir, err)
	}
	return nil
}

// Keys returns the keys that have a saved position, in lexical order. A
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
		if k, ok := strings.CutSuffix(e.Name(), ext); ok && e.Type().IsRegular() && safeKey(k) {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// Remove deletes the position of key; removing one that does not exist is
// not an error.
func (s *Store) Remove(key string) error {
	path, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove send position %s: %w", path, err)
	}
	return syncDir(s.dir)
}
