package broker

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// The answers the OSB specification asks for where brokerapi answers
// otherwise (422 for bad JSON, 415, empty 404/410 bodies, a text/plain 401),
// and the checks it leaves to brokers (service_id and plan_id on every verb,
// organization_guid and space_guid), sent through the broker's own handler on
// a real HTTP server.
var _ = Describe("OSB conformance", func() {
	var f *fixture
	var srv *httptest.Server
	BeforeEach(func() {
		f = newFixture()
		srv = httptest.NewServer(f.h)
		DeferCleanup(srv.Close)
	})

	// send sends a request with a raw body to the real server, with the
	// headers Cloud Controller sends unless change removes or alters them,
	// and returns the response and its body decoded as a JSON object (nil
	// when it is not one).
	send := func(method, path, body string, change ...func(*http.Request)) (*http.Response, map[string]any) {
		GinkgoHelper()
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, srv.URL+path, r)
		Expect(err).NotTo(HaveOccurred())
		req.SetBasicAuth(brokerUser, brokerPass)
		req.Header.Set("X-Broker-API-Version", apiVersion)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for _, c := range change {
			c(req)
		}
		resp, err := srv.Client().Do(req)
		Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		Expect(err).NotTo(HaveOccurred())
		var out map[string]any
		_ = json.Unmarshal(data, &out)
		return resp, out
	}

	// expectError checks an error answer: the status, a JSON object body
	// with a description that says says.
	expectError := func(resp *http.Response, body map[string]any, status int, says string) {
		GinkgoHelper()
		// Only the description: a success body may hold credentials.
		Expect(resp.StatusCode).To(Equal(status), description(body))
		Expect(resp.Header.Get("Content-Type")).To(HavePrefix("application/json"))
		Expect(body).NotTo(BeNil(), "the body is not a JSON object")
		Expect(description(body)).To(ContainSubstring(says))
	}

	jsonOf := func(v any) string {
		GinkgoHelper()
		data, err := json.Marshal(v)
		Expect(err).NotTo(HaveOccurred())
		return string(data)
	}
	provisionBody := map[string]any{"service_id": serviceID, "plan_id": sharedPlanID, "organization_guid": tenantOrg, "space_guid": tenantSpace}
	without := func(m map[string]any, keys ...string) map[string]any {
		out := map[string]any{}
		for k, v := range m {
			out[k] = v
		}
		for _, k := range keys {
			delete(out, k)
		}
		return out
	}
	with := func(m map[string]any, k string, v any) map[string]any {
		out := without(m)
		out[k] = v
		return out
	}
	bindPath := func(id, bindingID string) string { return instancePath(id) + "/service_bindings/" + bindingID }
	query := func(service, plan string) string {
		q := url.Values{}
		if service != "" {
			q.Set("service_id", service)
		}
		if plan != "" {
			q.Set("plan_id", plan)
		}
		return "?" + q.Encode()
	}

	Describe("request bodies", func() {
		bad := map[string]string{
			"cut short":        `{"service_id": `,
			"not JSON":         `not json at all`,
			"binary":           "\x00\xff",
			"an array":         `[1, 2]`,
			"a string":         `"provision"`,
			"null":             `null`,
			"a number id":      `{"service_id": 1, "plan_id": "x"}`,
			"two objects":      `{} {}`,
			"parameters array": `{"service_id": "` + serviceID + `", "plan_id": "` + sharedPlanID + `", "organization_guid": "o", "space_guid": "s", "parameters": [1]}`,
		}

		It("answers 400 with a description to a malformed body on provision, update and bind, and records nothing", func() {
			f.mustProvision("i1", sharedPlanID)
			for name, body := range bad {
				resp, out := send(http.MethodPut, instancePath("new"), body)
				expectError(resp, out, http.StatusBadRequest, "")
				Expect(description(out)).NotTo(BeEmpty(), name)
				Expect(f.record("new")).To(BeNil(), name)

				resp, out = send(http.MethodPatch, instancePath("i1"), body)
				expectError(resp, out, http.StatusBadRequest, "")
				Expect(description(out)).NotTo(BeEmpty(), name)

				resp, out = send(http.MethodPut, bindPath("i1", "b1"), body)
				expectError(resp, out, http.StatusBadRequest, "")
				Expect(description(out)).NotTo(BeEmpty(), name)
				Expect(f.record("i1").Bindings).To(BeEmpty(), name)
			}
		})

		It("answers 400 to an empty body on provision, update and bind", func() {
			f.mustProvision("i1", sharedPlanID)
			for _, r := range []struct{ method, path string }{
				{http.MethodPut, instancePath("new")}, {http.MethodPatch, instancePath("i1")}, {http.MethodPut, bindPath("i1", "b1")},
			} {
				resp, out := send(r.method, r.path, "", func(req *http.Request) { req.Header.Set("Content-Type", "application/json") })
				expectError(resp, out, http.StatusBadRequest, "JSON object")
			}
		})

		It("says which field has the wrong type", func() {
			resp, out := send(http.MethodPut, instancePath("new"), jsonOf(with(provisionBody, "space_guid", 7)))
			expectError(resp, out, http.StatusBadRequest, "space_guid")
		})

		It("answers 400 (not 415) to a body that is not application/json, and accepts one without a Content-Type", func() {
			for _, ct := range []string{"text/plain", "application/xml", "application/x-www-form-urlencoded", ";;;"} {
				resp, out := send(http.MethodPut, instancePath("new"), jsonOf(provisionBody), func(r *http.Request) { r.Header.Set("Content-Type", ct) })
				expectError(resp, out, http.StatusBadRequest, "application/json")
				Expect(f.record("new")).To(BeNil())
			}
			resp, out := send(http.MethodPut, instancePath("new"), jsonOf(provisionBody), func(r *http.Request) { r.Header.Del("Content-Type") })
			Expect(resp.StatusCode).To(Equal(http.StatusCreated), description(out))
			resp, out = send(http.MethodPut, instancePath("new2"), jsonOf(provisionBody), func(r *http.Request) { r.Header.Set("Content-Type", "application/json; charset=utf-8") })
			Expect(resp.StatusCode).To(Equal(http.StatusCreated), description(out))
		})
	})

	Describe("organization and space", func() {
		It("requires organization_guid and space_guid as non-empty strings (400 naming the field)", func() {
			for _, field := range []string{"organization_guid", "space_guid"} {
				resp, out := send(http.MethodPut, instancePath("new"), jsonOf(without(provisionBody, field)))
				expectError(resp, out, http.StatusBadRequest, field)
				resp, out = send(http.MethodPut, instancePath("new"), jsonOf(with(provisionBody, field, "")))
				expectError(resp, out, http.StatusBadRequest, field)
			}
			Expect(f.record("new")).To(BeNil())
			Expect(f.agents["a0"].ids()).To(BeEmpty())
		})

		kube := func(cluster, namespace string) map[string]any {
			ctx := map[string]any{"platform": "kubernetes", "instance_name": "my-redis"}
			if cluster != "" {
				ctx["clusterid"] = cluster
			}
			if namespace != "" {
				ctx["namespace"] = namespace
			}
			return with(without(provisionBody, "organization_guid", "space_guid"), "context", ctx)
		}

		It("takes a Kubernetes context's clusterid and namespace in their place, and requires both", func() {
			resp, out := send(http.MethodPut, instancePath("k1"), jsonOf(kube("cluster-1", "ns-1")))
			Expect(resp.StatusCode).To(Equal(http.StatusCreated), description(out))
			resp, out = send(http.MethodPut, instancePath("k1"), jsonOf(kube("cluster-1", "ns-1")))
			Expect(resp.StatusCode).To(Equal(http.StatusOK), "a repeated request: %v", out)
			resp, out = send(http.MethodPut, instancePath("k1"), jsonOf(kube("cluster-1", "ns-2")))
			Expect(resp.StatusCode).To(Equal(http.StatusConflict), "another namespace: %v", out)

			resp, out = send(http.MethodPut, instancePath("k2"), jsonOf(kube("", "ns-1")))
			expectError(resp, out, http.StatusBadRequest, "context.clusterid")
			resp, out = send(http.MethodPut, instancePath("k2"), jsonOf(kube("cluster-1", "")))
			expectError(resp, out, http.StatusBadRequest, "context.namespace")
			resp, out = send(http.MethodPut, instancePath("k2"), jsonOf(with(provisionBody, "context", "kubernetes")))
			expectError(resp, out, http.StatusBadRequest, "context")
			Expect(f.record("k2")).To(BeNil())
		})

		It("counts a Kubernetes instance's cluster and namespace as its space for replica_of", func() {
			for id, ns := range map[string]string{"k1": "ns-1", "k2": "ns-1", "k3": "ns-2"} {
				resp, out := send(http.MethodPut, instancePath(id), jsonOf(kube("cluster-1", ns)))
				Expect(resp.StatusCode).To(Equal(http.StatusCreated), description(out))
			}
			code, body := f.update("k3", map[string]any{"parameters": map[string]any{"replica_of": "k1"}})
			Expect(code).To(Equal(http.StatusBadRequest), description(body))
			Expect(description(body)).To(ContainSubstring("another space"))
			code, body = f.update("k2", map[string]any{"parameters": map[string]any{"replica_of": "k1"}})
			Expect(code).To(Equal(http.StatusOK), description(body))
		})

		It("keeps records without a space working, but never counts them as one space", func() {
			f.mustProvision("i1", sharedPlanID)
			f.mustProvision("i2", sharedPlanID)
			Expect(f.b.state.Update(func(s *state) error {
				for _, id := range []string{"i1", "i2"} {
					r := s.Instances.Edit(id)
					r.OrgGUID, r.SpaceGUID = "", ""
				}
				return nil
			})).To(Succeed())
			f.open() // a restarted broker reads the old records

			code, body := f.bind("i1", "b1", "app")
			Expect(code).To(Equal(http.StatusCreated), description(body))
			code, body = f.update("i1", map[string]any{"parameters": map[string]any{"timeout": 5}})
			Expect(code).To(Equal(http.StatusOK), description(body))
			f.mustProvision("i3", sharedPlanID)
			for follower, leader := range map[string]string{"i2": "i1", "i3": "i1"} {
				code, body = f.update(follower, map[string]any{"parameters": map[string]any{"replica_of": leader}})
				Expect(code).To(Equal(http.StatusBadRequest), description(body))
				Expect(description(body)).To(ContainSubstring("instance i1 has no recorded space"))
			}
			code, body = f.update("i2", map[string]any{"parameters": map[string]any{"replica_of": "i3"}})
			Expect(code).To(Equal(http.StatusBadRequest), description(body))
			Expect(description(body)).To(ContainSubstring("instance i2 has no recorded space"))
			code, body = f.unbind("i1", "b1")
			Expect(code).To(Equal(http.StatusOK), description(body))
			code, body = f.deprovision("i1", sharedPlanID, false)
			Expect(code).To(Equal(http.StatusOK), description(body))
		})
	})

	Describe("service_id and plan_id", func() {
		BeforeEach(func() {
			f.mustProvision("i1", sharedPlanID)
			code, body := f.bind("i1", "b1", "app")
			Expect(code).To(Equal(http.StatusCreated), description(body))
		})

		It("refuses unknown or missing ids on provision (400 naming the field)", func() {
			for field, body := range map[string]map[string]any{
				"service_id": with(provisionBody, "service_id", "other-service"),
				"plan_id":    with(provisionBody, "plan_id", "other-plan"),
			} {
				resp, out := send(http.MethodPut, instancePath("new"), jsonOf(body))
				expectError(resp, out, http.StatusBadRequest, field)
				resp, out = send(http.MethodPut, instancePath("new"), jsonOf(without(body, field)))
				expectError(resp, out, http.StatusBadRequest, field)
			}
			Expect(f.record("new")).To(BeNil())
		})

		It("refuses an unknown or missing service_id and an unknown plan_id on update, changing nothing", func() {
			params := map[string]any{"parameters": map[string]any{"timeout": 9}}
			resp, out := send(http.MethodPatch, instancePath("i1"), jsonOf(params))
			expectError(resp, out, http.StatusBadRequest, "service_id")
			resp, out = send(http.MethodPatch, instancePath("i1"), jsonOf(with(params, "service_id", "other-service")))
			expectError(resp, out, http.StatusBadRequest, "service_id")
			resp, out = send(http.MethodPatch, instancePath("i1"), jsonOf(with(with(params, "service_id", serviceID), "plan_id", "other-plan")))
			expectError(resp, out, http.StatusBadRequest, "plan_id")
			Expect(f.record("i1").Parameters.Timeout).NotTo(Equal(9))

			resp, out = send(http.MethodPatch, instancePath("i1"), jsonOf(with(params, "service_id", serviceID)))
			Expect(resp.StatusCode).To(Equal(http.StatusOK), "without plan_id: %v", out)
			Expect(f.record("i1").Parameters.Timeout).To(Equal(9))
		})

		It("refuses unknown or missing ids on bind, making no user", func() {
			body := map[string]any{"service_id": serviceID, "plan_id": sharedPlanID, "app_guid": "app"}
			for _, field := range []string{"service_id", "plan_id"} {
				resp, out := send(http.MethodPut, bindPath("i1", "b2"), jsonOf(with(body, field, "other")))
				expectError(resp, out, http.StatusBadRequest, field)
				resp, out = send(http.MethodPut, bindPath("i1", "b2"), jsonOf(without(body, field)))
				expectError(resp, out, http.StatusBadRequest, field)
			}
			Expect(f.record("i1").Bindings).NotTo(HaveKey("b2"))
			Expect(f.agents["a0"].instance("i1").passwords).NotTo(HaveKey("b2"))
		})

		It("refuses unknown or missing ids on unbind and deprovision, keeping the binding and the instance", func() {
			for _, q := range []struct{ q, says string }{
				{query("", sharedPlanID), "service_id"},
				{query(serviceID, ""), "plan_id"},
				{query("other", sharedPlanID), "service_id"},
				{query(serviceID, "other"), "plan_id"},
			} {
				resp, out := send(http.MethodDelete, bindPath("i1", "b1")+q.q, "")
				expectError(resp, out, http.StatusBadRequest, q.says)
				resp, out = send(http.MethodDelete, instancePath("i1")+q.q, "")
				expectError(resp, out, http.StatusBadRequest, q.says)
			}
			Expect(f.record("i1")).NotTo(BeNil())
			Expect(f.record("i1").Bindings).To(HaveKey("b1"))
			Expect(f.agents["a0"].instance("i1").passwords).To(HaveKey("b1"))
		})

		It("checks the ids before whether the instance or binding exists: 400 for unknown ids, 410 for valid ones", func() {
			resp, out := send(http.MethodDelete, instancePath("ghost")+query("other", sharedPlanID), "")
			expectError(resp, out, http.StatusBadRequest, "service_id")
			resp, out = send(http.MethodDelete, instancePath("ghost")+query(serviceID, sharedPlanID), "")
			expectError(resp, out, http.StatusGone, "ghost")
			resp, out = send(http.MethodDelete, bindPath("i1", "ghost")+query(serviceID, "other"), "")
			expectError(resp, out, http.StatusBadRequest, "plan_id")
			resp, out = send(http.MethodDelete, bindPath("i1", "ghost")+query(serviceID, sharedPlanID), "")
			expectError(resp, out, http.StatusGone, "ghost")
		})

		It("checks the ids of last_operation, binding last_operation and GETs when they are given", func() {
			for _, path := range []string{instancePath("i1") + "/last_operation", bindPath("i1", "b1") + "/last_operation", instancePath("i1"), bindPath("i1", "b1")} {
				resp, out := send(http.MethodGet, path+query("other", ""), "")
				expectError(resp, out, http.StatusBadRequest, "service_id")
				resp, out = send(http.MethodGet, path+query("", "other"), "")
				expectError(resp, out, http.StatusBadRequest, "plan_id")
				resp, out = send(http.MethodGet, path, "")
				Expect(resp.StatusCode).To(Equal(http.StatusOK), "%s without ids: %s", path, description(out))
				resp, out = send(http.MethodGet, path+query(serviceID, sharedPlanID), "")
				Expect(resp.StatusCode).To(Equal(http.StatusOK), "%s with its ids: %s", path, description(out))
			}
		})
	})

	Describe("error bodies", func() {
		It("gives 404 and 410 answers a description, in a JSON object", func() {
			f.mustProvision("i1", sharedPlanID)
			resp, out := send(http.MethodGet, instancePath("ghost"), "")
			expectError(resp, out, http.StatusNotFound, "ghost")
			resp, out = send(http.MethodGet, bindPath("i1", "ghost"), "")
			expectError(resp, out, http.StatusNotFound, "ghost")
			resp, out = send(http.MethodGet, instancePath("ghost")+"/last_operation", "")
			expectError(resp, out, http.StatusGone, "ghost")
			resp, out = send(http.MethodGet, bindPath("i1", "ghost")+"/last_operation", "")
			expectError(resp, out, http.StatusGone, "ghost")
			resp, out = send(http.MethodDelete, bindPath("i1", "ghost")+query(serviceID, sharedPlanID), "")
			expectError(resp, out, http.StatusGone, "ghost")
			resp, out = send(http.MethodDelete, instancePath("ghost")+query(serviceID, sharedPlanID), "")
			expectError(resp, out, http.StatusGone, "ghost")
			resp, out = send(http.MethodGet, "/v2/nothing-here", "")
			expectError(resp, out, http.StatusNotFound, "/v2/nothing-here")
			resp, out = send(http.MethodPost, "/v2/catalog", `{}`)
			expectError(resp, out, http.StatusMethodNotAllowed, "POST")
		})

		It("answers 401 in JSON with a description and a Basic WWW-Authenticate challenge", func() {
			for _, auth := range []func(*http.Request){
				func(r *http.Request) { r.Header.Del("Authorization") },
				func(r *http.Request) { r.SetBasicAuth(brokerUser, brokerPass+"x") },
			} {
				resp, out := send(http.MethodGet, "/v2/catalog", "", auth)
				expectError(resp, out, http.StatusUnauthorized, "credentials")
				Expect(resp.Header.Get("WWW-Authenticate")).To(MatchRegexp(`^Basic realm="[^"]+"`))
				Expect(jsonOf(out)).NotTo(ContainSubstring(brokerPass))
			}
		})

		It("echoes X-Broker-API-Request-Identity on the answers of its own (400, 401) as brokerapi does on its", func() {
			id := func(r *http.Request) { r.Header.Set("X-Broker-API-Request-Identity", "rid-7") }
			resp, _ := send(http.MethodPut, instancePath("new"), `[]`, id)
			Expect(resp.StatusCode).To(Equal(http.StatusBadRequest))
			Expect(resp.Header.Get("X-Broker-API-Request-Identity")).To(Equal("rid-7"))
			resp, _ = send(http.MethodGet, "/v2/catalog", "", id, func(r *http.Request) { r.Header.Del("Authorization") })
			Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))
			Expect(resp.Header.Get("X-Broker-API-Request-Identity")).To(Equal("rid-7"))
			resp, _ = send(http.MethodGet, "/v2/catalog", "", id)
			Expect(resp.StatusCode).To(Equal(http.StatusOK))
			Expect(resp.Header.Get("X-Broker-API-Request-Identity")).To(Equal("rid-7"))
		})

		It("answers 412 with a lowercase description for a missing or old X-Broker-API-Version", func() {
			for _, v := range []string{"", "1.13", "two"} {
				resp, out := send(http.MethodGet, "/v2/catalog", "", func(r *http.Request) { r.Header.Set("X-Broker-API-Version", v) })
				expectError(resp, out, http.StatusPreconditionFailed, "X-Broker-API-Version")
				Expect(out).NotTo(HaveKey("Description"))
			}
		})
	})
})
