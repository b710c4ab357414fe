package supervisor_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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

var _ = Describe("a Supervisor with a cgroup of a tree keeping spares", func() {
	It("runs the program in the spare's waiting shell, in the group with its limits from its first instruction, and the tree makes a new spare", func(ctx SpecContext) {
		in := newInstance()
		logger := slog.New(slog.NewTextHandler(GinkgoWriter, nil))
		tree, err := cgroup.Open(cgroup.Required, cgroup.Name(in.dir), logger)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { Expect(tree.Destroy()).To(Succeed()) })
		tree.KeepSpares(1, logger)
		if tree.Version() != 1 {
			// v2 clones each process straight into its cgroup: no spares.
			Consistently(func() []string { return spares(tree) }).WithTimeout(time.Second).Should(BeEmpty())
			return
		}
		var held []string
		Eventually(func() []string { held = spares(tree); return held }).WithTimeout(time.Minute).Should(HaveLen(1))
		pids := procsOf(tree.Dirs()[0], held[0])
		Expect(pids).To(HaveLen(1))

		g := tree.Group("server")
		const ceiling = 96 << 20
		Expect(g.Create(ceiling)).To(Succeed())
		limit := filepath.Join(g.Dirs()[0], "memory.limit_in_bytes")
		seen := filepath.Join(in.dir, "seen")
		s := start(ctx, supervisor.Config{
			Path: "/bin/sh",
			// Its first act: what cgroups it is in, and its memory ceiling.
			Args:    []string{"-c", "cat /proc/self/cgroup " + limit + " > " + seen + ".tmp && mv " + seen + ".tmp " + seen + " && exec sleep 600"},
			Dir:     in.dir,
			LogFile: in.logFile,
			Cgroup:  g,
		})
		Expect(s.Status().Pid).To(Equal(pids[0]), "the spare's shell runs the program")
		Eventually(func() string { b, _ := os.ReadFile(seen); return string(b) }).WithTimeout(time.Minute).Should(And(
			MatchRegexp(`(?m):memory:/.*/`+regexp.QuoteMeta(filepath.Base(tree.Dirs()[0]))+`/server$`),
			MatchRegexp(`(?m):cpu(,cpuacct)?:/.*`+regexp.QuoteMeta(filepath.Base(tree.Dirs()[1]))+`/server$`),
			MatchRegexp(`(?m)^`+strconv.Itoa(ceiling)+`$`),
		))
		Expect(g.Contains(s.Status().Pid)).To(BeTrue())
		g.Started()
		Eventually(func() []string { return spares(tree) }).WithTimeout(time.Minute).Should(HaveLen(1), "a new spare replaces the one taken")
		Expect(spares(tree)).NotTo(Equal(held))
	}, NodeTimeout(3*time.Minute))
})

// spares lists the spare cgroups in the tree's memory hierarchy that hold
// their shell.
func spares(tree *cgroup.Tree) []string {
	var names []string
	entries, _ := os.ReadDir(tree.Dirs()[0])
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".spare-") && len(procsOf(tree.Dirs()[0], e.Name())) > 0 {
			names = append(names, e.Name())
		}
	}
	return names
}

// procsOf lists the pids in the cgroup name under dir.
func procsOf(dir, name string) []int {
	b, _ := os.ReadFile(filepath.Join(dir, name, "cgroup.procs"))
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}
