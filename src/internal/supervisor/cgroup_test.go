package supervisor_test

import (
	"context"
	"log/slog"
	"os"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/cgroup"
	"github.com/cf-redis/redis-for-cf/src/internal/supervisor"
)

// endlessScript writes, then loops: redis-server answers BUSY to everyone
// and, as the script wrote, refuses SCRIPT KILL (UNKILLABLE).
const endlessScript = "redis.call('set', KEYS[1], 'x') while true do end"

// hogScript writes 1000 values of 1 MB from one script: maxmemory is only
// checked before a script, not while it runs.
const hogScript = "local v = string.rep('x', 1048576) for i = 1, 1000 do redis.call('set', 'k' .. i, v) end return 1"

var _ = Describe("Supervisor.Kill", func() {
	It("kills a server too busy to stop at once, without the grace of Stop", func(ctx SpecContext) {
		in := newInstance()
		cfg := in.config()
		cfg.StopTimeout = time.Hour // Stop would wait for it
		s := start(ctx, cfg)
		pid := s.Status().Pid
		go func() {
			defer GinkgoRecover()
			c := in.client
			_ = c.Eval(context.Background(), endlessScript, []string{"k"}).Err()
		}()
		// BUSY once the script ran busy-reply-threshold (5s).
		Eventually(func() error { _, _, err := in.serverInfo(ctx); return err }).WithTimeout(30 * time.Second).Should(MatchError(ContainSubstring("BUSY")))

		Expect(s.Kill(ctx)).To(Succeed())
		Expect(gone(pid)).To(BeTrue())
		Expect(in.pidFile).NotTo(BeAnExistingFile())
		Expect(s.Status().Supervising).To(BeFalse())
		Expect(s.Kill(ctx)).To(Succeed(), "killing what is not supervised does nothing")
	}, NodeTimeout(time.Minute))
})

var _ = Describe("a Supervisor with a cgroup", func() {
	It("starts the server in it, restarts it when the kernel kills it at its memory ceiling, and says why", func(ctx SpecContext) {
		in := newInstance()
		conf, err := os.ReadFile(in.conf)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(in.conf, append(conf, "maxmemory 64mb\n"...), 0o600)).To(Succeed())

		tree, err := cgroup.Open(cgroup.Required, cgroup.Name(in.dir), slog.New(slog.NewTextHandler(GinkgoWriter, nil)))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(tree.Destroy()).To(Succeed()) })
		g := tree.Group("server")
		Expect(g.Create(3*64<<20 + 64<<20)).To(Succeed())

		cfg := in.config()
		cfg.Cgroup = g
		var ex exits
		cfg.OnExit = ex.record
		s := start(ctx, cfg)
		pid := s.Status().Pid
		Expect(g.Contains(pid)).To(BeTrue())

		c := redis.NewClient(&redis.Options{Addr: in.client.Options().Addr, MaxRetries: -1, ReadTimeout: time.Minute})
		DeferCleanup(c.Close)
		err = c.Eval(ctx, hogScript, nil).Err()
		Expect(err).To(HaveOccurred(), "the connection dies with the server")
		Eventually(func() int { return s.Status().Restarts }).Should(Equal(1))
		Eventually(func() bool { return s.Status().Running }).Should(BeTrue())
		st := s.Status()
		Expect(st.LastExit).To(ContainSubstring("killed by the kernel for exceeding its memory ceiling"))
		Expect(ex.count()).To(Equal(1))
		errs, _ := ex.snapshot()
		Expect(errs[0]).To(MatchError(supervisor.ErrMemoryCeiling))
		Expect(g.Contains(st.Pid)).To(BeTrue(), "the new server runs in the cgroup too")
		Expect(gone(pid)).To(BeTrue())
	}, NodeTimeout(2*time.Minute))
})
