package dedicatedvm_test

import (
	"fmt"
	"net/http"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

var _ = Describe("a node whose reset fails", func() {
	It("is quarantined and never handed out, the delete still completes, and a retry that passes returns it empty", func() {
		sys := startSystem(3)
		for i := range 3 {
			code, body := systemspec.Provision(sys, fmt.Sprintf("q%d", i), systemtest.DedicatedPlanID, nil)
			Expect(code).To(Equal(http.StatusCreated), "%v", body)
		}
		i := nodeOf(sys, "q0")
		node := sys.Nodes[i].Name
		_, b := systemspec.Bind(sys, "q0", "b0", systemtest.DedicatedPlanID)
		old := systemspec.Credentials(b)
		systemspec.WriteKeys(ctx, client(old), "tenant", 1000)

		// The node agent wipes DataDir/data, redis-server's directory.
		how, undo := systemspec.MakeUnwipeable(filepath.Join(sys.NodeDirs[i], "data"))
		DeferCleanup(undo)
		By("making the data directory of " + node + " undeletable with " + how)

		Expect(systemspec.Deprovision(sys, "q0", systemtest.DedicatedPlanID)).To(Equal(http.StatusOK), "the delete completes for the tenant")
		Expect(client(old).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")), "the old credentials no longer work")
		code, _ := systemspec.OSB(sys, "GET", "/v2/service_instances/q0", nil)
		Expect(code).To(Equal(http.StatusNotFound))
		p := expectPoolConsistent(sys, "q1", "q2")
		Expect(p[node]).To(HaveKeyWithValue("state", "quarantined"))
		Expect(p[node]).To(HaveKeyWithValue("instance", "q0"))
		Expect(p[node]["problem"]).To(ContainSubstring("wiping the data directory"))
		Expect(systemspec.NodeAgentState(sys, i).State).To(Equal("reset_failed"))

		By("provisioning while the quarantined node is the only one not in use")
		code, body := systemspec.Provision(sys, "q3", systemtest.DedicatedPlanID, nil)
		Expect(code).To(Equal(http.StatusUnprocessableEntity), "%v", body)
		Expect(body["description"]).To(ContainSubstring("plan is full"))

		By("restarting the broker, whose start retries quarantined nodes, while the obstacle is still there")
		since := p[node]["since"]
		sys.Broker.Kill9()
		Expect(sys.Broker.Start()).To(Succeed())
		Eventually(func() any { return systemspec.Pool(sys)[node]["since"] }).ShouldNot(Equal(since), "the retry ran")
		p = expectPoolConsistent(sys, "q1", "q2")
		Expect(p[node]).To(HaveKeyWithValue("state", "quarantined"))
		code, _ = systemspec.Provision(sys, "q4", systemtest.DedicatedPlanID, nil)
		Expect(code).To(Equal(http.StatusUnprocessableEntity))

		By("removing the obstacle and restarting the broker")
		undo()
		sys.Broker.Kill9()
		Expect(sys.Broker.Start()).To(Succeed())
		Eventually(func() any { return systemspec.Pool(sys)[node]["state"] }).Should(Equal("free"))
		p = expectPoolConsistent(sys, "q1", "q2")
		Expect(p[node]).NotTo(HaveKey("problem"))
		Expect(filepath.Join(sys.NodeDirs[i], "data", "locked")).NotTo(BeAnExistingFile())
		Expect(filepath.Join(sys.NodeDirs[i], "data.wiped")).NotTo(BeAnExistingFile())

		code, body = systemspec.Provision(sys, "q5", systemtest.DedicatedPlanID, nil)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		Expect(nodeOf(sys, "q5")).To(Equal(i))
		_, b = systemspec.Bind(sys, "q5", "b5", systemtest.DedicatedPlanID)
		next := client(systemspec.Credentials(b))
		Expect(next.DBSize(ctx).Val()).To(BeZero(), "the next tenant sees zero keys")
		Expect(client(old).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		expectPoolConsistent(sys, "q1", "q2", "q5")
	})
})
