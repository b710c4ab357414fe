package dedicatedvm_test

import (
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

func update(sys *systemtest.System, id string, params map[string]any) (int, map[string]any) {
	return systemspec.OSB(sys, "PATCH", "/v2/service_instances/"+id, map[string]any{
		"service_id": systemtest.ServiceID, "parameters": params,
	})
}

func provisionShared(sys *systemtest.System, id, space string) (int, map[string]any) {
	return systemspec.OSB(sys, "PUT", "/v2/service_instances/"+id, map[string]any{
		"service_id": systemtest.ServiceID, "plan_id": systemtest.PlanID,
		"organization_guid": "org", "space_guid": space,
	})
}

func replicationOf(sys *systemtest.System, id string) map[string]any {
	code, body := systemspec.OSB(sys, "GET", "/v2/service_instances/"+id, nil)
	Expect(code).To(Equal(http.StatusOK), "%v", body)
	attrs := body["metadata"].(map[string]any)["attributes"].(map[string]any)
	r, _ := attrs["replication"].(map[string]any)
	return r
}

var _ = Describe("follower mode", func() {
	It("replicates a dedicated leader to a shared follower and back, refusing loops, strangers and leaders' deletion", func() {
		sys := startSystem(2)
		code, body := systemspec.Provision(sys, "leader", systemtest.DedicatedPlanID, nil)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		code, body = provisionShared(sys, "follower", "space")
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		_, lb := systemspec.Bind(sys, "leader", "lb", systemtest.DedicatedPlanID)
		leader := client(systemspec.Credentials(lb))
		_, fb := systemspec.OSB(sys, "PUT", "/v2/service_instances/follower/service_bindings/fb", map[string]any{
			"service_id": systemtest.ServiceID, "plan_id": systemtest.PlanID, "app_guid": "app",
		})
		follower := client(systemspec.Credentials(fb))
		Expect(leader.Set(ctx, "before", "1", 0).Err()).To(Succeed())

		code, body = update(sys, "follower", map[string]any{"replica_of": "leader"})
		Expect(code).To(Equal(http.StatusOK), "%v", body)
		Expect(leader.Set(ctx, "after", "2", 0).Err()).To(Succeed())
		Eventually(func() string { return follower.Get(ctx, "after").Val() }).WithTimeout(30 * time.Second).Should(Equal("2"))
		Expect(follower.Get(ctx, "before").Val()).To(Equal("1"))
		Expect(follower.Set(ctx, "x", "y", 0).Err()).To(MatchError(ContainSubstring("READONLY")))
		Eventually(func() any { return replicationOf(sys, "follower")["link"] }).Should(Equal("up"))
		Expect(replicationOf(sys, "follower")["role"]).To(Equal("follower"))
		Expect(replicationOf(sys, "follower")["lag_bytes"]).To(BeNumerically(">=", 0))

		code, body = update(sys, "leader", map[string]any{"replica_of": "follower"})
		Expect(code).To(Equal(http.StatusBadRequest))
		Expect(body["description"]).To(ContainSubstring("loop"))
		code, body = update(sys, "follower", map[string]any{"replica_of": "nobody"})
		Expect(code).To(Equal(http.StatusBadRequest))
		Expect(body["description"]).To(ContainSubstring("nobody"))
		code, _ = provisionShared(sys, "stranger", "other-space")
		Expect(code).To(Equal(http.StatusCreated))
		code, body = update(sys, "stranger", map[string]any{"replica_of": "leader"})
		Expect(code).To(Equal(http.StatusBadRequest))
		Expect(body["description"]).To(ContainSubstring("another space"))

		Expect(systemspec.Deprovision(sys, "leader", systemtest.DedicatedPlanID)).To(Equal(http.StatusUnprocessableEntity))

		code, body = update(sys, "follower", map[string]any{"replica_of": nil})
		Expect(code).To(Equal(http.StatusOK), "%v", body)
		Eventually(func() error { return follower.Set(ctx, "x", "y", 0).Err() }).Should(Succeed())
		Expect(replicationOf(sys, "follower")["role"]).To(Equal("leader"))
		Expect(systemspec.Deprovision(sys, "leader", systemtest.DedicatedPlanID)).To(Equal(http.StatusOK))
		Expect(follower.Get(ctx, "after").Val()).To(Equal("2"), "the promoted follower keeps the data")
	})
})
