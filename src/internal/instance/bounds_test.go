package instance_test

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/cgroup"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
)

// endlessScript writes, then loops: redis-server answers BUSY to everyone
// and, as the script wrote, refuses SCRIPT KILL (UNKILLABLE).
const endlessScript = "redis.call('set', KEYS[1], 'x') while true do end"

// hogScript writes 1000 values of 1 MB from one script into a 64 MB
// instance: maxmemory is only checked before a script, not while it runs.
const hogScript = "local v = string.rep('x', 1048576) for i = 1, 1000 do redis.call('set', 'k' .. i, v) end return 1"

// busy starts the endless script on c and waits until the server answers
// BUSY (after busy-reply-threshold, 5s).
func busy(ctx context.Context, s *server, c *redis.Client) {
	go func() { _ = c.Eval(context.Background(), endlessScript, []string{"k"}).Err() }()
	Eventually(func() error { return s.admin().Ping(ctx).Err() }).WithTimeout(30 * time.Second).Should(MatchError(ContainSubstring("BUSY")))
}

var _ = Describe("stopping a busy server", func() {
	It("discards a server stuck in an endless script after a write at once, on the first request", func(ctx SpecContext) {
		s := newServer(tempDir(), "inst-1", nil)
		s.start(ctx)
		c, _ := s.bind(ctx, "b1")
		busy(ctx, s, c)
		pid := s.pid()

		Expect(s.Stop(ctx, true)).To(Succeed())
		Expect(syscall.Kill(pid, 0)).To(MatchError(syscall.ESRCH))
		Expect(s.paths.Pid).NotTo(BeAnExistingFile())
	}, NodeTimeout(25*time.Second)) // a graceful stop waits 30s for SIGTERM
})

var _ = Describe("a Server in a cgroup", func() {
	var tree *cgroup.Tree
	var dir string
	BeforeEach(func() {
		dir = tempDir()
		var err error
		tree, err = cgroup.Open(cgroup.Required, cgroup.Name(dir), slog.New(slog.NewTextHandler(GinkgoWriter, nil)))
		Expect(err).NotTo(HaveOccurred(), "this machine has cgroups")
		DeferCleanup(func() {
			Expect(tree.Destroy()).To(Succeed())
			Expect(tree.Group("x").Dirs()[0]).NotTo(BeADirectory())
		})
	})

	inCgroup := func(id string) *server {
		s := newServer(dir, id, nil)
		s.env.Cgroups = tree
		s.Server = s.again()
		return s
	}

	It("is killed by the kernel at its memory ceiling and restarted, its neighbour untouched", func(ctx SpecContext) {
		hog, neighbour := inCgroup("hog"), inCgroup("neighbour")
		hog.start(ctx)
		neighbour.start(ctx)
		for _, s := range []*server{hog, neighbour} {
			lim, err := tree.Group(s.id()).Limits()
			Expect(err).NotTo(HaveOccurred())
			Expect(lim.Memory).To(Equal(redisconf.MemoryCeiling(64 << 20)))
			Expect(tree.Group(s.id()).Contains(s.pid())).To(BeTrue())
		}
		nc, _ := neighbour.bind(ctx, "n")
		Expect(nc.Set(ctx, "kept", "yes", 0).Err()).To(Succeed())
		neighbourPid := neighbour.pid()
		hogPid := hog.pid()

		c, _ := hog.bind(ctx, "h")
		long := redis.NewClient(&redis.Options{Addr: hog.addr(), Username: "h", Password: c.Options().Password, MaxRetries: -1, ReadTimeout: time.Minute})
		DeferCleanup(long.Close)
		Expect(long.Eval(ctx, hogScript, nil).Err()).To(HaveOccurred(), "the server dies under the script")

		Eventually(func() agentapi.Instance { return hog.Describe(hog.record()) }).WithTimeout(30 * time.Second).Should(And(
			HaveField("State", agentapi.StateRunning), HaveField("Restarts", 1),
			HaveField("LastError", ContainSubstring("killed by the kernel for exceeding its memory ceiling"))))
		Expect(syscall.Kill(hogPid, 0)).To(MatchError(syscall.ESRCH))
		Expect(tree.Group("hog").Contains(hog.pid())).To(BeTrue())

		Expect(neighbour.pid()).To(Equal(neighbourPid))
		Expect(nc.Get(ctx, "kept").Val()).To(Equal("yes"))
		Expect(neighbour.Describe(neighbour.record()).Restarts).To(BeZero())
	}, NodeTimeout(2*time.Minute))

	It("removes its cgroup when discarded and when shut down, and an agent's successor adopts it in its cgroup", func(ctx SpecContext) {
		a, b := inCgroup("a"), inCgroup("b")
		a.start(ctx)
		b.start(ctx)
		pid := a.pid()
		a.Abandon()
		a.Server = a.again()
		a.start(ctx)
		Expect(a.Describe(a.record()).State).To(Equal(agentapi.StateRunning))
		Expect(a.pid()).To(Equal(pid), "adopted")
		Expect(tree.Group("a").Contains(pid)).To(BeTrue())

		Expect(a.Stop(ctx, true)).To(Succeed())
		for _, d := range tree.Group("a").Dirs() {
			Expect(d).NotTo(BeADirectory())
		}
		b.Shutdown(ctx)
		for _, d := range tree.Group("b").Dirs() {
			Expect(d).NotTo(BeADirectory())
		}
		Expect(tree.Remove()).To(Succeed())
		Expect(filepath.Dir(tree.Group("b").Dirs()[0])).NotTo(BeADirectory())
	})
})

var _ = Describe("a Server's files", func() {
	It("are private: dirs 0700, data files 0600, the log 0640 at most, also when an earlier version left them open", func(ctx SpecContext) {
		dir := tempDir()
		s := newServer(dir, "inst-1", nil)
		// As an earlier version without a umask left them.
		Expect(os.MkdirAll(s.paths.Data, 0o755)).To(Succeed())
		Expect(os.Chmod(s.paths.Dir, 0o755)).To(Succeed())
		Expect(os.WriteFile(s.paths.Log, nil, 0o644)).To(Succeed())
		Expect(os.Chmod(s.paths.Log, 0o644)).To(Succeed())
		old := filepath.Join(s.paths.Data, "old.rdb")
		Expect(os.WriteFile(old, nil, 0o644)).To(Succeed())
		Expect(os.Chmod(old, 0o644)).To(Succeed())

		s.start(ctx)
		c, _ := s.bind(ctx, "b1")
		Expect(c.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		admin := s.admin()
		Expect(admin.ConfigSet(ctx, "appendonly", "yes").Err()).To(Succeed())
		Expect(admin.BgSave(ctx).Err()).To(Succeed())
		Eventually(func() string { return admin.Info(ctx, "persistence").Val() }).Should(And(
			ContainSubstring("rdb_bgsave_in_progress:0"), ContainSubstring("aof_rewrite_in_progress:0")))
		Expect(filepath.Join(s.paths.Data, "dump.rdb")).To(BeARegularFile())
		Expect(filepath.Join(s.paths.Data, "appendonlydir")).To(BeADirectory())

		seen := 0
		Expect(filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || path == dir {
				return err
			}
			info, err := d.Info()
			Expect(err).NotTo(HaveOccurred())
			mode := info.Mode().Perm()
			switch {
			case d.IsDir():
				Expect(mode).To(Equal(fs.FileMode(0o700)), path)
			case path == s.paths.Log:
				Expect(mode&^0o640).To(BeZero(), "%s is %v", path, mode)
			default:
				Expect(mode).To(Equal(fs.FileMode(0o600)), "%s is %v", path, mode)
			}
			seen++
			return nil
		})).To(Succeed())
		Expect(seen).To(BeNumerically(">=", 8))
	})
})
