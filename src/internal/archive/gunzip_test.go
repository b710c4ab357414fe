package archive

import (
	"bytes"
	stdgzip "compress/gzip"
	"encoding/binary"
	"io"
	"runtime"
	"testing"
)

func compressed(t testing.TB, in []byte, workers, block int) []byte {
	t.Helper()
	var out bytes.Buffer
	z := newMultiGzip(&out, workers, block)
	if _, err := z.Write(in); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func gunzipAll(data []byte, workers int) ([]byte, error) {
	z := newMultiGunzip(bytes.NewReader(data), workers)
	defer z.Close()
	return io.ReadAll(z)
}

func TestMultiGunzipReadsEveryKindOfGzipStream(t *testing.T) {
	in := sample(3<<20 + 999)
	var plain bytes.Buffer
	zw := stdgzip.NewWriter(&plain)
	zw.Write(in[:1<<20])
	zw.Close()
	zw = stdgzip.NewWriter(&plain) // a second member, of unknown length too
	zw.Write(in[1<<20:])
	zw.Close()
	for name, data := range map[string][]byte{
		"members that say their length":                       compressed(t, in, 2, blockSize),
		"one gzip stream of two members":                      plain.Bytes(),
		"a stored member, then members that say their length": append(storedMember(in[:5000]), compressed(t, in[5000:], 3, blockSize)...),
	} {
		for _, workers := range []int{1, 2, 4} {
			got, err := gunzipAll(data, workers)
			if err != nil || !bytes.Equal(got, in) {
				t.Fatalf("%s, %d workers: %d bytes of %d, %v", name, workers, len(got), len(in), err)
			}
		}
	}
}

func TestMultiGunzipReadsMembersLargerThanABlock(t *testing.T) {
	// multiGzip's members hold at most a block, but a member that says its
	// length may decompress to more: it is read whole all the same.
	in := append(bytes.Repeat([]byte("user:1234:session "), 3*blockSize/18), sample(5000)...)
	data := compressed(t, in, 2, 3*blockSize)
	if n, ok := memberLength(data); !ok || n == len(data) {
		t.Fatalf("the stream should start with a member that says its length, less than the whole (%d, %v)", n, ok)
	}
	for _, workers := range []int{1, 2} {
		got, err := gunzipAll(data, workers)
		if err != nil || !bytes.Equal(got, in) {
			t.Fatalf("%d workers: %d bytes of %d, %v", workers, len(got), len(in), err)
		}
	}
}

func TestMultiGunzipRefusesDamage(t *testing.T) {
	in := sample(4 << 20)
	good := compressed(t, in, 2, blockSize)
	first, ok := memberLength(good)
	if !ok {
		t.Fatal("the first member says no length")
	}
	flipped := bytes.Clone(good)
	flipped[first+first/2] ^= 0x40 // inside the second member
	lying := bytes.Clone(good)
	binary.LittleEndian.PutUint32(lying[memberLengthAt:], uint32(first-3))
	for name, data := range map[string][]byte{
		"a flipped bit":                   flipped,
		"cut in a member":                 good[:first+100],
		"cut in the last trailer":         good[:len(good)-3],
		"a member that claims too little": lying,
		"not gzip":                        []byte("not gzip at all, but long enough to peek at"),
	} {
		got, err := gunzipAll(data, 2)
		if err == nil {
			t.Fatalf("%s: read %d bytes without an error", name, len(got))
		}
	}
}

func TestMultiGunzipStopsWhenClosedEarly(t *testing.T) {
	before := runtime.NumGoroutine()
	z := newMultiGunzip(bytes.NewReader(compressed(t, sample(8<<20), 2, blockSize)), 2)
	if _, err := z.Read(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	z.Close()
	z.Close()
	waitGoroutines(t, before)
}

// BenchmarkDecompress compares one gzip reader with multiGunzip on
// RDB-shaped data: go test ./src/internal/archive -run '^$' -bench Decompress -count 5
func BenchmarkDecompress(b *testing.B) {
	in := sample(64 << 20)
	data := compressed(b, in, 2, blockSize)
	b.Run("single", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			zr, err := stdgzip.NewReader(bytes.NewReader(data))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, zr); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			z := newMultiGunzip(bytes.NewReader(data), compressionWorkers())
			if _, err := io.Copy(io.Discard, z); err != nil {
				b.Fatal(err)
			}
			z.Close()
		}
	})
}
