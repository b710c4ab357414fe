package broker

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
)

var _ = Describe("the OSB verbs against in-memory agents", func() {
	var f *fixture
	BeforeEach(func() { f = newFixture() })

	Describe("catalog", func() {
		It("lists one service tagged redis with both plans, their schemas and maintenance_info", func() {
			code, body := f.call(http.MethodGet, "/v2/catalog", nil)
			Expect(code).To(Equal(http.StatusOK))
			services := body["services"].([]any)
			Expect(services).To(HaveLen(1))
			svc := services[0].(map[string]any)
			Expect(svc["id"]).To(Equal(serviceID))
			Expect(svc["tags"]).To(ContainElement("redis"))
			Expect(svc["bindable"]).To(BeTrue())
			Expect(svc["instances_retrievable"]).To(BeTrue())
			plans := svc["plans"].([]any)
			Expect(plans).To(HaveLen(2))
			var ids, names []any
			for _, p := range plans {
				p := p.(map[string]any)
				ids, names = append(ids, p["id"]), append(names, p["name"])
				Expect(p["maintenance_info"]).To(HaveKeyWithValue("version", Version))
				Expect(p["schemas"]).To(HaveKey("service_instance"))
			}
			Expect(ids).To(Equal([]any{sharedPlanID, dedicPlanID}))
			Expect(names).To(Equal([]any{"shared-vm", "dedicated-vm"}))
		})

		It("refuses requests without credentials (401) or without the API version (412)", func() {
			req := httptest.NewRequest(http.MethodGet, "/v2/catalog", nil)
			req.Header.Set("X-Broker-API-Version", apiVersion)
			w := httptest.NewRecorder()
			f.h.ServeHTTP(w, req)
			Expect(w.Code).To(Equal(http.StatusUnauthorized))

			req = httptest.NewRequest(http.MethodGet, "/v2/catalog", nil)
			req.SetBasicAuth(brokerUser, brokerPass)
			w = httptest.NewRecorder()
			f.h.ServeHTTP(w, req)
			Expect(w.Code).To(Equal(http.StatusPreconditionFailed))
		})
	})

	Describe("provision (shared-vm)", func() {
		It("creates the instance on the agent with the most free memory and answers 201", func() {
			f.mustProvision("i1", sharedPlanID)
			Expect(f.agents["a0"].ids()).To(Equal([]string{"i1"}))
			Expect(f.agents["a0"].instance("i1").MaxMemoryBytes).To(Equal(int64(64 << 20)))
			r := f.record("i1")
			Expect(r.VM).To(Equal("a0"))
			Expect(r.State).To(Equal(stateReady))
			Expect(r.Port).To(Equal(32768))
		})

		It("answers 200 to an identical request and 409 to one with other parameters", func() {
			f.mustProvision("i1", sharedPlanID)
			code, _ := f.provision("i1", sharedPlanID)
			Expect(code).To(Equal(http.StatusOK))
			code, body := f.provisionIn("i1", sharedPlanID, tenantSpace, map[string]any{"timeout": 30})
			Expect(code).To(Equal(http.StatusConflict))
			Expect(description(body)).To(ContainSubstring("already exists"))
			Expect(f.agents["a0"].ids()).To(HaveLen(1))
		})

		It("answers 400 to a bad id, a bad parameter (naming it) and an unknown plan", func() {
			code, body := f.provision("_bad", sharedPlanID)
			Expect(code).To(Equal(http.StatusBadRequest))
			Expect(description(body)).To(ContainSubstring("instance id"))

			code, body = f.provisionIn("i1", sharedPlanID, tenantSpace, map[string]any{"maxmemory-policy": "sometimes"})
			Expect(code).To(Equal(http.StatusBadRequest))
			Expect(description(body)).To(ContainSubstring("maxmemory-policy"))

			code, body = f.provision("i1", "no-such-plan")
			Expect(code).To(Equal(http.StatusBadRequest))
			Expect(description(body)).To(ContainSubstring("not in the catalog"))
			Expect(f.record("i1")).To(BeNil())
		})

		It("answers 422 MaintenanceInfoConflict to another maintenance_info version", func() {
			code, _ := f.call(http.MethodPut, instancePath("i1"), map[string]any{"service_id": serviceID, "plan_id": sharedPlanID,
				"organization_guid": tenantOrg, "space_guid": tenantSpace, "maintenance_info": map[string]any{"version": "9.9.9"}})
			Expect(code).To(Equal(http.StatusUnprocessableEntity))
		})

		It("answers 422 once the plan holds max_instances, and keeps no record", func() {
			for i := range 3 {
				f.mustProvision(fmt.Sprint("i", i), sharedPlanID)
			}
			code, body := f.provision("i3", sharedPlanID)
			Expect(code).To(Equal(http.StatusUnprocessableEntity))
			Expect(description(body)).To(ContainSubstring("The shared-vm plan is full: it holds at most 3 instances"))
			Expect(f.record("i3")).To(BeNil())
		})

		It("answers 422 when no shared VM has the memory, and keeps no record", func() {
			f.agents["a0"].set(func(m *memAgent) { m.memory = 32 << 20 })
			f.agents["a1"].set(func(m *memAgent) { m.memory = 32 << 20 })
			code, body := f.provision("i1", sharedPlanID)
			Expect(code).To(Equal(http.StatusUnprocessableEntity))
			Expect(description(body)).To(ContainSubstring("plan is full"))
			Expect(f.record("i1")).To(BeNil())
		})

		It("moves on to the next agent when the first refuses for want of room", func() {
			f.agents["a0"].failNext("create", fmt.Errorf("%w: ports", agentapi.ErrFull))
			f.mustProvision("i1", sharedPlanID)
			Expect(f.record("i1").VM).To(Equal("a1"))
			Expect(f.agents["a1"].ids()).To(Equal([]string{"i1"}))
		})

		It("answers 503 when no agent can be reached, and keeps no record", func() {
			f.agents["a0"].set(func(m *memAgent) { m.down = true })
			f.agents["a1"].set(func(m *memAgent) { m.down = true })
			code, body := f.provision("i1", sharedPlanID)
			Expect(code).To(Equal(http.StatusServiceUnavailable))
			Expect(description(body)).To(ContainSubstring("could not reach any VM"))
			Expect(f.record("i1")).To(BeNil())
		})

		It("places on the agent that answers when the other does not", func() {
			f.agents["a0"].set(func(m *memAgent) { m.down = true })
			f.mustProvision("i1", sharedPlanID)
			Expect(f.record("i1").VM).To(Equal("a1"))
		})
	})

	Describe("bind and unbind", func() {
		BeforeEach(func() { f.mustProvision("i1", sharedPlanID) })

		It("answers 201 with credentials of a user of its own: a parseable redis:// URI, host, port and password", func() {
			code, body := f.bind("i1", "b1", "app")
			Expect(code).To(Equal(http.StatusCreated), "%v", body)
			c := credentialsOf(body)
			Expect(c).To(HaveKeyWithValue("host", "10.0.0.10"))
			Expect(c).To(HaveKeyWithValue("hostname", "10.0.0.10"))
			Expect(c).To(HaveKeyWithValue("port", BeNumerically("==", 32768)))
			Expect(c).To(HaveKeyWithValue("username", "b1"))
			Expect(c).NotTo(HaveKey("tls_port"))
			u, err := url.Parse(c["uri"].(string))
			Expect(err).NotTo(HaveOccurred())
			Expect(u.Scheme).To(Equal("redis"))
			Expect(u.Host).To(Equal("10.0.0.10:32768"))
			pw, _ := u.User.Password()
			Expect(pw).To(Equal(c["password"]))
			Expect(f.agents["a0"].instance("i1").passwords).To(HaveKeyWithValue("b1", c["password"]))
			Expect(body["endpoints"]).To(ConsistOf(HaveKeyWithValue("host", "10.0.0.10")))
		})

		It("answers 200 with the same credentials to an identical rebind, 409 to another app", func() {
			_, first := f.bind("i1", "b1", "app")
			code, again := f.bind("i1", "b1", "app")
			Expect(code).To(Equal(http.StatusOK))
			Expect(credentialsOf(again)["password"]).To(Equal(credentialsOf(first)["password"]))
			code, _ = f.bind("i1", "b1", "other-app")
			Expect(code).To(Equal(http.StatusConflict))
		})

		It("adds tls_port, a rediss:// tls_uri and tls_ca when the agent serves TLS", func() {
			f.agents["a0"].set(func(m *memAgent) { m.tlsCA = "-----BEGIN CERTIFICATE-----" })
			f.mustProvision("i2", sharedPlanID)
			_, body := f.bind("i2", "b1", "app")
			c := credentialsOf(body)
			Expect(c).To(HaveKeyWithValue("tls_ca", "-----BEGIN CERTIFICATE-----"))
			Expect(c).To(HaveKeyWithValue("tls_port", BeNumerically("==", 42769)))
			u, err := url.Parse(c["tls_uri"].(string))
			Expect(err).NotTo(HaveOccurred())
			Expect(u.Scheme).To(Equal("rediss"))
			Expect(u.Port()).To(Equal("42769"))
		})

		It("refuses binding parameters (400) and unknown instances (404)", func() {
			code, _ := f.call(http.MethodPut, instancePath("i1")+"/service_bindings/b1",
				map[string]any{"service_id": serviceID, "plan_id": sharedPlanID, "app_guid": "app", "parameters": map[string]any{"x": 1}})
			Expect(code).To(Equal(http.StatusBadRequest))
			code, _ = f.bind("nope", "b1", "app")
			Expect(code).To(Equal(http.StatusNotFound))
		})

		It("answers GET binding with the credentials, 404 for an unknown one", func() {
			_, body := f.bind("i1", "b1", "app")
			code, got := f.call(http.MethodGet, instancePath("i1")+"/service_bindings/b1", nil)
			Expect(code).To(Equal(http.StatusOK))
			Expect(credentialsOf(got)["uri"]).To(Equal(credentialsOf(body)["uri"]))
			code, _ = f.call(http.MethodGet, instancePath("i1")+"/service_bindings/b2", nil)
			Expect(code).To(Equal(http.StatusNotFound))
		})

		It("keeps the binding when the agent cannot be reached (503), and a retry hands out the same password", func() {
			f.agents["a0"].failNext("bind", fmt.Errorf("%w: refused", agentapi.ErrUnavailable))
			code, _ := f.bind("i1", "b1", "app")
			Expect(code).To(Equal(http.StatusServiceUnavailable))
			stored := f.record("i1").Bindings["b1"].Password
			code, body := f.bind("i1", "b1", "app")
			Expect(code).To(Equal(http.StatusCreated))
			Expect(credentialsOf(body)["password"]).To(Equal(stored))
		})

		It("unbinds (200) removing the user from the agent, then answers 410", func() {
			f.bind("i1", "b1", "app")
			code, _ := f.unbind("i1", "b1")
			Expect(code).To(Equal(http.StatusOK))
			Expect(f.agents["a0"].instance("i1").passwords).NotTo(HaveKey("b1"))
			code, _ = f.unbind("i1", "b1")
			Expect(code).To(Equal(http.StatusGone))
		})

		It("unbinds a user the agent no longer has", func() {
			f.bind("i1", "b1", "app")
			Expect(f.agents["a0"].Unbind(ctx, "i1", "b1")).To(Succeed())
			code, _ := f.unbind("i1", "b1")
			Expect(code).To(Equal(http.StatusOK))
		})

		It("refuses binding ids that are reserved or not usernames (400) before any agent is asked, and binds and deletes normally after", func() {
			for _, bindingID := range []string{"default", "platform-admin", "replica-0123456789abcdef", "replica-", ".hidden", "a%20b", "a:b", "-x", strings.Repeat("b", 129)} {
				code, body := f.bind("i1", bindingID, "app")
				Expect(code).To(Equal(http.StatusBadRequest), bindingID)
				Expect(description(body)).To(ContainSubstring("binding id"), bindingID)
			}
			code, body := f.bind("i1", "default", "app")
			Expect(description(body)).To(Equal(`binding id "default" is reserved: it names a Redis user the platform uses; bind with another id`))
			code, body = f.bind("i1", "a%20b", "app")
			Expect(description(body)).To(Equal(`binding id "a b" must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit`))
			Expect(f.record("i1").Bindings).To(BeEmpty())
			Expect(f.agents["a0"].instance("i1").passwords).To(BeEmpty())

			code, _ = f.bind("i1", "b1", "app")
			Expect(code).To(Equal(http.StatusCreated))
			code, _ = f.unbind("i1", "default")
			Expect(code).To(Equal(http.StatusGone))
			code, _ = f.unbind("i1", "b1")
			Expect(code).To(Equal(http.StatusOK))
			code, _ = f.deprovision("i1", sharedPlanID, false)
			Expect(code).To(Equal(http.StatusOK))
		})

		It("unbinds a binding with a reserved id kept from before the broker refused them, without asking the agent", func() {
			Expect(f.b.state.Update(func(s *state) error {
				s.Instances.Edit("i1").Bindings["platform-admin"] = &binding{ID: "platform-admin", AppGUID: "app", Username: "platform-admin", Password: "x", State: stateCreating}
				return nil
			})).To(Succeed())
			// The real agents refuse to touch their admin or default user.
			f.agents["a0"].failNext("unbind", fmt.Errorf("%w: binding id \"platform-admin\" is reserved", agentapi.ErrInvalid))
			code, body := f.unbind("i1", "platform-admin")
			Expect(code).To(Equal(http.StatusOK), "%v", body)
			Expect(f.record("i1").Bindings).To(BeEmpty())
			code, _ = f.deprovision("i1", sharedPlanID, false)
			Expect(code).To(Equal(http.StatusOK))
		})

		It("binds to a dedicated instance through its node", func() {
			f.mustProvision("d1", dedicPlanID)
			code, body := f.bind("d1", "b1", "app")
			Expect(code).To(Equal(http.StatusCreated))
			Expect(credentialsOf(body)).To(HaveKeyWithValue("host", "10.0.1.10"))
			Expect(credentialsOf(body)).To(HaveKeyWithValue("port", BeNumerically("==", 6379)))
			Expect(f.agents["n0"].instance("d1").passwords).To(HaveKey("b1"))
		})
	})

	Describe("update", func() {
		BeforeEach(func() { f.mustProvision("i1", sharedPlanID) })

		It("applies parameters on the agent, keeping those left out", func() {
			code, body := f.update("i1", map[string]any{"parameters": map[string]any{"maxmemory-policy": "allkeys-lru"}})
			Expect(code).To(Equal(http.StatusOK), "%v", body)
			code, _ = f.update("i1", map[string]any{"parameters": map[string]any{"timeout": 60}})
			Expect(code).To(Equal(http.StatusOK))
			p := f.agents["a0"].instance("i1").Parameters
			Expect(p.MaxMemoryPolicy).To(Equal("allkeys-lru"))
			Expect(p.Timeout).To(Equal(60))
			_, got := f.call(http.MethodGet, instancePath("i1"), nil)
			Expect(got["parameters"]).To(HaveKeyWithValue("maxmemory-policy", "allkeys-lru"))
		})

		It("refuses bad parameters (400) and a plan change (422)", func() {
			code, body := f.update("i1", map[string]any{"parameters": map[string]any{"bogus": 1}})
			Expect(code).To(Equal(http.StatusBadRequest))
			Expect(description(body)).To(ContainSubstring("bogus"))
			code, _ = f.update("i1", map[string]any{"plan_id": dedicPlanID})
			Expect(code).To(Equal(http.StatusUnprocessableEntity))
			Expect(f.record("i1").PlanID).To(Equal(sharedPlanID))
		})

		It("records a maintenance_info upgrade", func() {
			f.b.cfg.Catalog.MaintenanceVersion = "1.1.0"
			code, _ := f.update("i1", map[string]any{"maintenance_info": map[string]any{"version": "1.1.0"}})
			Expect(code).To(Equal(http.StatusOK))
			Expect(f.record("i1").MaintenanceVersion).To(Equal("1.1.0"))
		})

		It("makes an instance follow another of its space and back, with a replication user on the leader", func() {
			f.mustProvision("d1", dedicPlanID)
			code, body := f.update("i1", map[string]any{"parameters": map[string]any{"replica_of": "d1"}})
			Expect(code).To(Equal(http.StatusOK), "%v", body)
			leader := f.agents["a0"].instance("i1").leader
			Expect(leader).NotTo(BeNil())
			Expect(leader.Host).To(Equal("10.0.1.10"))
			Expect(f.agents["n0"].instance("d1").passwords).To(HaveKeyWithValue(leader.Username, leader.Password))
			Expect(f.attributes("i1")).To(HaveKeyWithValue("replica_of", "d1"))

			code, body = f.deprovision("d1", dedicPlanID, false)
			Expect(code).To(Equal(http.StatusUnprocessableEntity))
			Expect(description(body)).To(ContainSubstring("is the leader of i1"))

			code, _ = f.update("i1", map[string]any{"parameters": map[string]any{"replica_of": nil}})
			Expect(code).To(Equal(http.StatusOK))
			Expect(f.agents["a0"].instance("i1").leader).To(BeNil())
			Expect(f.agents["n0"].instance("d1").passwords).NotTo(HaveKey(leader.Username))
		})

		It("refuses a leader in another space, an unknown leader, itself and a loop (400)", func() {
			code, _ := f.provisionIn("far", sharedPlanID, otherSpace, nil)
			Expect(code).To(Equal(http.StatusCreated))
			f.mustProvision("i2", sharedPlanID)
			for leader, says := range map[string]string{"far": "another space", "ghost": "no instance ghost", "i1": "cannot follow itself"} {
				code, body := f.update("i1", map[string]any{"parameters": map[string]any{"replica_of": leader}})
				Expect(code).To(Equal(http.StatusBadRequest), leader)
				Expect(description(body)).To(ContainSubstring(says))
			}
			code, _ = f.update("i2", map[string]any{"parameters": map[string]any{"replica_of": "i1"}})
			Expect(code).To(Equal(http.StatusOK))
			code, body := f.update("i1", map[string]any{"parameters": map[string]any{"replica_of": "i2"}})
			Expect(code).To(Equal(http.StatusBadRequest))
			Expect(description(body)).To(ContainSubstring("loop"))
		})

		It("answers 404 for an unknown instance", func() {
			code, _ := f.update("ghost", map[string]any{"parameters": map[string]any{"timeout": 1}})
			Expect(code).To(Equal(http.StatusNotFound))
		})
	})

	Describe("GET instance", func() {
		It("reports a shared instance's VM and what its server says", func() {
			f.mustProvision("i1", sharedPlanID)
			attrs := f.attributes("i1")
			Expect(attrs).To(HaveKeyWithValue("agent", "a0"))
			Expect(attrs).To(HaveKeyWithValue("host", "10.0.0.10"))
			Expect(attrs).To(HaveKeyWithValue("maxmemory_bytes", BeNumerically("==", 64<<20)))
			Expect(attrs).To(HaveKeyWithValue("redis_version", "7.4.1"))
			Expect(attrs).To(HaveKey("used_memory_bytes"))
			Expect(attrs).To(HaveKey("keys"))
			Expect(attrs).To(HaveKeyWithValue("replication", HaveKeyWithValue("role", "leader")))
			Expect(attrs).To(HaveKeyWithValue("maintenance_version", Version))
		})

		It("reports a dedicated instance's node, and a status_error when it does not answer", func() {
			f.mustProvision("d1", dedicPlanID)
			Expect(f.attributes("d1")).To(HaveKeyWithValue("node", "n0"))
			f.agents["n0"].set(func(m *memAgent) { m.down = true })
			attrs := f.attributes("d1")
			Expect(attrs).To(HaveKeyWithValue("status_error", "the dedicated VM did not answer"))
			Expect(attrs).To(HaveKeyWithValue("node", "n0"))
			Expect(attrs).NotTo(HaveKey("keys"))
		})

		It("answers 404 for an instance still being created", func() {
			f.agents["a0"].failNext("create", fmt.Errorf("%w: refused", agentapi.ErrUnavailable))
			code, _ := f.provision("i1", sharedPlanID)
			Expect(code).To(Equal(http.StatusServiceUnavailable))
			code, _ = f.call(http.MethodGet, instancePath("i1"), nil)
			Expect(code).To(Equal(http.StatusNotFound))
		})
	})

	Describe("deprovision", func() {
		It("deletes a shared instance synchronously (200), then answers 410, and last_operation 410", func() {
			f.mustProvision("i1", sharedPlanID)
			code, _ := f.deprovision("i1", sharedPlanID, true)
			Expect(code).To(Equal(http.StatusOK))
			Expect(f.agents["a0"].ids()).To(BeEmpty())
			Expect(f.record("i1")).To(BeNil())
			code, _ = f.deprovision("i1", sharedPlanID, true)
			Expect(code).To(Equal(http.StatusGone))
			code, _ = f.lastOperation("i1")
			Expect(code).To(Equal(http.StatusGone))
		})

		It("deletes an instance its agent no longer has", func() {
			f.mustProvision("i1", sharedPlanID)
			Expect(f.agents["a0"].Delete(ctx, "i1")).To(Succeed())
			code, _ := f.deprovision("i1", sharedPlanID, false)
			Expect(code).To(Equal(http.StatusOK))
			Expect(f.record("i1")).To(BeNil())
		})

		It("answers 503 and keeps the record deleting when the agent cannot be reached", func() {
			f.mustProvision("i1", sharedPlanID)
			f.agents["a0"].failNext("delete", fmt.Errorf("%w: refused", agentapi.ErrUnavailable))
			code, body := f.deprovision("i1", sharedPlanID, false)
			Expect(code).To(Equal(http.StatusServiceUnavailable))
			Expect(description(body)).To(ContainSubstring("could not reach the VM holding the instance"))
			Expect(f.record("i1").State).To(Equal(stateDeleting))
		})

		It("resets a dedicated node in the background (202), reporting through last_operation", func() {
			f.mustProvision("d1", dedicPlanID)
			code, body := f.deprovision("d1", dedicPlanID, true)
			Expect(code).To(Equal(http.StatusAccepted))
			Expect(body).To(HaveKeyWithValue("operation", "delete"))
			Eventually(func() int { c, _ := f.lastOperation("d1"); return c }).Should(Equal(http.StatusGone))
			Expect(f.pool("n0").State).To(Equal(poolFree))
			st, _ := f.agents["n0"].state()
			Expect(st).To(Equal(agentapi.NodeFree))
		})

		It("resets a dedicated node synchronously when Cloud Controller wants an answer now", func() {
			f.mustProvision("d1", dedicPlanID)
			code, _ := f.deprovision("d1", dedicPlanID, false)
			Expect(code).To(Equal(http.StatusOK))
			Expect(f.pool("n0").State).To(Equal(poolFree))
			Expect(f.record("d1")).To(BeNil())
		})

		It("cleans up a half-created instance (orphan mitigation)", func() {
			f.agents["a0"].loseNext("create")
			code, _ := f.provision("i1", sharedPlanID)
			Expect(code).To(Equal(http.StatusServiceUnavailable))
			Expect(f.agents["a0"].ids()).To(ConsistOf("i1"))
			code, _ = f.deprovision("i1", sharedPlanID, false)
			Expect(code).To(Equal(http.StatusOK))
			Expect(f.agents["a0"].ids()).To(BeEmpty())
			Expect(f.record("i1")).To(BeNil())
		})
	})

	It("reports the last operation of a ready instance", func() {
		f.mustProvision("i1", sharedPlanID)
		code, body := f.lastOperation("i1")
		Expect(code).To(Equal(http.StatusOK))
		Expect(body).To(HaveKeyWithValue("state", "succeeded"))
	})
})
