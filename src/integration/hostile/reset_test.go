package hostile_test

import (
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
)

// nodeState is the state of a node in the broker's pool (GET
// /admin/v1/pool, with the broker's credentials).
func (s *system) nodeState(node string) string {
	GinkgoHelper()
	code, body := s.osb(http.MethodGet, "/admin/v1/pool", nil)
	Expect(code).To(Equal(http.StatusOK), "GET /admin/v1/pool: %v", body)
	nodes, _ := body["nodes"].([]any)
	for _, n := range nodes {
		if n, _ := n.(map[string]any); n["id"] == node {
			state, _ := n["state"].(string)
			return state
		}
	}
	Fail("node " + node + " is not in the pool")
	return ""
}

// expectResetAfterRestarts: a dedicated instance's delete starts while its
// node agent is down, the broker restarts before the node agent comes back,
// and the reset still finishes soon after the node agent is back.
func expectResetAfterRestarts(sys *system) {
	p := dedicatedPlan
	id := newID("reset")
	sys.provision(p, id)
	app := client(sys.bind(p, id, newID("app")))
	systemspec.WriteKeys(ctx, app, "tenant", 100)
	pl := sys.locate(p, id)

	Expect(pl.agent.Stop()).To(Succeed(), "SIGTERM to the node agent (its redis-server keeps running)")
	code, body := sys.deprovisionRaw(p, id)
	Expect(code).To(Equal(http.StatusAccepted), "delete while the node agent is down: %v", body)
	Expect(sys.Broker.Stop()).To(Succeed())
	Expect(sys.Broker.Start()).To(Succeed())
	Expect(pl.agent.Start()).To(Succeed())

	// 90 s is far below the ten minutes after which an interrupted reset
	// used to be retried, and far above a reset's few seconds.
	Eventually(func() string { return sys.nodeState(pl.agent.Name) }).WithTimeout(90*time.Second).WithPolling(500*time.Millisecond).
		Should(Equal("free"), "node %s is reset and free again", pl.agent.Name)
	sys.waitDeleted(id, 30*time.Second)
	next := newID("next")
	sys.provision(p, next)
	Expect(sys.locate(p, next).agent).To(Equal(pl.agent), "the new instance gets the reset node")
	Expect(client(sys.bind(p, next, newID("app"))).Get(ctx, "tenant:1").Err()).To(Equal(redis.Nil), "the reset node holds none of the old tenant's data")
}
