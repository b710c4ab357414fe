package boshrender_test

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.yaml.in/yaml/v3"

	"github.com/cf-redis/redis-for-cf/src/release/boshrender"
)

// The release's job specs and templates are rendered by spec/ through this
// package; these specs pin the Director's link rules on made-up jobs.
var _ = Describe("Deployment.Links", func() {
	server := &boshrender.Job{
		Name:       "server",
		Provides:   []boshrender.LinkSpec{{Name: "server", Type: "db", Properties: []string{"port", "password"}}},
		Properties: map[string]boshrender.Property{"port": {Default: 5432}, "password": {}},
	}
	client := &boshrender.Job{
		Name: "client",
		Consumes: []boshrender.LinkSpec{
			{Name: "db", Type: "db"},
			{Name: "cache", Type: "cache", Optional: true},
		},
	}
	deployment := func(doc string) *boshrender.Deployment {
		GinkgoHelper()
		d := &boshrender.Deployment{Release: "r", Jobs: map[string]*boshrender.Job{"server": server, "client": client}}
		Expect(yaml.Unmarshal([]byte(doc), &d.Manifest)).To(Succeed())
		d.Instances = func(g boshrender.InstanceGroup) []boshrender.Instance {
			var out []boshrender.Instance
			for i := range g.Instances {
				id := fmt.Sprintf("%s-id-%d", g.Name, i)
				ip := fmt.Sprintf("10.0.0.%d", 10+i)
				out = append(out, boshrender.Instance{Group: g.Name, Index: i, ID: id, IP: ip, Address: d.Manifest.Address(g, id, ip)})
			}
			return out
		}
		return d
	}
	clientOf := func(d *boshrender.Deployment) boshrender.ManifestJob {
		for _, g := range d.Manifest.InstanceGroups {
			for _, mj := range g.Jobs {
				if mj.Name == "client" {
					return mj
				}
			}
		}
		Fail("no client")
		return boshrender.ManifestJob{}
	}

	It("takes the one provider of a type, with its properties over their defaults and BOSH DNS addresses", func() {
		d := deployment(`
name: dep
features: {use_dns_addresses: true}
instance_groups:
- name: db
  instances: 2
  networks: [{name: net}]
  jobs: [{name: server, release: r, properties: {password: secret}}]
- name: app
  instances: 1
  jobs: [{name: client, release: r}]
`)
		links, err := d.Links(clientOf(d))
		Expect(err).NotTo(HaveOccurred())
		Expect(links).To(HaveLen(1), "the optional cache link has no provider")
		Expect(links["db"].Properties).To(Equal(map[string]any{"port": 5432, "password": "secret"}))
		Expect(links["db"].Instances).To(HaveLen(2))
		Expect(links["db"].Instances[1]).To(Equal(boshrender.LinkInstance{
			Name: "db", Index: 1, ID: "db-id-1", Address: "db-id-1.db.net.dep.bosh",
		}))
		Expect(links["db"].Instances[0].Bootstrap).To(BeTrue())
	})

	It("takes the provider a consumer names, and none when it says nil", func() {
		d := deployment(`
name: dep
instance_groups:
- name: db1
  instances: 1
  jobs: [{name: server, release: r, provides: {server: {as: first}}}]
- name: db2
  instances: 1
  jobs: [{name: server, release: r, provides: {server: {as: second}}}]
- name: app
  instances: 1
  jobs: [{name: client, release: r, consumes: {db: {from: second}, cache: nil}}]
`)
		links, err := d.Links(clientOf(d))
		Expect(err).NotTo(HaveOccurred())
		Expect(links["db"].Instances[0].Address).To(Equal("10.0.0.10"))
		Expect(links["db"].Instances[0].Name).To(Equal("db2"))
		Expect(links).NotTo(HaveKey("cache"))
	})

	DescribeTable("refuses what the Director refuses",
		func(doc, message string) {
			d := deployment(doc)
			_, err := d.Links(clientOf(d))
			Expect(err).To(MatchError(ContainSubstring(message)))
		},
		Entry("two implicit providers", `
name: dep
instance_groups:
- {name: db1, instances: 1, jobs: [{name: server, release: r}]}
- {name: db2, instances: 1, jobs: [{name: server, release: r}]}
- {name: app, instances: 1, jobs: [{name: client, release: r}]}
`, "link db could come from 2 providers"),
		Entry("no provider of a required link", `
name: dep
instance_groups:
- {name: app, instances: 1, jobs: [{name: client, release: r}]}
`, "required link db has no provider"),
		Entry("a provider that is not there", `
name: dep
instance_groups:
- {name: db, instances: 1, jobs: [{name: server, release: r}]}
- {name: app, instances: 1, jobs: [{name: client, release: r, consumes: {db: {from: nowhere}}}]}
`, `link db from "nowhere": 0 providers`),
	)
})

var _ = Describe("InstanceGroup", func() {
	It("spreads instances over its AZs and names its first network", func() {
		g := boshrender.InstanceGroup{AZs: []string{"z1", "z2"}}
		Expect([]string{g.AZ(0), g.AZ(1), g.AZ(2)}).To(Equal([]string{"z1", "z2", "z1"}))
		Expect(g.Network()).To(Equal("default"))
		Expect(boshrender.InstanceGroup{}.AZ(0)).To(BeEmpty())
	})
})
