package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/store"
	"github.com/cf-redis/redis-for-cf/src/internal/store/dirstore"
	"github.com/cf-redis/redis-for-cf/src/internal/store/s3store"
	"github.com/cf-redis/redis-for-cf/src/testkit/miniotest"
)

func TestStore(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "store")
}

var mio *miniotest.Server

var _ = BeforeSuite(func() {
	var err error
	mio, err = miniotest.Start(GinkgoT().TempDir())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(mio.Stop)
	Expect(mio.MakeBucket("backups")).To(Succeed())
})

func s3config() s3store.Config {
	return s3store.Config{
		Endpoint: mio.Endpoint, Region: "us-east-1", Bucket: "backups", PathStyle: true,
		AccessKeyID: miniotest.AccessKey, SecretAccessKey: miniotest.SecretKey, PartSize: 5 << 20,
	}
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// failingReader yields data, then an error instead of EOF: an agent's
// stream that broke.
type failingReader struct{ r io.Reader }

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, errors.New("stream broke")
	}
	return n, err
}

// lateReader yields data whose first len(head) bytes are zeros, and head
// once it was read to its end: an archive streamed with a late head.
type lateReader struct {
	r    io.Reader
	head []byte
	done bool
}

func newLateReader(data []byte, headLen int, fail bool) *lateReader {
	head := bytes.Clone(data[:headLen])
	var r io.Reader = io.MultiReader(bytes.NewReader(make([]byte, headLen)), bytes.NewReader(data[headLen:]))
	if fail {
		r = &failingReader{r}
	}
	return &lateReader{r: r, head: head}
}

func (l *lateReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if errors.Is(err, io.EOF) {
		l.done = true
	}
	return n, err
}

func (l *lateReader) Head() []byte {
	if !l.done {
		return nil
	}
	return l.head
}

// contract is what every Store does; leftovers reports temporary files or
// incomplete uploads that a failed Put left behind.
func contract(open func() store.Store, leftovers func() []string) {
	var st store.Store
	ctx := context.Background()
	BeforeEach(func() { st = open() })

	It("stores, lists, reads and deletes objects, in one piece and in many parts", func() {
		prefix := "p/" + filepath.Base(GinkgoT().TempDir()) + "/"
		small, big := random(1000), random(12<<20+123)
		n, err := st.Put(ctx, prefix+"small.tar.gz", bytes.NewReader(small))
		Expect(err).NotTo(HaveOccurred())
		Expect(n).To(BeEquivalentTo(len(small)))
		n, err = st.Put(ctx, prefix+"big.tar.gz", bytes.NewReader(big))
		Expect(err).NotTo(HaveOccurred())
		Expect(n).To(BeEquivalentTo(len(big)))
		objs, err := st.List(ctx, prefix)
		Expect(err).NotTo(HaveOccurred())
		Expect(objs).To(HaveLen(2))
		for _, want := range []struct {
			name string
			data []byte
		}{{"small.tar.gz", small}, {"big.tar.gz", big}} {
			r, err := st.Get(ctx, prefix+want.name)
			Expect(err).NotTo(HaveOccurred())
			got, err := io.ReadAll(r)
			Expect(err).NotTo(HaveOccurred())
			r.Close()
			Expect(bytes.Equal(got, want.data)).To(BeTrue(), want.name)
		}
		Expect(st.Delete(ctx, prefix+"small.tar.gz")).To(Succeed())
		Expect(st.Delete(ctx, prefix+"small.tar.gz")).To(Succeed())
		_, err = st.Get(ctx, prefix+"small.tar.gz")
		Expect(err).To(MatchError(store.ErrNotFound))
		Expect(st.Where(prefix + "x")).To(ContainSubstring(prefix + "x"))
	})

	It("leaves nothing when the stream breaks, before or after the first part", func() {
		prefix := "broken/" + filepath.Base(GinkgoT().TempDir()) + "/"
		for _, size := range []int{100, 11 << 20} {
			_, err := st.Put(ctx, prefix+"x.tar.gz", &failingReader{bytes.NewReader(random(size))})
			Expect(err).To(MatchError(ContainSubstring("stream broke")))
			objs, err := st.List(ctx, prefix)
			Expect(err).NotTo(HaveOccurred())
			Expect(objs).To(BeEmpty())
			Expect(leftovers()).To(BeEmpty())
		}
	})

	It("writes a late head over the start of the object, in one piece and in many parts", func() {
		prefix := "late/" + filepath.Base(GinkgoT().TempDir()) + "/"
		for _, size := range []int{3000, 12<<20 + 5} {
			data := random(size)
			name := fmt.Sprintf("%s%d.tar.gz", prefix, size)
			n, err := st.Put(ctx, name, newLateReader(data, 1047, false))
			Expect(err).NotTo(HaveOccurred())
			Expect(n).To(BeEquivalentTo(size))
			r, err := st.Get(ctx, name)
			Expect(err).NotTo(HaveOccurred())
			got, err := io.ReadAll(r)
			Expect(err).NotTo(HaveOccurred())
			r.Close()
			Expect(bytes.Equal(got, data)).To(BeTrue(), "%d bytes", size)
			Expect(st.Delete(ctx, name)).To(Succeed())
		}
		broken := prefix + "broken/"
		for _, size := range []int{3000, 11 << 20} {
			_, err := st.Put(ctx, broken+"x.tar.gz", newLateReader(random(size), 1047, true))
			Expect(err).To(MatchError(ContainSubstring("stream broke")))
			objs, err := st.List(ctx, broken)
			Expect(err).NotTo(HaveOccurred())
			Expect(objs).To(BeEmpty())
			Expect(leftovers()).To(BeEmpty())
		}
	})

	It("refuses names that would leave its folder or bucket prefix", func() {
		for _, name := range []string{"../x", "/abs", "a/../../b", "a/.hidden", ""} {
			_, err := st.Put(ctx, name, bytes.NewReader(nil))
			Expect(err).To(HaveOccurred(), name)
		}
	})
}

var _ = Describe("dirstore", func() {
	var root string
	contract(func() store.Store {
		root = GinkgoT().TempDir()
		st, err := dirstore.New(root)
		Expect(err).NotTo(HaveOccurred())
		return st
	}, func() []string {
		var out []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				out = append(out, p)
			}
			return nil
		})
		return out
	})
})

var _ = Describe("s3store", func() {
	contract(func() store.Store {
		st, err := s3store.New(s3config())
		Expect(err).NotTo(HaveOccurred())
		return st
	}, func() []string {
		c, err := mio.Client()
		Expect(err).NotTo(HaveOccurred())
		var out []string
		for u := range c.ListIncompleteUploads(context.Background(), "backups", "", true) {
			Expect(u.Err).NotTo(HaveOccurred())
			out = append(out, u.Key)
		}
		return out
	})

	It("names the problem: wrong credentials, a missing bucket, a server down", func() {
		ctx := context.Background()
		cfg := s3config()
		cfg.SecretAccessKey = "wrong-secret-key"
		st, err := s3store.New(cfg)
		Expect(err).NotTo(HaveOccurred())
		_, err = st.Put(ctx, "x/y.tar.gz", bytes.NewReader([]byte("data")))
		Expect(err).To(MatchError(ContainSubstring("refused the access key")))
		Expect(err.Error()).NotTo(ContainSubstring("wrong-secret-key"))

		cfg = s3config()
		cfg.Bucket = "no-such-bucket"
		st, err = s3store.New(cfg)
		Expect(err).NotTo(HaveOccurred())
		_, err = st.Put(ctx, "x/y.tar.gz", bytes.NewReader([]byte("data")))
		Expect(err).To(MatchError(ContainSubstring(`bucket "no-such-bucket" does not exist`)))

		cfg = s3config()
		cfg.Endpoint = "http://127.0.0.1:1"
		cfg.MaxRetries = 1
		st, err = s3store.New(cfg)
		Expect(err).NotTo(HaveOccurred())
		_, err = st.Put(ctx, "x/y.tar.gz", bytes.NewReader([]byte("data")))
		Expect(err).To(MatchError(ContainSubstring("unreachable")))
	})
})
