// Package atomicfile replaces small files so that a crash or a power loss
// at any point leaves either the old contents or the new ones, never a mix
// and never an empty file. It is rwagent's one atomic file writer: the send
// positions (pkg/sendpos) and the WAL's trim log (pkg/wal) both use it.
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// tmpExt ends the name of the temporary file Write writes beside path.
const tmpExt = ".tmp"

// Write replaces the file at path with data, the way Prometheus'
// tsdb checkpoints are made durable: it writes data to path+".tmp" (created
// with perm before the umask, truncated if left by a crash), fsyncs it,
// closes it, renames it over path and fsyncs path's directory. When it
// returns nil, the new contents survive a power loss. On an error before
// the rename, path keeps its old contents (or stays absent) and the
// temporary file is removed; on an error syncing the directory, path holds
// the new contents, which a power loss may yet undo. The directory must
// exist. Two concurrent Writes to one path are not safe; to different
// paths they are.
func Write(path string, data []byte, perm fs.FileMode) error {
	tmp := path + tmpExt
	if err := writeSynced(tmp, data, perm); err != nil {
		_ = os.Remove(tmp) // the error that matters is err
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("rename %s to %s: %w", tmp, path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// writeSynced writes data to a new or truncated file at path and fsyncs
// it.
func writeSynced(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// SyncDir fsyncs the directory dir, so that a rename, creation or removal
// of a file in it survives a power loss.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	err = d.Sync()
	d.Close()
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
