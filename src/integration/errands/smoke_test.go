package errands_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

// brokerProxy stands between smoke-tests and the broker: it passes every
// request on, notes the passwords of the bindings the broker hands out (to
// check that none is printed), and can run a hook before a request goes
// through (to break something at a chosen step).
type brokerProxy struct {
	URL string

	mu        sync.Mutex
	passwords []string
	requests  []string
	before    func(r *http.Request, body []byte)
}

func newBrokerProxy(brokerURL string) *brokerProxy {
	GinkgoHelper()
	target, err := url.Parse(brokerURL)
	Expect(err).NotTo(HaveOccurred())
	p := &brokerProxy{}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method != http.MethodPut || !strings.Contains(resp.Request.URL.Path, "/service_bindings/") {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		var b struct {
			Credentials struct {
				Password string `json:"password"`
			} `json:"credentials"`
		}
		if json.Unmarshal(body, &b) == nil && b.Credentials.Password != "" {
			p.mu.Lock()
			p.passwords = append(p.passwords, b.Credentials.Password)
			p.mu.Unlock()
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		p.mu.Lock()
		before := p.before
		p.requests = append(p.requests, r.Method+" "+r.URL.RequestURI())
		p.mu.Unlock()
		if before != nil {
			before(r, body)
		}
		rp.ServeHTTP(w, r)
	}))
	DeferCleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// Passwords are the binding passwords the broker handed out so far.
func (p *brokerProxy) Passwords() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string{}, p.passwords...)
}

// Requests are the requests passed on so far, as "METHOD PATH?QUERY".
func (p *brokerProxy) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string{}, p.requests...)
}

// Before sets the hook run before each request goes to the broker.
func (p *brokerProxy) Before(f func(r *http.Request, body []byte)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.before = f
}

// smokeConfig is the errand's config for the broker at url.
func smokeConfig(sys *systemtest.System, url string, kv ...any) map[string]any {
	c := map[string]any{
		"broker":                  map[string]any{"url": url, "username": sys.Username, "password": sys.Password},
		"timeout_seconds":         120,
		"cleanup_timeout_seconds": 60,
	}
	for i := 0; i+1 < len(kv); i += 2 {
		c[kv[i].(string)] = kv[i+1]
	}
	return c
}

// uriWithPassword matches a Redis URI that carries credentials.
var uriWithPassword = regexp.MustCompile(`rediss?://[^\s/@]*:[^\s/@]+@`)

// expectNoSecrets checks that output shows neither the broker's password
// nor any binding's.
func expectNoSecrets(output string, sys *systemtest.System, proxy *brokerProxy) {
	GinkgoHelper()
	Expect(output).NotTo(ContainSubstring(sys.Password))
	for _, p := range proxy.Passwords() {
		Expect(output).NotTo(ContainSubstring(p))
	}
	Expect(output).NotTo(MatchRegexp(uriWithPassword.String()))
}

// agentClient is a client of the system's shared agent 0.
func agentClient(sys *systemtest.System) *agentapi.Client {
	GinkgoHelper()
	data, err := os.ReadFile(sys.Agents[0].Config)
	Expect(err).NotTo(HaveOccurred())
	var cfg struct {
		Credentials agentapi.Credentials `json:"credentials"`
	}
	Expect(json.Unmarshal(data, &cfg)).To(Succeed())
	c, err := agentapi.NewClient(agentapi.ClientConfig{URL: "http://" + sys.Agents[0].Addr, Credentials: cfg.Credentials})
	Expect(err).NotTo(HaveOccurred())
	return c
}

// expectNothingLeft checks that the system holds no instance: the broker
// records none and every dedicated node is free, the shared agent has
// none, and no redis-server of an instance runs.
func expectNothingLeft(sys *systemtest.System) {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join(sys.Dir, "broker", "broker-state.json"))
	Expect(err).NotTo(HaveOccurred())
	var st struct {
		Instances map[string]any `json:"instances"`
		Pool      map[string]struct {
			State string `json:"state"`
		} `json:"pool"`
	}
	Expect(json.Unmarshal(data, &st)).To(Succeed())
	Expect(st.Instances).To(BeEmpty(), "the broker's instance records")
	for id, n := range st.Pool {
		Expect(n.State).To(Equal("free"), "dedicated node %s", id)
	}
	instances, err := agentClient(sys).List(context.Background())
	Expect(err).NotTo(HaveOccurred())
	Expect(instances).To(BeEmpty(), "the shared agent's instances")
	Expect(systemtest.Strays(filepath.Join(sys.Dir, "agent-0", "instances"))).To(BeEmpty(), "redis-servers of instances")
}

var _ = Describe("smoke-tests", Ordered, func() {
	var (
		sys   *systemtest.System
		proxy *brokerProxy
	)

	BeforeAll(func() {
		sys = startSystem(systemtest.Options{Nodes: 1})
	})
	BeforeEach(func() {
		proxy = newBrokerProxy(sys.BrokerURL)
	})

	It("passes against a healthy system, testing both plans step by step, and prints no secret", func() {
		r := runErrand(errands.SmokeTests, smokeConfig(sys, proxy.URL))
		Expect(r.Code).To(Equal(0), r.Output())
		for _, plan := range []string{"shared-vm", "dedicated-vm"} {
			for _, step := range []string{"provision", "bind", "write and read", "CONFIG GET is refused with NOPERM",
				"unbind", "the unbound credentials are refused", "deprovision"} {
				Expect(r.Stdout).To(MatchRegexp(`(?m)^%s: %s: ok \(`, plan, regexp.QuoteMeta(step)))
			}
		}
		Expect(r.Stdout).To(ContainSubstring("testing service p-redis (" + systemtest.ServiceID + ")"))
		Expect(r.Stdout).To(HaveSuffix("smoke-tests: all plans passed\n"))
		Expect(r.Stderr).To(BeEmpty())
		Expect(proxy.Passwords()).To(HaveLen(2), "a binding of each plan")
		// The dedicated-vm plan deletes asynchronously (202): the errand
		// polled last_operation until the instance was gone.
		Expect(proxy.Requests()).To(ContainElement(MatchRegexp(
			`^GET /v2/service_instances/smoke-tests-dedicated-vm-[0-9a-f]+/last_operation\?operation=delete&plan_id=` + systemtest.DedicatedPlanID + `&service_id=` + systemtest.ServiceID + `$`)))
		Expect(proxy.Requests()).To(ContainElement(HavePrefix("PUT /v2/service_instances/smoke-tests-shared-vm-")))
		for _, r := range proxy.Requests() {
			if strings.HasPrefix(r, "PUT ") || strings.HasPrefix(r, "DELETE ") {
				Expect(r).To(ContainSubstring("accepts_incomplete=true"))
			}
		}
		expectNoSecrets(r.Output(), sys, proxy)
		expectNothingLeft(sys)
	})

	It("tests the plans it is given, by name or id, in that order", func() {
		r := runErrand(errands.SmokeTests, smokeConfig(sys, proxy.URL,
			"service", systemtest.ServiceID, "plans", []string{systemtest.DedicatedPlanID, "shared-vm"}))
		Expect(r.Code).To(Equal(0), r.Output())
		Expect(strings.Index(r.Stdout, "dedicated-vm: provision: ok")).To(BeNumerically("<", strings.Index(r.Stdout, "shared-vm: provision: ok")))
		expectNothingLeft(sys)
	})

	It("passes when the dedicated pool is full, testing shared-vm and naming dedicated-vm as not tested", func() {
		// An app's instance takes the one dedicated node.
		const appInstance = "app-instance-on-the-only-node"
		path := "/v2/service_instances/" + appInstance + "?accepts_incomplete=true"
		Eventually(func(g Gomega) int {
			code, body, err := sys.OSB("PUT", path, map[string]any{
				"service_id": systemtest.ServiceID, "plan_id": systemtest.DedicatedPlanID, "organization_guid": "org", "space_guid": "space",
			})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(code).To(BeNumerically("<", 500), "%v", body)
			return code
		}).WithTimeout(time.Minute).Should(BeElementOf(http.StatusCreated, http.StatusOK))
		DeferCleanup(func() {
			del := "/v2/service_instances/" + appInstance + "?accepts_incomplete=true&service_id=" + systemtest.ServiceID + "&plan_id=" + systemtest.DedicatedPlanID
			Eventually(func(g Gomega) int {
				code, body, err := sys.OSB("DELETE", del, nil)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(code).To(BeNumerically("<", 500), "%v", body)
				return code
			}).WithTimeout(time.Minute).WithPolling(200 * time.Millisecond).Should(Equal(http.StatusGone))
			expectNothingLeft(sys)
		})

		r := runErrand(errands.SmokeTests, smokeConfig(sys, proxy.URL, "plans", []string{"shared-vm", "dedicated-vm"}))
		Expect(r.Code).To(Equal(0), r.Output())
		Expect(r.Stdout).To(MatchRegexp(`(?m)^shared-vm: deprovision: ok \(`))
		Expect(r.Stdout).To(ContainSubstring("dedicated-vm: NOT TESTED: the broker says the plan is full: The dedicated-vm plan is full: all 1 dedicated VMs are in use."))
		Expect(r.Stdout).To(MatchRegexp(`(?m)^PASSED: shared-vm; NOT TESTED: dedicated-vm: full \(`))
		Expect(r.Stdout).To(HaveSuffix("smoke-tests: passed; not tested, as the broker says they are full: dedicated-vm\n"))
		Expect(r.Stdout).NotTo(ContainSubstring("cleanup:"), "nothing was created on the full plan")
		Expect(r.Stderr).To(BeEmpty())
	})

	It("fails at the catalog step, naming the plans there are, for a plan the catalog lacks", func() {
		r := runErrand(errands.SmokeTests, smokeConfig(sys, proxy.URL, "plans", []string{"large"}))
		Expect(r.Code).To(Equal(1))
		Expect(r.Stderr).To(Equal(`smoke-tests: FAILED: step "catalog": service p-redis has no plan large (its plans: shared-vm, dedicated-vm)` + "\n"))
	})

	It("fails at the catalog step, without showing the password, when the broker refuses its credentials", func() {
		c := smokeConfig(sys, proxy.URL)
		c["broker"].(map[string]any)["password"] = "wrong-" + sys.Password
		r := runErrand(errands.SmokeTests, c)
		Expect(r.Code).To(Equal(1))
		Expect(r.Stderr).To(ContainSubstring(`smoke-tests: FAILED: step "catalog": the broker answered GET /v2/catalog with 401 Unauthorized`))
		expectNoSecrets(r.Output(), sys, proxy)
	})

	It("fails at the provision step of shared-vm while the shared agent is down, and leaves nothing behind", func() {
		sys.Agents[0].Kill9()
		r := runErrand(errands.SmokeTests, smokeConfig(sys, proxy.URL))
		Expect(r.Code).To(Equal(1))
		Expect(r.Stderr).To(HavePrefix(`smoke-tests: FAILED: plan shared-vm, step "provision": the broker answered PUT /v2/service_instances/smoke-tests-shared-vm-`))
		Expect(r.Stderr).To(ContainSubstring("with 503 Service Unavailable: The Redis service could not reach any VM that could hold a new instance"))
		Expect(r.Stdout).NotTo(ContainSubstring("dedicated-vm:"), "the tests stop at the first failure")
		expectNoSecrets(r.Output(), sys, proxy)

		Expect(sys.Agents[0].Start()).To(Succeed())
		expectNothingLeft(sys)
		// And the system, whole again, passes.
		r = runErrand(errands.SmokeTests, smokeConfig(sys, proxy.URL))
		Expect(r.Code).To(Equal(0), r.Output())
		expectNothingLeft(sys)
	})

	It("fails at the bind step when the shared agent dies after the provision, and deletes the instance once the agent is back", func() {
		restarted := make(chan error, 1)
		var once sync.Once
		proxy.Before(func(r *http.Request, body []byte) {
			if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/service_bindings/") {
				once.Do(func() {
					sys.Agents[0].Kill9()
					// Back while the errand retries its cleanup.
					go func() {
						<-time.After(2 * time.Second)
						restarted <- sys.Agents[0].Start()
					}()
				})
			}
		})
		r := runErrand(errands.SmokeTests, smokeConfig(sys, proxy.URL, "plans", []string{"shared-vm"}))
		Expect(r.Code).To(Equal(1))
		Expect(r.Stderr).To(MatchRegexp(`^smoke-tests: FAILED: plan shared-vm, step "bind": the broker answered PUT /v2/service_instances/smoke-tests-shared-vm-[0-9a-f]+/service_bindings/smoke-tests-shared-vm-[0-9a-f]+ with 503 Service Unavailable: The Redis service could not reach the VM holding the instance`))
		Expect(r.Stdout).To(MatchRegexp(`(?m)^cleanup: deleting instance smoke-tests-shared-vm-[0-9a-f]+ \(plan shared-vm\) failed, retrying: `))
		Expect(r.Stdout).To(MatchRegexp(`(?m)^cleanup: deleted instance smoke-tests-shared-vm-[0-9a-f]+ \(plan shared-vm\)$`))
		Expect(r.Stdout).NotTo(ContainSubstring("LEFT BEHIND"))
		Expect(<-restarted).To(Succeed())
		expectNoSecrets(r.Output(), sys, proxy)
		expectNothingLeft(sys)
	})
})

var _ = Describe("smoke-tests against a system serving Redis over TLS", Ordered, func() {
	It("also writes and reads over TLS on both plans, verifying the servers with the binding's tls_ca", func() {
		sys := startSystem(systemtest.Options{Nodes: 1, RedisTLS: true})
		proxy := newBrokerProxy(sys.BrokerURL)
		r := runErrand(errands.SmokeTests, smokeConfig(sys, proxy.URL))
		Expect(r.Code).To(Equal(0), r.Output())
		for _, plan := range []string{"shared-vm", "dedicated-vm"} {
			Expect(r.Stdout).To(MatchRegexp(`(?m)^%s: write and read: ok \(`, plan))
			Expect(r.Stdout).To(MatchRegexp(`(?m)^%s: write and read over TLS: ok \(`, plan))
		}
		Expect(r.Stdout).To(HaveSuffix("smoke-tests: all plans passed\n"))
		expectNoSecrets(r.Output(), sys, proxy)
		expectNothingLeft(sys)
	})
})
