package deploylocal_test

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/release/localbosh"
)

// The dedicated-ha plan as manifests/operations/enable-ha-plan.yml deploys
// it: three node VMs with Sentinel beside each redis-server. Losing the
// leader's whole VM (every process killed at once and its network gone, as
// an IaaS failure does) makes Sentinel promote a follower; the app's
// Sentinel-aware client writes again; and once the VM is created again on
// its disk (as BOSH's resurrector does), its node comes back as a follower
// of the new leader with the data.
var _ = Describe("a dedicated-ha instance on a local deployment", Ordered, func() {
	var (
		ctx = context.Background()
		d   *localbosh.Director
		b   *localbosh.Broker
	)

	BeforeAll(func() {
		state := GinkgoT().TempDir()
		takeMachine(state, &d)
		ops, err := filepath.Abs("../../../manifests/operations/enable-ha-plan.yml")
		Expect(err).NotTo(HaveOccurred())
		d, err = localbosh.New(localbosh.Options{Name: name, StateDir: state, OpsFiles: []string{ops},
			Out: GinkgoWriter, RedisPackage: redisPackage()})
		Expect(err).NotTo(HaveOccurred())
		start := time.Now()
		Expect(d.Deploy(ctx)).To(Succeed())
		AddReportEntry("deploy with enable-ha-plan.yml", time.Since(start).Round(100*time.Millisecond).String())
		b, err = d.Broker()
		Expect(err).NotTo(HaveOccurred())
	})

	It("fails over when the leader's VM is lost, and takes the recreated VM back as a follower with the data", func() {
		svc, err := b.Catalog(ctx)
		Expect(err).NotTo(HaveOccurred())
		var plan localbosh.Plan
		for _, p := range svc.Plans {
			if p.Name == "dedicated-ha" {
				plan = p
			}
		}
		Expect(plan.ID).NotTo(BeEmpty(), "the catalog offers dedicated-ha: %+v", svc.Plans)
		Expect(b.Provision(ctx, "ha-1", svc.ID, plan.ID, nil)).To(Succeed())
		creds, err := b.Bind(ctx, "ha-1", "ha-1-app", svc.ID, plan.ID)
		Expect(err).NotTo(HaveOccurred())
		Expect(creds.MasterName).NotTo(BeEmpty())
		Expect(creds.Sentinels).To(HaveLen(3))

		// member is a plain client of node i's redis-server with the
		// binding's user, which every member has.
		member := func(i int) *redis.Client {
			ip, err := d.IP("redis-node", i)
			Expect(err).NotTo(HaveOccurred())
			c := creds
			c.Host = ip
			rc := d.Redis(c)
			DeferCleanup(rc.Close)
			return rc
		}
		role := func(i int) string {
			r, err := member(i).Do(ctx, "ROLE").Slice()
			if err != nil || len(r) == 0 {
				return fmt.Sprintf("no answer: %v", err)
			}
			return fmt.Sprint(r[0])
		}
		leader := -1
		for i := range 3 {
			if role(i) == "master" {
				Expect(leader).To(Equal(-1), "two leaders")
				leader = i
			}
		}
		Expect(leader).NotTo(Equal(-1), "no member leads")

		fc, err := d.Failover(creds)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(fc.Close)
		const keys = 500
		pipe := fc.Pipeline()
		for k := range keys {
			pipe.Set(ctx, fmt.Sprintf("key:%d", k), k, 0)
		}
		_, err = pipe.Exec(ctx)
		Expect(err).NotTo(HaveOccurred())
		// Both followers hold every write before the leader goes.
		Expect(fc.Do(ctx, "WAIT", 2, 10000).Val()).To(BeEquivalentTo(2))

		Expect(d.KillVM(ctx, "redis-node", leader)).To(Succeed())
		lost := time.Now()
		Eventually(func() error { return fc.Set(ctx, "after-failover", "yes", 0).Err() }).
			WithTimeout(90 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
		AddReportEntry("first write through the FailoverClient after the leader's VM was lost", time.Since(lost).Round(100*time.Millisecond).String())
		Expect(fc.DBSize(ctx).Val()).To(BeEquivalentTo(keys+1), "every acknowledged write survived")
		var promoted []int
		for i := range 3 {
			if i != leader && role(i) == "master" {
				promoted = append(promoted, i)
			}
		}
		Expect(promoted).To(HaveLen(1), "one follower leads")

		// The VM comes back on its disk: its node follows the new leader,
		// never leads beside it, and gets what was written meanwhile.
		Expect(d.Deploy(ctx)).To(Succeed())
		Eventually(func() string { return role(leader) }).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Equal("slave"))
		Eventually(func() (string, error) { return member(leader).Get(ctx, "after-failover").Result() }).
			WithTimeout(time.Minute).WithPolling(time.Second).Should(Equal("yes"))
		Expect(member(leader).DBSize(ctx).Val()).To(BeEquivalentTo(keys + 1))
		Expect(role(promoted[0])).To(Equal("master"))
		Expect(fc.Set(ctx, "after-return", "yes", 0).Err()).To(Succeed())

		Expect(b.Unbind(ctx, "ha-1", "ha-1-app", svc.ID, plan.ID)).To(Succeed())
		Expect(b.Deprovision(ctx, "ha-1", svc.ID, plan.ID)).To(Succeed())
	})
})
