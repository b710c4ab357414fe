package sharedvm_test

import (
	"bytes"
	"io"
	"net/http"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

var _ = Describe("Bad input", Ordered, ContinueOnFailure, func() {
	var sys *system
	var inst string

	BeforeAll(func() {
		sys = startSystem(systemtest.Options{})
		inst = newID("inst")
		sys.provision(inst, nil)
		sys.bind(inst, newID("bind")) // a password the answers below must not show
	})

	// expectNoSecret checks that a response shows no password of the system.
	expectNoSecret := func(body []byte) {
		GinkgoHelper()
		for _, secret := range sys.secrets() {
			Expect(string(body)).NotTo(ContainSubstring(secret))
		}
	}

	// expectBrokerServes checks that the broker still answers properly.
	expectBrokerServes := func() {
		GinkgoHelper()
		status, body := sys.do(http.MethodGet, "/v2/catalog", nil)
		Expect(status).To(Equal(http.StatusOK), string(body))
		status, body = sys.do(http.MethodGet, instancePath(inst), nil)
		Expect(status).To(Equal(http.StatusOK), string(body))
	}

	withoutHeader := func(name string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Del(name) }
	}

	Context("to the broker", func() {
		It("answers malformed JSON on provision with 400 and a description, and keeps serving", func() {
			for _, body := range []string{`{"service_id": `, `not json at all`, `{"service_id": 1}`, "\x00\xff", `[]`, ``} {
				id := newID("inst")
				status, resp := sys.do(http.MethodPut, instancePath(id), body)
				Expect(status).To(Equal(http.StatusBadRequest), "%q: %s", body, resp)
				Expect(string(resp)).To(ContainSubstring(`"description":`))
				expectNoSecret(resp)
				Expect(sys.brokerRecords()).NotTo(HaveKey(id))
			}
			expectBrokerServes()
		})

		It("answers a 10 MB body with 413 and keeps serving", func() {
			big := append([]byte(`{"parameters":"`), bytes.Repeat([]byte("a"), 10<<20)...)
			big = append(big, `"}`...)
			status, resp := sys.do(http.MethodPut, instancePath(newID("inst")), big)
			Expect(status).To(Equal(http.StatusRequestEntityTooLarge), string(resp))
			expectNoSecret(resp)
			expectBrokerServes()
		})

		It("answers a 10 MB body sent without a Content-Length (chunked) with 413 too, and keeps serving", func() {
			id := newID("inst")
			big := append([]byte(`{"service_id":"`+systemtest.ServiceID+`","plan_id":"`+systemtest.PlanID+`","parameters":"`), bytes.Repeat([]byte("a"), 10<<20)...)
			big = append(big, `"}`...)
			status, resp := sys.do(http.MethodPut, instancePath(id), big, func(r *http.Request) {
				r.ContentLength = -1 // chunked
				r.Body = io.NopCloser(bytes.NewReader(big))
				r.GetBody = nil
			})
			Expect(status).To(Equal(http.StatusRequestEntityTooLarge), string(resp))
			expectNoSecret(resp)
			Expect(sys.brokerRecords()).NotTo(HaveKey(id))
			expectBrokerServes()
		})

		It("refuses binding ids that name the platform's Redis users (400), then binds and deletes the instance normally", func(ctx SpecContext) {
			id := newID("inst")
			sys.provision(id, nil)
			for _, bindingID := range []string{"default", "platform-admin", "replica-0123456789abcdef", ".hidden"} {
				status, r := sys.bindRaw(id, bindingID, "app-1")
				Expect(status).To(Equal(http.StatusBadRequest), "%s: %s", bindingID, r.Description)
				Expect(r.Description).To(ContainSubstring("binding id %q", bindingID))
				status, body := sys.do(http.MethodDelete, bindingPath(id, bindingID)+"?service_id="+systemtest.ServiceID+"&plan_id="+systemtest.PlanID, nil)
				Expect(status).To(Equal(http.StatusGone), string(body))
			}
			Expect(sys.brokerRecords()[id]["bindings"]).To(BeEmpty())

			c := sys.bind(id, newID("bind"))
			rc := connect(c)
			Expect(rc.Set(ctx, "k", "v", 0).Err()).To(Succeed())
			sys.deprovision(id)
			Expect(sys.brokerRecords()).NotTo(HaveKey(id))
			Expect(sys.instanceDir(id)).NotTo(BeAnExistingFile())
			expectBrokerServes()
		})

		It("answers a text/plain body with 400 (the OSB spec's answer to a mismatched Content-Type)", func() {
			status, resp := sys.do(http.MethodPut, instancePath(newID("inst")), provisionBody(""), func(r *http.Request) {
				r.Header.Set("Content-Type", "text/plain")
			})
			Expect(status).To(Equal(http.StatusBadRequest), string(resp))
			Expect(string(resp)).To(ContainSubstring("application/json"))
			expectNoSecret(resp)
			expectBrokerServes()
		})

		It("answers 401 without credentials or with a wrong password, on every kind of request", func() {
			for _, req := range []struct {
				method, path string
				body         any
			}{
				{http.MethodGet, "/v2/catalog", nil},
				{http.MethodPut, instancePath(newID("inst")), provisionBody("")},
				{http.MethodGet, bindingPath(inst, newID("bind")), nil},
				{http.MethodDelete, instancePath(inst) + "?service_id=" + systemtest.ServiceID + "&plan_id=" + systemtest.PlanID, nil},
			} {
				status, resp := sys.do(req.method, req.path, req.body, withoutHeader("Authorization"))
				Expect(status).To(Equal(http.StatusUnauthorized), "%s %s: %s", req.method, req.path, resp)
				expectNoSecret(resp)
				status, resp = sys.do(req.method, req.path, req.body, func(r *http.Request) { r.SetBasicAuth(sys.Username, sys.Password+"x") })
				Expect(status).To(Equal(http.StatusUnauthorized), "%s %s: %s", req.method, req.path, resp)
				expectNoSecret(resp)
				status, resp = sys.do(req.method, req.path, req.body, func(r *http.Request) { r.SetBasicAuth("admin", sys.Password) })
				Expect(status).To(Equal(http.StatusUnauthorized), "%s %s: %s", req.method, req.path, resp)
			}
			expectBrokerServes()
		})

		It("answers 412 without X-Broker-API-Version", func() {
			status, resp := sys.do(http.MethodGet, "/v2/catalog", nil, withoutHeader("X-Broker-API-Version"))
			Expect(status).To(Equal(http.StatusPreconditionFailed), string(resp))
			status, resp = sys.do(http.MethodPut, instancePath(newID("inst")), provisionBody(""), withoutHeader("X-Broker-API-Version"))
			Expect(status).To(Equal(http.StatusPreconditionFailed), string(resp))
			expectNoSecret(resp)
		})

		It("writes no password into its log", func() {
			log := sys.Broker.Log()
			Expect(log).NotTo(BeEmpty())
			for _, secret := range sys.secrets() {
				Expect(log).NotTo(ContainSubstring(secret))
			}
		})
	})

	Context("to the agent", func() {
		It("answers 401 without credentials or with wrong ones", func() {
			for _, path := range []string{"/v1/capacity", "/v1/instances", "/v1/instances/" + inst} {
				status, resp := sys.doAgent(http.MethodGet, path, nil, withoutHeader("Authorization"))
				Expect(status).To(Equal(http.StatusUnauthorized), "%s: %s", path, resp)
				status, resp = sys.doAgent(http.MethodGet, path, nil, func(r *http.Request) { r.SetBasicAuth(sys.Username, sys.Password) })
				Expect(status).To(Equal(http.StatusUnauthorized), "%s: %s", path, resp)
			}
			status, resp := sys.doAgent(http.MethodDelete, "/v1/instances/"+inst, nil, withoutHeader("Authorization"))
			Expect(status).To(Equal(http.StatusUnauthorized), string(resp))
			Expect(sys.instanceDir(inst)).To(BeADirectory())
		})

		It("answers malformed JSON with 400", func() {
			for _, body := range []string{`{"maxmemory_bytes": `, `[]`, `{"maxmemory_bytes": 1, "surprise": true}`} {
				id := newID("inst")
				status, resp := sys.doAgent(http.MethodPut, "/v1/instances/"+id, body)
				Expect(status).To(Equal(http.StatusBadRequest), "%q: %s", body, resp)
				Expect(sys.instanceDir(id)).NotTo(BeAnExistingFile())
			}
		})

		It("refuses instance ids that climb out of its data directory, and keeps serving", func() {
			body := map[string]any{"maxmemory_bytes": 1 << 20, "parameters": map[string]any{"maxmemory-policy": "noeviction", "notify-keyspace-events": "", "timeout": 0}}
			// Escaped, the ids reach the agent, which refuses them.
			for _, path := range []string{"/v1/instances/..%2Fetc", "/v1/instances/%2E%2E", "/v1/instances/%2E%2E%2F%2E%2E%2Fetc", "/v1/instances/.hidden"} {
				status, resp := sys.doAgent(http.MethodPut, path, body)
				Expect(status).To(Equal(http.StatusBadRequest), "%s: %s", path, resp)
				Expect(description(resp)).To(ContainSubstring("instance id"), path)
			}
			// Unescaped, the mux cleans the path and redirects to it.
			for _, path := range []string{"/v1/instances/..", "/v1/instances/../etc"} {
				status, resp := sys.doAgent(http.MethodPut, path, body)
				Expect(status).To(BeElementOf(http.StatusTemporaryRedirect, http.StatusMovedPermanently, http.StatusNotFound), "%s: %s", path, resp)
			}
			status, resp := sys.doAgent(http.MethodPut, "/v1/instances/"+inst+"/bindings/..%2F..%2Fx", map[string]any{"password": "p"})
			Expect(status).To(Equal(http.StatusBadRequest), string(resp))

			Expect(filepath.Join(sys.agentDir(0), "etc")).NotTo(BeAnExistingFile())
			Expect(filepath.Join(sys.Dir, "etc")).NotTo(BeAnExistingFile())
			Expect(filepath.Join(sys.agentDir(0), "instances", ".hidden")).NotTo(BeAnExistingFile())
			status, resp = sys.doAgent(http.MethodGet, "/v1/capacity", nil)
			Expect(status).To(Equal(http.StatusOK), string(resp))
			expectBrokerServes()
		})

		It("answers a body larger than it reads with 413", func() {
			big := append([]byte(`{"password":"`), bytes.Repeat([]byte("a"), 1<<20)...)
			big = append(big, `"}`...)
			status, resp := sys.doAgent(http.MethodPut, "/v1/instances/"+inst+"/bindings/"+newID("bind"), big)
			Expect(status).To(Equal(http.StatusRequestEntityTooLarge), string(resp))
		})
	})
})
