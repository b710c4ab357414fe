package sharedvm_test

import (
	"encoding/json"
	"net/http"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

var _ = Describe("The catalog", Ordered, ContinueOnFailure, func() {
	var sys *system

	BeforeAll(func() {
		sys = startSystem(systemtest.Options{})
	})

	It("offers p-redis, tagged redis, bindable, with retrievable instances and bindings and updatable plans", func() {
		cat, err := sys.osb.GetCatalog()
		Expect(err).NotTo(HaveOccurred())
		Expect(cat.Services).To(HaveLen(1))
		svc := cat.Services[0]
		Expect(svc.ID).To(Equal(systemtest.ServiceID))
		Expect(svc.Name).To(Equal("p-redis"))
		Expect(svc.Tags).To(ContainElement("redis"))
		Expect(svc.Bindable).To(BeTrue())
		Expect(svc.InstancesRetrievable).To(BeTrue())
		Expect(svc.BindingsRetrievable).To(BeTrue())
		Expect(svc.PlanUpdatable).To(HaveValue(BeTrue()))
	})

	It("has the shared-vm plan with maintenance_info and create and update schemas of the three parameters", func() {
		cat, err := sys.osb.GetCatalog()
		Expect(err).NotTo(HaveOccurred())
		Expect(cat.Services).To(HaveLen(1))
		Expect(cat.Services[0].Plans).To(HaveLen(1))
		plan := cat.Services[0].Plans[0]
		Expect(plan.ID).To(Equal(systemtest.PlanID))
		Expect(plan.Name).To(Equal("shared-vm"))
		Expect(plan.MaintenanceInfo).NotTo(BeNil())
		Expect(plan.MaintenanceInfo.Version).To(MatchRegexp(`^\d+\.\d+\.\d+`))
		Expect(plan.Schemas).NotTo(BeNil())
		Expect(plan.Schemas.ServiceInstance).NotTo(BeNil())
		for name, s := range map[string]any{
			"create": plan.Schemas.ServiceInstance.Create,
			"update": plan.Schemas.ServiceInstance.Update,
		} {
			// Decode through JSON so the check reads the schema as a client
			// receives it.
			data, err := json.Marshal(s)
			Expect(err).NotTo(HaveOccurred())
			var schema struct {
				Parameters struct {
					Schema               string                    `json:"$schema"`
					Type                 string                    `json:"type"`
					AdditionalProperties *bool                     `json:"additionalProperties"`
					Properties           map[string]map[string]any `json:"properties"`
				} `json:"parameters"`
			}
			Expect(json.Unmarshal(data, &schema)).To(Succeed())
			p := schema.Parameters
			Expect(p.Schema).To(ContainSubstring("json-schema.org"), name)
			Expect(p.Type).To(Equal("object"), name)
			Expect(p.AdditionalProperties).To(HaveValue(BeFalse()), name)
			Expect(p.Properties).To(HaveKey("maxmemory-policy"), name)
			Expect(p.Properties).To(HaveKey("notify-keyspace-events"), name)
			Expect(p.Properties).To(HaveKey("timeout"), name)
			Expect(p.Properties["maxmemory-policy"]["enum"]).To(ContainElements("noeviction", "allkeys-lru"), name)
			Expect(p.Properties["timeout"]["type"]).To(Equal("integer"), name)
		}
	})

	It("sends plan_updateable as true on the wire", func() {
		status, body := sys.do(http.MethodGet, "/v2/catalog", nil)
		Expect(status).To(Equal(http.StatusOK))
		var raw struct {
			Services []map[string]any `json:"services"`
		}
		Expect(json.Unmarshal(body, &raw)).To(Succeed())
		Expect(raw.Services).To(HaveLen(1))
		Expect(raw.Services[0]).To(HaveKeyWithValue("plan_updateable", true))
	})
})
