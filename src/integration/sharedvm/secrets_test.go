package sharedvm_test

import (
	"net/http"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

var _ = Describe("Secrets", Ordered, func() {
	var sys *system

	BeforeAll(func() {
		sys = startSystem(systemtest.Options{})
	})

	It("are never logged, nor stored in clear on the agent, through a whole create, bind, update, unbind and delete cycle", func(ctx SpecContext) {
		id := newID("inst")
		sys.provision(id, map[string]any{"maxmemory-policy": "allkeys-lru"})
		b1, b2 := newID("bind"), newID("bind")
		c1 := sys.bind(id, b1)
		sys.bind(id, b2)
		Expect(connect(c1).Set(ctx, "k", "v", 0).Err()).To(Succeed())
		status, _ := sys.bindRaw(id, b1, "app-1")
		Expect(status).To(Equal(http.StatusOK))
		status, _ = sys.bindRaw(id, b1, "app-2") // refused: 409
		Expect(status).To(Equal(http.StatusConflict))
		status, _ = sys.getBinding(id, b1)
		Expect(status).To(Equal(http.StatusOK))
		_, err := sys.osb.UpdateInstance(updateRequest(id, map[string]any{"timeout": 5}))
		Expect(err).NotTo(HaveOccurred())
		_, err = sys.osb.UpdateInstance(updateRequest(id, map[string]any{"timeout": "x"})) // refused: 400
		Expect(err).To(HaveOccurred())

		// On the agent, only hashes of binding passwords.
		files := []string{filepath.Join(sys.agentDir(0), "state.json"), filepath.Join(sys.instanceDir(id), "users.acl"), filepath.Join(sys.instanceDir(id), "redis.conf")}
		logs, err := filepath.Glob(filepath.Join(sys.agentDir(0), "logs", "*"))
		Expect(err).NotTo(HaveOccurred())
		files = append(files, logs...)
		for _, f := range files {
			data, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			for _, secret := range sys.secrets() {
				Expect(string(data)).NotTo(ContainSubstring(secret), f)
			}
		}

		sys.unbind(id, b1)
		sys.unbind(id, b2)
		sys.deprovision(id)

		brokerLog, agentLog := sys.Broker.Log(), sys.Agents[0].Log()
		Expect(brokerLog).To(ContainSubstring(id))
		Expect(agentLog).To(ContainSubstring(id))
		for _, secret := range sys.secrets() {
			Expect(brokerLog).NotTo(ContainSubstring(secret))
			Expect(agentLog).NotTo(ContainSubstring(secret))
		}
	})
})
