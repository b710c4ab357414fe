// Package statefile keeps a program's state in one JSON file that survives a
// crash at any moment.
//
// The whole state lives in memory and every change rewrites the file
// atomically: the new content goes to a temporary file that is fsynced and
// swapped with the old one, and the directory is fsynced (WriteAtomic). The
// program after kill -9 or a power cut, or a reader that opens the file and
// reads it at once, sees either the state before a change or the state after
// it, never a mix. Changes are serialised, so an Update is a
// transaction: its function sees the latest state and its result is either
// stored whole or not at all.
//
// Updates that arrive while a write is under way are committed together by
// one write (group commit): under load, many changes share the cost of the
// fsyncs instead of queueing for one write each.
//
// A state of many records keeps them in a Records field: an Update then
// copies and encodes only the records it changes (see Records).
package statefile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// File holds a value of type T and its file on disk. The zero value is not
// usable; call Open.
type File[T any] struct {
	path string
	// size is the length of the last encoding written, to size the next.
	size int

	mu    sync.RWMutex // guards value
	value T

	qmu     sync.Mutex // guards queue and writing
	queue   []*pending[T]
	writing bool
}

// pending is an Update waiting for its commit.
type pending[T any] struct {
	fn   func(*T) error
	done chan error
}

// Open loads the state from path, or starts from the zero T when the file does
// not exist yet. The directory must exist. Leftover temporary files of an
// interrupted write are removed.
func Open[T any](path string) (*File[T], error) {
	f := &File[T]{path: path}
	_ = os.Remove(tempPath(path))
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
	if err := seal(&f.value); err != nil {
		return nil, err
	}
	return f, nil
}

// View calls fn with a deep copy of the current state, so fn may keep or
// change what it gets without affecting the stored state; a Records field
// is copied as a map of the stored records, which fn reads as At says or
// copies with Get. It returns nil: copies no longer go through JSON, which
// could fail.
func (f *File[T]) View(fn func(T)) error {
	f.mu.RLock()
	v := deepCopy(f.value)
	f.mu.RUnlock()
	fn(v)
	return nil
}

// Peek calls fn with the current state itself, not a copy: a read of one
// record out of thousands, made often (a readiness probe), must not cost a
// copy of the whole state. The stored state is never changed in place
// (Update replaces it with a changed copy), so what fn is given stays as
// it is; fn must not change it, and must copy what it keeps and may change.
func (f *File[T]) Peek(fn func(T)) {
	f.mu.RLock()
	v := f.value
	f.mu.RUnlock()
	fn(v)
}

// Update calls fn with a deep copy of the state (a Records field as View
// has it: fn changes a record through Edit, Put and Delete); when fn
// returns nil the changed copy is written to disk and becomes the state. When fn or the write
// fails, the state is unchanged by fn and the error is returned as it is, so
// callers can test for their own errors with errors.Is. Values fn stores in
// the state become the state's: the caller must not change them afterwards.
func (f *File[T]) Update(fn func(*T) error) error {
	p := &pending[T]{fn: fn, done: make(chan error, 1)}
	f.qmu.Lock()
	f.queue = append(f.queue, p)
	lead := !f.writing
	f.writing = true
	f.qmu.Unlock()
	if lead {
		// This caller writes for everyone queued until the queue is empty.
		for batch := f.take(); batch != nil; batch = f.take() {
			f.commit(batch)
		}
	}
	return <-p.done
}

// take returns the queued updates, or nil (and ends the writing) when there
// are none.
func (f *File[T]) take() []*pending[T] {
	f.qmu.Lock()
	defer f.qmu.Unlock()
	batch := f.queue
	f.queue = nil
	if len(batch) == 0 {
		f.writing = false
		return nil
	}
	return batch
}

// commit applies a batch of updates in order, each to the result of the ones
// before, drops the changes of any that fail, writes once and answers all.
func (f *File[T]) commit(batch []*pending[T]) {
	f.mu.RLock()
	work := deepCopy(f.value)
	f.mu.RUnlock()
	var applied []*pending[T]
	for i, p := range batch {
		before := work
		if len(batch) > 1 {
			// Only a batch needs a copy to fall back on: a lone update
			// that fails leaves work unused. The records the updates
			// before made are sealed first, so that this one's Edit
			// copies them instead of changing what before holds.
			if err := seal(&work); err != nil {
				// Nothing is written: every update not yet answered fails.
				for _, q := range append(applied, batch[i:]...) {
					q.done <- err
				}
				return
			}
			before = deepCopy(work)
		}
		if ferr := p.fn(&work); ferr != nil {
			work = before
			p.done <- ferr
			continue
		}
		applied = append(applied, p)
	}
	if len(applied) == 0 {
		return
	}
	if err := f.write(&work); err != nil {
		for _, p := range applied {
			p.done <- err
		}
		return
	}
	f.mu.Lock()
	f.value = work
	f.mu.Unlock()
	for _, p := range applied {
		p.done <- nil
	}
}

// tempPath is the temporary file beside path that write fills and puts in
// its place (and, for a durable write, keeps); Open removes one a crash
// left.
func tempPath(path string) string { return path + ".tmp" }

// write seals v's records and writes v.
func (f *File[T]) write(v *T) error {
	// Compact: indenting took as long as encoding, for every change of a
	// state with a thousand records (jq . reads it indented).
	if err := seal(v); err != nil {
		return fmt.Errorf("encoding state: %w", err)
	}
	data, err := encode(v, f.size)
	if err != nil {
		return fmt.Errorf("encoding state: %w", err)
	}
	f.size = len(data)
	return WriteAtomic(f.path, data, 0o600)
}

// WriteAtomic replaces the file at path with data so that a crash leaves
// either the old or the new content: write a temporary file beside it, fsync
// it, swap it with path and fsync the directory.
//
// The swap is an exchange (renameat2 RENAME_EXCHANGE) where the file system
// has one: the temporary file then keeps the previous content, and its inode
// is written over by the next write instead of a new file being made and the
// old one freed each time. That spares the file system an inode allocation
// and a release per write (on ext4 without a journal, where an allocation
// first skips every recently freed inode, they cost as much CPU as the
// fsyncs). A program reading path must therefore read it promptly: the file
// it opened becomes the temporary file at the next write and is rewritten at
// the one after. Where there is no exchange (or path does not exist yet) the
// temporary file is renamed over path, as before.
func WriteAtomic(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, true)
}

// Replace replaces the file at path with data by renaming a temporary file
// over it, without fsync: readers and a program restarted after a crash see
// the old or the new content, but after a power cut the file may be empty.
// It is for files derived from the state and rendered again at every start,
// such as a redis.conf, where the two fsyncs would only add latency. It
// leaves no temporary file behind.
func Replace(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, false)
}

// write writes data to path's temporary file and puts it in path's place:
// a durable write fsyncs both and swaps them (WriteAtomic); another creates
// the temporary file anew and renames it over path.
func write(path string, data []byte, perm os.FileMode, durable bool) error {
	tmp := tempPath(path)
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if durable {
		// Written over in place (and cut to length below), not truncated
		// first: its blocks are reused.
		flags = os.O_WRONLY | os.O_CREATE
	}
	t, err := os.OpenFile(tmp, flags, perm)
	if err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	_, err = t.WriteAt(data, 0)
	if err == nil && durable {
		err = t.Truncate(int64(len(data)))
		if err == nil {
			// A file kept from an earlier write, or path as an earlier
			// version left it, may have looser permissions.
			err = t.Chmod(perm)
		}
		if err == nil {
			err = t.Sync()
		}
	}
	if cerr := t.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if durable {
			err = exchange(tmp, path)
		} else {
			err = os.Rename(tmp, path)
		}
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	if !durable {
		return nil
	}
	return SyncDir(filepath.Dir(path))
}

// exchange swaps the files tmp and path atomically, or, where the file
// system cannot or path does not exist yet, renames tmp over path.
func exchange(tmp, path string) error {
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_EXCHANGE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS),
		errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EXDEV):
		return os.Rename(tmp, path)
	}
	return &os.LinkError{Op: "renameat2", Old: tmp, New: path, Err: err}
}

// SyncDir fsyncs the directory dir, so that the files created, renamed or
// removed in it are still so after a power cut: the last step of an atomic
// write (temp file, fsync, rename, fsync the directory).
func SyncDir(dir string) error {
	if err := Sync(dir); err != nil {
		return fmt.Errorf("syncing directory: %w", err)
	}
	return nil
}

// Sync fsyncs the file or directory at path, written earlier without an
// fsync (Replace), so that its content survives a power cut.
func Sync(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	return nil
}
