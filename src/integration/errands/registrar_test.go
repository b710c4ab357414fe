package errands_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gstruct"

	"github.com/cf-redis/redis-for-cf/src/testkit/ccapitest"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

// Credentials the fake UAA knows.
const (
	clientID     = "redis-registrar"
	clientSecret = "registrar-secret-4b1e"
	adminUser    = "admin"
	adminPass    = "admin-pass-97c3"
)

func startCC() *ccapitest.Server {
	GinkgoHelper()
	// One resource a page: every list the errands read is paginated.
	cc, err := ccapitest.Start(ccapitest.Options{
		Clients: map[string]string{clientID: clientSecret},
		Users:   map[string]string{adminUser: adminPass},
		PerPage: 1,
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cc.Close)
	return cc
}

// ccConfig is the cloud_controller section of the errands' configs.
func ccConfig(cc *ccapitest.Server) map[string]any {
	return map[string]any{"url": cc.URL, "ca_cert": cc.CA, "client_id": clientID, "client_secret": clientSecret}
}

func registrarConfig(cc *ccapitest.Server, sys *systemtest.System, kv ...any) map[string]any {
	c := map[string]any{
		"cloud_controller": ccConfig(cc),
		"broker":           map[string]any{"name": "redis", "url": sys.BrokerURL, "username": sys.Username, "password": sys.Password},
		"service_access":   "public",
		"timeout_seconds":  60,
	}
	for i := 0; i+1 < len(kv); i += 2 {
		c[kv[i].(string)] = kv[i+1]
	}
	return c
}

func deregistrarConfig(cc *ccapitest.Server, kv ...any) map[string]any {
	c := map[string]any{"cloud_controller": ccConfig(cc), "broker_name": "redis", "timeout_seconds": 60}
	for i := 0; i+1 < len(kv); i += 2 {
		c[kv[i].(string)] = kv[i+1]
	}
	return c
}

// plan matches a plan of the fake by name and visibility.
func plan(name, visibility string, orgs ...string) OmegaMatcher {
	fields := gstruct.Fields{"Name": Equal(name), "Visibility": Equal(visibility)}
	if len(orgs) > 0 {
		fields["Orgs"] = Equal(orgs)
	} else {
		fields["Orgs"] = BeEmpty()
	}
	return gstruct.MatchFields(gstruct.IgnoreExtras, fields)
}

func count(requests []string, prefix string) int {
	n := 0
	for _, r := range requests {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

var _ = Describe("broker registration", Ordered, func() {
	var (
		sys *systemtest.System
		cc  *ccapitest.Server
	)
	// The errands only read the broker's catalog: one system serves every
	// spec, each with a Cloud Controller of its own.
	BeforeAll(func() {
		sys = startSystem(systemtest.Options{Nodes: 1})
	})
	BeforeEach(func() {
		cc = startCC()
	})

	Describe("broker-registrar", func() {

		It("creates the broker, then updates it on a second run, with every plan public, and prints no secret", func() {
			r := runErrand(errands.Registrar, registrarConfig(cc, sys))
			Expect(r.Code).To(Equal(0), r.Output())
			Expect(r.Stdout).To(ContainSubstring(`creating service broker "redis" at ` + sys.BrokerURL))
			Expect(r.Stdout).To(ContainSubstring("plan shared-vm: public (was admin)"))
			Expect(r.Stdout).To(HaveSuffix("broker-registrar: done\n"))
			brokers := cc.Brokers()
			Expect(brokers).To(HaveLen(1))
			Expect(brokers[0]).To(gstruct.MatchFields(gstruct.IgnoreExtras, gstruct.Fields{
				"Name": Equal("redis"), "URL": Equal(sys.BrokerURL), "Username": Equal(sys.Username),
				"Password": Equal(sys.Password), "State": Equal("available"),
			}))
			Expect(cc.Plans()).To(ConsistOf(plan("dedicated-vm", "public"), plan("shared-vm", "public")))
			planGUIDs := []string{cc.Plans()[0].GUID, cc.Plans()[1].GUID}

			r = runErrand(errands.Registrar, registrarConfig(cc, sys))
			Expect(r.Code).To(Equal(0), r.Output())
			Expect(r.Stdout).To(ContainSubstring(`updating service broker "redis" (guid ` + brokers[0].GUID + ") to " + sys.BrokerURL))
			Expect(r.Stdout).To(ContainSubstring("plan shared-vm: public already"))
			Expect(cc.Brokers()).To(HaveLen(1))
			Expect(cc.Brokers()[0].GUID).To(Equal(brokers[0].GUID))
			Expect([]string{cc.Plans()[0].GUID, cc.Plans()[1].GUID}).To(Equal(planGUIDs), "the plans are the same plans")
			requests := cc.Requests()
			Expect(count(requests, "POST /v3/service_brokers")).To(Equal(1))
			Expect(count(requests, "PATCH /v3/service_brokers/"+brokers[0].GUID)).To(Equal(1))
			Expect(count(requests, "POST /v3/service_plans/")).To(Equal(2), "visibility set once per plan")
			Expect(count(requests, "POST /oauth/token")).To(Equal(2), "a token a run")
			Expect(r.Output()).NotTo(ContainSubstring(sys.Password))
			Expect(r.Output()).NotTo(ContainSubstring(clientSecret))
		})

		It("follows a broker that moved: the second run gives Cloud Controller the new URL and credentials", func() {
			Expect(runErrand(errands.Registrar, registrarConfig(cc, sys)).Code).To(Equal(0))
			other := startSystem(systemtest.Options{})
			r := runErrand(errands.Registrar, registrarConfig(cc, other))
			Expect(r.Code).To(Equal(0), r.Output())
			Expect(cc.Brokers()).To(ConsistOf(gstruct.MatchFields(gstruct.IgnoreExtras, gstruct.Fields{
				"URL": Equal(other.BrokerURL), "Password": Equal(other.Password), "State": Equal("available"),
			})))
			Expect(cc.Plans()).To(ConsistOf(plan("shared-vm", "public")), "the dedicated-vm plan left the catalog")
		})

		It("gives the listed orgs access, adds orgs on later runs, and narrows a public plan to the orgs", func() {
			cc.AddOrg("dev")
			cc.AddOrg("test")
			cc.AddOrg("prod")
			r := runErrand(errands.Registrar, registrarConfig(cc, sys, "service_access", "orgs", "orgs", []string{"test", "dev"}))
			Expect(r.Code).To(Equal(0), r.Output())
			Expect(r.Stdout).To(ContainSubstring("plan shared-vm: visible to orgs test, dev (was admin)"))
			Expect(cc.Plans()).To(ConsistOf(plan("dedicated-vm", "organization", "dev", "test"), plan("shared-vm", "organization", "dev", "test")))

			r = runErrand(errands.Registrar, registrarConfig(cc, sys, "service_access", "orgs", "orgs", []string{"prod"}))
			Expect(r.Code).To(Equal(0), r.Output())
			Expect(cc.Plans()).To(ConsistOf(plan("dedicated-vm", "organization", "dev", "prod", "test"), plan("shared-vm", "organization", "dev", "prod", "test")),
				"orgs an admin (or an earlier run) gave access keep it")

			Expect(runErrand(errands.Registrar, registrarConfig(cc, sys)).Code).To(Equal(0))
			Expect(cc.Plans()).To(ConsistOf(plan("dedicated-vm", "public"), plan("shared-vm", "public")))

			r = runErrand(errands.Registrar, registrarConfig(cc, sys, "service_access", "orgs", "orgs", []string{"dev"}))
			Expect(r.Code).To(Equal(0), r.Output())
			Expect(r.Stdout).To(ContainSubstring("plan shared-vm: visible to orgs dev (was public)"))
			Expect(cc.Plans()).To(ConsistOf(plan("dedicated-vm", "organization", "dev"), plan("shared-vm", "organization", "dev")))
		})

		It("leaves plan access alone with service_access none", func() {
			r := runErrand(errands.Registrar, registrarConfig(cc, sys, "service_access", "none"))
			Expect(r.Code).To(Equal(0), r.Output())
			Expect(r.Stdout).To(ContainSubstring("plan shared-vm: access left as it is (admin)"))
			Expect(cc.Plans()).To(ConsistOf(plan("dedicated-vm", "admin"), plan("shared-vm", "admin")))
		})

		It("registers with a UAA user's credentials (password grant through the cf client)", func() {
			c := registrarConfig(cc, sys)
			c["cloud_controller"] = map[string]any{"url": cc.URL, "ca_cert": cc.CA, "username": adminUser, "password": adminPass}
			r := runErrand(errands.Registrar, c)
			Expect(r.Code).To(Equal(0), r.Output())
			Expect(cc.Brokers()).To(HaveLen(1))
			Expect(r.Output()).NotTo(ContainSubstring(adminPass))
		})

		It("names an org that does not exist, before it changes any plan's access", func() {
			cc.AddOrg("dev")
			r := runErrand(errands.Registrar, registrarConfig(cc, sys, "service_access", "orgs", "orgs", []string{"dev", "qa", "staging"}))
			Expect(r.Code).To(Equal(1))
			Expect(r.Stderr).To(Equal("broker-registrar: FAILED: no such org: qa, staging (create them first, or take them out of the org list)\n"))
			Expect(cc.Plans()).To(ConsistOf(plan("dedicated-vm", "admin"), plan("shared-vm", "admin")))
		})

		DescribeTable("fails with a clear message, and exit status 1",
			func(change func(c map[string]any), message string) {
				c := registrarConfig(cc, sys)
				change(c)
				r := runErrand(errands.Registrar, c)
				Expect(r.Code).To(Equal(1), r.Output())
				Expect(r.Stderr).To(HavePrefix("broker-registrar: FAILED: "))
				Expect(r.Stderr).To(ContainSubstring(strings.NewReplacer("{CC}", cc.URL, "{UAA}", cc.UAAURL).Replace(message)))
				Expect(r.Output()).NotTo(ContainSubstring(sys.Password))
				Expect(r.Output()).NotTo(ContainSubstring(clientSecret))
			},
			Entry("UAA refuses the client's secret", func(c map[string]any) {
				c["cloud_controller"].(map[string]any)["client_secret"] = "wrong-" + clientSecret
			}, `bad credentials: UAA at {UAA}/oauth/token refused the credentials of client "redis-registrar": 401 Unauthorized unauthorized: Bad credentials`),
			Entry("UAA refuses the user's password", func(c map[string]any) {
				c["cloud_controller"] = map[string]any{"url": cc.URL, "ca_cert": cc.CA, "username": adminUser, "password": "nope"}
			}, `UAA at {UAA}/oauth/token refused the credentials of user "admin" (client "cf"): 401 Unauthorized unauthorized: Bad credentials`),
			Entry("Cloud Controller's certificate is not signed by the CA", func(c map[string]any) {
				ca, err := tlstest.NewCA("another")
				Expect(err).NotTo(HaveOccurred())
				c["cloud_controller"].(map[string]any)["ca_cert"] = ca.PEM
			}, `unreachable: cannot reach Cloud Controller at {CC}: tls: failed to verify certificate: x509: certificate signed by unknown authority`),
		)

		It("verifies Cloud Controller and UAA against the VM's trust store plus ca_cert: refused without the CA, accepted with it, the trust store kept beside it", func() {
			c := registrarConfig(cc, sys)
			delete(c["cloud_controller"].(map[string]any), "ca_cert")
			r := runErrand(errands.Registrar, c)
			Expect(r.Code).To(Equal(1), r.Output())
			Expect(r.Stderr).To(Equal("broker-registrar: FAILED: unreachable: cannot reach Cloud Controller at " + cc.URL +
				": tls: failed to verify certificate: x509: certificate signed by unknown authority\n"))

			r = runErrand(errands.Registrar, registrarConfig(cc, sys))
			Expect(r.Code).To(Equal(0), r.Output())
			Expect(r.Output()).NotTo(ContainSubstring("WARNING"))

			// The trust store (SSL_CERT_FILE stands in for the VM's, where BOSH
			// puts the director's trusted certificates) holds Cloud
			// Controller's CA; ca_cert, another CA (Ops Manager's), is added to it.
			store := filepath.Join(GinkgoT().TempDir(), "trust-store.pem")
			Expect(os.WriteFile(store, []byte(cc.CA), 0o644)).To(Succeed())
			opsman, err := tlstest.NewCA("ops-manager")
			Expect(err).NotTo(HaveOccurred())
			c = registrarConfig(cc, sys)
			c["cloud_controller"].(map[string]any)["ca_cert"] = opsman.PEM
			r = runErrand(errands.Registrar, c, "SSL_CERT_FILE="+store)
			Expect(r.Code).To(Equal(0), r.Output())
			r = runErrand(errands.Registrar, c)
			Expect(r.Code).To(Equal(1), "without the trust store, Ops Manager's CA alone does not sign Cloud Controller's: "+r.Output())
		})

		It("skips certificate verification with skip_ssl_validation, saying so", func() {
			c := registrarConfig(cc, sys)
			c["cloud_controller"] = map[string]any{"url": cc.URL, "client_id": clientID, "client_secret": clientSecret, "skip_ssl_validation": true}
			r := runErrand(errands.Registrar, c)
			Expect(r.Code).To(Equal(0), r.Output())
			Expect(r.Stdout).To(ContainSubstring("WARNING: skip_ssl_validation is set: Cloud Controller's and UAA's certificates are not verified\n"))
			Expect(cc.Brokers()).To(HaveLen(1))

			r = runErrand(errands.Deregistrar, map[string]any{"cloud_controller": c["cloud_controller"], "broker_name": "redis"})
			Expect(r.Code).To(Equal(0), r.Output())
			Expect(r.Stdout).To(ContainSubstring("WARNING: skip_ssl_validation is set"))
			Expect(cc.Brokers()).To(BeEmpty())
		})

		It("quotes Cloud Controller's error when its job to read the catalog fails, and updates the failed broker on the next run", func() {
			c := registrarConfig(cc, sys)
			c["broker"].(map[string]any)["password"] = "wrong"
			r := runErrand(errands.Registrar, c)
			Expect(r.Code).To(Equal(1))
			Expect(r.Stderr).To(MatchRegexp(`^broker-registrar: FAILED: creating service broker "redis": Cloud Controller job [0-9a-f-]+ \(service_broker.catalog.synchronize\) failed: ` +
				`CF-ServiceBrokerApiAuthenticationFailed: Authentication failed for the service broker API. Double-check that the username and password are correct: ` +
				strings.ReplaceAll(sys.BrokerURL, ".", `\.`) + `/v2/catalog\n$`))
			Expect(cc.Brokers()).To(ConsistOf(gstruct.MatchFields(gstruct.IgnoreExtras, gstruct.Fields{"State": Equal("synchronization failed")})))

			r = runErrand(errands.Registrar, registrarConfig(cc, sys))
			Expect(r.Code).To(Equal(0), r.Output())
			Expect(r.Stdout).To(ContainSubstring(`updating service broker "redis"`))
			Expect(cc.Brokers()).To(ConsistOf(gstruct.MatchFields(gstruct.IgnoreExtras, gstruct.Fields{"State": Equal("available")})))
		})

		It("says Cloud Controller cannot be reached when nothing listens at its URL", func() {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			Expect(err).NotTo(HaveOccurred())
			addr := l.Addr().String()
			Expect(l.Close()).To(Succeed())
			c := registrarConfig(cc, sys)
			c["cloud_controller"].(map[string]any)["url"] = "https://" + addr
			r := runErrand(errands.Registrar, c)
			Expect(r.Code).To(Equal(1))
			Expect(r.Stderr).To(Equal("broker-registrar: FAILED: unreachable: cannot reach Cloud Controller at https://" + addr +
				": dial tcp " + addr + ": connect: connection refused\n"))
		})

		It("refuses a config without credentials for Cloud Controller, naming the fields, with exit status 2", func() {
			c := registrarConfig(cc, sys)
			c["cloud_controller"] = map[string]any{"url": cc.URL}
			r := runErrand(errands.Registrar, c)
			Expect(r.Code).To(Equal(2))
			Expect(r.Stderr).To(ContainSubstring("cloud_controller: client_id and client_secret (a UAA client), or username and password (a UAA user), are required"))
			Expect(cc.Requests()).To(BeEmpty())
		})
	})

	Describe("broker-deregistrar", func() {
		BeforeEach(func() {
			r := runErrand(errands.Registrar, registrarConfig(cc, sys))
			Expect(r.Code).To(Equal(0), r.Output())
		})

		It("deletes the broker, and has nothing to do on a second run", func() {
			r := runErrand(errands.Deregistrar, deregistrarConfig(cc))
			Expect(r.Code).To(Equal(0), r.Output())
			Expect(r.Stdout).To(ContainSubstring(`service broker "redis" deleted`))
			Expect(cc.Brokers()).To(BeEmpty())
			Expect(cc.Plans()).To(BeEmpty())

			r = runErrand(errands.Deregistrar, deregistrarConfig(cc))
			Expect(r.Code).To(Equal(0), r.Output())
			Expect(r.Stdout).To(ContainSubstring(`no service broker "redis" is registered: nothing to do`))
		})

		It("refuses while service instances exist, naming them, when purge is false", func() {
			plans := cc.Plans()
			Expect(plans).To(HaveLen(2))
			cc.AddServiceInstance("cache", plans[0].GUID)
			cc.AddServiceInstance("sessions", plans[0].GUID)

			r := runErrand(errands.Deregistrar, deregistrarConfig(cc, "purge", false))
			Expect(r.Code).To(Equal(1))
			Expect(r.Stderr).To(Equal(`broker-deregistrar: FAILED: service instances exist: service broker "redis" still has 2 service instance(s): cache, sessions. ` +
				"Delete them with cf delete-service, or set purge to remove them from Cloud Controller with the service offering (cf purge-service-offering), " +
				"without asking the broker (their data is then left on the VMs)\n"))
			Expect(cc.Brokers()).To(HaveLen(1))
			Expect(cc.ServiceInstances()).To(HaveLen(2))
			Expect(count(cc.Requests(), "DELETE ")).To(BeZero())
		})

		It("with purge, purges the service offering (cf purge-service-offering) with its instances, then deletes the broker", func() {
			plans := cc.Plans()
			Expect(plans).To(HaveLen(2))
			cc.AddServiceInstance("cache", plans[0].GUID)
			cc.AddServiceInstance("sessions", plans[1].GUID)

			r := runErrand(errands.Deregistrar, deregistrarConfig(cc, "purge", true))
			Expect(r.Code).To(Equal(0), r.Output())
			Expect(r.Stdout).To(MatchRegexp(`purged service offering \S+ \(guid [0-9a-f-]+\) with its plans and 2 service instance\(s\): cache, sessions\n`))
			Expect(cc.ServiceInstances()).To(BeEmpty())
			Expect(cc.Plans()).To(BeEmpty())
			Expect(cc.Brokers()).To(BeEmpty())
			Expect(count(cc.Requests(), "DELETE /v3/service_offerings/")).To(Equal(1))
			Expect(count(cc.Requests(), "DELETE /v3/service_instances/")).To(BeZero(), "one purge of the offering, not one per instance")
			Expect(cc.Brokers()).To(BeEmpty())
		})
	})
})
