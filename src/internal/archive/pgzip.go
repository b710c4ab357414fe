package archive

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// blockSize is the input each gzip member of a parallel stream holds:
// large enough that the members' headers and reset dictionaries cost
// nothing measurable, small enough that a few in flight per core stay a few
// MiB of memory.
const blockSize = 1 << 20

// newCompressor returns the gzip writer of an archive: a parallel one
// (multiGzip) using up to workers cores, even one, so that every archive's
// members say their length and a restore can decompress them in parallel.
func newCompressor(w io.Writer, workers int) (io.WriteCloser, error) {
	return newMultiGzip(w, max(workers, 1), blockSize), nil
}

// compressionWorkers is how many cores compress an archive: all of them
// but one, which the agent, sha256 and the upload keep busy, and never
// fewer than two where there are two.
func compressionWorkers() int {
	n := runtime.GOMAXPROCS(0)
	switch {
	case n <= 1:
		return 1
	case n <= 3:
		return n
	default:
		return n - 1
	}
}

// multiGzip compresses on several cores: the input is cut into blocks,
// each compressed on its own as one gzip member, and the members are
// written in order. A gzip file may hold several members one after the
// other (RFC 1952, 2.2), which gzip, tar and Go's gzip.Reader read as one
// stream, so the archive stays a plain tar.gz. Each member says its own
// length in an extra field of its header (which gzip skips), so that a
// restore can decompress several at once (multiGunzip), as BGZF does.
type multiGzip struct {
	w         io.Writer
	blockSize int
	block     []byte
	wrote     bool
	closed    bool
	// order holds each block's result, in input order, for the writer
	// goroutine; its capacity bounds the blocks in flight.
	order chan chan []byte
	sem   chan struct{}
	done  chan struct{}

	mu  sync.Mutex
	err error

	gzips sync.Pool // *gzip.Writer
}

func newMultiGzip(w io.Writer, workers, blockSize int) *multiGzip {
	m := &multiGzip{
		w:         w,
		blockSize: blockSize,
		block:     make([]byte, 0, blockSize),
		order:     make(chan chan []byte, 2*workers),
		sem:       make(chan struct{}, workers),
		done:      make(chan struct{}),
	}
	go m.writeOut()
	return m
}

// writeOut writes the compressed blocks in order; after the first error
// it only drains them.
func (m *multiGzip) writeOut() {
	defer close(m.done)
	for result := range m.order {
		data := <-result
		if m.failed() != nil {
			continue
		}
		if _, err := m.w.Write(data); err != nil {
			m.fail(err)
		}
	}
}

func (m *multiGzip) failed() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

func (m *multiGzip) fail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err == nil {
		m.err = err
	}
}

// Write takes p into blocks, handing each full one to a core; it fails
// once a write of the output has.
func (m *multiGzip) Write(p []byte) (int, error) {
	if m.closed {
		return 0, errors.New("archive: write after close")
	}
	n := 0
	for len(p) > 0 {
		if err := m.failed(); err != nil {
			return n, err
		}
		take := min(len(p), m.blockSize-len(m.block))
		m.block = append(m.block, p[:take]...)
		p, n = p[take:], n+take
		if len(m.block) == m.blockSize {
			m.flushBlock()
		}
	}
	return n, nil
}

// flushBlock compresses the current block as a member of its own.
func (m *multiGzip) flushBlock() {
	block := m.block
	m.block = make([]byte, 0, m.blockSize)
	m.wrote = true
	result := make(chan []byte, 1)
	m.order <- result
	m.sem <- struct{}{}
	go func() {
		defer func() { <-m.sem }()
		var out bytes.Buffer
		out.Grow(len(block)/2 + 64)
		gz, _ := m.gzips.Get().(*gzip.Writer)
		if gz == nil {
			gz, _ = gzip.NewWriterLevel(&out, compressionLevel)
		} else {
			gz.Reset(&out)
		}
		gz.Header.Extra = memberLengthField()
		// Writes to a bytes.Buffer cannot fail.
		gz.Write(block)
		gz.Close()
		m.gzips.Put(gz)
		member := out.Bytes()
		setMemberLength(member)
		result <- member
	}()
}

// Close compresses what is left, waits until every member is written, and
// returns the first error; it may be called again (it then does nothing).
// An archive that stops short calls it too, so no goroutine is left behind.
func (m *multiGzip) Close() error {
	if m.closed {
		return m.failed()
	}
	m.closed = true
	if len(m.block) > 0 || !m.wrote {
		m.flushBlock() // an empty stream is still one (empty) member
	}
	close(m.order)
	<-m.done
	return m.failed()
}
