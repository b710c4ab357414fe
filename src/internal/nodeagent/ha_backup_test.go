package nodeagent_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"syscall"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/backup"
	"github.com/cf-redis/redis-for-cf/src/internal/nodeagent"
)

// schedules runs the scheduled backups of every node of h until stop is
// called, which waits for them to end.
func schedules(h *haGroup) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, len(h.nodes))
	for _, nd := range h.nodes {
		go func() { done <- nd.n.RunBackups(ctx) }()
	}
	return func() {
		cancel()
		for range h.nodes {
			Expect(<-done).To(Succeed())
		}
	}
}

var _ = Describe("backups of an HA group", func() {
	It("are taken once per run, from the first follower, follow a failover, and restore the leader's data", func(ctx SpecContext) {
		dest := backup.Destination{Local: &backup.Local{Path: tempDir()}, PathPrefix: "scheduled"}
		logs := []*gbytes.Buffer{gbytes.NewBuffer(), gbytes.NewBuffer(), gbytes.NewBuffer()}
		h := formGroupWith(ctx, groupOptions{
			config: func(cfg *nodeagent.Config) {
				cfg.Backups = &backup.Schedule{Schedule: "@every 1s", Destination: dest, Retention: backup.Retention{KeepNewest: 1000}}
			},
			logs: []io.Writer{logs[0], logs[1], logs[2]},
		})
		leader := h.awaitFollowers(ctx)
		pw := h.bindAll(ctx, "app")
		app := h.nodes[0].tenant("app", pw)
		firstWrite(ctx, app, "k0", "0")
		for i := range 100 {
			Expect(app.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err()).To(Succeed())
		}
		Expect(app.Do(ctx, "WAIT", 2, 5000).Int()).To(Equal(2))
		st, err := dest.Open()
		Expect(err).NotTo(HaveOccurred())
		// okLines counts the backups node i logged as made.
		okLines := func(i int) int {
			return strings.Count(string(logs[i].Contents()), "backup of instance "+h.id+" (node "+h.nodes[i].cfg.NodeID+"): ok")
		}
		stored := func(prefix string) int {
			bs, err := backup.List(ctx, st, prefix, h.id)
			Expect(err).NotTo(HaveOccurred())
			return len(bs)
		}

		// settled waits until the members agree that member i backs up:
		// each asks its own Sentinel who is up, and Sentinels learn of a
		// change within a ping or two of each other.
		settled := func(i int) {
			GinkgoHelper()
			want := []bool{true, true, true}
			want[i] = false
			Eventually(func() []bool {
				var skips []bool
				for _, nd := range h.nodes {
					l, err := nd.client.List(ctx)
					if err != nil || len(l) != 1 {
						return nil
					}
					skips = append(skips, l[0].BackupSkip != "")
				}
				return skips
			}).WithContext(ctx).WithTimeout(failover).Should(Equal(want), "who skips")
		}
		settled(1)

		By("the backup errand, through every member's API, backs the group up once, from the second member")
		errand := backup.ErrandConfig{Destination: backup.Destination{Local: dest.Local, PathPrefix: "errand"}}
		for _, nd := range h.nodes {
			errand.Nodes = append(errand.Nodes, backup.NodeSource{ID: nd.cfg.NodeID,
				ClientConfig: agentapi.ClientConfig{URL: nd.url, Credentials: nd.cfg.Credentials, CACert: ca.PEM}})
		}
		Expect(errand.Validate()).To(Succeed())
		sources, err := errand.Sources()
		Expect(err).NotTo(HaveOccurred())
		var out strings.Builder
		r := backup.Runner{Store: st, Prefix: "errand", Out: &out}
		sum := r.Run(ctx, sources)
		Expect(sum.Failed()).To(BeZero(), out.String())
		Expect(sum.Results).To(HaveExactElements(HaveField("Source", "node "+h.nodes[1].cfg.NodeID)), out.String())
		Expect(sum.Skipped).To(ConsistOf(h.id+" (node "+h.nodes[0].cfg.NodeID+")", h.id+" (node "+h.nodes[2].cfg.NodeID+")"))
		Expect(out.String()).To(ContainSubstring("(node " + h.nodes[0].cfg.NodeID + "): skipped, another member of its HA group backs it up: this node is the leader; " + h.nodes[1].addr() + ", the first follower in member order that Sentinel sees up, backs the group up"))
		Expect(out.String()).To(ContainSubstring("(node " + h.nodes[2].cfg.NodeID + "): skipped, another member of its HA group backs it up: this node is a follower; " + h.nodes[1].addr()))
		Expect(stored("errand")).To(Equal(1))

		By("the schedules of all three: only the first follower backs up, the others say they leave it")
		stop := schedules(h)
		Eventually(okLines).WithArguments(1).WithTimeout(failover).Should(BeNumerically(">=", 2))
		stop()
		Expect(okLines(0)).To(BeZero(), "the leader backs up nothing")
		Expect(okLines(2)).To(BeZero(), "the other follower backs up nothing")
		Expect(string(logs[0].Contents())).To(ContainSubstring("skipped, another member of its HA group backs it up: this node is the leader"))
		Expect(string(logs[2].Contents())).To(ContainSubstring("skipped, another member of its HA group backs it up: this node is a follower"))
		Expect(stored("scheduled")).To(Equal(okLines(1)), "one backup per run")

		By("after kill -9 of the leader's server, the choice follows the Sentinels' new view")
		Expect(syscall.Kill(h.nodes[0].pid(), syscall.SIGKILL)).To(Succeed())
		Eventually(h.leaderAt).WithContext(ctx).WithArguments(1).WithTimeout(failover).ShouldNot(Equal(leader))
		promoted, err := h.leaderAt(ctx, 1)
		Expect(err).NotTo(HaveOccurred())
		Eventually(role).WithContext(ctx).WithArguments(h.nodes[0]).WithTimeout(failover).Should(Equal("follower of " + promoted + " link up"))
		fc := redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: h.g.MasterName, SentinelAddrs: h.sentinelAddrs(),
			SentinelUsername: "app", SentinelPassword: pw, Username: "app", Password: pw,
		})
		DeferCleanup(fc.Close)
		Eventually(func() error { return fc.Set(ctx, "after", "failover", 0).Err() }).WithContext(ctx).WithTimeout(failover).Should(Succeed())
		Expect(fc.Do(ctx, "WAIT", 2, 5000).Int()).To(Equal(2))
		By("the errand restores the group on its leader, the new one")
		target, err := errand.Target(ctx, h.id)
		Expect(err).NotTo(HaveOccurred())
		Expect(target.Name).To(Equal("node " + h.nodes[slices.IndexFunc(h.nodes, func(nd *node) bool { return nd.addr() == promoted })].cfg.NodeID))

		settled(0)
		before1, before := okLines(1), stored("scheduled")
		stop = schedules(h)
		Eventually(okLines).WithArguments(0).WithTimeout(failover).Should(BeNumerically(">=", 2), "the old leader, now the first follower, backs up")
		stop()
		Expect(okLines(1)).To(Equal(before1), "the second member no longer backs up")
		Expect(okLines(2)).To(BeZero())
		Expect(stored("scheduled")).To(Equal(before + okLines(0)))

		By("the newest backup, taken on a follower, holds the leader's data")
		fresh := startNode(nodeConfig(tempDir(), "127.0.0.4"))
		fresh.claim(ctx, h.id)
		latest, err := backup.Resolve(ctx, st, dest.PathPrefix, h.id, "latest")
		Expect(err).NotTo(HaveOccurred())
		body, err := st.Get(ctx, latest.Name)
		Expect(err).NotTo(HaveOccurred())
		defer body.Close()
		res, err := fresh.client.Restore(ctx, h.id, agentapi.RestoreRequest{FromInstance: h.id}, body)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Keys).To(BeEquivalentTo(101))
		restored := fresh.admin(fresh.adminPassword())
		Expect(restored.Get(ctx, "after").Val()).To(Equal("failover"))
		Expect(restored.Get(ctx, "k99").Val()).To(Equal("99"))

		By("while the first follower is down, agent and server, the other follower backs up")
		down := h.nodes[0]
		pid := down.pid()
		down.crash()
		Expect(syscall.Kill(pid, syscall.SIGKILL)).To(Succeed())
		var other *node
		for _, nd := range h.nodes[1:] {
			if nd.addr() != promoted {
				other = nd
			}
		}
		live := func() []backup.Source {
			var s []backup.Source
			for _, nd := range h.nodes[1:] {
				s = append(s, backup.SourceOf("node "+nd.cfg.NodeID, nd.client, 0))
			}
			return s
		}
		// Sentinel calls the follower down within a few seconds; until then
		// the live members leave the backup to it.
		Eventually(func() []backup.Result { return r.Run(ctx, live()).Results }).WithContext(ctx).WithTimeout(failover).
			Should(HaveExactElements(HaveField("Source", "node "+other.cfg.NodeID)))
		sum = r.Run(ctx, live())
		Expect(sum.Failed()).To(BeZero(), out.String())
		Expect(sum.Results).To(HaveExactElements(HaveField("Source", "node "+other.cfg.NodeID)), "one backup, from the follower that is up")
		Expect(sum.Skipped).To(HaveExactElements(HavePrefix(h.id+" (node ")), "the leader leaves it")
		startNode(down.cfg) // back, so the spec's cleanup stops what it runs
	})
})
