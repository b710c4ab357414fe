package ccapi_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/broker"
	"github.com/cf-redis/redis-for-cf/src/internal/ccapi"
	"github.com/cf-redis/redis-for-cf/src/testkit/ccapitest"
)

func TestCCAPI(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "ccapi")
}

// startBroker serves the real broker's OSB API in-process, for its
// catalog: Cloud Controller reads it when a broker is registered. Its agent
// is never called.
func startBroker() (url, username, password string) {
	GinkgoHelper()
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
	srv := httptest.NewServer(b.Handler())
	DeferCleanup(srv.Close)
	return srv.URL, "cc", "broker-secret"
}

var _ = Describe("the Cloud Controller client", func() {
	var (
		cc  *ccapitest.Server
		cfg ccapi.Config
		ctx context.Context
	)
	newClient := func(c ccapi.Config) *ccapi.Client {
		GinkgoHelper()
		Expect(c.Validate("cloud_controller")).To(Succeed())
		client, err := ccapi.New(c)
		Expect(err).NotTo(HaveOccurred())
		return client
	}

	BeforeEach(func() {
		var err error
		cc, err = ccapitest.Start(ccapitest.Options{
			Clients: map[string]string{"registrar": "s3cret"}, Users: map[string]string{"admin": "pw"}, PerPage: 2,
		})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(cc.Close)
		cfg = ccapi.Config{URL: cc.URL, CACert: cc.CA, ClientID: "registrar", ClientSecret: "s3cret"}
		ctx = context.Background()
	})

	It("finds UAA in Cloud Controller's root document", func() {
		info, err := newClient(cfg).Info(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(info.UAA).To(Equal(cc.UAAURL))
	})

	It("gets tokens with the client-credentials grant and with the password grant", func() {
		who, err := newClient(cfg).Authenticate(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(who).To(Equal(`client "registrar"`))

		who, err = newClient(ccapi.Config{URL: cc.URL, CACert: cc.CA, Username: "admin", Password: "pw"}).Authenticate(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(who).To(Equal(`user "admin" (client "cf")`))
	})

	It("says whose credentials UAA refused", func() {
		cfg.ClientSecret = "wrong"
		_, err := newClient(cfg).Authenticate(ctx)
		Expect(errors.Is(err, ccapi.ErrBadCredentials)).To(BeTrue())
		Expect(err).To(MatchError(ContainSubstring(`UAA at ` + cc.UAAURL + `/oauth/token refused the credentials of client "registrar": 401 Unauthorized unauthorized: Bad credentials`)))
		Expect(err.Error()).NotTo(ContainSubstring("wrong"))
	})

	It("asks for a new token when Cloud Controller refuses the one it has, once", func() {
		client := newClient(cfg)
		_, err := client.ServiceBrokerByName(ctx, "x")
		Expect(err).NotTo(HaveOccurred())
		cc.RevokeTokens()
		_, err = client.ServiceBrokerByName(ctx, "x")
		Expect(err).NotTo(HaveOccurred())
		var tokens int
		for _, r := range cc.Requests() {
			if r == "POST /oauth/token" {
				tokens++
			}
		}
		Expect(tokens).To(Equal(2))
	})

	It("reads every page of a list", func() {
		for _, name := range []string{"a", "b", "c", "d", "e"} {
			cc.AddOrg(name)
		}
		orgs, err := newClient(cfg).Organizations(ctx, []string{"a", "c", "d", "e", "zz"})
		Expect(err).NotTo(HaveOccurred())
		var names []string
		for _, o := range orgs {
			names = append(names, o.Name)
		}
		Expect(names).To(ConsistOf("a", "c", "d", "e"))
		var pages int
		for _, r := range cc.Requests() {
			if strings.HasPrefix(r, "GET /v3/organizations") {
				pages++
			}
		}
		Expect(pages).To(Equal(2))
	})

	It("creates a broker and waits for Cloud Controller's job to read its catalog", func() {
		url, user, pass := startBroker()
		client := newClient(cfg)
		_, err := client.CreateServiceBroker(ctx, ccapi.BrokerRegistration{Name: "redis", URL: url, Username: user, Password: pass})
		Expect(err).NotTo(HaveOccurred())
		b, err := client.ServiceBrokerByName(ctx, "redis")
		Expect(err).NotTo(HaveOccurred())
		Expect(b.URL).To(Equal(url))
		plans, err := client.ServicePlans(ctx, b.GUID)
		Expect(err).NotTo(HaveOccurred())
		Expect(plans).To(HaveLen(1))
		Expect(plans[0].Name).To(Equal("shared-vm"))
		Expect(plans[0].VisibilityType).To(Equal(ccapi.VisibilityAdmin))
		Expect(plans[0].BrokerCatalog.ID).To(Equal("plan-1"))

		_, err = client.CreateServiceBroker(ctx, ccapi.BrokerRegistration{Name: "redis", URL: url, Username: user, Password: pass})
		var ce *ccapi.Error
		Expect(errors.As(err, &ce)).To(BeTrue())
		Expect(ce.Status).To(Equal(http.StatusUnprocessableEntity))
		Expect(err).To(MatchError("Cloud Controller answered POST /v3/service_brokers with 422 Unprocessable Entity: CF-UnprocessableEntity: Name must be unique: redis"))
	})

	It("returns Cloud Controller's errors when a job fails", func() {
		client := newClient(cfg)
		_, err := client.CreateServiceBroker(ctx, ccapi.BrokerRegistration{Name: "redis", URL: "http://127.0.0.1:1", Username: "u", Password: "p"})
		var jf *ccapi.JobFailedError
		Expect(errors.As(err, &jf)).To(BeTrue())
		Expect(jf.Operation).To(Equal("service_broker.catalog.synchronize"))
		Expect(err).To(MatchError(ContainSubstring("failed: CF-ServiceBrokerApiUnreachable: The service broker could not be reached: http://127.0.0.1:1/v2/catalog")))

		url, user, pass := startBroker()
		_, err = client.CreateServiceBroker(ctx, ccapi.BrokerRegistration{Name: "other", URL: url, Username: user, Password: pass})
		Expect(err).NotTo(HaveOccurred())
		b, err := client.ServiceBrokerByName(ctx, "other")
		Expect(err).NotTo(HaveOccurred())
		plans, err := client.ServicePlans(ctx, b.GUID)
		Expect(err).NotTo(HaveOccurred())
		cc.AddServiceInstance("cache", plans[0].GUID)
		_, err = client.DeleteServiceBroker(ctx, b.GUID)
		Expect(errors.As(err, &jf)).To(BeTrue())
		Expect(err).To(MatchError(ContainSubstring("CF-ServiceBrokerNotRemovable: Can not remove brokers that have associated service instances: other")))

		instances, err := client.ServiceInstances(ctx, []string{plans[0].GUID})
		Expect(err).NotTo(HaveOccurred())
		Expect(instances).To(HaveLen(1))
		offerings, err := client.ServiceOfferings(ctx, b.GUID)
		Expect(err).NotTo(HaveOccurred())
		Expect(offerings).To(HaveLen(1))
		Expect(offerings[0].GUID).To(Equal(plans[0].Relationships.ServiceOffering.Data.GUID))
		Expect(offerings[0].Name).NotTo(BeEmpty())
		Expect(client.PurgeServiceOffering(ctx, offerings[0].GUID)).To(Succeed())
		Expect(cc.ServiceInstances()).To(BeEmpty(), "purged with its offering")
		Expect(cc.Requests()).To(ContainElement("DELETE /v3/service_offerings/" + offerings[0].GUID + "?purge=true"))
		_, err = client.DeleteServiceBroker(ctx, b.GUID)
		Expect(err).NotTo(HaveOccurred())
		Expect(cc.Brokers()).To(HaveLen(1), "the failed one stays, as in Cloud Controller")
	})

	It("refuses a Cloud Controller whose certificate its CA did not sign", func() {
		other, err := ccapitest.Start(ccapitest.Options{})
		Expect(err).NotTo(HaveOccurred())
		defer other.Close()
		cfg.CACert = other.CA
		_, err = newClient(cfg).Info(ctx)
		Expect(errors.Is(err, ccapi.ErrUnreachable)).To(BeTrue())
		Expect(err).To(MatchError(ContainSubstring("x509: certificate signed by unknown authority")))
	})

	It("trusts any certificate with SkipSSLValidation, and says so", func() {
		cfg.CACert = ""
		_, err := newClient(cfg).Info(ctx)
		Expect(err).To(MatchError(ContainSubstring("x509: certificate signed by unknown authority")))
		cfg.SkipSSLValidation = true
		client := newClient(cfg)
		Expect(client.SkipsVerification()).To(BeTrue())
		_, err = client.Authenticate(ctx)
		Expect(err).NotTo(HaveOccurred(), "UAA's certificate is not verified either")
		_, err = client.Info(ctx)
		Expect(err).NotTo(HaveOccurred())
	})

	DescribeTable("config validation names the field at fault",
		func(c ccapi.Config, message string) {
			Expect(c.Validate("cloud_controller")).To(MatchError(ContainSubstring(message)))
		},
		Entry("no url", ccapi.Config{ClientID: "a", ClientSecret: "b"}, "cloud_controller.url is required"),
		Entry("plain http", ccapi.Config{URL: "http://api.example.com", ClientID: "a", ClientSecret: "b"}, `cloud_controller.url "http://api.example.com" must be an absolute https URL`),
		Entry("no credentials", ccapi.Config{URL: "https://api.example.com"}, "cloud_controller: client_id and client_secret (a UAA client), or username and password (a UAA user), are required"),
		Entry("a client without secret", ccapi.Config{URL: "https://api.example.com", ClientID: "a"}, "client_id and client_secret"),
		Entry("a user without password", ccapi.Config{URL: "https://api.example.com", Username: "admin"}, "cloud_controller.password is required with cloud_controller.username"),
		Entry("a password without user", ccapi.Config{URL: "https://api.example.com", Password: "x"}, "cloud_controller.username is required with cloud_controller.password"),
		Entry("a CA that is not PEM", ccapi.Config{URL: "https://api.example.com", ClientID: "a", ClientSecret: "b", CACert: "nope"}, "cloud_controller.ca_cert holds no PEM certificate"),
	)
})
