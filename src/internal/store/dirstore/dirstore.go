// Package dirstore keeps backups in a local folder: each object is a file
// under the folder, written under a hidden temporary name beside its final
// one, fsynced, and renamed into place, so a reader never sees a partial
// archive and a crash leaves at most a hidden temporary file, which the next
// Put into the same folder removes.
package dirstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/cf-redis/redis-for-cf/src/internal/statefile"
	"github.com/cf-redis/redis-for-cf/src/internal/store"
)

// tempMarker is in the name of every temporary file.
const tempMarker = ".partial-"

// staleAfter is the age after which a temporary file is a crash's leftover
// and not another Put's file.
const staleAfter = 24 * time.Hour

// Store is a folder of backups. The zero value is not usable; call New.
type Store struct {
	root string
}

var _ store.Store = (*Store)(nil)

// New returns a Store rooted at dir, an absolute path, creating it if
// needed.
func New(dir string) (*Store, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("backup folder %q must be an absolute path", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the backup folder: %w", err)
	}
	return &Store{root: dir}, nil
}

func (s *Store) path(name string) string {
	return filepath.Join(s.root, filepath.FromSlash(name))
}

// Where returns the file's path.
func (s *Store) Where(name string) string { return s.path(name) }

// Put writes r to a hidden temporary file beside name's, fsyncs it, renames
// it to name and fsyncs the folder. On failure the temporary file is
// removed.
func (s *Store) Put(ctx context.Context, name string, r io.Reader) (int64, error) {
	if err := store.CheckName(name); err != nil {
		return 0, err
	}
	final := s.path(name)
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, fmt.Errorf("creating %s: %w", dir, err)
	}
	removeStale(dir)
	tmp := filepath.Join(dir, "."+filepath.Base(final)+tempMarker+strings.ToLower(rand.Text()[:8]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.CopyBuffer(f, ctxReader{ctx, r}, make([]byte, 1<<20))
	if err == nil {
		err = patchHead(f, r, n)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return n, fmt.Errorf("writing %s: %w", final, err)
	}
	if err := statefile.SyncDir(dir); err != nil {
		return n, err
	}
	return n, nil
}

// patchHead writes the head of r, when it has a late one (store.LateHead),
// over the start of f, which holds the n bytes r yielded.
func patchHead(f *os.File, r io.Reader, n int64) error {
	head, err := store.HeadOf(r, n)
	if err == nil && head != nil {
		_, err = f.WriteAt(head, 0)
	}
	return err
}

// removeStale deletes temporary files that a crash left in dir.
func removeStale(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.Contains(e.Name(), tempMarker) {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleAfter {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// Get opens the file of name.
func (s *Store) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := store.CheckName(name); err != nil {
		return nil, err
	}
	f, err := os.Open(s.path(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", store.ErrNotFound, name)
	}
	return f, err
}

// List walks the folder under prefix, skipping hidden (temporary) files.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Object, error) {
	start := s.root
	if dir := path.Dir(prefix); prefix != "" && dir != "." {
		start = s.path(dir)
	}
	var out []store.Object
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if strings.HasPrefix(d.Name(), ".") || d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if !strings.HasPrefix(name, prefix) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // deleted meanwhile
		}
		out = append(out, store.Object{Name: name, Size: info.Size(), Modified: info.ModTime()})
		return nil
	})
	return out, err
}

// Delete removes the file of name.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := store.CheckName(name); err != nil {
		return err
	}
	err := os.Remove(s.path(name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
