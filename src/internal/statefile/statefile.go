// Package statefile keeps a program's state in one JSON file that survives a
// crash at any moment.
//
// The whole state lives in memory and every change rewrites the file
// atomically: the new content goes to a temporary file that is fsynced, renamed
// over the old one, and the directory is fsynced. A reader of the file (or the
// program after kill -9 or a power cut) sees either the state before a change or
// the state after it, never a mix. Changes are serialised, so an Update is a
// transaction: its function sees the latest state and its result is either
// stored whole or not at all.
package statefile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// File holds a value of type T and its file on disk. The zero value is not
// usable; call Open.
type File[T any] struct {
	path string

	mu    sync.RWMutex
	value T
}

// Open loads the state from path, or starts from the zero T when the file does
// not exist yet. The directory must exist. Leftover temporary files of an
// interrupted write are removed.
func Open[T any](path string) (*File[T], error) {
	f := &File[T]{path: path}
	_ = os.Remove(f.tempPath())
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return f, nil
	case err != nil:
		return nil, fmt.Errorf("reading state file: %w", err)
	}
	if err := json.Unmarshal(data, &f.value); err != nil {
		return nil, fmt.Errorf("state file %s is not valid JSON: %w", path, err)
	}
	return f, nil
}

// View calls fn with a deep copy of the current state, so fn may keep or
// change what it gets without affecting the stored state.
func (f *File[T]) View(fn func(T)) error {
	f.mu.RLock()
	v, err := clone(f.value)
	f.mu.RUnlock()
	if err != nil {
		return err
	}
	fn(v)
	return nil
}

// Update calls fn with a deep copy of the state; when fn returns nil the
// changed copy is written to disk and becomes the state. When fn or the write
// fails, the state is unchanged and the error is returned as it is, so callers
// can test for their own errors with errors.Is.
func (f *File[T]) Update(fn func(*T) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, err := clone(f.value)
	if err != nil {
		return err
	}
	if err := fn(&v); err != nil {
		return err
	}
	if err := f.write(v); err != nil {
		return err
	}
	f.value = v
	return nil
}

func (f *File[T]) tempPath() string { return f.path + ".tmp" }

func (f *File[T]) write(v T) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding state: %w", err)
	}
	return WriteAtomic(f.path, data, 0o600)
}

// WriteAtomic replaces the file at path with data so that a crash leaves
// either the old or the new content: write a temporary file beside it, fsync
// it, rename it over path and fsync the directory.
func WriteAtomic(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, true)
}

// Replace replaces the file at path with data by renaming a temporary file
// over it, without fsync: readers and a program restarted after a crash see
// the old or the new content, but after a power cut the file may be empty.
// It is for files derived from the state and rendered again at every start,
// such as a redis.conf, where the two fsyncs would only add latency.
func Replace(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, false)
}

func write(path string, data []byte, perm os.FileMode, durable bool) error {
	tmp := path + ".tmp"
	t, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	_, err = t.Write(data)
	if err == nil && durable {
		err = t.Sync()
	}
	if cerr := t.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	if !durable {
		return nil
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory: %w", err)
	}
	return nil
}

func clone[T any](v T) (T, error) {
	var out T
	data, err := json.Marshal(v)
	if err != nil {
		return out, fmt.Errorf("copying state: %w", err)
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return out, fmt.Errorf("copying state: %w", err)
	}
	return out, nil
}
