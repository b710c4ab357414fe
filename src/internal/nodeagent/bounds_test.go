package nodeagent_test

import (
	"context"
	"io/fs"
	"log/slog"
	"path/filepath"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/cgroup"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
)

// endlessScript writes, then loops: redis-server answers BUSY to everyone
// and, as the script wrote, refuses SCRIPT KILL (UNKILLABLE).
const endlessScript = "redis.call('set', KEYS[1], 'x') while true do end"

var _ = Describe("a node's bounds", func() {
	var nd *node
	var group *cgroup.Group
	BeforeEach(func() {
		cfg := nodeConfig(tempDir(), "127.0.0.1")
		cfg.Cgroups = cgroup.Required
		nd = startNode(cfg)
		t, err := cgroup.Open(cgroup.Required, cgroup.Name(cfg.DataDir), slog.New(slog.DiscardHandler))
		Expect(err).NotTo(HaveOccurred())
		group = t.Group(cfg.NodeID)
		DeferCleanup(func() {
			nd.stop()
			for _, d := range group.Dirs() {
				Expect(filepath.Dir(d)).NotTo(BeADirectory(), "no cgroup left behind")
			}
		})
	})

	It("runs redis-server in its cgroup with the memory ceiling of its maxmemory", func(ctx SpecContext) {
		Expect(group.Contains(nd.pid())).To(BeTrue())
		lim, err := group.Limits()
		Expect(err).NotTo(HaveOccurred())
		Expect(lim.Memory).To(Equal(redisconf.MemoryCeiling(64 << 20)))
	})

	It("resets a node stuck in an endless script on the first request", func(ctx SpecContext) {
		nd.claim(ctx, "inst-1")
		c, _ := nd.bind(ctx, "inst-1", "b1")
		c.Options().ReadTimeout = time.Minute
		go func() { _ = c.Eval(context.Background(), endlessScript, []string{"k"}).Err() }()
		Eventually(func() error { return nd.admin(nd.adminPassword()).Ping(ctx).Err() }).
			WithTimeout(30 * time.Second).Should(MatchError(ContainSubstring("BUSY")))
		pid := nd.pid()

		Expect(nd.client.Delete(ctx, "inst-1")).To(Succeed())
		Expect(syscall.Kill(pid, 0)).To(MatchError(syscall.ESRCH))
		Expect(nd.node(ctx).State).To(Equal(agentapi.NodeFree))
		Expect(group.Contains(nd.pid())).To(BeTrue(), "the new server runs in the cgroup")
		Expect(nd.admin(nd.adminPassword()).DBSize(ctx).Val()).To(BeZero())
	}, NodeTimeout(25*time.Second)) // a graceful stop waits 30s

	It("keeps its files private: dirs 0700, data files 0600, logs 0640 at most", func(ctx SpecContext) {
		nd.claim(ctx, "inst-1")
		c, _ := nd.bind(ctx, "inst-1", "b1")
		Expect(c.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		admin := nd.admin(nd.adminPassword())
		Expect(admin.BgSave(ctx).Err()).To(Succeed())
		Eventually(func() string { return admin.Info(ctx, "persistence").Val() }).Should(ContainSubstring("rdb_bgsave_in_progress:0"))
		Expect(filepath.Join(nd.cfg.DataDir, "data", "dump.rdb")).To(BeARegularFile())
		root := nd.cfg.DataDir
		Expect(filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			Expect(err).NotTo(HaveOccurred())
			mode := info.Mode().Perm()
			switch {
			case d.IsDir():
				Expect(mode).To(Equal(fs.FileMode(0o700)), path)
			case filepath.Dir(path) == nd.cfg.LogDir:
				Expect(mode&^0o640).To(BeZero(), "%s is %v", path, mode)
			case filepath.Ext(path) == ".crt" || filepath.Ext(path) == ".key":
				// The test's certificates, which BOSH renders in the job's config.
			default:
				Expect(mode).To(Equal(fs.FileMode(0o600)), "%s is %v", path, mode)
			}
			return nil
		})).To(Succeed())
	})
})
