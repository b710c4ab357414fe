package dedicatedvm_test

import (
	crand "crypto/rand"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// tenantKeys is how many keys each tenant of the crash specs writes, besides
// its "owner" key.
const tenantKeys = 200

// tenant is an instance as its app sees it.
type tenant struct {
	id    string
	creds map[string]any
	rc    *redis.Client
}

// moveIn binds a new instance, checks that it is empty (the node was not
// handed out dirty) and fills it with the tenant's keys.
func moveIn(sys *systemtest.System, id string) *tenant {
	GinkgoHelper()
	code, body := systemspec.Bind(sys, id, "b-"+id, systemtest.DedicatedPlanID)
	Expect(code).To(Equal(http.StatusCreated), "%v", body)
	t := &tenant{id: id, creds: systemspec.Credentials(body)}
	t.rc = client(t.creds)
	Expect(t.rc.DBSize(ctx).Val()).To(BeZero(), "instance %s was handed a node holding keys", id)
	Expect(t.rc.Set(ctx, "owner", id, 0).Err()).To(Succeed())
	systemspec.WriteKeys(ctx, t.rc, id, tenantKeys)
	return t
}

// expectOwnData checks that a tenant still sees exactly its own keys: no one
// else was handed its node, and nothing of its node was wiped.
func (t *tenant) expectOwnData() {
	GinkgoHelper()
	Expect(t.rc.Get(ctx, "owner").Val()).To(Equal(t.id))
	Expect(t.rc.DBSize(ctx).Val()).To(Equal(int64(tenantKeys + 1)))
}

// timeRequests times one provision (to its answer) and one delete (to the
// end of its reset) on an idle system, to know when a kill falls in the
// middle of one.
func timeRequests(sys *systemtest.System) (provisionTime, deleteTime time.Duration) {
	GinkgoHelper()
	start := time.Now()
	code, body := systemspec.Provision(sys, "timed", systemtest.DedicatedPlanID, nil)
	provisionTime = time.Since(start)
	Expect(code).To(Equal(http.StatusCreated), "%v", body)
	moveIn(sys, "timed")
	start = time.Now()
	Expect(systemspec.Deprovision(sys, "timed", systemtest.DedicatedPlanID)).To(Equal(http.StatusOK))
	return provisionTime, time.Since(start)
}

var _ = Describe("kill -9 of the broker or a node agent in the middle of claims and resets", func() {
	It("never leaves a node held twice, lost from the pool or handed out dirty", func() {
		sys := startSystem(3)
		rng := rand.New(rand.NewPCG(uint64(GinkgoRandomSeed()), 3))
		live := map[string]*tenant{}
		var gone []*tenant

		// Each round sends one request as Cloud Controller would, kills one
		// process with -9 at a random moment while it is served (or just
		// after), starts the process again, and lets Cloud Controller finish:
		// a provision without an answer is sent again or, in every other
		// pair of provisions, followed by its orphan-mitigation delete; a
		// delete is sent again until the instance is gone. The victim
		// alternates between the broker and the agent of the node concerned,
		// and the moment of the kill comes from the suite's random seed.
		provisionTime, deleteTime := timeRequests(sys)
		By(fmt.Sprintf("a provision takes %v and a delete, to its end, %v: the kills fall within those", provisionTime, deleteTime))
		interrupted := 0
		const rounds = 16
		for round := range rounds {
			op := "provision"
			if (round/2)%2 == 1 && len(live) > 0 || len(live) == len(sys.Nodes) {
				op = "delete"
			}
			var id string
			var target int
			if op == "provision" {
				id = fmt.Sprintf("k%d", round)
				// The broker tries free nodes in the config's order.
				states := poolStates(sys)
				target = slices.IndexFunc(sys.Nodes, func(p *systemtest.Process) bool { return states[p.Name] == "free" })
			} else {
				ids := slices.Sorted(maps.Keys(live))
				id = ids[rng.IntN(len(ids))]
				target = nodeOf(sys, id)
			}
			victim := sys.Broker
			if round%2 == 1 {
				victim = sys.Nodes[target]
			}
			span := provisionTime
			if op == "delete" {
				span = deleteTime
			}
			delay := time.Duration(rng.Int64N(int64(span)))
			By(fmt.Sprintf("round %d: %s %s, kill -9 of %s after %v", round, op, id, victim.Name, delay))

			a := systemspec.KillDuring(victim, delay, func() (int, map[string]any, error) {
				if op == "provision" {
					return sys.OSB("PUT", systemspec.ProvisionPath(id), systemspec.ProvisionBody(systemtest.DedicatedPlanID, nil))
				}
				return sys.OSB("DELETE", systemspec.DeletePath(id, systemtest.DedicatedPlanID), nil)
			})
			cut := a.Err != nil || a.Code >= 500 || op == "delete" && systemspec.NodeAgentState(sys, target).State != "free"
			if cut {
				interrupted++
			}
			Expect(victim.Start()).To(Succeed())
			GinkgoWriter.Printf("round %d: answer %d %v %v; cut short: %v\n", round, a.Code, a.Body, a.Err, cut)

			if op == "provision" {
				switch {
				case a.Err == nil && (a.Code == http.StatusCreated || a.Code == http.StatusOK):
				case a.Err == nil && a.Code < 500:
					Fail(fmt.Sprintf("provision %s answered %d: %v", id, a.Code, a.Body))
				case (round/4)%2 == 0:
					systemspec.ProvisionUntilDone(sys, id, systemtest.DedicatedPlanID)
				default:
					systemspec.DeleteUntilGone(sys, id, systemtest.DedicatedPlanID)
					id = ""
				}
				if id != "" {
					live[id] = moveIn(sys, id)
				}
			} else {
				systemspec.DeleteUntilGone(sys, id, systemtest.DedicatedPlanID)
				gone = append(gone, live[id])
				delete(live, id)
			}

			expectSettled(sys)
			expectPoolConsistent(sys, slices.Collect(maps.Keys(live))...)
			for _, t := range live {
				t.expectOwnData()
			}
			for _, t := range gone {
				Expect(t.rc.Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")), "old credentials of %s", t.id)
			}
		}

		// Reported, not asserted: where a kill falls depends on the machine.
		By(fmt.Sprintf("%d of %d rounds killed a process before its provision was answered or before its reset ended", interrupted, rounds))

		By("claiming every node: none was lost, none is handed out dirty")
		for i := 0; len(live) < len(sys.Nodes); i++ {
			id := fmt.Sprintf("final-%d", i)
			code, body := systemspec.Provision(sys, id, systemtest.DedicatedPlanID, nil)
			Expect(code).To(Equal(http.StatusCreated), "%v", body)
			live[id] = moveIn(sys, id)
		}
		code, body := systemspec.Provision(sys, "one-too-many", systemtest.DedicatedPlanID, nil)
		Expect(code).To(Equal(http.StatusUnprocessableEntity), "%v", body)
		for id, t := range live {
			t.expectOwnData()
			Expect(systemspec.Deprovision(sys, id, systemtest.DedicatedPlanID)).To(Equal(http.StatusOK))
		}
		Expect(poolStates(sys)).To(HaveEach("free"))
	})
})

var _ = Describe("kill -9 of a node agent during the reset of a node holding 100 MB", func() {
	DescribeTable("finishes the delete once the agent is back: the node is free and empty",
		func(waitForReset bool) {
			sys := startSystemWith(systemtest.Options{Nodes: 1, NodeMemoryMB: 256})
			code, body := systemspec.Provision(sys, "big", systemtest.DedicatedPlanID, nil)
			Expect(code).To(Equal(http.StatusCreated), "%v", body)
			_, b := systemspec.Bind(sys, "big", "b", systemtest.DedicatedPlanID)
			old := systemspec.Credentials(b)
			rc := client(old)
			// Random, so that the RDB preamble of an AOF rewrite cannot
			// compress it: 100 MB in memory is about 100 MB on disk.
			value := make([]byte, 1<<20)
			_, _ = crand.Read(value)
			_, err := rc.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i := range 100 {
					p.Set(ctx, fmt.Sprintf("big:%d", i), value, 0)
				}
				return nil
			})
			Expect(err).NotTo(HaveOccurred())
			systemspec.WaitForAOF()
			data := filepath.Join(sys.NodeDirs[0], "data")
			Expect(dirSize(data)).To(BeNumerically(">", 100<<20))

			code, body = systemspec.OSB(sys, "DELETE", systemspec.DeletePath("big", systemtest.DedicatedPlanID), nil)
			Expect(code).To(Equal(http.StatusAccepted), "%v", body)
			if waitForReset {
				Eventually(func() string { return systemspec.NodeAgentState(sys, 0).State }).
					WithPolling(time.Millisecond).Should(Equal("resetting"))
			}
			sys.Nodes[0].Kill9()
			By(fmt.Sprintf("killed the agent in state %q with %d MB in its data directory", systemspec.NodeAgentState(sys, 0).State, dirSize(data)>>20))
			Expect(sys.Nodes[0].Start()).To(Succeed())

			systemspec.DeleteUntilGone(sys, "big", systemtest.DedicatedPlanID)
			Expect(systemspec.Pool(sys)["node-0"]).To(HaveKeyWithValue("state", "free"))
			Expect(systemspec.NodeAgentState(sys, 0).State).To(Equal("free"))
			Expect(dirSize(data)).To(BeNumerically("<", 1<<20), "the tenant's files are gone")
			Expect(client(old).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))

			code, body = systemspec.Provision(sys, "next", systemtest.DedicatedPlanID, nil)
			Expect(code).To(Equal(http.StatusCreated), "%v", body)
			_, b = systemspec.Bind(sys, "next", "b", systemtest.DedicatedPlanID)
			Expect(client(systemspec.Credentials(b)).DBSize(ctx).Val()).To(BeZero(), "the next tenant sees zero keys")
			expectPoolConsistent(sys, "next")
		},
		Entry("as soon as the delete is accepted", false),
		Entry("once the agent recorded the reset as begun", true),
	)
})

var _ = Describe("kill -9 of the redis-server of a claimed node", func() {
	It("is back within seconds with the data written before the kill, and the pool is unchanged", func() {
		sys := startSystem(3)
		for _, id := range []string{"r0", "r1"} {
			code, body := systemspec.Provision(sys, id, systemtest.DedicatedPlanID, nil)
			Expect(code).To(Equal(http.StatusCreated), "%v", body)
		}
		i := nodeOf(sys, "r1")
		_, b := systemspec.Bind(sys, "r1", "b", systemtest.DedicatedPlanID)
		rc := client(systemspec.Credentials(b))
		systemspec.WriteKeys(ctx, rc, "before-kill", 1000)
		systemspec.WaitForAOF()
		before := systemspec.Pool(sys)

		pid := systemspec.RedisPid(sys, i)
		Expect(serverPid(ctx, rc)).To(Equal(pid))
		Expect(syscall.Kill(pid, syscall.SIGKILL)).To(Succeed())
		Eventually(func() (int, error) { return serverPid(ctx, rc) }).WithTimeout(10 * time.Second).
			Should(SatisfyAll(BeNumerically(">", 0), Not(Equal(pid))))
		systemspec.ExpectKeys(ctx, rc, "before-kill", 1000)
		Expect(systemspec.RedisPid(sys, i)).NotTo(Equal(pid))

		code, body := systemspec.OSB(sys, "GET", "/v2/service_instances/r1", nil)
		Expect(code).To(Equal(http.StatusOK))
		Expect(systemspec.Attributes(body)["keys"]).To(BeNumerically("==", 1000))
		after := expectPoolConsistent(sys, "r0", "r1")
		Expect(after).To(Equal(before))
	})
})
