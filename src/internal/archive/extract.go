package archive

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Limits of what Extract accepts; real archives hold a handful of entries
// and a manifest of a few hundred bytes.
const (
	maxEntries      = 10000
	maxManifestSize = 1 << 20
)

// Extract unpacks the archive r yields into dir, an existing empty
// directory (dir/dump.rdb, dir/appendonlydir/...; the manifest is returned,
// not written), and returns its manifest once every file matched the
// manifest's size and SHA-256 and the manifest listed every file. Nothing
// is fsynced: the caller does (SyncTree) when the files must outlive a
// crash. An archive that fails a check wraps ErrCorrupt; a failure to read
// r or to write dir (a full disk) is returned as it is. On error, what was
// written stays in dir for the caller to remove.
func Extract(r io.Reader, dir string) (Manifest, error) {
	src := &errReader{r: r}
	fail := func(err error) (Manifest, error) {
		if src.err != nil {
			return Manifest{}, fmt.Errorf("reading the archive: %w", src.err)
		}
		return Manifest{}, err
	}
	// Members that say their length (multiGzip's) are decompressed on
	// every core; the checksums are computed as the files come out, so
	// the archive is read once.
	gz := newMultiGunzip(src, compressionWorkers())
	defer gz.Close()
	tr := tar.NewReader(gz)
	var (
		folder   string
		got      = map[string]File{}
		manifest []byte
		entries  int
		buf      = make([]byte, 1<<20)
	)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fail(fmt.Errorf("%w: %v", ErrCorrupt, err))
		}
		if entries++; entries > maxEntries {
			return fail(fmt.Errorf("%w: more than %d entries", ErrCorrupt, maxEntries))
		}
		top, rest, err := split(h.Name)
		if err != nil {
			return fail(err)
		}
		if folder == "" {
			folder = top
		} else if top != folder {
			return fail(fmt.Errorf("%w: entries in two folders, %q and %q", ErrCorrupt, folder, top))
		}
		switch h.Typeflag {
		case tar.TypeDir:
			switch rest {
			case "":
			case AOFDir:
				if err := os.Mkdir(filepath.Join(dir, AOFDir), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
					return fail(err)
				}
			default:
				return fail(fmt.Errorf("%w: unexpected folder %q", ErrCorrupt, h.Name))
			}
		case tar.TypeReg:
			if !validPath(rest) {
				return fail(fmt.Errorf("%w: unexpected file %q", ErrCorrupt, h.Name))
			}
			if _, dup := got[rest]; dup || (rest == ManifestName && manifest != nil) {
				return fail(fmt.Errorf("%w: %q appears twice", ErrCorrupt, h.Name))
			}
			if rest == ManifestName {
				if h.Size > maxManifestSize {
					return fail(fmt.Errorf("%w: manifest.json of %d bytes", ErrCorrupt, h.Size))
				}
				if manifest, err = io.ReadAll(tr); err != nil {
					return fail(fmt.Errorf("%w: %v", ErrCorrupt, err))
				}
				continue
			}
			// tar does not promise a folder's entry before its files.
			if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(path.Dir(rest))), 0o700); err != nil {
				return fail(err)
			}
			f, err := extractFile(tr, filepath.Join(dir, filepath.FromSlash(rest)), buf)
			if err != nil {
				return fail(err)
			}
			got[rest] = f
		case tar.TypeLink:
			ltop, target, err := split(h.Linkname)
			if err != nil || ltop != folder {
				return fail(fmt.Errorf("%w: link %q points outside the backup", ErrCorrupt, h.Name))
			}
			f, ok := got[target]
			if !ok || !validPath(rest) || rest == ManifestName {
				return fail(fmt.Errorf("%w: link %q to %q", ErrCorrupt, h.Name, h.Linkname))
			}
			if _, dup := got[rest]; dup {
				return fail(fmt.Errorf("%w: %q appears twice", ErrCorrupt, h.Name))
			}
			if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(path.Dir(rest))), 0o700); err != nil {
				return fail(err)
			}
			if err := os.Link(filepath.Join(dir, filepath.FromSlash(target)), filepath.Join(dir, filepath.FromSlash(rest))); err != nil {
				return fail(err)
			}
			got[rest] = f
		default:
			return fail(fmt.Errorf("%w: %q is neither a file, a folder nor a hard link", ErrCorrupt, h.Name))
		}
	}
	// The gzip trailer's CRC and length cover everything: read up to it.
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return fail(fmt.Errorf("%w: %v", ErrCorrupt, err))
	}
	if manifest == nil {
		return fail(fmt.Errorf("%w: no manifest.json", ErrCorrupt))
	}
	var m Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return fail(fmt.Errorf("%w: manifest.json: %v", ErrCorrupt, err))
	}
	if err := m.Check(); err != nil {
		return fail(err)
	}
	if folder != Folder(m) {
		return fail(fmt.Errorf("%w: folder %q does not match the manifest (%q)", ErrCorrupt, folder, Folder(m)))
	}
	for p, want := range m.Files {
		have, ok := got[p]
		switch {
		case !ok:
			return fail(fmt.Errorf("%w: %s is missing", ErrCorrupt, p))
		case have != want:
			return fail(fmt.Errorf("%w: %s has %d bytes with SHA-256 %s, the manifest says %d bytes with %s", ErrCorrupt, p, have.Size, have.SHA256, want.Size, want.SHA256))
		}
	}
	for p := range got {
		if _, ok := m.Files[p]; !ok {
			return fail(fmt.Errorf("%w: %s is not in the manifest", ErrCorrupt, p))
		}
	}
	return m, nil
}

// split cuts an entry name into the archive's folder and the path inside it.
func split(name string) (folder, rest string, err error) {
	name = strings.TrimSuffix(name, "/")
	if name == "" || strings.HasPrefix(name, "/") || path.Clean(name) != name || strings.Contains(name, "\\") {
		return "", "", fmt.Errorf("%w: entry name %q", ErrCorrupt, name)
	}
	folder, rest, _ = strings.Cut(name, "/")
	if folder == "." || folder == ".." || strings.HasPrefix(rest, "../") {
		return "", "", fmt.Errorf("%w: entry name %q", ErrCorrupt, name)
	}
	return folder, rest, nil
}

func extractFile(r io.Reader, dst string, buf []byte) (File, error) {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return File{}, err
	}
	sum := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(f, sum), r, buf)
	if err != nil {
		f.Close()
		var pe *os.PathError
		if errors.As(err, &pe) {
			return File{}, err // the disk, not the archive
		}
		return File{}, fmt.Errorf("%w: %s: %v", ErrCorrupt, filepath.Base(dst), err)
	}
	if err := f.Close(); err != nil {
		return File{}, err
	}
	return File{Size: n, SHA256: hex.EncodeToString(sum.Sum(nil))}, nil
}

// SyncTree fsyncs every file and folder under dir, dir included. A file
// deleted meanwhile (a server working in dir) is skipped.
func SyncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}

// errReader remembers the first error of its reader other than EOF, so a
// broken upload is told apart from a damaged archive.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && e.err == nil {
		e.err = err
	}
	return n, err
}
