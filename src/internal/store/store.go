// Package store is where backups are kept: the Store interface that the
// backup errand, the agents' schedules and the broker's restore use, with
// its implementations beside it, named for how they work: s3store (an
// S3-compatible bucket, multipart uploads) and dirstore (a local folder,
// atomic renames).
//
// An object name is a slash-separated relative path such as
// "prefix/instance-id/20260121T030000.000Z.tar.gz"; the backup package
// chooses the names, a Store only keeps the bytes.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

// Store keeps backup archives by name.
type Store interface {
	// Put stores what r yields under name, reading r to its end. The object
	// exists under name only once Put returned nil; a Put that fails leaves
	// nothing behind, neither a partial object nor a temporary one. It
	// returns the number of bytes stored. When r is a LateHead, its head
	// is written over the start of the object before it is stored.
	Put(ctx context.Context, name string, r io.Reader) (int64, error)
	// Get opens the object name; ErrNotFound when there is none.
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	// List returns the objects whose names start with prefix, in no
	// particular order.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Delete removes the object name; deleting one that does not exist is
	// not an error.
	Delete(ctx context.Context, name string) error
	// Where names the location of name for people, e.g.
	// "s3://bucket/prefix/..." or "/var/vcap/store/backups/prefix/...",
	// without credentials.
	Where(name string) string
}

// LateHead is a reader whose first bytes are a placeholder until it has
// been read to its end: Head then returns the bytes that replace them, or
// nil when there are none to replace (an archive streamed with a late
// head, archive.WriteLateHead).
type LateHead interface {
	Head() []byte
}

// HeadOf returns the bytes to write at the start of an object of size
// bytes that r yielded: its late head, or nil when it has none.
func HeadOf(r io.Reader, size int64) ([]byte, error) {
	lh, ok := r.(LateHead)
	if !ok {
		return nil, nil
	}
	head := lh.Head()
	if int64(len(head)) > size {
		return nil, fmt.Errorf("the backup's head of %d bytes is longer than the %d bytes it goes over", len(head), size)
	}
	return head, nil
}

// Object is one stored object.
type Object struct {
	Name     string
	Size     int64
	Modified time.Time
}

// ErrNotFound means no object has the name asked for.
var ErrNotFound = errors.New("no such backup")

// CheckName checks that name is a clean relative slash-separated path, so
// no implementation can be led outside its bucket prefix or folder.
func CheckName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || path.Clean(name) != name || strings.HasPrefix(name, "../") || name == ".." ||
		strings.ContainsAny(name, "\\\x00") {
		return fmt.Errorf("object name %q is not a clean relative path", name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "." || seg == ".." || strings.HasPrefix(seg, ".") {
			return fmt.Errorf("object name %q has a segment starting with '.'", name)
		}
	}
	return nil
}
