package archive

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// trickle yields data a few KB at a time, as a file that is still being
// written does.
type trickle struct{ data []byte }

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 3000)], t.data)
	t.data = t.data[n:]
	return n, nil
}

func lateArchive(t *testing.T, m Manifest, rdb []byte, workers int) ([]byte, Manifest) {
	t.Helper()
	var buf bytes.Buffer
	if _, err := buf.Write(make([]byte, HeadSize(m))); err != nil {
		t.Fatal(err)
	}
	m.Format, m.Files = Format, map[string]File{}
	got, head, err := writeLate(&buf, m, &trickle{rdb}, func() ([]Entry, error) {
		return []Entry{
			{Name: "appendonlydir/appendonly.aof.4.base.rdb", LinkTo: RDBName},
			{Name: "appendonlydir/appendonly.aof.5.incr.aof", Data: []byte{}},
			{Name: "appendonlydir/appendonly.aof.manifest", Data: []byte("file appendonly.aof.4.base.rdb seq 4 type b\nfile appendonly.aof.5.incr.aof seq 5 type i\n")},
		}, nil
	}, nil, workers)
	if err != nil {
		t.Fatal(err)
	}
	if len(head) != HeadSize(m) {
		t.Fatalf("head of %d bytes, HeadSize says %d", len(head), HeadSize(m))
	}
	out := buf.Bytes()
	if !bytes.Equal(out[:len(head)], make([]byte, len(head))) {
		t.Fatal("the placeholder is not zeros")
	}
	copy(out, head)
	return out, got
}

func TestALateHeadArchiveIsAPlainTarGzOncePatched(t *testing.T) {
	for _, c := range []struct {
		name    string
		id      string
		size    int
		workers int
	}{
		{"parallel", "inst-1", 3<<20 + 17, 3},
		{"one core", "inst-1", 100_000, 1},
		{"a whole number of blocks", "inst-1", 1024, 2},
		{"an empty file", "inst-1", 0, 2},
		{"a name longer than ustar holds", strings.Repeat("i", 120), 5000, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			rdb := sample(c.size)
			m := Manifest{InstanceID: c.id, Plan: "shared-vm", CreatedAt: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC), Keys: 7}
			data, got := lateArchive(t, m, rdb, c.workers)

			dir := t.TempDir()
			back, err := Extract(bytes.NewReader(data), dir)
			if err != nil {
				t.Fatal(err)
			}
			if back.Files[RDBName] != got.Files[RDBName] || back.Keys != 7 || len(back.Files) != 4 {
				t.Fatalf("extracted %+v, written %+v", back, got)
			}
			if f, _ := os.ReadFile(filepath.Join(dir, RDBName)); !bytes.Equal(f, rdb) {
				t.Fatalf("dump.rdb holds %d bytes, not the %d streamed", len(f), len(rdb))
			}

			// The tar program, as an operator runs it.
			plain := t.TempDir()
			cmd := exec.Command("tar", "xzf", "-", "-C", plain)
			cmd.Stdin = bytes.NewReader(data)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("tar xzf: %v: %s", err, out)
			}
			for _, name := range []string{RDBName, "appendonlydir/appendonly.aof.4.base.rdb"} {
				if f, _ := os.ReadFile(filepath.Join(plain, Folder(m), name)); !bytes.Equal(f, rdb) {
					t.Fatalf("tar xzf gave %s of %d bytes, not %d", name, len(f), len(rdb))
				}
			}
		})
	}
}

func TestAnUnpatchedLateHeadArchiveIsNoArchive(t *testing.T) {
	m := Manifest{InstanceID: "i", Plan: "shared-vm", CreatedAt: time.Now()}
	var buf bytes.Buffer
	_, _, err := WriteLateHead(&buf, m, bytes.NewReader(sample(5000)), func() ([]Entry, error) { return nil, nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Extract(bytes.NewReader(buf.Bytes()), t.TempDir()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("an unpatched archive extracted: %v", err)
	}
}

func TestALateHeadArchiveStopsAtTheFirstError(t *testing.T) {
	broken := errors.New("the rewrite failed")
	m := Manifest{InstanceID: "i", Plan: "shared-vm", CreatedAt: time.Now()}
	_, head, err := WriteLateHead(io.Discard, m, io.MultiReader(bytes.NewReader(sample(5000)), iotestErr{broken}), func() ([]Entry, error) {
		t.Fatal("rest called after the file failed")
		return nil, nil
	}, nil)
	if !errors.Is(err, broken) || head != nil {
		t.Fatalf("%v, head %d bytes", err, len(head))
	}
	_, head, err = WriteLateHead(io.Discard, m, bytes.NewReader(sample(5000)), func() ([]Entry, error) { return nil, broken }, nil)
	if !errors.Is(err, broken) || head != nil {
		t.Fatalf("%v, head %d bytes", err, len(head))
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }
