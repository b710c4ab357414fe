package placement_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/placement"
)

func TestPlacement(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "placement")
}

const mb = 1 << 20

func agent(id string, total, allocated int64, instances int) placement.Candidate {
	return placement.Candidate{AgentID: id, Capacity: agentapi.Capacity{
		MemoryBytes: total * mb, AllocatedBytes: allocated * mb, Instances: instances, FreePorts: 100,
	}}
}

var _ = Describe("Order", func() {
	It("puts the agent with the most free memory first", func() {
		Expect(placement.Order([]placement.Candidate{
			agent("a", 1000, 900, 9), agent("b", 1000, 100, 1), agent("c", 2000, 1500, 5),
		}, 10*mb)).To(Equal([]string{"b", "c", "a"}))
	})

	It("leaves out agents the instance does not fit", func() {
		full := agent("ports", 1000, 0, 0)
		full.Capacity.FreePorts = 0
		capped := agent("capped", 1000, 0, 3)
		capped.Capacity.MaxInstances = 3
		Expect(placement.Order([]placement.Candidate{
			agent("mem", 1000, 995, 1), full, capped, agent("ok", 100, 0, 0),
		}, 10*mb)).To(Equal([]string{"ok"}))
		Expect(placement.Order(nil, mb)).To(BeEmpty())
	})

	It("breaks ties by fewer instances, then by id", func() {
		Expect(placement.Order([]placement.Candidate{
			agent("z", 1000, 500, 1), agent("y", 1000, 500, 3), agent("x", 1000, 500, 1),
		}, mb)).To(Equal([]string{"x", "z", "y"}))
	})
})
