package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	cases := []struct {
		name     string
		old      string // the file's contents before, "" for no file
		staleTmp bool   // a crash left a temporary file behind
		data     string
	}{
		{name: "new file", data: "one\n"},
		{name: "replace a longer file", old: "a much longer line than the new one\n", data: "short\n"},
		{name: "replace a shorter file", old: "x\n", data: "a longer line\n"},
		{name: "stale temporary file", old: "old\n", staleTmp: true, data: "new\n"},
		{name: "empty contents", old: "old\n", data: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			if tc.old != "" {
				if err := os.WriteFile(path, []byte(tc.old), 0o666); err != nil {
					t.Fatal(err)
				}
			}
			if tc.staleTmp {
				if err := os.WriteFile(path+tmpExt, []byte("torn garbage that is longer than the new contents"), 0o666); err != nil {
					t.Fatal(err)
				}
			}
			if err := Write(path, []byte(tc.data), 0o600); err != nil {
				t.Fatalf("Write: %v", err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.data {
				t.Errorf("file holds %q, want %q", got, tc.data)
			}
			if _, err := os.Stat(path + tmpExt); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("temporary file left behind: %v", err)
			}
		})
	}
}

// TestWriteFails checks that a Write that cannot complete names the file,
// leaves the old contents and removes its temporary file.
func TestWriteFails(t *testing.T) {
	t.Run("no directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "missing", "f")
		err := Write(path, []byte("x"), 0o666)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("Write into a missing directory: %v, want an error naming %s", err, path)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("error %v does not wrap fs.ErrNotExist", err)
		}
	})
	t.Run("path is a non-empty directory", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "f")
		if err := os.MkdirAll(filepath.Join(path, "child"), 0o777); err != nil {
			t.Fatal(err)
		}
		err := Write(path, []byte("x"), 0o666)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("Write over a directory: %v, want an error naming %s", err, path)
		}
		if _, err := os.Stat(path + tmpExt); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("temporary file left behind after a failed rename: %v", err)
		}
		if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
			t.Errorf("the directory at path was not left alone: %v", err)
		}
	})
}

func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Errorf("SyncDir of a directory: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	if err := SyncDir(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("SyncDir of a missing directory: %v, want an error naming it", err)
	}
}
