package broker

import (
	"context"
	"fmt"
	"net/http"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
)

var _ = Describe("the dedicated-vm pool", func() {
	var f *fixture
	BeforeEach(func() { f = newFixture() })

	Describe("claim", func() {
		It("records the claim and hands the node to the instance", func() {
			f.mustProvision("d1", dedicPlanID)
			Expect(f.record("d1").VM).To(Equal("n0"))
			Expect(f.pool("n0")).To(And(HaveField("State", poolClaimed), HaveField("Instance", "d1")))
			st, holder := f.agents["n0"].state()
			Expect(st).To(Equal(agentapi.NodeClaimed))
			Expect(holder).To(Equal("d1"))
		})

		It("skips a node whose address answers as another node, and uses the next", func() {
			f.agents["n0"].set(func(m *memAgent) { m.answerAs = "n7" })
			f.mustProvision("d1", dedicPlanID)
			Expect(f.record("d1").VM).To(Equal("n1"))
			Expect(f.agents["n0"].ids()).To(BeEmpty())
			Expect(f.pool("n0").State).To(Equal(poolFree))
		})

		It("refuses a claim the node answers as another node", func() {
			// GET /v1/node answers n0, the claim another id: not the node
			// the broker claimed, so the provision stops, to be retried.
			f.b.vms["n0"] = vm{id: "n0", noun: "node", kind: "dedicated VM", c: &renamed{memAgent: f.agents["n0"], as: "n9"}, quick: nodeOpTimeout}
			code, _ := f.provision("d1", dedicPlanID)
			Expect(code).To(Equal(http.StatusInternalServerError))
			Expect(f.record("d1").State).To(Equal(stateCreating))
		})

		It("quarantines a node that refuses the claim as busy, and uses the next", func() {
			f.agents["n0"].failNext("create", fmt.Errorf("%w: held by x", agentapi.ErrBusy))
			f.mustProvision("d1", dedicPlanID)
			Expect(f.record("d1").VM).To(Equal("n1"))
			Expect(f.pool("n0")).To(And(HaveField("State", poolQuarantined), HaveField("Problem", ContainSubstring("node busy"))))
		})

		It("quarantines a node that says it is not free, and uses the next", func() {
			f.agents["n0"].set(func(m *memAgent) { m.nodeState, m.holder = agentapi.NodeResetFailed, "old" })
			f.mustProvision("d1", dedicPlanID)
			Expect(f.record("d1").VM).To(Equal("n1"))
			Expect(f.pool("n0")).To(And(HaveField("State", poolQuarantined), HaveField("Instance", "old")))
		})

		It("quarantines a node whose claim answers dirty", func() {
			f.agents["n0"].failNext("create", fmt.Errorf("%w: quarantined", agentapi.ErrDirty))
			f.mustProvision("d1", dedicPlanID)
			Expect(f.record("d1").VM).To(Equal("n1"))
			Expect(f.pool("n0").State).To(Equal(poolQuarantined))
		})

		It("never removes a live instance's record when a quarantined node's reset meets another tenant", func() {
			// n0 refused the claim as busy: it is quarantined under d2's id
			// while d2 lives on n1.
			f.agents["n0"].set(func(m *memAgent) { m.nodeState, m.holder = agentapi.NodeClaimed, "stranger" })
			f.b.vms["n0"] = vm{id: "n0", noun: "node", kind: "dedicated VM", c: &freeLiar{f.agents["n0"]}, quick: nodeOpTimeout}
			f.mustProvision("d2", dedicPlanID)
			Expect(f.record("d2").VM).To(Equal("n1"))
			Expect(f.pool("n0")).To(And(HaveField("State", poolQuarantined), HaveField("Instance", "d2")))
			f.b.plans[dedicPlanID].round(context.Background())
			Expect(f.record("d2")).NotTo(BeNil())
			Expect(f.record("d2").State).To(Equal(stateReady))
		})

		It("answers 422 when every node is taken, and keeps no record", func() {
			f.mustProvision("d1", dedicPlanID)
			f.mustProvision("d2", dedicPlanID)
			code, body := f.provision("d3", dedicPlanID)
			Expect(code).To(Equal(http.StatusUnprocessableEntity))
			Expect(description(body)).To(ContainSubstring("The dedicated-vm plan is full: all 2 dedicated VMs are in use"))
			Expect(f.record("d3")).To(BeNil())
		})

		It("answers 503 when every free node is unreachable, and keeps no record", func() {
			f.agents["n0"].set(func(m *memAgent) { m.down = true })
			f.agents["n1"].set(func(m *memAgent) { m.down = true })
			code, body := f.provision("d1", dedicPlanID)
			Expect(code).To(Equal(http.StatusServiceUnavailable))
			Expect(description(body)).To(ContainSubstring("could not reach any VM that could hold a new instance"))
			Expect(f.record("d1")).To(BeNil())
			Expect(f.pool("n0").State).To(Equal(poolFree))
		})

		It("lists the pool for operators at /admin/v1/pool", func() {
			f.agents["n0"].failNext("create", fmt.Errorf("%w: held", agentapi.ErrBusy))
			f.mustProvision("d1", dedicPlanID)
			code, body := f.call(http.MethodGet, "/admin/v1/pool", nil)
			Expect(code).To(Equal(http.StatusOK))
			Expect(body["nodes"]).To(ConsistOf(
				And(HaveKeyWithValue("id", "n0"), HaveKeyWithValue("state", poolQuarantined)),
				And(HaveKeyWithValue("id", "n1"), HaveKeyWithValue("state", poolClaimed), HaveKeyWithValue("instance", "d1")),
			))
		})
	})

	Describe("release", func() {
		BeforeEach(func() { f.mustProvision("d1", dedicPlanID) })

		It("quarantines a node whose reset does not verify, and still completes the delete", func() {
			f.agents["n0"].set(func(m *memAgent) { m.dirty = true })
			code, _ := f.deprovision("d1", dedicPlanID, false)
			Expect(code).To(Equal(http.StatusOK))
			Expect(f.record("d1")).To(BeNil())
			Expect(f.pool("n0")).To(And(HaveField("State", poolQuarantined), HaveField("Problem", ContainSubstring("node dirty"))))
			code, _ = f.provision("d2", dedicPlanID)
			Expect(code).To(Equal(http.StatusCreated))
			Expect(f.record("d2").VM).To(Equal("n1"))
		})

		It("keeps an unreachable node's delete pending, reports it failed, and the background round finishes it", func() {
			f.agents["n0"].set(func(m *memAgent) { m.down = true })
			code, _ := f.deprovision("d1", dedicPlanID, true)
			Expect(code).To(Equal(http.StatusAccepted))
			Eventually(func() map[string]any { _, b := f.lastOperation("d1"); return b }).Should(And(
				HaveKeyWithValue("state", "failed"),
				HaveKeyWithValue("description", ContainSubstring("Delete the instance again to retry"))))
			Expect(f.pool("n0").State).To(Equal(poolResetting))

			f.agents["n0"].set(func(m *memAgent) { m.down = false })
			Expect(f.b.plans[dedicPlanID].round(context.Background())).To(BeTrue())
			Expect(f.record("d1")).To(BeNil())
			Expect(f.pool("n0").State).To(Equal(poolFree))
			st, _ := f.agents["n0"].state()
			Expect(st).To(Equal(agentapi.NodeFree))
		})

		It("answers 503 to a synchronous delete of an unreachable node; deleting again finishes it", func() {
			f.agents["n0"].failNext("delete", fmt.Errorf("%w: refused", agentapi.ErrUnavailable))
			code, _ := f.deprovision("d1", dedicPlanID, false)
			Expect(code).To(Equal(http.StatusServiceUnavailable))
			Expect(f.record("d1").State).To(Equal(stateDeleting))
			code, _ = f.deprovision("d1", dedicPlanID, false)
			Expect(code).To(Equal(http.StatusOK))
			Expect(f.pool("n0").State).To(Equal(poolFree))
		})

		It("retries a quarantined node in the round and returns it to the pool once its reset verifies", func() {
			f.agents["n0"].set(func(m *memAgent) { m.dirty = true })
			f.deprovision("d1", dedicPlanID, false)
			Expect(f.pool("n0").State).To(Equal(poolQuarantined))
			f.b.plans[dedicPlanID].round(context.Background())
			Expect(f.pool("n0").State).To(Equal(poolQuarantined))
			f.agents["n0"].set(func(m *memAgent) { m.dirty = false })
			f.b.plans[dedicPlanID].round(context.Background())
			Expect(f.pool("n0").State).To(Equal(poolFree))
		})
	})
})

// renamed is a node whose claims answer as another node.
type renamed struct {
	*memAgent
	as string
}

func (r *renamed) Create(ctx context.Context, id string, req agentapi.InstanceRequest) (agentapi.Instance, error) {
	inst, err := r.memAgent.Create(ctx, id, req)
	inst.NodeID = r.as
	return inst, err
}

// freeLiar is a node that says it is free when it is not.
type freeLiar struct{ *memAgent }

func (l *freeLiar) Node(ctx context.Context) (agentapi.Node, error) {
	n, err := l.memAgent.Node(ctx)
	n.State, n.InstanceID = agentapi.NodeFree, ""
	return n, err
}
