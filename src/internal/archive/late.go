package archive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash/crc32"
	"io"
	"time"
)

// An archive written by WriteLateHead streams dump.rdb while it is still
// being written (the snapshot's rewrite), before its size is known. A tar
// header holds the size of the file after it, so the archive starts with
// a placeholder of HeadSize bytes and WriteLateHead returns, once dump.rdb
// ended, the bytes that replace it: one gzip member holding the folder's
// and dump.rdb's tar headers, stored (not compressed) so that its length
// depends only on the folder's name. Everything after it is the same
// stream of gzip members Write makes, so the patched archive is a plain
// tar.gz. The placeholder is zeros, which no gzip reader takes for an
// archive: an object whose head was never patched cannot be restored.

// HeadSize is the length of the head of an archive of manifest m written by
// WriteLateHead.
func HeadSize(m Manifest) int {
	return len(storedMember(lateHeaders(m, 0)))
}

// WriteLateHead streams a tar.gz whose first HeadSize(m) bytes are zeros:
// rdb's bytes as dump.rdb (hashed and compressed as they come; rdb ends
// when the file is complete), then the entries rest returns (called once
// rdb ended; they may link to dump.rdb), then check (when not nil) and
// manifest.json as WriteChecked writes them. It returns the manifest and
// the head to write over the zeros; on error the archive is incomplete.
func WriteLateHead(w io.Writer, m Manifest, rdb io.Reader, rest func() ([]Entry, error), check func() error) (Manifest, []byte, error) {
	m.Format = Format
	m.Files = map[string]File{}
	if _, err := w.Write(make([]byte, HeadSize(m))); err != nil {
		return m, nil, err
	}
	return writeLate(w, m, rdb, rest, check, lateWorkers())
}

// lateWorkers is how many cores compress an archive that streams while
// Redis writes it: one fewer than compressionWorkers, at least one, as the
// rewrite's child keeps a core busy and sets the pace (one core compresses
// faster than the child writes); more would only take its CPU.
func lateWorkers() int { return max(1, compressionWorkers()-1) }

func writeLate(w io.Writer, m Manifest, rdb io.Reader, rest func() ([]Entry, error), check func() error, workers int) (Manifest, []byte, error) {
	out, err := startArchive(w, workers)
	if err != nil {
		return m, nil, err
	}
	defer out.gz.Close()
	sum := sha256.New()
	n, err := io.CopyBuffer(io.MultiWriter(out.gz, sum), rdb, make([]byte, 1<<20))
	if err != nil {
		return m, nil, err
	}
	// The tar entry's padding to a whole block.
	if pad := (blockLen - n%blockLen) % blockLen; pad > 0 {
		if _, err := out.gz.Write(make([]byte, pad)); err != nil {
			return m, nil, err
		}
	}
	m.Files[RDBName] = File{Size: n, SHA256: hex.EncodeToString(sum.Sum(nil))}
	entries, err := rest()
	if err != nil {
		return m, nil, err
	}
	m, err = out.finish(m, entries, check, map[string]bool{})
	if err != nil {
		return m, nil, err
	}
	return m, storedMember(lateHeaders(m, n)), nil
}

// blockLen is tar's block size.
const blockLen = 512

// lateHeaders renders the tar headers of the folder and of a dump.rdb of
// size bytes. dump.rdb's header is in GNU form, whose length does not
// depend on the size (a file of 8 GiB or more has its size in binary in
// the same field), so HeadSize can be known before the size is.
func lateHeaders(m Manifest, size int64) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	mtime := m.CreatedAt.UTC().Truncate(time.Second)
	folder := Folder(m)
	// Writes to a bytes.Buffer cannot fail, and these headers are valid.
	_ = tw.WriteHeader(&tar.Header{Name: folder + "/", Typeflag: tar.TypeDir, Mode: 0o700, ModTime: mtime, Format: tar.FormatGNU})
	_ = tw.WriteHeader(&tar.Header{Name: folder + "/" + RDBName, Typeflag: tar.TypeReg, Size: size, Mode: 0o600, ModTime: mtime, Format: tar.FormatGNU})
	_ = tw.Flush()
	return b.Bytes()
}

// storedMember is a gzip member holding data uncompressed: its length is
// that of data plus 23 bytes per 65,535 (headers, stored blocks, trailer).
func storedMember(data []byte) []byte {
	out := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff} // gzip, deflate, no flags, no time, unknown OS
	for rest := data; ; {
		chunk := rest[:min(len(rest), 0xffff)]
		rest = rest[len(chunk):]
		final := byte(0)
		if len(rest) == 0 {
			final = 1
		}
		out = append(out, final) // BFINAL, BTYPE 00: stored
		out = binary.LittleEndian.AppendUint16(out, uint16(len(chunk)))
		out = binary.LittleEndian.AppendUint16(out, ^uint16(len(chunk)))
		out = append(out, chunk...)
		if final == 1 {
			break
		}
	}
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(data))
	return binary.LittleEndian.AppendUint32(out, uint32(len(data)))
}
