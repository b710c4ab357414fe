package archive_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/archive"
)

func TestArchive(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "archive")
}

var created = time.Date(2026, 1, 21, 3, 0, 0, 0, time.UTC)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// entry is one tar entry of a hand-made archive.
type entry struct {
	name, link string
	typ        byte
	data       []byte
}

// handMade writes entries (and a manifest listing files) as a tar.gz, the
// way a damaged or hostile archive would come.
func handMade(entries []entry, files map[string]archive.File) []byte {
	GinkgoHelper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o600, Size: int64(len(e.data)), ModTime: created}
		Expect(tw.WriteHeader(h)).To(Succeed())
		_, err := tw.Write(e.data)
		Expect(err).NotTo(HaveOccurred())
	}
	if files != nil {
		m, err := json.Marshal(archive.Manifest{Format: archive.Format, InstanceID: "i", Plan: "shared-vm", CreatedAt: created, Files: files})
		Expect(err).NotTo(HaveOccurred())
		folder, _, _ := strings.Cut(entries[0].name, "/")
		Expect(tw.WriteHeader(&tar.Header{Name: folder + "/manifest.json", Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(m))})).To(Succeed())
		_, err = tw.Write(m)
		Expect(err).NotTo(HaveOccurred())
	}
	Expect(tw.Close()).To(Succeed())
	Expect(gz.Close()).To(Succeed())
	return buf.Bytes()
}

var _ = Describe("Write and Extract", func() {
	It("round-trip files and hard links, and fill in the manifest", func() {
		dir := GinkgoT().TempDir()
		rdb := filepath.Join(dir, "base.rdb")
		Expect(os.WriteFile(rdb, []byte("REDIS0010 and more, and more bytes that grow"), 0o600)).To(Succeed())
		var buf bytes.Buffer
		m, err := archive.Write(&buf, archive.Manifest{InstanceID: "i", Plan: "shared-vm", CreatedAt: created, Keys: 3},
			[]archive.Entry{
				{Name: "dump.rdb", Path: rdb, Size: 20}, // a file that grew: cut at Size
				{Name: "appendonlydir/appendonly.aof.1.base.rdb", LinkTo: "dump.rdb"},
				{Name: "appendonlydir/appendonly.aof.1.incr.aof", Data: []byte{}},
			})
		Expect(err).NotTo(HaveOccurred())
		Expect(m.Files["dump.rdb"]).To(Equal(archive.File{Size: 20, SHA256: sum([]byte("REDIS0010 and more, "))}))
		Expect(m.Files["appendonlydir/appendonly.aof.1.base.rdb"]).To(Equal(m.Files["dump.rdb"]))

		out := GinkgoT().TempDir()
		got, err := archive.Extract(bytes.NewReader(buf.Bytes()), out)
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Files).To(Equal(m.Files))
		Expect(got.Keys).To(BeEquivalentTo(3))
		data, err := os.ReadFile(filepath.Join(out, "appendonlydir", "appendonly.aof.1.base.rdb"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(data)).To(Equal("REDIS0010 and more, "))
		Expect(archive.Folder(got)).To(Equal("i-20260121T030000Z"))
	})

	good := []byte("rdb")
	goodFiles := map[string]archive.File{"dump.rdb": {Size: 3, SHA256: sum(good)}}
	DescribeTable("refuse what is not a whole, honest backup, with ErrCorrupt",
		func(entries []entry, files map[string]archive.File, want string) {
			_, err := archive.Extract(bytes.NewReader(handMade(entries, files)), GinkgoT().TempDir())
			Expect(err).To(MatchError(archive.ErrCorrupt))
			Expect(err.Error()).To(ContainSubstring(want))
		},
		Entry("a path out of the folder", []entry{{name: "i-20260121T030000Z/../../etc/passwd", typ: tar.TypeReg, data: good}}, goodFiles, "entry name"),
		Entry("an absolute path", []entry{{name: "/etc/passwd", typ: tar.TypeReg, data: good}}, goodFiles, "entry name"),
		Entry("a file outside the layout", []entry{{name: "i-20260121T030000Z/redis.conf", typ: tar.TypeReg, data: good}}, goodFiles, "unexpected file"),
		Entry("a symlink", []entry{{name: "i-20260121T030000Z/dump.rdb", typ: tar.TypeSymlink, link: "/etc/shadow"}}, goodFiles, "neither a file"),
		Entry("a hard link out of the archive", []entry{{name: "i-20260121T030000Z/dump.rdb", typ: tar.TypeLink, link: "/etc/shadow"}}, goodFiles, "link"),
		Entry("two folders", []entry{{name: "i-20260121T030000Z/dump.rdb", typ: tar.TypeReg, data: good}, {name: "other/dump.rdb", typ: tar.TypeReg, data: good}}, goodFiles, "two folders"),
		Entry("a checksum that does not match", []entry{{name: "i-20260121T030000Z/dump.rdb", typ: tar.TypeReg, data: []byte("RDB")}}, goodFiles, "SHA-256"),
		Entry("a file the manifest does not list", []entry{{name: "i-20260121T030000Z/dump.rdb", typ: tar.TypeReg, data: good}, {name: "i-20260121T030000Z/appendonlydir/x.aof", typ: tar.TypeReg, data: good}}, goodFiles, "not in the manifest"),
		Entry("a file the manifest lists but the archive lacks", []entry{{name: "i-20260121T030000Z/dump.rdb", typ: tar.TypeReg, data: good}},
			map[string]archive.File{"dump.rdb": {Size: 3, SHA256: sum(good)}, "appendonlydir/a.aof": {Size: 3, SHA256: sum(good)}}, "missing"),
		Entry("no manifest", []entry{{name: "i-20260121T030000Z/dump.rdb", typ: tar.TypeReg, data: good}}, nil, "no manifest"),
		Entry("a folder name that is not the manifest's", []entry{{name: "j-20260121T030000Z/dump.rdb", typ: tar.TypeReg, data: good}}, goodFiles, "does not match the manifest"),
	)

	It("refuses a truncated archive, and reports a broken reader as such", func() {
		data := handMade([]entry{{name: "i-20260121T030000Z/dump.rdb", typ: tar.TypeReg, data: bytes.Repeat(good, 1000)}},
			map[string]archive.File{"dump.rdb": {Size: 3000, SHA256: sum(bytes.Repeat(good, 1000))}})
		_, err := archive.Extract(bytes.NewReader(data[:len(data)-12]), GinkgoT().TempDir())
		Expect(err).To(MatchError(archive.ErrCorrupt))
		_, err = archive.Extract(bytes.NewReader([]byte("not gzip at all")), GinkgoT().TempDir())
		Expect(err).To(MatchError(archive.ErrCorrupt))
	})
})
