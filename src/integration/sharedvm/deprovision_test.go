package sharedvm_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	osb "sigs.k8s.io/go-open-service-broker-client/v2"

	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

var _ = Describe("Deprovisioning", Ordered, ContinueOnFailure, func() {
	var sys *system

	BeforeAll(func() {
		sys = startSystem(systemtest.Options{})
	})

	It("reports last_operation succeeded for a live instance", func() {
		id := newID("inst")
		sys.provision(id, nil)
		op, err := sys.osb.PollLastOperation(&osb.LastOperationRequest{InstanceID: id})
		Expect(err).NotTo(HaveOccurred())
		Expect(op.State).To(Equal(osb.StateSucceeded))
	})

	It("stops the process, removes the instance's files and frees its port; then answers 410 to delete and last_operation", func(ctx SpecContext) {
		id := newID("inst")
		sys.provision(id, nil)
		c := sys.bind(id, newID("bind"))
		rc := connect(c)
		pid, err := serverPid(ctx, rc)
		Expect(err).NotTo(HaveOccurred())
		Expect(sys.redisPid(id)).To(Equal(pid))
		Expect(sys.instanceDir(id)).To(BeADirectory())
		log := filepath.Join(sys.agentDir(0), "logs", "redis-"+id+".log")
		Expect(log).To(BeARegularFile(), "the instance's redis-server log")
		Expect(portFree(c.Host, c.Port)).To(BeFalse())

		sys.deprovision(id)

		Eventually(func() bool { return alive(pid) }).Should(BeFalse())
		Expect(sys.instanceDir(id)).NotTo(BeAnExistingFile())
		Expect(log).NotTo(BeAnExistingFile())
		Expect(portFree(c.Host, c.Port)).To(BeTrue())
		Expect(sys.brokerRecords()).NotTo(HaveKey(id))
		Expect(rc.Ping(ctx).Err()).To(HaveOccurred())

		status, body := sys.do(http.MethodDelete, instancePath(id)+"?accepts_incomplete=true&service_id="+systemtest.ServiceID+"&plan_id="+systemtest.PlanID, nil)
		Expect(status).To(Equal(http.StatusGone), string(body))

		_, err = sys.osb.PollLastOperation(&osb.LastOperationRequest{InstanceID: id})
		Expect(osb.IsGoneError(err)).To(BeTrue(), fmt.Sprint(err))
		_, err = sys.osb.GetInstance(&osb.GetInstanceRequest{InstanceID: id})
		Expect(httpStatus(err)).To(Equal(http.StatusNotFound), fmt.Sprint(err))
	})

	It("deletes an instance with bindings, whose users then have nowhere to connect", func(ctx SpecContext) {
		id := newID("inst")
		sys.provision(id, nil)
		c1, c2 := sys.bind(id, newID("bind")), sys.bind(id, newID("bind"))
		Expect(connect(c1).Ping(ctx).Err()).To(Succeed())
		sys.deprovision(id)
		Expect(connect(c2).Ping(ctx).Err()).To(HaveOccurred())
		Expect(sys.instanceDir(id)).NotTo(BeAnExistingFile())
	})
})

var _ = Describe("Orphan mitigation", func() {
	// deleteStatus deletes over raw HTTP, as Cloud Controller does after a
	// failed provision.
	deleteStatus := func(sys *system, id string) (int, string) {
		status, body := sys.do(http.MethodDelete, instancePath(id)+"?accepts_incomplete=true&service_id="+systemtest.ServiceID+"&plan_id="+systemtest.PlanID, nil)
		return status, string(body)
	}

	// expectNothingLeft checks that an instance is gone everywhere.
	expectNothingLeft := func(sys *system, id string) {
		GinkgoHelper()
		Expect(sys.brokerRecords()).NotTo(HaveKey(id))
		Expect(sys.instanceDir(id)).NotTo(BeAnExistingFile())
		Expect(systemtest.Strays(sys.instanceDir(id))).To(BeEmpty())
		_, err := sys.osb.GetInstance(&osb.GetInstanceRequest{InstanceID: id})
		Expect(httpStatus(err)).To(Equal(http.StatusNotFound), fmt.Sprint(err))
		status, body := sys.doAgent(http.MethodGet, "/v1/instances/"+id, nil)
		Expect(status).To(Equal(http.StatusNotFound), string(body))
	}

	Context("when the agent was down during the provision", Ordered, func() {
		var sys *system

		BeforeAll(func() {
			sys = startSystem(systemtest.Options{})
		})

		It("answers the provision 503 and the delete that follows as gone, leaving nothing", func(ctx SpecContext) {
			id := newID("inst")
			sys.Agents[0].Kill9()
			status, body := sys.do(http.MethodPut, instancePath(id)+"?accepts_incomplete=true", provisionBody(""))
			Expect(status).To(Equal(http.StatusServiceUnavailable), string(body))
			Expect(description(body)).To(ContainSubstring("Try again"))
			Expect(sys.Agents[0].Start()).To(Succeed())

			// Nothing was recorded, so 410 is the answer; Cloud Controller
			// takes 200 and 410 alike as "deleted".
			status, text := deleteStatus(sys, id)
			Expect(status).To(BeElementOf(http.StatusOK, http.StatusGone), text)
			expectNothingLeft(sys, id)

			sys.provision(id, nil)
			Expect(connect(sys.bind(id, newID("bind"))).Ping(ctx).Err()).To(Succeed())
		})
	})

	// The agent runs redis-server through a wrapper that waits while a gate
	// file exists, so a spec can kill the agent in the middle of a create:
	// after the agent recorded the instance and wrote its files, before
	// redis-server answers.
	Context("when the agent died in the middle of the provision", Ordered, ContinueOnFailure, func() {
		var sys *system
		var gate string

		BeforeAll(func() {
			sys = startSystem(systemtest.Options{})
			gate = filepath.Join(sys.Dir, "gate")
			redisServer, err := redistest.Program("redis-server")
			Expect(err).NotTo(HaveOccurred())
			wrapper := filepath.Join(sys.Dir, "gated-redis-server")
			script := fmt.Sprintf("#!/bin/sh\nwhile [ -e %q ]; do sleep 0.02; done\nexec %q \"$@\"\n", gate, redisServer)
			Expect(os.WriteFile(wrapper, []byte(script), 0o700)).To(Succeed())

			Expect(sys.Agents[0].Stop()).To(Succeed())
			data, err := os.ReadFile(sys.Agents[0].Config)
			Expect(err).NotTo(HaveOccurred())
			var cfg map[string]any
			Expect(json.Unmarshal(data, &cfg)).To(Succeed())
			cfg["redis_server"] = wrapper
			data, err = json.Marshal(cfg)
			Expect(err).NotTo(HaveOccurred())
			Expect(os.WriteFile(sys.Agents[0].Config, data, 0o600)).To(Succeed())
			Expect(sys.Agents[0].Start()).To(Succeed())
		})

		// cutShort starts a provision, kills the agent once the wrapper for
		// the instance's redis-server runs, and returns the provision's status.
		cutShort := func(id string) int {
			GinkgoHelper()
			Expect(os.WriteFile(gate, nil, 0o600)).To(Succeed())
			done := make(chan int, 1)
			go func() {
				defer GinkgoRecover()
				status, _ := sys.do(http.MethodPut, instancePath(id)+"?accepts_incomplete=true", provisionBody(""))
				done <- status
			}()
			Eventually(func() []int { return systemtest.Strays(sys.instanceDir(id)) }, 10*time.Second, 5*time.Millisecond).
				ShouldNot(BeEmpty())
			sys.Agents[0].Kill9()
			systemtest.KillStrays(sys.instanceDir(id))
			var status int
			Eventually(done, 10*time.Second).Should(Receive(&status))
			Expect(os.Remove(gate)).To(Succeed())
			Expect(sys.brokerRecords()).To(HaveKeyWithValue(id, HaveKeyWithValue("state", "creating")))
			_, err := sys.osb.GetInstance(&osb.GetInstanceRequest{InstanceID: id})
			Expect(httpStatus(err)).To(Equal(http.StatusNotFound), fmt.Sprint(err))
			Expect(sys.Agents[0].Start()).To(Succeed())
			return status
		}

		It("answers the provision 503, and the delete that follows 200, leaving nothing behind", func() {
			id := newID("inst")
			Expect(cutShort(id)).To(Equal(http.StatusServiceUnavailable))
			// The restarted agent started the instance it had recorded; the
			// broker never reported it.
			Eventually(func() int { status, _ := sys.doAgent(http.MethodGet, "/v1/instances/"+id, nil); return status }).
				Should(Equal(http.StatusOK))

			status, text := deleteStatus(sys, id)
			Expect(status).To(Equal(http.StatusOK), text)
			expectNothingLeft(sys, id)
			_, err := sys.osb.PollLastOperation(&osb.LastOperationRequest{InstanceID: id})
			Expect(osb.IsGoneError(err)).To(BeTrue(), fmt.Sprint(err))
		})

		It("finishes the provision when Cloud Controller retries it instead", func(ctx SpecContext) {
			id := newID("inst")
			Expect(cutShort(id)).To(Equal(http.StatusServiceUnavailable))

			status, body := sys.do(http.MethodPut, instancePath(id)+"?accepts_incomplete=true", provisionBody(""))
			Expect(status).To(Equal(http.StatusCreated), string(body))
			Expect(connect(sys.bind(id, newID("bind"))).Ping(ctx).Err()).To(Succeed())
			sys.deprovision(id)
			expectNothingLeft(sys, id)
		})
	})
})
