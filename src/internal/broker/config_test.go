package broker

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/configfile"
)

var _ = Describe("Config", func() {
	const valid = `{
	  "listen": "127.0.0.1:8080",
	  "credentials": {"username": "u", "password": "p"},
	  "state_dir": "/tmp/x",
	  "catalog": {"service_id": "svc"},
	  "shared_vm": {"plan_id": "plan", "max_instances": 5, "maxmemory_mb": 64,
	    "agents": [{"id": "a0", "url": "https://10.0.0.1:9001", "username": "b", "password": "c"}]}
	}`

	It("loads a valid config and fills in the defaults", func() {
		var c Config
		Expect(configfile.Decode([]byte(valid), &c)).To(Succeed())
		Expect(c.Catalog.ServiceName).To(Equal("p-redis"))
		Expect(c.SharedVM.Name).To(Equal("shared-vm"))
		Expect(c.Catalog.MaintenanceVersion).To(Equal(Version))
	})

	DescribeTable("refuses a bad config, naming the field",
		func(doc, field string) {
			var c Config
			Expect(configfile.Decode([]byte(doc), &c)).To(MatchError(ContainSubstring(field)))
		},
		Entry("unknown field", `{"lisen": "x"}`, "lisen"),
		Entry("missing credentials", `{"listen":"127.0.0.1:1","state_dir":"/x","catalog":{"service_id":"s"},"shared_vm":{"plan_id":"p","max_instances":1,"maxmemory_mb":1,"agents":[{"id":"a","url":"http://x","username":"u","password":"p"}]}}`, "credentials.username"),
		Entry("relative state dir", `{"listen":"127.0.0.1:1","credentials":{"username":"u","password":"p"},"state_dir":"x"}`, "state_dir"),
		Entry("no agents", `{"listen":"127.0.0.1:1","credentials":{"username":"u","password":"p"},"state_dir":"/x","catalog":{"service_id":"s"},"shared_vm":{"plan_id":"p","max_instances":1,"maxmemory_mb":1}}`, "shared_vm.agents"),
		Entry("an agent twice", `{"listen":"127.0.0.1:1","credentials":{"username":"u","password":"p"},"state_dir":"/x","catalog":{"service_id":"s"},"shared_vm":{"plan_id":"p","max_instances":1,"maxmemory_mb":1,"agents":[{"id":"a","url":"http://x","username":"u","password":"p"},{"id":"a","url":"http://y","username":"u","password":"p"}]}}`, "used twice"),
		Entry("zero limit", `{"listen":"127.0.0.1:1","credentials":{"username":"u","password":"p"},"state_dir":"/x","catalog":{"service_id":"s"},"shared_vm":{"plan_id":"p","max_instances":0,"maxmemory_mb":1,"agents":[{"id":"a","url":"http://x","username":"u","password":"p"}]}}`, "shared_vm.max_instances"),
		Entry("trailing data", valid+`{}`, "extra data"),
		Entry("metrics without their certificates", valid[:len(valid)-2]+`, "metrics": {"listen": "127.0.0.1:9090"}}`, "is required when metrics.listen is set"),
		Entry("metrics with an unknown field", valid[:len(valid)-2]+`, "metrics": {"port": 9090}}`, "port"),
		Entry("a node with an agent's id", `{"listen":"127.0.0.1:1","credentials":{"username":"u","password":"p"},"state_dir":"/x","catalog":{"service_id":"s"},"shared_vm":{"plan_id":"p","max_instances":1,"maxmemory_mb":1,"agents":[{"id":"vm0","url":"http://x","username":"u","password":"p"}]},"dedicated_vm":{"plan_id":"d","nodes":[{"id":"vm0","url":"https://y","username":"u","password":"p","ca_cert":"c"}]}}`, "dedicated_vm.nodes[0].id \"vm0\" is also the id of an agent"),
		Entry("a node over http", `{"listen":"127.0.0.1:1","credentials":{"username":"u","password":"p"},"state_dir":"/x","catalog":{"service_id":"s"},"dedicated_vm":{"plan_id":"d","nodes":[{"id":"n0","url":"http://y","username":"u","password":"p","ca_cert":"c"}]}}`, "dedicated_vm.nodes[0].url must be an https URL"),
		Entry("a node without a CA", `{"listen":"127.0.0.1:1","credentials":{"username":"u","password":"p"},"state_dir":"/x","catalog":{"service_id":"s"},"dedicated_vm":{"plan_id":"d","nodes":[{"id":"n0","url":"https://y","username":"u","password":"p"}]}}`, "dedicated_vm.nodes[0].ca_cert is required"),
	)

	Describe("dedicated_ha", func() {
		const nodes = `"dedicated_vm":{"plan_id":"d","nodes":[
		  {"id":"n0","az":"z1","url":"https://a","username":"u","password":"p","ca_cert":"c"},
		  {"id":"n1","az":"z2","url":"https://b","username":"u","password":"p","ca_cert":"c"},
		  {"id":"n2","url":"https://c","username":"u","password":"p","ca_cert":"c"}]}`
		const head = `{"listen":"127.0.0.1:1","credentials":{"username":"u","password":"p"},"state_dir":"/x","catalog":{"service_id":"s"},`

		It("loads, with each node's az, and fills in the defaults", func() {
			var c Config
			Expect(configfile.Decode([]byte(head+nodes+`,"dedicated_ha":{"plan_id":"h"}}`), &c)).To(Succeed())
			Expect(c.DedicatedVM.Nodes[0].AZ).To(Equal("z1"))
			Expect(c.DedicatedVM.Nodes[2].AZ).To(BeEmpty())
			Expect(*c.DedicatedHA).To(Equal(DedicatedHAPlan{PlanID: "h", Name: "dedicated-ha", TLSOnly: TLSOnlyOptional, SentinelPort: 26379,
				Description: "Three VMs, a leader and two followers, with Sentinel failing over to a follower in seconds"}))
		})

		DescribeTable("refuses a bad section, naming the cause",
			func(doc, cause string) {
				var c Config
				Expect(configfile.Decode([]byte(doc), &c)).To(MatchError(ContainSubstring(cause)))
			},
			Entry("without dedicated_vm", head+`"shared_vm":{"plan_id":"p","max_instances":1,"maxmemory_mb":1,"agents":[{"id":"a","url":"http://x","username":"u","password":"p"}]},"dedicated_ha":{"plan_id":"h"}}`,
				"dedicated_ha needs dedicated_vm"),
			Entry("a pool of two", head+`"dedicated_vm":{"plan_id":"d","nodes":[{"id":"n0","url":"https://a","username":"u","password":"p","ca_cert":"c"},{"id":"n1","url":"https://b","username":"u","password":"p","ca_cert":"c"}]},"dedicated_ha":{"plan_id":"h"}}`,
				"dedicated_ha needs at least 3 nodes in dedicated_vm.nodes; it has 2"),
			Entry("no plan id", head+nodes+`,"dedicated_ha":{}}`, "dedicated_ha.plan_id is required"),
			Entry("the dedicated plan's id", head+nodes+`,"dedicated_ha":{"plan_id":"d"}}`, "dedicated_ha.plan_id must differ from dedicated_vm.plan_id"),
			Entry("a bad sentinel port", head+nodes+`,"dedicated_ha":{"plan_id":"h","sentinel_port":70000}}`, "dedicated_ha.sentinel_port must be in 1-65535"),
			Entry("a bad tls_only", head+nodes+`,"dedicated_ha":{"plan_id":"h","tls_only":"sometimes"}}`, "dedicated_ha.tls_only must be"),
			Entry("an unknown field", head+nodes+`,"dedicated_ha":{"plan_id":"h","quorum":3}}`, "quorum"),
		)
	})

	It("makes one client per VM, agents and nodes alike, keyed by VM id", func() {
		var c Config
		Expect(configfile.Decode([]byte(valid), &c)).To(Succeed())
		clients, err := NewClients(c)
		Expect(err).NotTo(HaveOccurred())
		Expect(clients).To(HaveKey("a0"))
		Expect(clients).To(HaveLen(1))
	})

	It("never makes a node client without https and a CA", func() {
		c := Config{DedicatedVM: &DedicatedVMPlan{Nodes: []NodeConfig{{ID: "n0", ClientConfig: agentapi.ClientConfig{URL: "http://n0"}}}}}
		_, err := NewClients(c)
		Expect(err).To(MatchError(ContainSubstring("https")))
		c.DedicatedVM.Nodes[0].URL = "https://n0"
		_, err = NewClients(c)
		Expect(err).To(MatchError(ContainSubstring("ca_cert is required")))
	})
})
