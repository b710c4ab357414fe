package archive

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// The extra field multiGzip gives each member: subfield "RC" (RFC 1952,
// 2.3.1.1) holding the whole member's length, little-endian.
const (
	lengthSI1, lengthSI2 = 'R', 'C'
	// memberLengthAt is where the length sits in a member: the 10-byte
	// header, XLEN, and the subfield's id and length.
	memberLengthAt = 10 + 2 + 4
	// maxMember bounds the length a member may claim: a block of blockSize
	// that did not compress, and a margin.
	maxMember = 2 * blockSize
)

func memberLengthField() []byte { return []byte{lengthSI1, lengthSI2, 4, 0, 0, 0, 0, 0} }

// setMemberLength writes member's length into its extra field.
func setMemberLength(member []byte) {
	binary.LittleEndian.PutUint32(member[memberLengthAt:], uint32(len(member)))
}

// memberLength reads the length from the header at the start of head (at
// least memberLengthAt+4 bytes), or returns false for a member that has
// none: not written by multiGzip.
func memberLength(head []byte) (int, bool) {
	const fextra = 1 << 2
	if len(head) < memberLengthAt+4 || head[0] != 0x1f || head[1] != 0x8b || head[2] != 8 || head[3] != fextra ||
		binary.LittleEndian.Uint16(head[10:]) != 8 || head[12] != lengthSI1 || head[13] != lengthSI2 ||
		binary.LittleEndian.Uint16(head[14:]) != 4 {
		return 0, false
	}
	n := int(binary.LittleEndian.Uint32(head[memberLengthAt:]))
	if n < memberLengthAt+4+8 || n > maxMember {
		return 0, false
	}
	return n, true
}

// multiGunzip reads a gzip stream on several cores: members that say their
// length (multiGzip's) are decompressed workers at a time, others (any
// gzip stream, the stored head of an archive with a late head) one after
// the other as they come; the output is in order either way, and every
// member's CRC-32 and length are checked as gzip.Reader checks them.
type multiGunzip struct {
	order chan chan chunk
	stop  chan struct{}
	cur   []byte
	// held is the buffer cur is in, which goes back to outputs once read.
	held []byte
	err  error
	once sync.Once
}

// chunk is one member's output, or the error that ends the stream.
type chunk struct {
	data []byte
	err  error
}

// Buffers and readers a restore reuses from member to member: without
// them, each MiB of output cost a new member buffer, a new output buffer
// (grown, and so copied, once full) and a new decompressor's tables.
var (
	outputs sync.Pool // *[]byte of blockSize
	members sync.Pool // *[]byte of at most maxMember
	readers sync.Pool // *gzip.Reader
)

func getBuffer(pool *sync.Pool, n int) []byte {
	if b, ok := pool.Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:n]
	}
	return make([]byte, n)
}

func putBuffer(pool *sync.Pool, b []byte) {
	if cap(b) > 0 {
		pool.Put(&b)
	}
}

func newMultiGunzip(r io.Reader, workers int) *multiGunzip {
	z := &multiGunzip{
		order: make(chan chan chunk, 2*workers),
		stop:  make(chan struct{}),
	}
	go z.split(bufio.NewReaderSize(r, 256<<10), make(chan struct{}, workers))
	return z
}

// split reads the members one after the other and hands each to a worker,
// or decompresses it itself when it does not say its length.
func (z *multiGunzip) split(src *bufio.Reader, sem chan struct{}) {
	defer close(z.order)
	// next reserves the place of the next piece of output.
	next := func() chan chunk {
		result := make(chan chunk, 1)
		select {
		case z.order <- result:
			return result
		case <-z.stop:
			return nil
		}
	}
	var seq *gzip.Reader
	for first := true; ; first = false {
		head, _ := src.Peek(memberLengthAt + 4)
		if len(head) == 0 && !first {
			if _, err := src.ReadByte(); !errors.Is(err, io.EOF) {
				if result := next(); result != nil {
					result <- chunk{err: err}
				}
			}
			return
		}
		if n, ok := memberLength(head); ok {
			result := next()
			if result == nil {
				return
			}
			member := getBuffer(&members, maxMember)[:n]
			if _, err := io.ReadFull(src, member); err != nil {
				result <- chunk{err: truncated(err)}
				return
			}
			select {
			case sem <- struct{}{}:
			case <-z.stop:
				result <- chunk{err: errStopped}
				return
			}
			go func() {
				defer func() { <-sem }()
				result <- inflate(member)
				putBuffer(&members, member)
			}()
			continue
		}
		// A member of unknown length, maybe the whole stream: decompress
		// it here, a block at a time; the gzip reader reads no further than
		// the member's end from a bufio.Reader.
		var err error
		if seq == nil {
			seq, err = gzip.NewReader(src)
		} else {
			err = seq.Reset(src)
		}
		if err != nil {
			if result := next(); result != nil {
				result <- chunk{err: err}
			}
			return
		}
		seq.Multistream(false)
		for {
			result := next()
			if result == nil {
				return
			}
			buf := getBuffer(&outputs, blockSize)
			n, err := fill(seq, buf)
			if errors.Is(err, io.EOF) {
				result <- chunk{data: buf[:n]}
				break
			}
			result <- chunk{data: buf[:n], err: err}
			if err != nil {
				return
			}
		}
	}
}

// fill reads into buf until it is full or r fails; io.EOF means r ended
// (not a short read: a truncated stream's io.ErrUnexpectedEOF stays one).
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

var errStopped = errors.New("archive: decompression stopped")

func truncated(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// inflate decompresses one whole member, checking that it is nothing more.
// Its output is in a buffer of outputs (a member of multiGzip holds at
// most blockSize bytes; one claiming more is read all the same).
func inflate(member []byte) chunk {
	r := bytes.NewReader(member)
	zr, _ := readers.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(r)
	} else {
		err = zr.Reset(r)
	}
	if err != nil {
		return chunk{err: err}
	}
	defer readers.Put(zr)
	zr.Multistream(false)
	out := getBuffer(&outputs, blockSize)
	n, err := fill(zr, out)
	out = out[:n]
	if err == nil {
		// Full: more is unusual, but not wrong.
		var more bytes.Buffer
		_, err = more.ReadFrom(zr)
		out = append(out, more.Bytes()...)
	} else if errors.Is(err, io.EOF) {
		err = nil
	}
	if err != nil {
		putBuffer(&outputs, out)
		return chunk{err: err}
	}
	if r.Len() != 0 {
		putBuffer(&outputs, out)
		return chunk{err: fmt.Errorf("gzip: a member claims %d bytes and ends %d bytes before", len(member), r.Len())}
	}
	return chunk{data: out}
}

func (z *multiGunzip) Read(p []byte) (int, error) {
	for len(z.cur) == 0 {
		if z.held != nil {
			putBuffer(&outputs, z.held)
			z.held = nil
		}
		if z.err != nil {
			return 0, z.err
		}
		result, ok := <-z.order
		if !ok {
			z.err = io.EOF
			continue
		}
		c := <-result
		z.cur, z.held, z.err = c.data, c.data, c.err
	}
	n := copy(p, z.cur)
	z.cur = z.cur[n:]
	return n, nil
}

// Close stops the decompression; a worker or a read of the source under
// way ends by itself. It may be called again.
func (z *multiGunzip) Close() error {
	z.once.Do(func() { close(z.stop) })
	return nil
}
