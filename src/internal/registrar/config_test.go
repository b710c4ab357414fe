package registrar_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/ccapi"
	"github.com/cf-redis/redis-for-cf/src/internal/registrar"
)

// Register and Deregister run end to end, as the errands' binaries against
// a fake Cloud Controller and a real broker, in src/integration/errands.

func TestRegistrar(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "registrar")
}

var _ = Describe("the registrar's config", func() {
	valid := func() registrar.Config {
		return registrar.Config{
			CloudController: ccapi.Config{URL: "https://api.sys.example.com", ClientID: "c", ClientSecret: "s"},
			Broker:          registrar.Broker{Name: "redis", URL: "http://10.0.0.5:8080", Username: "broker", Password: "p"},
			ServiceAccess:   registrar.AccessPublic,
		}
	}

	It("takes a default timeout and the cf client for a user", func() {
		c := valid()
		c.CloudController = ccapi.Config{URL: "https://api.sys.example.com", Username: "admin", Password: "pw"}
		Expect(c.Validate()).To(Succeed())
		Expect(c.TimeoutSeconds).To(Equal(600))
		Expect(c.CloudController.ClientID).To(Equal("cf"))
	})

	DescribeTable("names the field at fault",
		func(change func(c *registrar.Config), message string) {
			c := valid()
			change(&c)
			Expect(c.Validate()).To(MatchError(ContainSubstring(message)))
		},
		Entry("no Cloud Controller", func(c *registrar.Config) { c.CloudController.URL = "" }, "cloud_controller.url is required"),
		Entry("no broker name", func(c *registrar.Config) { c.Broker.Name = "" }, "broker.name is required"),
		Entry("a broker name with a comma", func(c *registrar.Config) { c.Broker.Name = "a,b" }, "broker.name is required, and may hold no commas"),
		Entry("no broker URL", func(c *registrar.Config) { c.Broker.URL = "10.0.0.5:8080" }, `broker.url "10.0.0.5:8080" must be an absolute http or https URL`),
		Entry("no broker password", func(c *registrar.Config) { c.Broker.Password = "" }, "broker.username and broker.password are required"),
		Entry("no service access", func(c *registrar.Config) { c.ServiceAccess = "" }, `service_access must be "public", "orgs" or "none", not ""`),
		Entry("orgs without a list", func(c *registrar.Config) { c.ServiceAccess = registrar.AccessOrgs }, `orgs must name at least one org with service_access "orgs"`),
		Entry("a list without orgs access", func(c *registrar.Config) { c.Orgs = []string{"dev"} }, `orgs are given only with service_access "orgs", not "public"`),
		Entry("an empty org", func(c *registrar.Config) { c.ServiceAccess, c.Orgs = registrar.AccessOrgs, []string{"dev", ""} }, `orgs[1] "" is not an org name`),
		Entry("a negative timeout", func(c *registrar.Config) { c.TimeoutSeconds = -5 }, "timeout_seconds must not be negative"),
	)
})

var _ = Describe("the deregistrar's config", func() {
	It("needs Cloud Controller and the broker's name", func() {
		c := registrar.DeregisterConfig{}
		err := c.Validate()
		Expect(err).To(MatchError(ContainSubstring("cloud_controller.url is required")))
		Expect(err).To(MatchError(ContainSubstring("broker_name is required")))
	})
})
