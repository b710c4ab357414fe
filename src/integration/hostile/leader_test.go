package hostile_test

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/testkit/fakeleader"
)

// hostileStream is what a leader the tenant runs sends its follower: it
// runs there as admin, lifting the memory limit, opening the default user,
// turning persistence off and the output buffers unbounded; the marker key
// comes last, so a follower that holds it ran all the rest.
var hostileStream = [][]string{
	{"CONFIG", "SET", "maxmemory", "0"},
	{"ACL", "SETUSER", "default", "on", "nopass", "+@all", "~*"},
	{"CONFIG", "SET", "appendonly", "no"},
	{"CONFIG", "SET", "client-output-buffer-limit", "normal 0 0 0"},
	{"SET", "hostile-marker", "1"},
}

// expectHostileLeaderContained makes an instance of p follow a fake leader
// the tenant runs, and checks that the platform's settings and users come
// back after the leader's stream changed them, and that a leader that keeps
// changing them is cut off.
//
// The attack goes to the agent's API (PUT /v1/instances/{id}/replication),
// not through the broker: the broker refuses a loopback leader, and would
// pass only an address in its operator's external_leaders; the allowed
// leader is then the hostile one, which this fake plays.
func expectHostileLeaderContained(sys *system, p plan) {
	id := newID("follower")
	sys.provisionForSpec(p, id)
	creds := sys.bind(p, id, newID("app"))
	app := client(creds)
	pl := sys.locate(p, id)
	planMaxMemory := int64(pl.agentInstance()["maxmemory_bytes"].(float64))
	Expect(planMaxMemory).To(BeNumerically(">", 0))

	leader, err := fakeleader.Start(hostileStream...)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(leader.Close)
	Expect(pl.agentCall(http.MethodPut, "/v1/instances/"+url.PathEscape(id)+"/replication", map[string]any{
		"leader": map[string]any{"host": leader.Host(), "port": leader.Port()},
	}, nil)).To(Succeed(), "the agent makes the instance follow")

	By("the follower ran the whole stream once")
	Eventually(func() string { return app.Get(ctx, "hostile-marker").Val() }).Should(Equal("1"))

	By("within seconds the agent puts the platform's settings and users back")
	Eventually(func(g Gomega) {
		mm, err := pl.liveConfig(addr(creds), "maxmemory")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(mm).To(Equal(strconv.FormatInt(planMaxMemory, 10)), "maxmemory")
		g.Expect(pingWithoutAuth(addr(creds))).To(MatchError(ContainSubstring("NOAUTH")), "PING without AUTH")
		aof, err := pl.liveConfig(addr(creds), "appendonly")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(aof).To(Equal("yes"), "appendonly")
	}).WithTimeout(15 * time.Second).Should(Succeed())

	By("a leader that keeps changing them is cut off")
	leader.Repeat(200 * time.Millisecond)
	Eventually(func() any { return pl.agentInstance()["replication_stopped"] }).
		Should(And(BeAssignableToTypeOf(""), Not(BeEmpty())), "GET /v1/instances/%s says why replication stopped", id)
	Eventually(leader.Open).Should(BeZero(), "the follower's connection to the leader is closed")
	connections := leader.Connections()
	// Long enough for several of redis-server's reconnect attempts (one a
	// second).
	Consistently(leader.Connections).WithTimeout(3*time.Second).WithPolling(100*time.Millisecond).
		Should(Equal(connections), "the instance stopped reconnecting to the leader")

	By("the platform's settings hold, and the binding user and the admin still work")
	mm, err := pl.liveConfig(addr(creds), "maxmemory")
	Expect(err).NotTo(HaveOccurred())
	Expect(mm).To(Equal(strconv.FormatInt(planMaxMemory, 10)))
	Expect(pingWithoutAuth(addr(creds))).To(MatchError(ContainSubstring("NOAUTH")))
	Expect(app.Ping(ctx).Err()).To(Succeed())
	Expect(ping(creds)).To(Succeed())
	Expect(pl.admin(addr(creds)).Ping(ctx).Err()).To(Succeed())
}
