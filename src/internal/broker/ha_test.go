package broker

import (
	"fmt"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/sentinel"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

const haPlanID = "ha-plan"

// newHAFixture is newFixture with the dedicated-ha plan on a pool of five
// nodes: n0 and n1 of zone z1, n2 and n3 of z2, n4 of z3. Its in-memory
// nodes run no Sentinel, so the broker's question of who leads is answered
// by the fixture (fixture.leader, member 0 unless a test says otherwise);
// the integration suite (src/integration/dedicatedha) runs real Sentinels.
func newHAFixture() *fixture {
	GinkgoHelper()
	f := newFixture()
	azs := map[string]string{"n0": "z1", "n1": "z1", "n2": "z2", "n3": "z2", "n4": "z3"}
	f.cfg.DedicatedVM.Nodes = nil
	for i := range 5 {
		id := fmt.Sprintf("n%d", i)
		if f.agents[id] == nil {
			f.agents[id] = newMemNode(id, fmt.Sprintf("10.0.1.%d", 10+i))
		}
		f.cfg.DedicatedVM.Nodes = append(f.cfg.DedicatedVM.Nodes, NodeConfig{ID: id, AZ: azs[id], ClientConfig: agentapi.ClientConfig{
			URL: "https://" + id, Credentials: agentapi.Credentials{Username: "u", Password: "p"}, CACert: "CA"}})
	}
	f.cfg.DedicatedHA = &DedicatedHAPlan{PlanID: haPlanID}
	Expect(f.cfg.Validate()).To(Succeed())
	leader := 0
	f.leader = &leader
	f.open()
	return f
}

// claimedBy lists the nodes the pool records as claimed by instance id.
func (f *fixture) claimedBy(id string) []string {
	GinkgoHelper()
	var out []string
	for _, n := range f.cfg.DedicatedVM.Nodes {
		if pn := f.pool(n.ID); pn.Instance == id && pn.State == poolClaimed {
			out = append(out, n.ID)
		}
	}
	return out
}

// freeNodes counts the pool's free nodes that the nodes agree are free.
func (f *fixture) freeNodes() int {
	GinkgoHelper()
	n := 0
	for _, c := range f.cfg.DedicatedVM.Nodes {
		st, _ := f.agents[c.ID].state()
		if f.pool(c.ID).State == poolFree {
			Expect(st).To(Equal(agentapi.NodeFree), "node %s", c.ID)
			n++
		}
	}
	return n
}

var _ = Describe("the dedicated-ha plan", func() {
	var f *fixture
	BeforeEach(func() { f = newHAFixture() })

	It("claims three nodes on three zones, forms the group on each and records it", func() {
		f.mustProvision("h1", haPlanID)
		r := f.record("h1")
		Expect(r.State).To(Equal(stateReady))
		Expect(r.HA.Nodes).To(Equal([]string{"n0", "n2", "n4"}))
		Expect(r.VM).To(Equal("n0"))
		Expect(f.claimedBy("h1")).To(ConsistOf("n0", "n2", "n4"))
		g := r.HA.Group
		Expect(g.Check()).To(Succeed())
		Expect(g.MasterName).To(Equal("redis-h1"))
		Expect(g.Members).To(Equal([]sentinel.Member{
			{Host: "10.0.1.10", Port: 6379, SentinelPort: sentinel.DefaultPort},
			{Host: "10.0.1.12", Port: 6379, SentinelPort: sentinel.DefaultPort},
			{Host: "10.0.1.14", Port: 6379, SentinelPort: sentinel.DefaultPort},
		}))
		for _, id := range r.HA.Nodes {
			Expect(f.agents[id].instance("h1").group).To(HaveValue(Equal(g)), "node %s", id)
		}
		Expect(f.agents["n1"].ids()).To(BeEmpty())
	})

	It("spreads the members over the zones of the nodes still free", func() {
		f.mustProvision("d1", dedicPlanID) // n0, of z1
		f.mustProvision("h1", haPlanID)
		Expect(f.record("h1").HA.Nodes).To(Equal([]string{"n1", "n2", "n4"}))
	})

	It("picks as many distinct zones as the free nodes have, then any node, in pool order", func() {
		node := func(id, az string) NodeConfig { return NodeConfig{ID: id, AZ: az} }
		Expect(spread([]NodeConfig{node("a", "z1"), node("b", "z1"), node("c", "z1"), node("d", "z2")})).To(Equal([]string{"a", "d", "b"}))
		Expect(spread([]NodeConfig{node("a", ""), node("b", ""), node("c", "z1"), node("d", "z2")})).To(Equal([]string{"c", "d", "a"}))
		Expect(spread([]NodeConfig{node("a", ""), node("b", ""), node("c", "")})).To(Equal([]string{"a", "b", "c"}))
	})

	It("answers 422, saying how many nodes are free, when fewer than three are, and keeps no record", func() {
		f.mustProvision("d1", dedicPlanID)
		f.mustProvision("d2", dedicPlanID)
		f.mustProvision("d3", dedicPlanID)
		code, body := f.provision("h1", haPlanID)
		Expect(code).To(Equal(http.StatusUnprocessableEntity))
		Expect(description(body)).To(ContainSubstring("The dedicated-ha plan is full: an instance needs 3 free dedicated VMs and the pool has 2 free (of 5)"))
		Expect(f.record("h1")).To(BeNil())
		Expect(f.freeNodes()).To(Equal(2))
	})

	It("shares the pool with the dedicated-vm plan: a dedicated-vm instance takes a node a group could have had", func() {
		f.mustProvision("h1", haPlanID)
		f.mustProvision("d1", dedicPlanID)
		Expect(f.record("d1").VM).To(Equal("n1"))
		code, _ := f.provision("h2", haPlanID)
		Expect(code).To(Equal(http.StatusUnprocessableEntity))
	})

	It("binds a user on every member, with the Sentinels, the master name and the current leader in the credentials", func() {
		f.mustProvision("h1", haPlanID)
		*f.leader = 1
		code, body := f.bind("h1", "b1", "app")
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		c := credentialsOf(body)
		Expect(c).To(HaveKeyWithValue("master_name", "redis-h1"))
		Expect(c).To(HaveKeyWithValue("host", "10.0.1.12"))
		Expect(c).To(HaveKeyWithValue("port", BeNumerically("==", 6379)))
		Expect(c["sentinels"]).To(Equal([]any{
			map[string]any{"host": "10.0.1.10", "port": float64(sentinel.DefaultPort)},
			map[string]any{"host": "10.0.1.12", "port": float64(sentinel.DefaultPort)},
			map[string]any{"host": "10.0.1.14", "port": float64(sentinel.DefaultPort)},
		}))
		for _, id := range []string{"n0", "n2", "n4"} {
			Expect(f.agents[id].instance("h1").passwords).To(HaveKeyWithValue("b1", c["password"]), "node %s", id)
		}
		code, got := f.call(http.MethodGet, instancePath("h1")+"/service_bindings/b1", nil)
		Expect(code).To(Equal(http.StatusOK))
		Expect(credentialsOf(got)).To(Equal(c))

		code, _ = f.unbind("h1", "b1")
		Expect(code).To(Equal(http.StatusOK))
		for _, id := range []string{"n0", "n2", "n4"} {
			Expect(f.agents[id].instance("h1").passwords).NotTo(HaveKey("b1"), "node %s", id)
		}
	})

	It("answers 503 to a bind when no Sentinel answers, and a retry hands out the same credentials", func() {
		f.mustProvision("h1", haPlanID)
		*f.leader = -1
		code, _ := f.bind("h1", "b1", "app")
		Expect(code).To(Equal(http.StatusServiceUnavailable))
		pw := f.record("h1").Bindings["b1"].Password
		*f.leader = 0
		code, body := f.bind("h1", "b1", "app")
		Expect(code).To(Equal(http.StatusCreated))
		Expect(credentialsOf(body)).To(HaveKeyWithValue("password", pw))
	})

	It("applies parameters on every member and refuses replica_of either way", func() {
		f.mustProvision("h1", haPlanID)
		code, body := f.update("h1", map[string]any{"parameters": map[string]any{"maxmemory-policy": "allkeys-lru"}})
		Expect(code).To(Equal(http.StatusOK), "%v", body)
		for _, id := range []string{"n0", "n2", "n4"} {
			Expect(f.agents[id].instance("h1").Parameters.MaxMemoryPolicy).To(Equal("allkeys-lru"), "node %s", id)
		}

		f.mustProvision("d1", dedicPlanID)
		code, body = f.update("h1", map[string]any{"parameters": map[string]any{"replica_of": "d1"}})
		Expect(code).To(Equal(http.StatusBadRequest))
		Expect(description(body)).To(ContainSubstring("is an HA group, whose leader Sentinel chooses among its own members: it cannot follow another leader"))
		code, body = f.update("d1", map[string]any{"parameters": map[string]any{"replica_of": "h1"}})
		Expect(code).To(Equal(http.StatusBadRequest))
		Expect(description(body)).To(ContainSubstring("instance h1 is an HA group, whose leader changes at a failover: it cannot lead instances outside its group"))
	})

	It("refuses a plan change between dedicated-vm and dedicated-ha, either way, with 422", func() {
		f.mustProvision("h1", haPlanID)
		f.mustProvision("d1", dedicPlanID)
		code, body := f.update("h1", map[string]any{"plan_id": dedicPlanID})
		Expect(code).To(Equal(http.StatusUnprocessableEntity))
		Expect(description(body)).To(ContainSubstring("An instance cannot change between plans dedicated-ha and dedicated-vm"))
		code, body = f.update("d1", map[string]any{"plan_id": haPlanID})
		Expect(code).To(Equal(http.StatusUnprocessableEntity))
		Expect(description(body)).To(ContainSubstring("An instance cannot change between plans dedicated-vm and dedicated-ha"))
	})

	It("deletes by resetting all three members; a member whose reset does not verify is quarantined, the others return to the pool", func() {
		f.mustProvision("h1", haPlanID)
		f.agents["n2"].set(func(m *memAgent) { m.dirty = true })
		code, _ := f.deprovision("h1", haPlanID, false)
		Expect(code).To(Equal(http.StatusOK))
		Expect(f.record("h1")).To(BeNil())
		Expect(f.pool("n0").State).To(Equal(poolFree))
		Expect(f.pool("n4").State).To(Equal(poolFree))
		Expect(f.pool("n2")).To(And(HaveField("State", poolQuarantined), HaveField("Instance", "h1")))
		Expect(f.freeNodes()).To(Equal(4))
	})

	It("keeps an asynchronous delete pending while a member is unreachable; the pool's round finishes it", func() {
		f.mustProvision("h1", haPlanID)
		f.agents["n4"].set(func(m *memAgent) { m.down = true })
		code, _ := f.deprovision("h1", haPlanID, true)
		Expect(code).To(Equal(http.StatusAccepted))
		Eventually(func() map[string]any { _, b := f.lastOperation("h1"); return b }).Should(HaveKeyWithValue("state", "failed"))
		f.b.Wait()
		Expect(f.pool("n0").State).To(Equal(poolFree))
		Expect(f.pool("n4")).To(And(HaveField("State", poolResetting), HaveField("Instance", "h1")))
		Expect(f.record("h1")).NotTo(BeNil())

		f.agents["n4"].set(func(m *memAgent) { m.down = false })
		Expect(f.b.plans[dedicPlanID].round(ctx)).To(BeTrue())
		Expect(f.record("h1")).To(BeNil())
		Expect(f.freeNodes()).To(Equal(5))
	})

	It("answers a provision only once the leader has a follower in sync; until then it is a 503 that the retry finishes", func() {
		f.b.plans[haPlanID].(*haPlan).syncTimeout = 300 * time.Millisecond
		f.agents["n0"].set(func(m *memAgent) { m.unsynced = true })
		code, body := f.provision("h1", haPlanID)
		Expect(code).To(Equal(http.StatusServiceUnavailable), "%v", body)
		Expect(f.record("h1").State).To(Equal(stateCreating))
		Expect(f.claimedBy("h1")).To(ConsistOf("n0", "n2", "n4"))

		f.agents["n0"].set(func(m *memAgent) { m.unsynced = false })
		f.mustProvision("h1", haPlanID)
		Expect(f.record("h1").State).To(Equal(stateReady))
	})

	It("quarantines a node that refuses its claim as busy, gives the others back, and claims again", func() {
		f.agents["n2"].failNext("create", fmt.Errorf("%w: held by x", agentapi.ErrBusy))
		f.mustProvision("h1", haPlanID)
		Expect(f.pool("n2")).To(And(HaveField("State", poolQuarantined), HaveField("Problem", ContainSubstring("node busy"))))
		Expect(f.record("h1").HA.Nodes).To(Equal([]string{"n0", "n3", "n4"}))
		Expect(f.freeNodes()).To(Equal(1))
		Expect(f.agents["n1"].ids()).To(BeEmpty())
	})

	It("refuses a TLS-only instance on nodes without TLS with 400, giving every node back", func() {
		code, body := f.provisionIn("h1", haPlanID, tenantSpace, map[string]any{"tls_only": true})
		Expect(code).To(Equal(http.StatusBadRequest))
		Expect(description(body)).To(ContainSubstring("serve no TLS"))
		Expect(f.record("h1")).To(BeNil())
		Expect(f.freeNodes()).To(Equal(5))
	})

	It("forms a group over TLS when every member serves TLS, with the TLS ports as the members'", func() {
		ca := servingTLS(f)
		f.mustProvision("h1", haPlanID)
		g := f.record("h1").HA.Group
		Expect(g.TLS).To(BeTrue())
		Expect(g.Members[0].Port).To(Equal(16379))
		code, body := f.bind("h1", "b1", "app")
		Expect(code).To(Equal(http.StatusCreated))
		Expect(credentialsOf(body)).To(And(HaveKeyWithValue("tls_ca", ca), HaveKeyWithValue("tls_port", BeNumerically("==", 16379))))
	})

	It("restores a TLS-only group before its first binding: the CA of the members' certificates came with the claim", func() {
		ca := servingTLS(f)
		f.mustProvision("h1", haPlanID)
		Expect(f.record("h1").HA.Group.TLS).To(BeTrue())
		storeBackup(f, "h1", "backup-data")
		*f.leader = 2
		code, body := f.update("h1", map[string]any{"parameters": map[string]any{"restore": "latest"}})
		Expect(code).To(Equal(http.StatusOK), "%v", body)
		Expect(f.agents["n4"].restored).To(Equal("backup-data"))
		Expect(f.b.redisCA(f.record("h1").VM)).To(Equal(ca))
	})

	It("restores into the member that leads now", func() {
		f.mustProvision("h1", haPlanID)
		storeBackup(f, "h1", "backup-data")
		*f.leader = 2
		code, body := f.update("h1", map[string]any{"parameters": map[string]any{"restore": "latest"}})
		Expect(code).To(Equal(http.StatusOK), "%v", body)
		Expect(f.agents["n4"].restored).To(Equal("backup-data"))
		Expect(f.agents["n0"].restored).To(BeEmpty())
	})

	It("counts its instances and its capacity in groups of three of the pool's nodes", func() {
		s := serveMetrics(f)
		Expect(s.value("redis_broker_plan_capacity_instances", "plan", "dedicated-ha")).To(Equal(1.0))
		Expect(s.value("redis_broker_plan_capacity_left_instances", "plan", "dedicated-ha")).To(Equal(1.0))
		f.mustProvision("h1", haPlanID)
		Expect(s.value("redis_broker_instances", "plan", "dedicated-ha", "state", "ready")).To(Equal(1.0))
		Expect(s.value("redis_broker_plan_capacity_left_instances", "plan", "dedicated-ha")).To(BeZero())
		Expect(s.value("redis_broker_plan_capacity_left_instances", "plan", "dedicated-vm")).To(Equal(2.0))
		Expect(s.value("redis_broker_pool_nodes", "state", "claimed")).To(Equal(3.0))
	})

	It("lists the plan in the catalog, saying what it is", func() {
		code, body := f.call(http.MethodGet, "/v2/catalog", nil)
		Expect(code).To(Equal(http.StatusOK))
		plans := body["services"].([]any)[0].(map[string]any)["plans"].([]any)
		Expect(plans).To(ContainElement(And(
			HaveKeyWithValue("id", haPlanID),
			HaveKeyWithValue("name", "dedicated-ha"),
			HaveKeyWithValue("metadata", HaveKeyWithValue("bullets", ContainElement(ContainSubstring("Sentinel")))),
		)))
	})
})

// Each step of the three-node claim is recorded before it is taken: a
// broker restarted at any step (a new Broker on the same state, the nodes
// as the old one left them) finishes the provision on Cloud Controller's
// retry, or resets every node the claim took on its delete.
var _ = Describe("a broker restarted in the middle of a three-node claim", func() {
	var f *fixture
	BeforeEach(func() { f = newHAFixture() })
	unavailable := fmt.Errorf("%w: refused", agentapi.ErrUnavailable)

	// The steps: the claim recorded and no node asked; one node claimed;
	// all claimed and none joined; some joined; all joined and the answer
	// lost before the record said ready.
	steps := []struct {
		name string
		cut  func(f *fixture)
	}{
		{"recorded, no node asked", func(f *fixture) { f.agents["n0"].failNext("create", unavailable) }},
		{"one node claimed", func(f *fixture) { f.agents["n2"].failNext("create", unavailable) }},
		{"all claimed, none joined", func(f *fixture) { f.agents["n0"].failNext("join", unavailable) }},
		{"two joined", func(f *fixture) { f.agents["n4"].failNext("join", unavailable) }},
		{"all joined, the last answer lost", func(f *fixture) { f.agents["n4"].loseNext("join") }},
	}
	for _, step := range steps {
		It("resumes on the retry when cut at: "+step.name, func() {
			step.cut(f)
			code, _ := f.provision("h1", haPlanID)
			Expect(code).To(Equal(http.StatusServiceUnavailable))
			Expect(f.record("h1").State).To(Equal(stateCreating))
			Expect(f.claimedBy("h1")).To(ConsistOf("n0", "n2", "n4"))

			f.open()
			f.mustProvision("h1", haPlanID)
			r := f.record("h1")
			Expect(r.State).To(Equal(stateReady))
			Expect(r.HA.Nodes).To(Equal([]string{"n0", "n2", "n4"}))
			for _, id := range r.HA.Nodes {
				Expect(f.agents[id].instance("h1").group).To(HaveValue(Equal(r.HA.Group)), "node %s", id)
			}
			Expect(f.freeNodes()).To(Equal(2))
		})

		It("rolls back on the delete when cut at: "+step.name, func() {
			step.cut(f)
			f.provision("h1", haPlanID)
			f.open()
			code, _ := f.deprovision("h1", haPlanID, false)
			Expect(code).To(Equal(http.StatusOK))
			Expect(f.record("h1")).To(BeNil())
			Expect(f.freeNodes()).To(Equal(5))
			for id, a := range f.agents {
				if a.node {
					Expect(a.ids()).To(BeEmpty(), "node %s", id)
				}
			}
		})
	}
})

// servingTLS has every agent of f serve TLS with certificates of a new CA
// (a real one: the broker parses it to ask the Sentinels over TLS), and
// returns the CA's PEM.
func servingTLS(f *fixture) string {
	ca, err := tlstest.NewCA("redis")
	Expect(err).NotTo(HaveOccurred())
	for _, a := range f.agents {
		a.set(func(m *memAgent) { m.tlsCA = ca.PEM })
	}
	return ca.PEM
}
