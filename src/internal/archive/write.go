package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	"github.com/klauspost/compress/gzip"
)

// Entry is a file to put into an archive.
type Entry struct {
	// Name is the file's path inside the folder, e.g. "dump.rdb" or
	// "appendonlydir/appendonly.aof.3.base.rdb".
	Name string
	// Path is the file on disk. Empty means the content is Data.
	Path string
	// Size is the number of bytes copied from the start of Path; a file that
	// is shorter is an error, one that grows meanwhile is cut there.
	Size int64
	// Data is the content of a small generated file, used when Path is empty.
	Data []byte
	// LinkTo, when set, stores the entry as a hard link to the earlier entry
	// of that name, so the same bytes are not sent twice; tar recreates the
	// link on extraction.
	LinkTo string
}

// compressionLevel trades size for speed: RDB files are already compressed
// (LZF) where it pays, so the fastest level loses little and keeps the
// archive streaming at disk and network speed.
const compressionLevel = gzip.BestSpeed

// Write streams a tar.gz of entries to w, then m as manifest.json with Files
// filled in from the bytes that went out, and returns that manifest. Nothing
// is staged: each file is read once, hashed and compressed on the way.
func Write(w io.Writer, m Manifest, entries []Entry) (Manifest, error) {
	return WriteChecked(w, m, entries, nil)
}

// WriteChecked is Write that calls check (when not nil) after the files and
// before the manifest; its error stops the archive short of complete.
func WriteChecked(w io.Writer, m Manifest, entries []Entry, check func() error) (Manifest, error) {
	return writeArchive(w, m, entries, check, compressionWorkers())
}

func writeArchive(w io.Writer, m Manifest, entries []Entry, check func() error, workers int) (Manifest, error) {
	m.Format = Format
	m.Files = map[string]File{}
	out, err := startArchive(w, workers)
	if err != nil {
		return m, err
	}
	// An archive that stops short stops its compressor too (a second
	// Close, after the one in finish, does nothing).
	defer out.gz.Close()
	tw := tar.NewWriter(out.gz)
	if err := tw.WriteHeader(out.header(m, Folder(m)+"/", tar.TypeDir, 0, 0o700)); err != nil {
		return m, err
	}
	if err := tw.Flush(); err != nil {
		return m, err
	}
	return out.finish(m, entries, check, map[string]bool{})
}

// output is an archive being written: the tar stream goes into gz, which
// compresses into bw, which buffers the writes to the destination.
type output struct {
	bw *bufio.Writer
	gz io.WriteCloser
}

func startArchive(w io.Writer, workers int) (*output, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	gz, err := newCompressor(bw, workers)
	if err != nil {
		return nil, err
	}
	return &output{bw: bw, gz: gz}, nil
}

// header is the tar header of an entry: whole seconds, so plain ustar
// headers do (no PAX records); the tar writer switches to PAX or GNU by
// itself for what ustar cannot hold, such as a file of 8 GiB or more.
func (o *output) header(m Manifest, name string, typ byte, size int64, mode int64) *tar.Header {
	return &tar.Header{Name: name, Typeflag: typ, Size: size, Mode: mode, ModTime: m.CreatedAt.UTC().Truncate(time.Second)}
}

// finish writes entries (after whatever the stream holds already, which
// ends at a tar block boundary; dirs are the folders written), then check,
// manifest.json and the end of the archive, and flushes it all.
func (o *output) finish(m Manifest, entries []Entry, check func() error, dirs map[string]bool) (Manifest, error) {
	tw := tar.NewWriter(o.gz)
	folder := Folder(m)
	for _, e := range entries {
		if !validPath(e.Name) || e.Name == ManifestName {
			return m, fmt.Errorf("archive: %q is not a file of a backup", e.Name)
		}
		if dir := path.Dir(e.Name); dir != "." && !dirs[dir] {
			dirs[dir] = true
			if err := tw.WriteHeader(o.header(m, folder+"/"+dir+"/", tar.TypeDir, 0, 0o700)); err != nil {
				return m, err
			}
		}
		if e.LinkTo != "" {
			f, ok := m.Files[e.LinkTo]
			if !ok {
				return m, fmt.Errorf("archive: %s links to %s, which comes before it in no archive", e.Name, e.LinkTo)
			}
			h := o.header(m, folder+"/"+e.Name, tar.TypeLink, 0, 0o600)
			h.Linkname = folder + "/" + e.LinkTo
			if err := tw.WriteHeader(h); err != nil {
				return m, err
			}
			m.Files[e.Name] = f
			continue
		}
		f, err := writeFile(tw, o.header(m, folder+"/"+e.Name, tar.TypeReg, 0, 0o600), e)
		if err != nil {
			return m, err
		}
		m.Files[e.Name] = f
	}
	if check != nil {
		if err := check(); err != nil {
			return m, err
		}
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return m, err
	}
	data = append(data, '\n')
	if err := tw.WriteHeader(o.header(m, folder+"/"+ManifestName, tar.TypeReg, int64(len(data)), 0o600)); err != nil {
		return m, err
	}
	if _, err := tw.Write(data); err != nil {
		return m, err
	}
	if err := tw.Close(); err != nil {
		return m, err
	}
	if err := o.gz.Close(); err != nil {
		return m, err
	}
	return m, o.bw.Flush()
}

func writeFile(tw *tar.Writer, h *tar.Header, e Entry) (File, error) {
	var src io.Reader
	if e.Path == "" {
		e.Size = int64(len(e.Data))
		src = bytes.NewReader(e.Data)
	} else {
		f, err := os.Open(e.Path)
		if err != nil {
			return File{}, fmt.Errorf("archive: %w", err)
		}
		defer f.Close()
		src = f
	}
	h.Size = e.Size
	if err := tw.WriteHeader(h); err != nil {
		return File{}, err
	}
	sum := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(tw, sum), io.LimitReader(src, e.Size), make([]byte, 1<<20))
	if err != nil {
		return File{}, err
	}
	if n != e.Size {
		return File{}, fmt.Errorf("archive: %s ended after %d of its %d bytes", e.Name, n, e.Size)
	}
	return File{Size: n, SHA256: hex.EncodeToString(sum.Sum(nil))}, nil
}
