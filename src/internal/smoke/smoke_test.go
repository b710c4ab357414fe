package smoke

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/broker"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

// The smoke tests run end to end against a real system in
// src/integration/errands; these specs cover what that cannot reach.

func TestSmoke(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "smoke")
}

var _ = Describe("the redactor", func() {
	It("blanks out secrets as they are, escaped in a URL, and a URI's password on its own", func() {
		var out bytes.Buffer
		r := &redactor{out: &out}
		r.add("broker pass/word")
		uri := (&url.URL{Scheme: "redis", User: url.UserPassword("b1", "p@ss:w/rd+x"), Host: "10.0.0.1:6379"}).String()
		r.add(uri)
		for _, line := range []string{
			"password broker pass/word here\n",
			"escaped broker+pass%2Fword and broker%20pass%2Fword\n",
			"uri " + uri + "\n",
			"only the password: p@ss:w/rd+x and p%40ss%3Aw%2Frd%2Bx\n",
		} {
			_, err := r.Write([]byte(line))
			Expect(err).NotTo(HaveOccurred())
		}
		Expect(out.String()).To(Equal("password [redacted] here\n" +
			"escaped [redacted] and [redacted]\n" +
			"uri [redacted]\n" +
			"only the password: [redacted] and [redacted]\n"))
	})
})

var _ = Describe("choosing what to test from the catalog", func() {
	yes, no := true, false
	redis := catalogService{ID: "svc", Name: "p-redis", Bindable: true, Plans: []catalogPlan{{ID: "p1", Name: "shared-vm"}, {ID: "p2", Name: "dedicated-vm"}}}
	other := catalogService{ID: "svc-2", Name: "other", Bindable: false, Plans: []catalogPlan{{ID: "o1", Name: "small", Bindable: &yes}, {ID: "o2", Name: "unbindable", Bindable: &no}}}

	names := func(plans []catalogPlan) []string {
		var n []string
		for _, p := range plans {
			n = append(n, p.Name)
		}
		return n
	}

	It("takes the only service and all its plans by default", func() {
		svc, plans, err := choose([]catalogService{redis}, "", nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(svc.Name).To(Equal("p-redis"))
		Expect(names(plans)).To(Equal([]string{"shared-vm", "dedicated-vm"}))
	})

	It("finds a service and plans by name or id, in the order given", func() {
		svc, plans, err := choose([]catalogService{other, redis}, "svc", []string{"p2", "shared-vm"})
		Expect(err).NotTo(HaveOccurred())
		Expect(svc.ID).To(Equal("svc"))
		Expect(names(plans)).To(Equal([]string{"dedicated-vm", "shared-vm"}))
		_, plans, err = choose([]catalogService{other, redis}, "other", []string{"small"})
		Expect(err).NotTo(HaveOccurred())
		Expect(names(plans)).To(Equal([]string{"small"}))
	})

	DescribeTable("says what the catalog has when it lacks what is asked for",
		func(service string, plans []string, message string) {
			_, _, err := choose([]catalogService{redis, other}, service, plans)
			Expect(err).To(MatchError(message))
		},
		Entry("no service named", "", nil, "the catalog offers several services (p-redis, other): name one in the config's service"),
		Entry("an unknown service", "memcached", nil, `the catalog has no service "memcached" (it offers p-redis, other)`),
		Entry("unknown plans", "p-redis", []string{"large", "shared-vm", "huge"}, "service p-redis has no plan large, huge (its plans: shared-vm, dedicated-vm)"),
		Entry("an unbindable plan", "other", []string{"unbindable"}, "plan unbindable is not bindable: the smoke tests need a binding"),
	)

	It("refuses an empty catalog", func() {
		_, _, err := choose(nil, "", nil)
		Expect(err).To(MatchError("the broker's catalog offers no service"))
	})
})

var _ = Describe("the config", func() {
	valid := func() Config {
		var c Config
		Expect(json.Unmarshal([]byte(`{"broker": {"url": "https://10.0.0.5:8080", "username": "broker", "password": "s"}}`), &c)).To(Succeed())
		return c
	}

	It("takes defaults for the timeouts", func() {
		c := valid()
		Expect(c.Validate()).To(Succeed())
		Expect(c.TimeoutSeconds).To(Equal(600))
		Expect(c.CleanupTimeoutSeconds).To(Equal(120))
	})

	DescribeTable("names the field at fault",
		func(change func(c *Config), message string) {
			c := valid()
			change(&c)
			Expect(c.Validate()).To(MatchError(ContainSubstring(message)))
		},
		Entry("no URL", func(c *Config) { c.Broker.URL = "" }, `broker.url "" must be an absolute http or https URL`),
		Entry("no password", func(c *Config) { c.Broker.Password = "" }, "broker.username and broker.password are required"),
		Entry("a CA that is not PEM", func(c *Config) { c.Broker.CACert = "x" }, "broker.ca_cert holds no PEM certificate"),
		Entry("an empty plan", func(c *Config) { c.Plans = []string{"a", ""} }, "plans[1] is empty"),
		Entry("a plan twice", func(c *Config) { c.Plans = []string{"a", "a"} }, `plans[1] "a" is listed twice`),
		Entry("a negative timeout", func(c *Config) { c.TimeoutSeconds = -1 }, "timeout_seconds must not be negative"),
	)
})

var _ = Describe("a broker served over HTTPS", func() {
	var (
		brokerURL string
		ca        *tlstest.CA
	)
	BeforeEach(func() {
		// The real broker, in-process, over TLS; its one agent does not
		// answer, so a provision fails after the catalog was read.
		cfg := broker.Config{
			Listen:      "127.0.0.1:0",
			Credentials: agentapi.Credentials{Username: "cc", Password: "broker-secret"},
			StateDir:    GinkgoT().TempDir(),
			Catalog:     broker.Catalog{ServiceID: "svc-1"},
			SharedVM: &broker.SharedVMPlan{PlanID: "plan-1", MaxInstances: 1, MaxMemoryMB: 16,
				Agents: []broker.AgentConfig{{ID: "a", ClientConfig: agentapi.ClientConfig{URL: "http://127.0.0.1:1", Credentials: agentapi.Credentials{Username: "u", Password: "p"}}}}},
		}
		Expect(cfg.Validate()).To(Succeed())
		agent, err := agentapi.NewClient(cfg.SharedVM.Agents[0].ClientConfig)
		Expect(err).NotTo(HaveOccurred())
		b, err := broker.New(cfg, map[string]broker.Agent{"a": agent}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		Expect(err).NotTo(HaveOccurred())
		ca, err = tlstest.NewCA("broker-ca")
		Expect(err).NotTo(HaveOccurred())
		certFile, keyFile, err := ca.Issue(GinkgoT().TempDir(), "127.0.0.1")
		Expect(err).NotTo(HaveOccurred())
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		Expect(err).NotTo(HaveOccurred())
		srv := httptest.NewUnstartedServer(b.Handler())
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.Config.ErrorLog = slog.NewLogLogger(slog.NewTextHandler(io.Discard, nil), slog.LevelError)
		srv.StartTLS()
		DeferCleanup(srv.Close)
		brokerURL = srv.URL
	})
	run := func(caPEM string) (string, error) {
		cfg := Config{Broker: Broker{URL: brokerURL, Username: "cc", Password: "broker-secret", CACert: caPEM}, CleanupTimeoutSeconds: 1}
		Expect(cfg.Validate()).To(Succeed())
		var out bytes.Buffer
		_, err := Run(context.Background(), &cfg, &out)
		return out.String(), err
	}

	It("reads the catalog when the CA signed the broker's certificate, and fails at the first step that fails", func() {
		out, err := run(ca.PEM)
		Expect(out).To(ContainSubstring("catalog: ok"))
		var se *StepError
		Expect(errors.As(err, &se)).To(BeTrue())
		Expect(se.Plan).To(Equal("shared-vm"))
		Expect(se.Step).To(Equal("provision"))
		Expect(out).NotTo(ContainSubstring("broker-secret"))
	})

	It("refuses a broker whose certificate the CA did not sign", func() {
		other, err := tlstest.NewCA("other")
		Expect(err).NotTo(HaveOccurred())
		_, err = run(other.PEM)
		Expect(err).To(MatchError(ContainSubstring(`step "catalog": cannot reach the broker at ` + brokerURL + ": tls: failed to verify certificate: x509: certificate signed by unknown authority")))
	})
})

var _ = Describe("a binding's TLS credentials", func() {
	It("are read as an app would: rediss:// verified against tls_ca only", func() {
		ca, err := tlstest.NewCA("redis-ca")
		Expect(err).NotTo(HaveOccurred())
		red := &redactor{out: io.Discard}
		uri := "rediss://app:s3cret-password@10.0.0.5:33001"
		red.add(uri)
		opts, err := redisTLSOptions(uri, ca.PEM, red)
		Expect(err).NotTo(HaveOccurred())
		Expect(opts.Addr).To(Equal("10.0.0.5:33001"))
		Expect(opts.TLSConfig.ServerName).To(Equal("10.0.0.5"))
		Expect(opts.TLSConfig.RootCAs).NotTo(BeNil())
		Expect(opts.TLSConfig.InsecureSkipVerify).To(BeFalse())

		_, err = redisTLSOptions("redis://app:s3cret-password@10.0.0.5:33001", ca.PEM, red)
		Expect(err).To(MatchError(ContainSubstring("not rediss://")))
		_, err = redisTLSOptions(uri, "not a certificate", red)
		Expect(err).To(MatchError(ContainSubstring("tls_ca holds no PEM certificate")))
		_, err = redisTLSOptions("rediss://app:s3cret-password@[bad", ca.PEM, red)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).NotTo(ContainSubstring("s3cret-password"))
	})
})
