package dedicatedvm_test

import (
	"net/http"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

var _ = Describe("a broker whose CA did not sign its nodes' certificates", func() {
	It("refuses to talk to them: the provision fails with a 503 that says to retry, and no node is claimed", func() {
		other, err := tlstest.NewCA("not-the-nodes-ca")
		Expect(err).NotTo(HaveOccurred())
		sys := startSystemWith(systemtest.Options{Nodes: 3, BrokerNodeCA: other.PEM})

		code, body := systemspec.Provision(sys, "t0", systemtest.DedicatedPlanID, nil)
		Expect(code).To(Equal(http.StatusServiceUnavailable), "%v", body)
		Expect(body["description"]).To(ContainSubstring("could not reach any VM"))
		Expect(body["description"]).To(ContainSubstring("Try again"))
		Expect(body["description"]).NotTo(ContainSubstring("x509"), "the cause is for the operator")
		Expect(sys.Broker.Log()).To(ContainSubstring("certificate signed by unknown authority"), "the operator finds the cause")

		code, _ = systemspec.OSB(sys, "GET", "/v2/service_instances/t0", nil)
		Expect(code).To(Equal(http.StatusNotFound))
		code, _ = systemspec.OSB(sys, "GET", "/v2/service_instances/t0/last_operation", nil)
		Expect(code).To(Equal(http.StatusGone), "nothing of the instance was kept")
		Expect(poolStates(sys)).To(HaveEach("free"))
		for i := range sys.Nodes {
			Expect(systemspec.NodeAgentState(sys, i).State).To(Equal("free"), "node %d was never asked", i)
		}
		for _, n := range sys.Nodes {
			Expect(n.Log()).NotTo(ContainSubstring("node claimed"))
		}
		expectPoolConsistent(sys)
		Expect(systemspec.Deprovision(sys, "t0", systemtest.DedicatedPlanID)).To(Equal(http.StatusGone))
	})
})

var _ = Describe("an unreachable node", func() {
	It("costs a provision at most the status check's timeout, fails its own instance's requests with a 503, and leaves the other nodes serving", func() {
		sys := startSystem(4)
		code, body := systemspec.Provision(sys, "on-dead", systemtest.DedicatedPlanID, nil)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		Expect(nodeOf(sys, "on-dead")).To(Equal(0), "free nodes are taken in the config's order")
		_, b := systemspec.Bind(sys, "on-dead", "b", systemtest.DedicatedPlanID)
		deadCreds := systemspec.Credentials(b)
		systemspec.WriteKeys(ctx, client(deadCreds), "before", 100)
		systemspec.WaitForAOF()

		By("killing node-0 (claimed) and node-1 (free) with -9, agent and redis-server, and freezing node-2's agent (free)")
		for _, i := range []int{0, 1} {
			sys.Nodes[i].Kill9()
			systemtest.KillStrays(sys.NodeDirs[i])
		}
		frozen := sys.Nodes[2].Pid()
		Expect(syscall.Kill(frozen, syscall.SIGSTOP)).To(Succeed())
		thaw := func() { _ = syscall.Kill(frozen, syscall.SIGCONT) }
		DeferCleanup(thaw)

		By("provisioning: node-1 refuses the connection, node-2 never answers, node-3 takes the instance")
		start := time.Now()
		code, body = systemspec.Provision(sys, "alive", systemtest.DedicatedPlanID, nil)
		took := time.Since(start)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		Expect(nodeOf(sys, "alive")).To(Equal(3))
		GinkgoWriter.Printf("provision past a dead and a frozen node took %v\n", took)
		Expect(took).To(BeNumerically("<", 20*time.Second), "the broker gives up on a node after its 5 s status check")
		_, b = systemspec.Bind(sys, "alive", "b", systemtest.DedicatedPlanID)
		alive := client(systemspec.Credentials(b))
		systemspec.WriteKeys(ctx, alive, "alive", 100)

		By("provisioning when every free node is unreachable: a 503, not a full plan, while the broker keeps serving")
		done := make(chan struct{})
		var fullCode int
		var fullBody map[string]any
		go func() {
			defer GinkgoRecover()
			defer close(done)
			fullCode, fullBody = systemspec.Provision(sys, "nowhere", systemtest.DedicatedPlanID, nil)
		}()
		code, body = systemspec.Bind(sys, "alive", "meanwhile", systemtest.DedicatedPlanID)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		Expect(client(systemspec.Credentials(body)).Ping(ctx).Err()).To(Succeed())
		Eventually(done).WithTimeout(30 * time.Second).Should(BeClosed())
		Expect(fullCode).To(Equal(http.StatusServiceUnavailable), "%v", fullBody)
		Expect(fullBody["description"]).To(ContainSubstring("Try again"))

		By("binding to the instance on the dead node")
		start = time.Now()
		code, body = systemspec.Bind(sys, "on-dead", "b2", systemtest.DedicatedPlanID)
		Expect(code).To(Equal(http.StatusServiceUnavailable), "%v", body)
		Expect(body["description"]).To(ContainSubstring("could not reach the VM holding the instance"))
		Expect(time.Since(start)).To(BeNumerically("<", 10*time.Second))
		code, body = systemspec.OSB(sys, "GET", "/v2/service_instances/on-dead", nil)
		Expect(code).To(Equal(http.StatusOK), "%v", body)
		Expect(systemspec.Attributes(body)["status_error"]).To(ContainSubstring("did not answer"))
		systemspec.ExpectKeys(ctx, alive, "alive", 100)

		By("bringing the nodes back")
		thaw()
		for _, i := range []int{0, 1} {
			Expect(sys.Nodes[i].Start()).To(Succeed())
		}
		systemspec.ExpectKeys(ctx, client(deadCreds), "before", 100)
		code, body = systemspec.Bind(sys, "on-dead", "b2", systemtest.DedicatedPlanID)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		code, body = systemspec.Provision(sys, "nowhere", systemtest.DedicatedPlanID, nil)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		expectPoolConsistent(sys, "on-dead", "alive", "nowhere")
	})
})
