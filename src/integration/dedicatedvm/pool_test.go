package dedicatedvm_test

import (
	"fmt"
	"net/http"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("the pool of dedicated nodes", Ordered, func() {
	It("hands out every node once, says the plan is full, and gives a node back only empty", func() {
		sys := startSystem(3)
		hosts := map[string]bool{}
		for i := range 3 {
			code, body := systemspec.Provision(sys, fmt.Sprintf("d%d", i), systemtest.DedicatedPlanID, nil)
			Expect(code).To(Equal(http.StatusCreated), "%v", body)
			code, body = systemspec.Bind(sys, fmt.Sprintf("d%d", i), "b", systemtest.DedicatedPlanID)
			Expect(code).To(Equal(http.StatusCreated), "%v", body)
			creds := systemspec.Credentials(body)
			hosts[creds["host"].(string)] = true
			c := client(creds)
			Expect(c.Set(ctx, "owner", fmt.Sprintf("d%d", i), 0).Err()).To(Succeed())
		}
		Expect(hosts).To(HaveLen(3))

		code, body := systemspec.Provision(sys, "d3", systemtest.DedicatedPlanID, nil)
		Expect(code).To(Equal(http.StatusUnprocessableEntity))
		Expect(body["description"]).To(ContainSubstring("plan is full"))

		// The repeated request is answered 200, not given a second node.
		code, _ = systemspec.Provision(sys, "d0", systemtest.DedicatedPlanID, nil)
		Expect(code).To(Equal(http.StatusOK))

		_, old := systemspec.Bind(sys, "d1", "b", systemtest.DedicatedPlanID)
		oldCreds := systemspec.Credentials(old)
		Expect(systemspec.Deprovision(sys, "d1", systemtest.DedicatedPlanID)).To(Equal(http.StatusOK))
		p := systemspec.Pool(sys)
		Expect(p["node-1"]["state"]).To(Equal("free"))

		code, body = systemspec.Provision(sys, "d4", systemtest.DedicatedPlanID, nil)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		code, body = systemspec.Bind(sys, "d4", "b2", systemtest.DedicatedPlanID)
		Expect(code).To(Equal(http.StatusCreated))
		next := client(systemspec.Credentials(body))
		Expect(next.DBSize(ctx).Val()).To(BeZero(), "the next tenant sees zero keys")
		Expect(client(oldCreds).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		Expect(systemspec.Deprovision(sys, "d4", systemtest.DedicatedPlanID)).To(Equal(http.StatusOK))
		Expect(systemspec.Deprovision(sys, "d4", systemtest.DedicatedPlanID)).To(Equal(http.StatusGone))
	})
})
