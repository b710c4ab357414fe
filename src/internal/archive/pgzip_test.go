package archive

import (
	"bytes"
	stdgzip "compress/gzip"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// sample is n bytes shaped like an RDB file: runs of repeated text between
// runs of incompressible bytes.
func sample(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]byte, 0, n)
	for len(out) < n {
		if r.IntN(2) == 0 {
			out = append(out, bytes.Repeat([]byte("user:1234:session "), 1+r.IntN(200))...)
		} else {
			chunk := make([]byte, 1+r.IntN(4096))
			for i := range chunk {
				chunk[i] = byte(r.Uint32())
			}
			out = append(out, chunk...)
		}
	}
	return out[:n]
}

func TestMultiGzipIsOneGzipStreamToEveryReader(t *testing.T) {
	in := sample(5<<20 + 123)
	var out bytes.Buffer
	z := newMultiGzip(&out, 3, 64<<10)
	// Writes of every size, across block boundaries.
	for rest := in; len(rest) > 0; {
		n := min(len(rest), 1+len(rest)%70000)
		if _, err := z.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
	if _, err := z.Write([]byte("x")); err == nil {
		t.Fatal("a write after Close succeeded")
	}

	// Go's reader, which reads every member as one stream.
	zr, err := stdgzip.NewReader(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, in) {
		t.Fatalf("Go's gzip reader: %d bytes back of %d, %v", len(got), len(in), err)
	}
	// More than one member: the blocks were compressed apart.
	zr, _ = stdgzip.NewReader(bytes.NewReader(out.Bytes()))
	zr.Multistream(false)
	first, _ := io.ReadAll(zr)
	if len(first) != 64<<10 {
		t.Fatalf("first member holds %d bytes, want one block of %d", len(first), 64<<10)
	}

	// The gzip program, as an operator's tar xzf would run it.
	if _, err := exec.LookPath("gzip"); err != nil {
		t.Fatalf("gzip is missing: %v", err)
	}
	cmd := exec.Command("gzip", "-dc")
	cmd.Stdin = bytes.NewReader(out.Bytes())
	got, err = cmd.Output()
	if err != nil || !bytes.Equal(got, in) {
		t.Fatalf("gzip -dc: %d bytes back of %d, %v", len(got), len(in), err)
	}
}

func TestMultiGzipOfNothingIsAnEmptyStream(t *testing.T) {
	var out bytes.Buffer
	z := newMultiGzip(&out, 2, 1024)
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	zr, err := stdgzip.NewReader(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(zr); err != nil || len(got) != 0 {
		t.Fatalf("%q, %v", got, err)
	}
}

type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	f.n--
	return len(p), nil
}

func TestMultiGzipStopsAtTheFirstFailedWriteAndLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	broken := errors.New("upload broke")
	z := newMultiGzip(&failAfter{n: 2, err: broken}, 2, 4096)
	in := sample(1 << 20)
	var werr error
	for i := 0; i < len(in) && werr == nil; i += 1000 {
		_, werr = z.Write(in[i:min(len(in), i+1000)])
	}
	if !errors.Is(werr, broken) {
		t.Fatalf("Write went on after the output broke: %v", werr)
	}
	if err := z.Close(); !errors.Is(err, broken) {
		t.Fatalf("Close: %v", err)
	}
	waitGoroutines(t, before)
}

func TestAnArchiveThatStopsShortLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	stop := errors.New("instance deleted")
	_, err := writeArchive(io.Discard, Manifest{InstanceID: "i", CreatedAt: time.Now()},
		[]Entry{{Name: "dump.rdb", Data: sample(3 << 20)}}, func() error { return stop }, 3)
	if !errors.Is(err, stop) {
		t.Fatal(err)
	}
	waitGoroutines(t, before)
}

func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left, %d before", runtime.NumGoroutine(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAParallelArchiveExtracts(t *testing.T) {
	dir := t.TempDir()
	rdb := filepath.Join(dir, "dump.rdb")
	data := sample(3<<20 + 17)
	if err := os.WriteFile(rdb, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	m, err := writeArchive(&buf, Manifest{InstanceID: "i", Plan: "shared-vm", CreatedAt: time.Now(), Keys: 1},
		[]Entry{{Name: "dump.rdb", Path: rdb, Size: int64(len(data))}}, nil, 3)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	got, err := Extract(bytes.NewReader(buf.Bytes()), out)
	if err != nil {
		t.Fatal(err)
	}
	if got.Files["dump.rdb"] != m.Files["dump.rdb"] {
		t.Fatalf("%+v != %+v", got.Files, m.Files)
	}
	back, err := os.ReadFile(filepath.Join(out, "dump.rdb"))
	if err != nil || !bytes.Equal(back, data) {
		t.Fatalf("extracted %d bytes of %d: %v", len(back), len(data), err)
	}
}

// BenchmarkCompress compares the gzip writer on one core with all cores on
// RDB-shaped data: go test ./src/internal/archive -run '^$' -bench Compress -count 5
func BenchmarkCompress(b *testing.B) {
	in := sample(64 << 20)
	for _, c := range []struct {
		name    string
		workers int
	}{{"single", 1}, {"parallel", compressionWorkers()}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				z, err := newCompressor(io.Discard, c.workers)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := z.Write(in); err != nil {
					b.Fatal(err)
				}
				if err := z.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
