package broker

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

const testCA = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"

var _ = Describe("TLS-only instances", func() {
	var f *fixture
	BeforeEach(func() {
		f = newFixture()
		for _, id := range []string{"a0", "a1", "n0", "n1"} {
			f.agents[id].set(func(m *memAgent) { m.tlsCA = testCA })
		}
	})

	It("give bindings the TLS port as port and a rediss:// uri, and keep the CA once per VM", func() {
		code, body := f.provisionIn("i1", sharedPlanID, tenantSpace, map[string]any{"tls_only": true})
		Expect(code).To(Equal(http.StatusCreated), description(body))
		Expect(f.record("i1").Parameters.TLSOnly).To(BeTrue())
		Expect(f.agents["a0"].instance("i1").Parameters.TLSOnly).To(BeTrue())
		_, body = f.bind("i1", "b1", "app")
		c := credentialsOf(body)
		tlsPort := c["tls_port"].(float64)
		Expect(c["port"]).To(Equal(tlsPort))
		Expect(c).To(HaveKeyWithValue("tls", true))
		Expect(c).To(HaveKeyWithValue("tls_ca", testCA))
		u, err := url.Parse(c["uri"].(string))
		Expect(err).NotTo(HaveOccurred())
		Expect(u.Scheme).To(Equal("rediss"))
		Expect(c["uri"]).To(Equal(c["tls_uri"]))
		Expect(body["endpoints"]).To(HaveLen(1))
		Expect(body["endpoints"].([]any)[0].(map[string]any)["ports"]).To(ConsistOf(u.Port()))

		_, body = f.bind("i1", "b2", "app-2")
		Expect(credentialsOf(body)).To(HaveKeyWithValue("tls_ca", testCA))
		code, got := f.call(http.MethodGet, instancePath("i1")+"/service_bindings/b2", nil)
		Expect(code).To(Equal(http.StatusOK))
		Expect(credentialsOf(got)).To(HaveKeyWithValue("tls_ca", testCA))
		data, err := os.ReadFile(filepath.Join(f.cfg.StateDir, "broker-state.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(data)).To(ContainSubstring(`"redis_cas"`))
		Expect(string(data)).NotTo(ContainSubstring(`"tls_ca"`), "no binding keeps a CA of its own")
	})

	It("turn on and off through update; a plain instance keeps its plaintext uri", func() {
		f.mustProvision("i1", sharedPlanID)
		_, body := f.bind("i1", "b1", "app")
		Expect(credentialsOf(body)["uri"]).To(HavePrefix("redis://"))
		Expect(credentialsOf(body)).NotTo(HaveKey("tls"))
		code, body := f.update("i1", map[string]any{"parameters": map[string]any{"tls_only": true}})
		Expect(code).To(Equal(http.StatusOK), description(body))
		Expect(f.agents["a0"].instance("i1").Parameters.TLSOnly).To(BeTrue())
		_, body = f.bind("i1", "b2", "app")
		Expect(credentialsOf(body)["uri"]).To(HavePrefix("rediss://"))
		code, _ = f.update("i1", map[string]any{"parameters": map[string]any{"tls_only": false}})
		Expect(code).To(Equal(http.StatusOK))
		Expect(f.agents["a0"].instance("i1").Parameters.TLSOnly).To(BeFalse())
	})

	DescribeTable("refuse bad values and plans that do not allow them with a 400 naming tls_only",
		func(setting string, creating bool, value any) {
			f.cfg.SharedVM.TLSOnly = setting
			f.open()
			var code int
			var body map[string]any
			if creating {
				code, body = f.provisionIn("i9", sharedPlanID, tenantSpace, map[string]any{"tls_only": value})
			} else {
				f.mustProvision("i9", sharedPlanID)
				code, body = f.update("i9", map[string]any{"parameters": map[string]any{"tls_only": value}})
			}
			Expect(code).To(Equal(http.StatusBadRequest))
			Expect(description(body)).To(ContainSubstring("tls_only"))
		},
		Entry("a string", TLSOnlyOptional, true, "yes"),
		Entry("null", TLSOnlyOptional, true, nil),
		Entry("true where the plan never is TLS-only", TLSOnlyNever, true, true),
		Entry("true by update where the plan never is TLS-only", TLSOnlyNever, false, true),
		Entry("false where the plan always is TLS-only", TLSOnlyAlways, true, false),
	)

	It("make every new instance of an always TLS-only plan TLS-only, and leave older ones be", func() {
		f.mustProvision("old", sharedPlanID)
		f.cfg.SharedVM.TLSOnly = TLSOnlyAlways
		f.open()
		f.mustProvision("new", sharedPlanID)
		Expect(f.record("new").Parameters.TLSOnly).To(BeTrue())
		code, _ := f.update("old", map[string]any{"parameters": map[string]any{"timeout": 5}})
		Expect(code).To(Equal(http.StatusOK))
		Expect(f.record("old").Parameters.TLSOnly).To(BeFalse(), "an unrelated update does not close its plaintext port")
	})

	It("are refused on a VM without TLS with a 400", func() {
		f.agents["a0"].set(func(m *memAgent) { m.tlsCA = "" })
		f.agents["a1"].set(func(m *memAgent) { m.tlsCA = "" })
		code, body := f.provisionIn("i1", sharedPlanID, tenantSpace, map[string]any{"tls_only": true})
		Expect(code).To(Equal(http.StatusBadRequest))
		Expect(description(body)).To(ContainSubstring("tls_only"))
		Expect(f.record("i1")).To(BeNil(), "nothing is left to delete")

		for _, n := range []string{"n0", "n1"} {
			f.agents[n].set(func(m *memAgent) { m.tlsCA = "" })
		}
		code, body = f.provisionIn("d1", dedicPlanID, tenantSpace, map[string]any{"tls_only": true})
		Expect(code).To(Equal(http.StatusBadRequest))
		Expect(description(body)).To(ContainSubstring("serve no TLS"))
		Expect(f.record("d1")).To(BeNil())
		Expect(f.pool("n0").State).To(Equal(poolFree), "the node goes back to the pool")
		Expect(f.pool("n1").State).To(Equal(poolFree))
	})

	Describe("replica_of", func() {
		It("replicates over TLS to the leader's TLS port when both VMs serve TLS", func() {
			f.mustProvision("l1", sharedPlanID)
			f.mustProvision("f1", sharedPlanID)
			code, body := f.update("f1", map[string]any{"parameters": map[string]any{"replica_of": "l1"}})
			Expect(code).To(Equal(http.StatusOK), description(body))
			leader := f.agents["a0"].instance("l1")
			got := f.agents["a0"].instance("f1").leader
			Expect(got).NotTo(BeNil())
			Expect(got.TLS).To(BeTrue())
			Expect(got.Port).To(Equal(leader.TLSPort))
		})

		It("refuses to make a follower without TLS follow a TLS-only leader, and a leader with plaintext followers TLS-only", func() {
			f.mustProvision("l1", sharedPlanID) // a0
			code, body := f.provisionIn("f1", dedicPlanID, tenantSpace, nil)
			Expect(code).To(Equal(http.StatusCreated), description(body))
			node := f.record("f1").VM
			f.agents[node].set(func(m *memAgent) {
				m.tlsCA = ""
				m.instances["f1"].TLSPort = 0
			})
			code, body = f.update("f1", map[string]any{"parameters": map[string]any{"replica_of": "l1"}})
			Expect(code).To(Equal(http.StatusOK), description(body))
			Expect(f.agents[node].instance("f1").leader.TLS).To(BeFalse())
			code, body = f.update("l1", map[string]any{"parameters": map[string]any{"tls_only": true}})
			Expect(code).To(Equal(http.StatusBadRequest))
			Expect(description(body)).To(ContainSubstring("f1"))

			code, _ = f.update("f1", map[string]any{"parameters": map[string]any{"replica_of": nil}})
			Expect(code).To(Equal(http.StatusOK))
			code, body = f.update("l1", map[string]any{"parameters": map[string]any{"tls_only": true}})
			Expect(code).To(Equal(http.StatusOK), description(body))
			code, body = f.update("f1", map[string]any{"parameters": map[string]any{"replica_of": "l1"}})
			Expect(code).To(Equal(http.StatusBadRequest))
			Expect(description(body)).To(ContainSubstring("TLS-only"))
		})

		It("refuses tls for a leader outside the service", func() {
			f.mustProvision("f1", sharedPlanID)
			code, body := f.update("f1", map[string]any{"parameters": map[string]any{"replica_of": map[string]any{
				"host": "10.9.9.9", "port": 6379, "tls": true}}})
			Expect(code).To(Equal(http.StatusBadRequest))
			Expect(description(body)).To(ContainSubstring("tls"))
		})
	})
})

var _ = Describe("a state file whose bindings each kept the CA", func() {
	It("moves it to one CA per VM, the newest binding's, and gives it in credentials", func() {
		f := newFixture()
		f.agents["a0"].set(func(m *memAgent) { m.tlsCA = testCA })
		f.mustProvision("s1", sharedPlanID)
		Expect(f.agents["a0"].instance("s1").TLSPort).NotTo(BeZero())
		_, _ = f.bind("s1", "b1", "app")
		path := filepath.Join(f.cfg.StateDir, "broker-state.json")
		data, err := os.ReadFile(path)
		Expect(err).NotTo(HaveOccurred())
		// As an earlier version wrote it: the CA in the binding, none per VM.
		var st map[string]any
		Expect(json.Unmarshal(data, &st)).To(Succeed())
		Expect(st).To(HaveKey("redis_cas"))
		delete(st, "redis_cas")
		bnd := st["instances"].(map[string]any)["s1"].(map[string]any)["bindings"].(map[string]any)["b1"].(map[string]any)
		bnd["tls_ca"] = "OLD CA"
		data, err = json.Marshal(st)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(path, data, 0o600)).To(Succeed())
		f.open()
		data, err = os.ReadFile(path)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(data)).NotTo(ContainSubstring(`"tls_ca"`))
		Expect(f.b.redisCA("a0")).To(Equal("OLD CA"))
		code, got := f.call(http.MethodGet, instancePath("s1")+"/service_bindings/b1", nil)
		Expect(code).To(Equal(http.StatusOK))
		Expect(credentialsOf(got)).To(HaveKeyWithValue("tls_ca", "OLD CA"))
	})
})
