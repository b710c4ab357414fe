package dedicatedvm_test

import (
	"fmt"
	"net/http"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("the pool of dedicated nodes", Ordered, func() {
	It("hands out every node once, says the plan is full, and gives a node back only empty", func() {
		sys := startSystem(3)
		hosts := map[string]bool{}
		for i := range 3 {
			code, body := provision(sys, fmt.Sprintf("d%d", i), nil)
			Expect(code).To(Equal(http.StatusCreated), "%v", body)
			code, body = bind(sys, fmt.Sprintf("d%d", i), "b")
			Expect(code).To(Equal(http.StatusCreated), "%v", body)
			creds := credentials(body)
			hosts[creds["host"].(string)] = true
			c := client(creds)
			Expect(c.Set(ctx, "owner", fmt.Sprintf("d%d", i), 0).Err()).To(Succeed())
		}
		Expect(hosts).To(HaveLen(3))

		code, body := provision(sys, "d3", nil)
		Expect(code).To(Equal(http.StatusUnprocessableEntity))
		Expect(body["description"]).To(ContainSubstring("plan is full"))

		// The repeated request is answered 200, not given a second node.
		code, _ = provision(sys, "d0", nil)
		Expect(code).To(Equal(http.StatusOK))

		_, old := bind(sys, "d1", "b")
		oldCreds := credentials(old)
		Expect(deprovision(sys, "d1")).To(Equal(http.StatusOK))
		p := pool(sys)
		Expect(p["node-1"]["state"]).To(Equal("free"))

		code, body = provision(sys, "d4", nil)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		code, body = bind(sys, "d4", "b2")
		Expect(code).To(Equal(http.StatusCreated))
		next := client(credentials(body))
		Expect(next.DBSize(ctx).Val()).To(BeZero(), "the next tenant sees zero keys")
		Expect(client(oldCreds).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		Expect(deprovision(sys, "d4")).To(Equal(http.StatusOK))
		Expect(deprovision(sys, "d4")).To(Equal(http.StatusGone))
	})
})
