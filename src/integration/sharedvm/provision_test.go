package sharedvm_test

import (
	"fmt"
	"net/http"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	osb "sigs.k8s.io/go-open-service-broker-client/v2"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

var _ = Describe("Provisioning", Ordered, ContinueOnFailure, func() {
	var sys *system

	BeforeAll(func() {
		sys = startSystem(systemtest.Options{})
	})

	It("answers 201 to a new instance, which answers PING through a binding's credentials", func(ctx SpecContext) {
		id := newID("inst")
		status, body := sys.do(http.MethodPut, instancePath(id)+"?accepts_incomplete=true", provisionBody(""))
		Expect(status).To(Equal(http.StatusCreated), string(body))

		rc := connect(sys.bind(id, newID("bind")))
		Expect(rc.Ping(ctx).Val()).To(Equal("PONG"))
	})

	It("creates synchronously for the OSB client: no async answer, and the instance is retrievable at once", func() {
		id := newID("inst")
		sys.provision(id, nil)
		got, err := sys.osb.GetInstance(&osb.GetInstanceRequest{InstanceID: id})
		Expect(err).NotTo(HaveOccurred())
		Expect(got.PlanID).To(Equal(systemtest.PlanID))
		Expect(got.ServiceID).To(Equal(systemtest.ServiceID))
	})

	It("answers 200 to the same request again, whatever the key order, and keeps the one instance", func(ctx SpecContext) {
		id := newID("inst")
		sys.provision(id, map[string]any{"timeout": 60, "maxmemory-policy": "allkeys-lru"})
		rc := connect(sys.bind(id, newID("bind")))
		pid, err := serverPid(ctx, rc)
		Expect(err).NotTo(HaveOccurred())

		status, body := sys.do(http.MethodPut, instancePath(id)+"?accepts_incomplete=true",
			provisionBody(`{ "maxmemory-policy" : "allkeys-lru", "timeout": 60 }`))
		Expect(status).To(Equal(http.StatusOK), string(body))
		_, err = sys.osb.ProvisionInstance(provisionRequest(id, map[string]any{"timeout": 60, "maxmemory-policy": "allkeys-lru"}))
		Expect(err).NotTo(HaveOccurred())

		Expect(serverPid(ctx, rc)).To(Equal(pid))
	})

	It("answers 409 to the same id with other parameters or in another space", func() {
		id := newID("inst")
		sys.provision(id, map[string]any{"timeout": 60})

		status, body := sys.do(http.MethodPut, instancePath(id), provisionBody(`{"timeout": 61}`))
		Expect(status).To(Equal(http.StatusConflict), string(body))
		status, body = sys.do(http.MethodPut, instancePath(id), provisionBody(""))
		Expect(status).To(Equal(http.StatusConflict), string(body))

		req := provisionRequest(id, map[string]any{"timeout": 60})
		req.SpaceGUID = "space-2"
		_, err := sys.osb.ProvisionInstance(req)
		Expect(osb.IsConflictError(err)).To(BeTrue(), fmt.Sprint(err))
	})

	It("answers 400 to an unknown plan id or service id, and creates nothing", func() {
		id := newID("inst")
		req := provisionRequest(id, nil)
		req.PlanID = "no-such-plan"
		_, err := sys.osb.ProvisionInstance(req)
		Expect(httpStatus(err)).To(Equal(http.StatusBadRequest), fmt.Sprint(err))

		req = provisionRequest(id, nil)
		req.ServiceID = "no-such-service"
		_, err = sys.osb.ProvisionInstance(req)
		Expect(httpStatus(err)).To(Equal(http.StatusBadRequest), fmt.Sprint(err))

		_, err = sys.osb.GetInstance(&osb.GetInstanceRequest{InstanceID: id})
		Expect(httpStatus(err)).To(Equal(http.StatusNotFound), fmt.Sprint(err))
		Expect(sys.brokerRecords()).NotTo(HaveKey(id))
		Expect(sys.instanceDir(id)).NotTo(BeADirectory())
	})

	DescribeTable("answers 400 naming the key to parameters outside the schema, and creates nothing",
		func(params, key string) {
			id := newID("inst")
			status, body := sys.do(http.MethodPut, instancePath(id)+"?accepts_incomplete=true", provisionBody(params))
			Expect(status).To(Equal(http.StatusBadRequest), string(body))
			Expect(description(body)).To(ContainSubstring(key))
			Expect(sys.brokerRecords()).NotTo(HaveKey(id))
			Expect(sys.instanceDir(id)).NotTo(BeADirectory())
		},
		Entry("an unknown maxmemory-policy", `{"maxmemory-policy":"bogus"}`, `"maxmemory-policy"`),
		Entry("an unknown parameter", `{"nope":1}`, `"nope"`),
		Entry("a negative timeout", `{"timeout":-1}`, `"timeout"`),
		Entry("a timeout given as a string", `{"timeout":"300"}`, `"timeout"`),
		Entry("a fractional timeout", `{"timeout":1.5}`, `"timeout"`),
		Entry("a keyspace event flag Redis does not know", `{"notify-keyspace-events":"Q"}`, `"notify-keyspace-events"`),
		Entry("parameters that are a string", `"allkeys-lru"`, "parameters"),
		Entry("parameters that are an array", `[{"timeout":1}]`, "parameters"),
	)
})

var _ = Describe("The plan's limits", func() {
	// provisionStatus provisions over raw HTTP and returns the status and the
	// description of an error.
	provisionStatus := func(sys *system, id string) (int, string) {
		status, body := sys.do(http.MethodPut, instancePath(id)+"?accepts_incomplete=true", provisionBody(""))
		return status, description(body)
	}

	Context("with at most 2 instances in the plan", Ordered, func() {
		var sys *system
		var created []string

		BeforeAll(func() {
			sys = startSystem(systemtest.Options{MaxInstances: 2})
		})

		It("creates 2 of 6 racing provisions and answers the others 422 saying the plan is full, never 500", func() {
			type result struct {
				id     string
				status int
				desc   string
			}
			results := make(chan result, 6)
			var wg sync.WaitGroup
			for range 6 {
				wg.Go(func() {
					defer GinkgoRecover()
					id := newID("inst")
					status, desc := provisionStatus(sys, id)
					results <- result{id, status, desc}
				})
			}
			wg.Wait()
			close(results)
			var full int
			for r := range results {
				switch r.status {
				case http.StatusCreated:
					created = append(created, r.id)
				case http.StatusUnprocessableEntity:
					Expect(r.desc).To(ContainSubstring("plan is full"))
					full++
				default:
					Fail(fmt.Sprintf("provision of %s answered %d: %s", r.id, r.status, r.desc))
				}
			}
			Expect(created).To(HaveLen(2))
			Expect(full).To(Equal(4))
			Expect(sys.brokerRecords()).To(HaveLen(2))
		})

		It("takes an instance again once one is deleted", func(ctx SpecContext) {
			Expect(created).NotTo(BeEmpty())
			status, desc := provisionStatus(sys, newID("inst"))
			Expect(status).To(Equal(http.StatusUnprocessableEntity), desc)

			sys.deprovision(created[0])
			id := newID("inst")
			status, desc = provisionStatus(sys, id)
			Expect(status).To(Equal(http.StatusCreated), desc)
			Expect(connect(sys.bind(id, newID("bind"))).Ping(ctx).Err()).To(Succeed())
		})
	})

	Context("with an agent whose memory holds 2 instances", Ordered, func() {
		var sys *system

		BeforeAll(func() {
			sys = startSystem(systemtest.Options{MaxMemoryMB: 16, AgentMemoryMB: 40})
		})

		It("answers the third provision 422 saying the plan is full, and records nothing of it", func() {
			sys.provision(newID("inst"), nil)
			sys.provision(newID("inst"), nil)

			id := newID("inst")
			_, err := sys.osb.ProvisionInstance(provisionRequest(id, nil))
			Expect(httpStatus(err)).To(Equal(http.StatusUnprocessableEntity), fmt.Sprint(err))
			Expect(errDescription(err)).To(ContainSubstring("plan is full"))
			Expect(sys.brokerRecords()).NotTo(HaveKey(id))
			Expect(sys.instanceDir(id)).NotTo(BeADirectory())

			_, err = sys.osb.GetInstance(&osb.GetInstanceRequest{InstanceID: id})
			Expect(httpStatus(err)).To(Equal(http.StatusNotFound), fmt.Sprint(err))
		})
	})
})
