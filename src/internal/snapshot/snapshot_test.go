package snapshot_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/archive"
	"github.com/cf-redis/redis-for-cf/src/internal/snapshot"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
)

func TestSnapshot(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "snapshot")
}

// persistent is the persistence every instance runs with (see redisconf).
var persistent = []string{"appendonly yes", `appenddirname "appendonlydir"`, "aof-use-rdb-preamble yes", "appendfsync everysec", "save 3600 1"}

// server is a real redis-server whose data lives in dir/data.
type server struct {
	dir, data string
	srv       *redistest.Server
	extra     []string
}

func startServer(dir string, extra ...string) *server {
	GinkgoHelper()
	s := &server{dir: dir, data: filepath.Join(dir, "data"), extra: extra}
	Expect(os.MkdirAll(s.data, 0o700)).To(Succeed())
	Expect(s.Start(context.Background())).To(Succeed())
	DeferCleanup(func() { _ = s.srv.Stop() })
	return s
}

// Start and Stop make server a snapshot.Server. redistest writes its
// redis.conf into the directory it is given, which is the data directory
// here, so it is written again at each start.
func (s *server) Start(ctx context.Context) error {
	conf := append([]string{"dir " + s.data}, persistent...)
	srv, err := redistest.Start(s.data, append(conf, s.extra...)...)
	s.srv = srv
	return err
}

func (s *server) Stop(ctx context.Context) error {
	c := s.Admin()
	defer c.Close()
	err := c.Shutdown(ctx).Err() // graceful: the AOF is flushed
	if err != nil && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "connection reset") {
		return err
	}
	// redistest's Wait reaps the process, then Stop has nothing to kill.
	pid := s.srv.Cmd.Process.Pid
	Eventually(func() error { return syscall.Kill(pid, 0) }).Should(MatchError(syscall.ESRCH))
	return s.srv.Stop()
}

func (s *server) Admin() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: s.srv.Addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1, ReadTimeout: 5 * time.Second})
}

func fill(c *redis.Client, n int) {
	GinkgoHelper()
	ctx := context.Background()
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range n {
			p.Set(ctx, fmt.Sprintf("key:%d", i), strings.Repeat("v", 100)+fmt.Sprint(i), 0)
		}
		p.Set(ctx, "ttl:short", "x", time.Hour)
		p.Select(ctx, 3)
		p.HSet(ctx, "db3:hash", "a", "1", "b", "2")
		return nil
	})
	Expect(err).NotTo(HaveOccurred())
}

func take(s *server, timeout time.Duration) (*snapshot.Snapshot, error) {
	c := s.Admin()
	defer c.Close()
	return snapshot.Take(context.Background(), c, snapshot.Options{
		InstanceID: "inst-1", Plan: "shared-vm", DataDir: s.data,
		StagingDir: snapshot.StagingDir(s.data), Timeout: timeout,
	})
}

// stagingDirs lists the snapshot and restore folders beside the data.
func stagingDirs(s *server) []string {
	var out []string
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		if e.Name() != "data" {
			out = append(out, e.Name())
		}
	}
	return out
}

var _ = Describe("Take", func() {
	It("writes an archive whose dump.rdb and appendonlydir both hold the dataset at the fork", func() {
		s := startServer(GinkgoT().TempDir())
		c := s.Admin()
		defer c.Close()
		fill(c, 500)
		snap, err := take(s, time.Minute)
		Expect(err).NotTo(HaveOccurred())
		// Writes after the snapshot must not be in it.
		Expect(c.Set(context.Background(), "after", "1", 0).Err()).To(Succeed())
		var buf bytes.Buffer
		n, err := snap.WriteTo(&buf)
		Expect(err).NotTo(HaveOccurred())
		Expect(n).To(BeEquivalentTo(buf.Len()))
		Expect(snap.Close()).To(Succeed())
		Expect(stagingDirs(s)).To(BeEmpty())
		m := snap.Manifest()
		Expect(m.Keys).To(BeEquivalentTo(502))
		Expect(m.Expires).To(BeEquivalentTo(1))
		Expect(m.RedisVersion).To(HavePrefix("7."))
		Expect(m.Files).To(HaveKey("dump.rdb"))
		Expect(m.Files).To(HaveLen(4))

		for _, aof := range []string{"no", "yes"} {
			dir := GinkgoT().TempDir()
			got, err := archive.Extract(bytes.NewReader(buf.Bytes()), dir)
			Expect(err).NotTo(HaveOccurred())
			Expect(got.Files).To(Equal(m.Files))
			srv, err := redistest.Start(dir, "dir "+dir, "appendonly "+aof, `appenddirname "appendonlydir"`)
			Expect(err).NotTo(HaveOccurred())
			rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
			Expect(rc.DBSize(context.Background()).Val()).To(BeEquivalentTo(501), "appendonly %s", aof)
			Expect(rc.Exists(context.Background(), "after").Val()).To(BeZero())
			Expect(rc.TTL(context.Background(), "ttl:short").Val()).To(BeNumerically(">", 59*time.Minute))
			Expect(rc.Do(context.Background(), "SELECT", 3).Err()).To(Succeed())
			rc.Close()
			Expect(srv.Stop()).To(Succeed())
		}
	})

	It("times out with a clear error, stops the child and leaves the server writable", func() {
		s := startServer(GinkgoT().TempDir())
		c := s.Admin()
		defer c.Close()
		fill(c, 200)
		Expect(c.ConfigSet(context.Background(), "rdb-key-save-delay", "100000").Err()).To(Succeed())
		_, err := take(s, time.Second)
		Expect(err).To(MatchError(snapshot.ErrTimeout))
		Expect(err.Error()).To(ContainSubstring("1s"))
		Expect(stagingDirs(s)).To(BeEmpty())
		Eventually(func() string {
			return c.Info(context.Background(), "persistence").Val()
		}).Should(ContainSubstring("aof_rewrite_in_progress:0"))
		Expect(c.Set(context.Background(), "still", "writable", 0).Err()).To(Succeed())
		Expect(c.ConfigSet(context.Background(), "rdb-key-save-delay", "0").Err()).To(Succeed())
		snap, err := take(s, time.Minute)
		Expect(err).NotTo(HaveOccurred())
		Expect(snap.Manifest().Keys).To(BeEquivalentTo(203))
		Expect(snap.Close()).To(Succeed())
	})

	It("fails with a clear error when the server dies during the snapshot", func() {
		s := startServer(GinkgoT().TempDir())
		c := s.Admin()
		defer c.Close()
		fill(c, 200)
		Expect(c.ConfigSet(context.Background(), "rdb-key-save-delay", "100000").Err()).To(Succeed())
		done := make(chan error, 1)
		go func() {
			_, err := take(s, time.Minute)
			done <- err
		}()
		Eventually(func() string { return c.Info(context.Background(), "persistence").Val() }).Should(ContainSubstring("aof_rewrite_in_progress:1"))
		Expect(s.srv.Stop()).To(Succeed())
		var err error
		Eventually(done).Should(Receive(&err))
		Expect(err).To(MatchError(snapshot.ErrServerGone))
		Expect(stagingDirs(s)).To(BeEmpty())
		// The rewrite's child outlived its server: it was stopped, and its
		// temporary file removed.
		Expect(filepath.Glob(filepath.Join(s.data, "temp-*"))).To(BeEmpty())
		out, _ := exec.Command("pgrep", "-f", "redis-aof-rewrite.*"+strings.Split(s.srv.Addr, ":")[1]).Output()
		Expect(strings.TrimSpace(string(out))).To(BeEmpty())
	})
})

var _ = Describe("Stage and Install", func() {
	var (
		s     *server
		saved []byte
	)

	BeforeEach(func() {
		s = startServer(GinkgoT().TempDir())
		c := s.Admin()
		defer c.Close()
		fill(c, 300)
		snap, err := take(s, time.Minute)
		Expect(err).NotTo(HaveOccurred())
		var buf bytes.Buffer
		_, err = snap.WriteTo(&buf)
		Expect(err).NotTo(HaveOccurred())
		Expect(snap.Close()).To(Succeed())
		saved = buf.Bytes()
		Expect(c.FlushAll(context.Background()).Err()).To(Succeed())
		Expect(c.Set(context.Background(), "current", "data", 0).Err()).To(Succeed())
	})

	It("replaces the data and deletes the old data once the keys verified", func() {
		st, err := snapshot.Stage(bytes.NewReader(saved), s.dir)
		Expect(err).NotTo(HaveOccurred())
		res, err := st.Install(context.Background(), s.data, s, snapshot.InstallOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Keys).To(BeEquivalentTo(302))
		Expect(st.Close()).To(Succeed())
		Expect(stagingDirs(s)).To(BeEmpty())
		c := s.Admin()
		defer c.Close()
		Expect(c.Exists(context.Background(), "current").Val()).To(BeZero())
		Expect(c.Get(context.Background(), "key:7").Val()).To(HaveSuffix("7"))
	})

	It("refuses a damaged archive before touching the data", func() {
		bad := bytes.Clone(saved)
		bad[len(bad)/2] ^= 0xff
		_, err := snapshot.Stage(bytes.NewReader(bad), s.dir)
		Expect(err).To(MatchError(archive.ErrCorrupt))
		Expect(stagingDirs(s)).To(BeEmpty())
		_, err = snapshot.Stage(bytes.NewReader(saved[:len(saved)-100]), s.dir)
		Expect(err).To(MatchError(archive.ErrCorrupt))
		Expect(stagingDirs(s)).To(BeEmpty())
	})

	It("rolls back when the loaded data does not match the manifest", func() {
		st, err := snapshot.Stage(bytes.NewReader(saved), s.dir)
		Expect(err).NotTo(HaveOccurred())
		st.Manifest.Keys = 1000 // as if keys had been lost
		_, err = st.Install(context.Background(), s.data, s, snapshot.InstallOptions{})
		Expect(err).To(MatchError(snapshot.ErrVerify))
		Expect(err.Error()).To(ContainSubstring("rolled back"))
		Expect(st.Close()).To(Succeed())
		Expect(stagingDirs(s)).To(BeEmpty())
		c := s.Admin()
		defer c.Close()
		Expect(c.Get(context.Background(), "current").Val()).To(Equal("data"))
		Expect(c.DBSize(context.Background()).Val()).To(BeEquivalentTo(1))
	})

	It("rolls back a restore that a crash cut short", func() {
		st, err := snapshot.Stage(bytes.NewReader(saved), s.dir)
		Expect(err).NotTo(HaveOccurred())
		// The crash: the old data moved aside, the backup in place, the
		// server not yet verified.
		Expect(s.Stop(context.Background())).To(Succeed())
		Expect(os.Rename(s.data, s.data+".previous")).To(Succeed())
		Expect(os.Rename(stagedDir(s), s.data)).To(Succeed())
		Expect(snapshot.Pending(s.data)).To(BeTrue())
		rolledBack, err := snapshot.Recover(s.data)
		Expect(err).NotTo(HaveOccurred())
		Expect(rolledBack).To(BeTrue())
		Expect(st.Close()).To(Succeed())
		Expect(stagingDirs(s)).To(BeEmpty())
		Expect(s.Start(context.Background())).To(Succeed())
		c := s.Admin()
		defer c.Close()
		Expect(c.Get(context.Background(), "current").Val()).To(Equal("data"))
	})
})

func stagedDir(s *server) string {
	GinkgoHelper()
	for _, d := range stagingDirs(s) {
		if strings.HasPrefix(d, "restore-") {
			return filepath.Join(s.dir, d)
		}
	}
	Fail("no staged restore")
	return ""
}

func begin(s *server, timeout time.Duration) (*snapshot.Stream, error) {
	c := s.Admin()
	DeferCleanup(c.Close)
	return snapshot.Begin(context.Background(), c, snapshot.Options{
		InstanceID: "inst-1", Plan: "shared-vm", DataDir: s.data,
		StagingDir: snapshot.StagingDir(s.data), Timeout: timeout,
	})
}

// fillRandom writes n keys of 200 random bytes, which do not compress.
func fillRandom(c *redis.Client, n int) {
	GinkgoHelper()
	ctx := context.Background()
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range n {
			v := make([]byte, 200)
			_, _ = rand.Read(v)
			p.Set(ctx, fmt.Sprintf("rnd:%d", i), v, 0)
		}
		return nil
	})
	Expect(err).NotTo(HaveOccurred())
}

// watched notes whether the rewrite still ran when the first bytes after
// the head came out.
type watched struct {
	buf      bytes.Buffer
	c        *redis.Client
	head     int
	duringRW *bool
}

func (w *watched) Write(p []byte) (int, error) {
	if w.duringRW == nil && w.buf.Len()+len(p) > w.head {
		during := strings.Contains(w.c.Info(context.Background(), "persistence").Val(), "aof_rewrite_in_progress:1")
		w.duringRW = &during
	}
	return w.buf.Write(p)
}

var _ = Describe("Begin", func() {
	It("streams the rewrite's base file while Redis writes it, into an archive that is whole once its head is written", func() {
		s := startServer(GinkgoT().TempDir())
		c := s.Admin()
		defer c.Close()
		fillRandom(c, 20000)
		fill(c, 100)
		// 20,000 keys at 50 us each: a rewrite of a second or more.
		Expect(c.ConfigSet(context.Background(), "rdb-key-save-delay", "50").Err()).To(Succeed())
		st, err := begin(s, time.Minute)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.Set(context.Background(), "after", "1", 0).Err()).To(Succeed())
		Expect(st.Manifest().Keys).To(BeEquivalentTo(20102))
		w := &watched{c: c, head: archive.HeadSize(st.Manifest())}
		n, head, err := st.WriteLateHead(w, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(n).To(BeEquivalentTo(w.buf.Len()))
		Expect(w.duringRW).NotTo(BeNil())
		Expect(*w.duringRW).To(BeTrue(), "the archive streamed only after the rewrite")
		Expect(st.Close()).To(Succeed())
		Expect(stagingDirs(s)).To(BeEmpty())
		data := w.buf.Bytes()
		Expect(data[:len(head)]).To(Equal(make([]byte, len(head))))
		copy(data, head)

		dir := GinkgoT().TempDir()
		m, err := archive.Extract(bytes.NewReader(data), dir)
		Expect(err).NotTo(HaveOccurred())
		Expect(m.Keys).To(BeEquivalentTo(20102))
		Expect(m.Files).To(HaveLen(4))
		// dump.rdb is the base file Redis wrote, byte for byte.
		bases, _ := filepath.Glob(filepath.Join(s.data, "appendonlydir", "*.base.rdb"))
		Expect(bases).To(HaveLen(1))
		want, err := os.ReadFile(bases[0])
		Expect(err).NotTo(HaveOccurred())
		got, err := os.ReadFile(filepath.Join(dir, "dump.rdb"))
		Expect(err).NotTo(HaveOccurred())
		Expect(bytes.Equal(got, want)).To(BeTrue(), "dump.rdb of %d bytes, the base file %d", len(got), len(want))
		srv, err := redistest.Start(dir, "dir "+dir, "appendonly yes", `appenddirname "appendonlydir"`)
		Expect(err).NotTo(HaveOccurred())
		defer srv.Stop()
		rc := redis.NewClient(&redis.Options{Addr: srv.Addr})
		defer rc.Close()
		Expect(rc.DBSize(context.Background()).Val()).To(BeEquivalentTo(20101))
		Expect(rc.Exists(context.Background(), "after").Val()).To(BeZero())
	})

	It("fails the stream when the rewrite does not finish in time, stopping the child", func() {
		s := startServer(GinkgoT().TempDir())
		c := s.Admin()
		defer c.Close()
		fill(c, 200)
		Expect(c.ConfigSet(context.Background(), "rdb-key-save-delay", "100000").Err()).To(Succeed())
		st, err := begin(s, time.Second)
		Expect(err).NotTo(HaveOccurred())
		_, head, err := st.WriteLateHead(io.Discard, nil)
		Expect(err).To(MatchError(snapshot.ErrTimeout))
		Expect(err.Error()).To(ContainSubstring("did not finish within 1s"))
		Expect(head).To(BeNil())
		Expect(st.Close()).To(Succeed())
		Expect(stagingDirs(s)).To(BeEmpty())
		Eventually(func() string {
			return c.Info(context.Background(), "persistence").Val()
		}).Should(ContainSubstring("aof_rewrite_in_progress:0"))
		Expect(c.Set(context.Background(), "still", "writable", 0).Err()).To(Succeed())
	})

	It("stops the rewrite when the stream is closed unread", func() {
		s := startServer(GinkgoT().TempDir())
		c := s.Admin()
		defer c.Close()
		fill(c, 200)
		Expect(c.ConfigSet(context.Background(), "rdb-key-save-delay", "100000").Err()).To(Succeed())
		st, err := begin(s, time.Minute)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() string { return c.Info(context.Background(), "persistence").Val() }).Should(ContainSubstring("aof_rewrite_in_progress:1"))
		Expect(st.Close()).To(Succeed())
		Expect(stagingDirs(s)).To(BeEmpty())
		Eventually(func() string {
			return c.Info(context.Background(), "persistence").Val()
		}).Should(ContainSubstring("aof_rewrite_in_progress:0"))
		Expect(filepath.Glob(filepath.Join(s.data, "temp-*"))).To(BeEmpty())
	})
})
