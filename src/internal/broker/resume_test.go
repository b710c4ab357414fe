package broker

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
)

// Each step is recorded before it is taken: a broker restarted at any step
// (a new Broker on the same state, the agents as the old one left them)
// finishes the work.
var _ = Describe("a broker restarted in the middle of an operation", func() {
	var f *fixture
	BeforeEach(func() { f = newFixture() })
	unavailable := fmt.Errorf("%w: refused", agentapi.ErrUnavailable)
	// resetPending leaves dedicated instance d1 deleting and its node n0
	// resetting, as a broker that stopped while n0 was away would.
	resetPending := func() {
		GinkgoHelper()
		f.mustProvision("d1", dedicPlanID)
		f.agents["n0"].set(func(m *memAgent) { m.down = true })
		code, _ := f.deprovision("d1", dedicPlanID, true)
		Expect(code).To(Equal(http.StatusAccepted))
		Eventually(func() any { return f.record("d1").LastOp.State }).Should(BeEquivalentTo("failed"))
		f.b.Wait()
	}

	It("finishes a shared provision stored creating before the agent was asked", func() {
		f.agents["a0"].failNext("create", unavailable)
		code, _ := f.provision("i1", sharedPlanID)
		Expect(code).To(Equal(http.StatusServiceUnavailable))
		Expect(f.record("i1")).To(And(HaveField("State", stateCreating), HaveField("VM", "a0")))
		Expect(f.agents["a0"].ids()).To(BeEmpty())

		f.open()
		f.mustProvision("i1", sharedPlanID)
		Expect(f.agents["a0"].ids()).To(ConsistOf("i1"))
		Expect(f.record("i1").State).To(Equal(stateReady))
	})

	It("finishes a shared provision whose agent created the instance but whose answer was lost", func() {
		f.agents["a0"].loseNext("create")
		f.provision("i1", sharedPlanID)
		f.open()
		f.mustProvision("i1", sharedPlanID)
		Expect(f.agents["a0"].ids()).To(ConsistOf("i1"))
		Expect(f.agents["a1"].ids()).To(BeEmpty())
	})

	It("finishes a dedicated provision whose claim was recorded before the node answered", func() {
		f.agents["n0"].loseNext("create")
		code, _ := f.provision("d1", dedicPlanID)
		Expect(code).To(Equal(http.StatusServiceUnavailable))
		Expect(f.record("d1")).To(And(HaveField("State", stateCreating), HaveField("VM", "n0")))
		Expect(f.pool("n0")).To(And(HaveField("State", poolClaimed), HaveField("Instance", "d1")))

		f.open()
		f.mustProvision("d1", dedicPlanID)
		Expect(f.record("d1").VM).To(Equal("n0"))
		Expect(f.pool("n1").State).To(Equal(poolFree))
	})

	It("finishes a dedicated provision whose claim was recorded before the node was asked", func() {
		f.agents["n0"].failNext("create", unavailable)
		f.provision("d1", dedicPlanID)
		Expect(f.agents["n0"].ids()).To(BeEmpty())
		f.open()
		f.mustProvision("d1", dedicPlanID)
		Expect(f.agents["n0"].ids()).To(ConsistOf("d1"))
	})

	It("finishes a shared delete marked deleting before the agent answered", func() {
		f.mustProvision("i1", sharedPlanID)
		f.agents["a0"].loseNext("delete")
		code, _ := f.deprovision("i1", sharedPlanID, false)
		Expect(code).To(Equal(http.StatusServiceUnavailable))
		Expect(f.record("i1").State).To(Equal(stateDeleting))

		f.open()
		code, _ = f.deprovision("i1", sharedPlanID, false)
		Expect(code).To(Equal(http.StatusOK))
		Expect(f.record("i1")).To(BeNil())
	})

	It("finishes a node reset that was pending when the broker stopped, in the background round", func() {
		resetPending()

		f.agents["n0"].set(func(m *memAgent) { m.down = false })
		f.open()
		ctx, cancel := context.WithCancel(context.Background())
		DeferCleanup(cancel)
		f.b.Run(ctx)
		Eventually(func() *instance { return f.record("d1") }).Should(BeNil())
		Expect(f.pool("n0").State).To(Equal(poolFree))
		code, _ := f.lastOperation("d1")
		Expect(code).To(Equal(http.StatusGone))
	})

	It("retries a pending node reset quickly, as resize is, when the node is not up yet as the broker starts", func() {
		resetPending()

		// The broker restarts before the node agent: its first round finds
		// the node unreachable. The round says so, which is what makes Run
		// come again after a second rather than after the ten-minute period.
		f.open()
		Expect(f.b.plans[dedicPlanID].round(context.Background())).To(BeFalse())
		Expect(f.pool("n0").State).To(Equal(poolResetting))

		// Run's first round still finds the node away; the node is up from
		// the next call on.
		f.agents["n0"].set(func(m *memAgent) { m.down = false })
		f.agents["n0"].failNext("delete", unavailable)
		ctx, cancel := context.WithCancel(context.Background())
		DeferCleanup(cancel)
		f.b.Run(ctx)
		// A generous bound that still tells the quick retry (1-2 s) from the
		// period (10 min).
		Eventually(func() *instance { return f.record("d1") }, time.Minute, 50*time.Millisecond).Should(BeNil())
		Expect(f.pool("n0").State).To(Equal(poolFree))
		Expect(f.b.plans[dedicPlanID].round(context.Background())).To(BeTrue())
	})

	It("reports a restore cut short by a restart as failed", func() {
		f.mustProvision("i1", sharedPlanID)
		Expect(f.b.state.Update(func(s *state) error {
			s.Instances.Edit("i1").LastOp = operation{Type: restoreOperation, State: "in progress", Description: "restoring"}
			return nil
		})).To(Succeed())
		f.open()
		_, body := f.lastOperation("i1")
		Expect(body).To(HaveKeyWithValue("state", "failed"))
		Expect(body).To(HaveKeyWithValue("description", ContainSubstring("interrupted by a restart")))
	})
})

var _ = Describe("a state file of the broker before one VM field", func() {
	It("loads, naming each instance's VM from its legacy agent or node field, and is rewritten in the current form", func() {
		f := newFixture()
		legacy := `{
  "instances": {
    "s1": {"id": "s1", "service_id": "svc-id", "plan_id": "shared-plan", "organization_guid": "org", "space_guid": "space",
           "parameters": {"maxmemory-policy": "noeviction", "notify-keyspace-events": "", "timeout": 0},
           "agent": "a1", "host": "10.0.0.11", "port": 32768, "maintenance_version": "1.0.0", "state": "ready",
           "last_operation": {"type": "create", "state": "succeeded", "description": "instance created", "at": "2026-01-01T00:00:00Z"},
           "bindings": {}, "created_at": "2026-01-01T00:00:00Z"},
    "d1": {"id": "d1", "service_id": "svc-id", "plan_id": "dedicated-plan", "organization_guid": "org", "space_guid": "space",
           "parameters": {"maxmemory-policy": "noeviction", "notify-keyspace-events": "", "timeout": 0},
           "node": "n1", "host": "10.0.1.11", "port": 6379, "maintenance_version": "1.0.0", "state": "ready",
           "last_operation": {"type": "create", "state": "succeeded", "description": "instance created on a dedicated VM", "at": "2026-01-01T00:00:00Z"},
           "bindings": {}, "created_at": "2026-01-01T00:00:00Z"}
  },
  "pool": {
    "n0": {"id": "n0", "state": "free", "since": "2026-01-01T00:00:00Z"},
    "n1": {"id": "n1", "instance": "d1", "state": "claimed", "since": "2026-01-01T00:00:00Z"}
  }
}`
		path := filepath.Join(f.cfg.StateDir, "broker-state.json")
		Expect(os.WriteFile(path, []byte(legacy), 0o600)).To(Succeed())
		f.agents["a1"].Create(ctx, "s1", agentapi.InstanceRequest{MaxMemoryBytes: 64 << 20})
		f.agents["n1"].Create(ctx, "d1", agentapi.InstanceRequest{})
		f.open()

		Expect(f.record("s1").VM).To(Equal("a1"))
		Expect(f.record("d1").VM).To(Equal("n1"))
		data, err := os.ReadFile(path)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(data)).To(MatchRegexp(`"vm":\s*"a1"`))
		Expect(string(data)).NotTo(ContainSubstring(`"agent"`))
		Expect(string(data)).NotTo(ContainSubstring(`"node"`))

		code, _ := f.bind("s1", "b1", "app")
		Expect(code).To(Equal(http.StatusCreated))
		Expect(f.agents["a1"].instance("s1").passwords).To(HaveKey("b1"))
		code, _ = f.deprovision("d1", dedicPlanID, false)
		Expect(code).To(Equal(http.StatusOK))
		Expect(f.pool("n1").State).To(Equal(poolFree))
	})
})

var _ = Describe("the shared plan's round", func() {
	It("gives instances a changed plan memory limit, keeping it where the VM has no room", func() {
		f := newFixture()
		f.mustProvision("i1", sharedPlanID)
		f.agents["a1"].Create(ctx, "i2", agentapi.InstanceRequest{MaxMemoryBytes: 64 << 20})
		f.agents["a1"].set(func(m *memAgent) { m.memory = 90 << 20 })
		f.cfg.SharedVM.MaxMemoryMB = 96
		f.open()
		Expect(f.b.plans[sharedPlanID].round(context.Background())).To(BeTrue())
		Expect(f.agents["a0"].instance("i1").MaxMemoryBytes).To(Equal(int64(96 << 20)))
		Expect(f.agents["a1"].instance("i2").MaxMemoryBytes).To(Equal(int64(64 << 20)))
	})

	It("reports an agent it could not reach, so the round comes again soon", func() {
		f := newFixture()
		f.agents["a1"].set(func(m *memAgent) { m.down = true })
		Expect(f.b.plans[sharedPlanID].round(context.Background())).To(BeFalse())
	})
})
