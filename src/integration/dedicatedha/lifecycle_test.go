package dedicatedha_test

import (
	"net/http"
	"strconv"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

var _ = Describe("an instance of the dedicated-ha plan", func() {
	It("lives through the kill -9 of its leader's redis-server: provision, bind, failover, unbind, delete", func() {
		sys := startSystem(3, systemtest.Options{})

		By("provisioning a group of the three nodes")
		code, body := systemspec.Provision(sys, "h1", systemtest.HAPlanID, nil)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		Expect(expectPoolConsistent(sys)).To(Equal([]string{"h1"}))

		By("refusing a second group, and a dedicated-vm instance, with 422: no node is free")
		code, body = systemspec.Provision(sys, "h2", systemtest.HAPlanID, nil)
		Expect(code).To(Equal(http.StatusUnprocessableEntity))
		Expect(body["description"]).To(ContainSubstring("an instance needs 3 free dedicated VMs and the pool has 0 free (of 3)"))
		code, _ = systemspec.Provision(sys, "d1", systemtest.DedicatedPlanID, nil)
		Expect(code).To(Equal(http.StatusUnprocessableEntity))

		By("refusing a change to the dedicated-vm plan with 422")
		code, body = systemspec.OSB(sys, "PATCH", "/v2/service_instances/h1", map[string]any{
			"service_id": systemtest.ServiceID, "plan_id": systemtest.DedicatedPlanID})
		Expect(code).To(Equal(http.StatusUnprocessableEntity))
		Expect(body["description"]).To(ContainSubstring("cannot change between plans dedicated-ha and dedicated-vm"))

		By("refusing replica_of with 400")
		code, body = systemspec.OSB(sys, "PATCH", "/v2/service_instances/h1", map[string]any{
			"service_id": systemtest.ServiceID, "parameters": map[string]any{"replica_of": map[string]any{"host": "10.1.2.3", "port": 6379}}})
		Expect(code).To(Equal(http.StatusBadRequest))
		Expect(body["description"]).To(ContainSubstring("it cannot follow another leader"))

		By("binding: the credentials carry the Sentinels, the master name and the leader")
		code, body = systemspec.Bind(sys, "h1", "b1", systemtest.HAPlanID)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		creds := systemspec.Credentials(body)
		GinkgoWriter.Printf("credentials: %v\n", redacted(creds))
		Expect(creds).To(HaveKeyWithValue("master_name", "redis-h1"))
		var sentinels []any
		for i := range sys.Nodes {
			sentinels = append(sentinels, map[string]any{"host": sys.NodeHosts[i], "port": float64(sys.SentinelPorts[i])})
		}
		Expect(creds["sentinels"]).To(Equal(sentinels))
		leaderAddr, err := sentinelLeader(sys, 0, creds)
		Expect(err).NotTo(HaveOccurred())
		Expect(creds["host"].(string) + ":" + strconv.Itoa(int(creds["port"].(float64)))).To(Equal(leaderAddr))
		leader := nodeAt(sys, leaderAddr)

		By("writing through go-redis's FailoverClient, confirmed by both followers")
		fc := failoverClient(creds)
		systemspec.WriteKeys(ctx, fc, "before", 200)
		expectBothFollowers(fc)
		for i := range sys.Nodes {
			systemspec.ExpectKeys(ctx, memberClient(sys, i, creds), "before", 200)
		}

		By("parameters reach every member")
		code, body = systemspec.OSB(sys, "PATCH", "/v2/service_instances/h1", map[string]any{
			"service_id": systemtest.ServiceID, "parameters": map[string]any{"maxmemory-policy": "allkeys-lru"}})
		Expect(code).To(Equal(http.StatusOK), "%v", body)

		By("kill -9 of the leader's redis-server")
		Expect(syscall.Kill(systemspec.RedisPid(sys, leader), syscall.SIGKILL)).To(Succeed())
		Eventually(func() error { return fc.Set(ctx, "after", "1", 0).Err() }).WithTimeout(time.Minute).Should(Succeed())
		// Every Sentinel names the new leader once the one that ran the
		// failover told the others (the client may have heard first).
		var newAddr string
		for i := range sys.Nodes {
			Eventually(func() (string, error) { return sentinelLeader(sys, i, creds) }).
				ShouldNot(Equal(leaderAddr), "node %d's Sentinel: a follower was promoted", i)
		}
		newAddr, err = sentinelLeader(sys, 0, creds)
		Expect(err).NotTo(HaveOccurred())
		systemspec.ExpectKeys(ctx, fc, "before", 200)

		By("the binding made before works on every member, the old leader following the new one")
		expectBothFollowers(fc)
		for i := range sys.Nodes {
			rc := memberClient(sys, i, creds)
			Eventually(func() (string, error) { return rc.Get(ctx, "after").Result() }).Should(Equal("1"), "node %d", i)
			systemspec.ExpectKeys(ctx, rc, "before", 200)
			Expect(rc.ConfigGet(ctx, "maxmemory-policy").Err()).To(MatchError(ContainSubstring("NOPERM")))
		}
		code, body = systemspec.OSB(sys, "GET", "/v2/service_instances/h1", nil)
		Expect(code).To(Equal(http.StatusOK))
		Expect(systemspec.Attributes(body)).To(HaveKeyWithValue("node", sys.Nodes[nodeAt(sys, newAddr)].Name))

		By("a binding made after the failover points at the new leader")
		code, body = systemspec.Bind(sys, "h1", "b2", systemtest.HAPlanID)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		creds2 := systemspec.Credentials(body)
		Expect(creds2["host"].(string) + ":" + strconv.Itoa(int(creds2["port"].(float64)))).To(Equal(newAddr))

		By("unbinding removes the user from every member and every Sentinel")
		Expect(unbind(sys, "h1", "b1")).To(Equal(http.StatusOK))
		for i := range sys.Nodes {
			Expect(memberClient(sys, i, creds).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")), "node %d", i)
			_, err := sentinelLeader(sys, i, creds)
			Expect(err).To(MatchError(ContainSubstring("WRONGPASS")), "node %d's Sentinel", i)
			Expect(memberClient(sys, i, creds2).Ping(ctx).Err()).To(Succeed())
		}

		By("deleting resets all three nodes, back in the pool and clean")
		Expect(systemspec.Deprovision(sys, "h1", systemtest.HAPlanID)).To(Equal(http.StatusOK))
		expectAllFreeAndClean(sys)
		for i := range sys.Nodes {
			Expect(memberClient(sys, i, creds2).Ping(ctx).Err()).To(HaveOccurred(), "node %d", i)
		}

		By("the nodes serve the dedicated-vm plan again")
		code, _ = systemspec.Provision(sys, "d1", systemtest.DedicatedPlanID, nil)
		Expect(code).To(Equal(http.StatusCreated))
		Expect(systemspec.Deprovision(sys, "d1", systemtest.DedicatedPlanID)).To(Equal(http.StatusOK))
	})
})

// redacted is a binding's credentials without its secrets, for the log.
func redacted(creds map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range creds {
		switch k {
		case "password", "uri", "tls_uri":
			v = "(redacted)"
		}
		out[k] = v
	}
	return out
}

var _ = Describe("an instance of the dedicated-ha plan on nodes serving TLS", func() {
	It("is TLS-only when asked: replication and Sentinels over TLS, tls_ca verifying both, and a failover through them", func() {
		sys := startSystem(3, systemtest.Options{RedisTLS: true})
		code, body := systemspec.OSB(sys, "PUT", systemspec.ProvisionPath("t1"), map[string]any{
			"service_id": systemtest.ServiceID, "plan_id": systemtest.HAPlanID, "organization_guid": "org", "space_guid": "space",
			"parameters": map[string]any{"tls_only": true}})
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		code, body = systemspec.Bind(sys, "t1", "b1", systemtest.HAPlanID)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		creds := systemspec.Credentials(body)
		GinkgoWriter.Printf("credentials: %v\n", redacted(creds))
		Expect(creds).To(HaveKeyWithValue("tls", true))
		Expect(creds).To(HaveKeyWithValue("tls_ca", sys.RedisCA.PEM))
		Expect(creds["uri"]).To(HavePrefix("rediss://"))
		Expect(creds["port"]).To(Equal(creds["tls_port"]))
		Expect(creds["sentinels"]).To(HaveLen(3))

		fc := failoverClient(creds)
		systemspec.WriteKeys(ctx, fc, "before", 100)
		expectBothFollowers(fc)
		leader := -1
		for i := range sys.Nodes {
			if sys.NodeHosts[i] == creds["host"] {
				leader = i
			}
		}
		Expect(leader).NotTo(Equal(-1))

		By("kill -9 of the leader's redis-server")
		Expect(syscall.Kill(systemspec.RedisPid(sys, leader), syscall.SIGKILL)).To(Succeed())
		Eventually(func() error { return fc.Set(ctx, "after", "1", 0).Err() }).WithTimeout(time.Minute).Should(Succeed())
		systemspec.ExpectKeys(ctx, fc, "before", 100)
		expectBothFollowers(fc)

		code, body = systemspec.Bind(sys, "t1", "b2", systemtest.HAPlanID)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		Expect(systemspec.Credentials(body)["host"]).NotTo(Equal(creds["host"]), "a binding made after the failover points at the new leader")
		Expect(systemspec.Deprovision(sys, "t1", systemtest.HAPlanID)).To(Equal(http.StatusOK))
		expectAllFreeAndClean(sys)
	})
})
