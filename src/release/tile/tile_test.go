package tile_test

import (
	"archive/zip"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.yaml.in/yaml/v3"

	"github.com/cf-redis/redis-for-cf/src/release/tile"
)

const baseDescription = `
name: p-test
label: Test
description: A test tile.
icon: icon.png
metadata_version: "3.0"
minimum_version_for_upgrade: 0.0.0
releases: [app, bpm]
stemcell_criteria: {os: ubuntu-jammy, version: "1.0"}
requires_product_versions: [{name: cf, version: ">= 2.0"}]
variables:
- name: ca
  type: certificate
  options: {is_ca: true, common_name: ca}
- name: server_tls
  type: certificate
  options: {ca: ca, common_name: server}
  consumes: {alternative_name: {from: servers, properties: {wildcard: true}}}
forms:
- name: plan
  label: Plan
  properties:
  - name: limit
    type: integer
    label: Limit
    default: 5
  - name: api_key
    type: secret
    label: API key
- name: later
  label: Later
  pending: the backup job is not there yet
  properties:
  - name: bucket
    type: string
    label: Bucket
    optional: true
generated:
- name: creds
  type: simple_credentials
instance_groups:
- name: server
  label: Server
  instances: {default: 2, configurable: true, min: 1}
  resources: {ram: 1024, ephemeral_disk: 1024, persistent_disk: 2048, cpu: 1}
  jobs:
  - name: bpm
    release: bpm
  - name: server
    release: app
    provides: {server: {as: servers}}
    properties:
      limit: (( .properties.limit.value ))
      key: (( .properties.api_key.value ))
      auth.username: (( .properties.creds.identity ))
      auth.password: (( .properties.creds.password ))
      tls.cert: ((( server_tls.certificate )))
      tls.ca: ((( server_tls.ca )))
- name: client
  label: Client
  instances: {default: 1, configurable: false}
  resources: {ram: 512, ephemeral_disk: 1024, persistent_disk: 0, cpu: 1}
  jobs:
  - name: client
    release: app
    consumes: {server: {from: servers}, other: nil}
    properties:
      api_url: https://api.(( ..cf.cloud_controller.system_domain.value ))
      ca: (( $ops_manager.ca_certificate ))
errands:
- name: smoke
  label: Smoke
  run: post-deploy
  resources: {ram: 512, ephemeral_disk: 1024, persistent_disk: 0, cpu: 1}
  jobs:
  - name: smoke
    release: app
    properties:
      auth.password: (( .properties.creds.password ))
- name: cleanup
  label: Cleanup
  run: pre-delete
  default: "off"
  pending: the cleanup job is not there yet
  resources: {ram: 512, ephemeral_disk: 1024, persistent_disk: 0, cpu: 1}
  jobs:
  - name: cleanup
    release: app
`

var appJobs = map[string]fakeJob{
	"server": {
		Properties: []string{"limit", "key", "auth.username", "auth.password", "tls.cert", "tls.ca"},
		Provides:   []map[string]any{{"name": "server", "type": "srv"}},
	},
	"client": {
		Properties: []string{"api_url", "ca"},
		Consumes: []map[string]any{
			{"name": "server", "type": "srv"},
			{"name": "other", "type": "srv", "optional": true},
		},
	},
	"smoke": {Properties: []string{"auth.password"}},
}

var _ = Describe("Build", func() {
	var (
		dir      string
		d        *tile.Description
		releases []*tile.Release
	)

	build := func() (*tile.Built, error) {
		return tile.Build(d, tile.Options{Dir: dir, Releases: releases})
	}

	BeforeEach(func() {
		dir = GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "icon.png"), pngBytes, 0o644)).To(Succeed())
		var err error
		d, err = tile.ParseDescription([]byte(baseDescription))
		Expect(err).NotTo(HaveOccurred())
		app, err := tile.ReadRelease(writeRelease(dir, "app", "0+dev.3", appJobs))
		Expect(err).NotTo(HaveOccurred())
		bpm, err := tile.ReadRelease(writeRelease(dir, "bpm", "1.2.17", map[string]fakeJob{"bpm": {}}))
		Expect(err).NotTo(HaveOccurred())
		releases = []*tile.Release{app, bpm}
	})

	It("reads a release tarball's name, version and job specs", func() {
		Expect(releases[0].Name).To(Equal("app"))
		Expect(releases[0].Version).To(Equal("0+dev.3"))
		Expect(releases[0].JobNames()).To(Equal([]string{"client", "server", "smoke"}))
		Expect(releases[0].Jobs["server"].HasProperty("auth.password")).To(BeTrue())
		Expect(releases[0].Jobs["server"].HasProperty("auth")).To(BeFalse())
		Expect(releases[0].File()).To(Equal("app-0+dev.3.tgz"))
	})

	It("turns forms, generated credentials, instance groups and errands into Ops Manager's product template", func() {
		b, err := build()
		Expect(err).NotTo(HaveOccurred())
		m := b.Metadata
		Expect(m.ProductVersion).To(Equal("0.0.1-dev.3"), "from the first release's dev version")
		Expect(m.ProvidesProductVersions).To(ConsistOf(tile.ProductVersion{Name: "p-test", Version: "0.0.1-dev.3"}))
		Expect(m.Releases).To(Equal([]tile.ReleaseRef{
			{Name: "app", File: "app-0+dev.3.tgz", Version: "0+dev.3"},
			{Name: "bpm", File: "bpm-1.2.17.tgz", Version: "1.2.17"},
		}))
		Expect(m.FormTypes).To(HaveLen(1), "the pending form is left out")
		Expect(m.FormTypes[0].PropertyInputs).To(ConsistOf(
			HaveField("Reference", ".properties.limit"), HaveField("Reference", ".properties.api_key")))
		Expect(m.PropertyBlueprints).To(ConsistOf(
			tile.Blueprint{Name: "limit", Type: "integer", Configurable: true, Default: 5},
			tile.Blueprint{Name: "api_key", Type: "secret", Configurable: true},
			tile.Blueprint{Name: "creds", Type: "simple_credentials"},
		))
		Expect(m.PostDeployErrands).To(Equal([]tile.ErrandRef{{Name: "smoke"}}))
		Expect(m.PreDeleteErrands).To(BeEmpty(), "the pending errand is left out")
		Expect(b.Left).To(ConsistOf(ContainSubstring("form later (pending: the backup job"), ContainSubstring("errand cleanup (pending:")))

		Expect(m.JobTypes).To(HaveLen(3))
		server := m.JobTypes[0]
		Expect(server.Name).To(Equal("server"))
		Expect(server.InstanceDefinition).To(Equal(tile.InstanceDefinition{
			Name: "instances", Type: "integer", Configurable: true, Default: 2, Constraints: map[string]int{"min": 1},
		}))
		Expect(server.Templates[0]).To(Equal(tile.Template{Name: "bpm", Release: "bpm"}))
		var manifest map[string]any
		Expect(yaml.Unmarshal([]byte(server.Templates[1].Manifest), &manifest)).To(Succeed())
		Expect(manifest).To(Equal(map[string]any{
			"limit": "(( .properties.limit.value ))",
			"key":   "(( .properties.api_key.value ))",
			"auth":  map[string]any{"username": "(( .properties.creds.identity ))", "password": "(( .properties.creds.password ))"},
			"tls":   map[string]any{"cert": "((( server_tls.certificate )))", "ca": "((( server_tls.ca )))"},
		}))
		Expect(server.Templates[1].Provides).To(MatchYAML("server: {as: servers}"))
		Expect(m.JobTypes[1].Templates[0].Consumes).To(MatchYAML("server: {from: servers}\nother: nil"))
		Expect(m.JobTypes[1].ResourceDefinitions).To(ContainElement(
			tile.ResourceDefinition{Name: "persistent_disk", Type: "integer", Configurable: false, Default: 0}))
		smoke := m.JobTypes[2]
		Expect(smoke.Errand).To(BeTrue())
		Expect(smoke.RunPostDeployErrandDefault).To(Equal("on"))
		Expect(smoke.InstanceDefinition.Configurable).To(BeFalse())
	})

	It("says in the metadata whether the tile is a service broker, as its description does", func() {
		b, err := build()
		Expect(err).NotTo(HaveOccurred())
		Expect(b.Metadata.ServiceBroker).To(BeFalse())
		d.ServiceBroker = true
		b, err = build()
		Expect(err).NotTo(HaveOccurred())
		Expect(b.Metadata.ServiceBroker).To(BeTrue())
		out, err := yaml.Marshal(b.Metadata)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(out)).To(ContainSubstring("\nservice_broker: true\n"))
	})

	It("takes the version it is given", func() {
		b, err := tile.Build(d, tile.Options{Dir: dir, Releases: releases, Version: "1.4.0"})
		Expect(err).NotTo(HaveOccurred())
		Expect(b.Metadata.ProductVersion).To(Equal("1.4.0"))
		_, err = tile.Build(d, tile.Options{Dir: dir, Releases: releases, Version: "latest"})
		Expect(err).To(MatchError(ContainSubstring(`version "latest" is not a semantic version`)))
	})

	It("says when a pending errand's jobs have arrived", func() {
		j := maps.Clone(appJobs)
		j["cleanup"] = fakeJob{}
		app, err := tile.ReadRelease(writeRelease(GinkgoT().TempDir(), "app", "0+dev.3", j))
		Expect(err).NotTo(HaveOccurred())
		releases[0] = app
		b, err := build()
		Expect(err).NotTo(HaveOccurred())
		Expect(b.Left).To(ContainElement(ContainSubstring("errand cleanup: every job it runs is now in the releases: wire it in")))
	})

	Describe("a selector", func() {
		// withSelector puts a backups selector on the plan form: off, or S3
		// with settings of its own, which the server job takes whole
		// through a named manifest.
		withSelector := func() {
			d.Forms[0].Properties = append(d.Forms[0].Properties, tile.Property{
				Name: "backups", Type: "selector", Label: "Backups", Default: "off",
				Options: []tile.Option{
					{Name: "off", Label: "None", Manifests: map[string]any{"backups": map[string]any{"enabled": false}}},
					{Name: "s3", Label: "S3", Properties: []tile.Property{
						{Name: "bucket", Type: "string", Label: "Bucket"},
						{Name: "secret_key", Type: "secret", Label: "Secret key"},
						{Name: "scheduled", Type: "boolean", Label: "Scheduled", Default: true},
						{Name: "schedule", Type: "string", Label: "Schedule", Default: "@daily"},
					}, Manifests: map[string]any{"backups": map[string]any{
						"enabled":  true,
						"schedule": "(( .properties.backups.s3.scheduled.value ? .properties.backups.s3.schedule.value : '' ))",
						"s3": map[string]any{
							"bucket": "(( .properties.backups.s3.bucket.value ))",
							"secret": "(( .properties.backups.s3.secret_key.value ))",
						},
					}}},
				},
			})
			d.InstanceGroups[0].Jobs[1].Properties["backups"] = "(( .properties.backups.selected_option.parsed_manifest(backups) ))"
			Expect(d.Validate()).To(Succeed())
			j := maps.Clone(appJobs)
			j["server"] = fakeJob{
				Properties: append(slices.Clone(appJobs["server"].Properties), "backups.enabled", "backups.schedule", "backups.s3.bucket", "backups.s3.secret"),
				Provides:   appJobs["server"].Provides,
			}
			app, err := tile.ReadRelease(writeRelease(GinkgoT().TempDir(), "app", "0+dev.3", j))
			Expect(err).NotTo(HaveOccurred())
			releases[0] = app
		}

		It("becomes option templates with named manifests, and inputs for each option's properties", func() {
			withSelector()
			b, err := build()
			Expect(err).NotTo(HaveOccurred())
			m := b.Metadata
			i := slices.IndexFunc(m.PropertyBlueprints, func(b tile.Blueprint) bool { return b.Name == "backups" })
			Expect(i).NotTo(BeNumerically("<", 0))
			sel := m.PropertyBlueprints[i]
			Expect(sel.Type).To(Equal("selector"))
			Expect(sel.Default).To(Equal("off"))
			Expect(sel.Options).To(BeEmpty(), "a selector's options are option templates")
			Expect(sel.OptionTemplates).To(HaveLen(2))
			Expect(sel.OptionTemplates[0]).To(Equal(tile.OptionTemplate{Name: "off", SelectValue: "off",
				NamedManifests: []tile.NamedManifest{{Name: "backups", Manifest: "enabled: false\n"}}}))
			s3 := sel.OptionTemplates[1]
			Expect(s3.PropertyBlueprints).To(ContainElements(
				tile.Blueprint{Name: "bucket", Type: "string", Configurable: true},
				tile.Blueprint{Name: "secret_key", Type: "secret", Configurable: true},
			))
			Expect(s3.NamedManifests[0].Manifest).To(MatchYAML(`
enabled: true
schedule: "(( .properties.backups.s3.scheduled.value ? .properties.backups.s3.schedule.value : '' ))"
s3: {bucket: (( .properties.backups.s3.bucket.value )), secret: (( .properties.backups.s3.secret_key.value ))}
`))
			in := m.FormTypes[0].PropertyInputs[2]
			Expect(in.Reference).To(Equal(".properties.backups"))
			Expect(in.SelectorPropertyInputs).To(HaveLen(2))
			Expect(in.SelectorPropertyInputs[0]).To(Equal(tile.SelectorPropertyInput{Reference: ".properties.backups.off", Label: "None"}))
			Expect(in.SelectorPropertyInputs[1].PropertyInputs).To(ContainElement(
				tile.PropertyInput{Reference: ".properties.backups.s3.bucket", Label: "Bucket"}))
			var manifest map[string]any
			Expect(yaml.Unmarshal([]byte(m.JobTypes[0].Templates[1].Manifest), &manifest)).To(Succeed())
			Expect(manifest["backups"]).To(Equal("(( .properties.backups.selected_option.parsed_manifest(backups) ))"))
			Expect(tile.Check(m, releases)).To(Succeed())
		})

		It("maps one setting to several jobs", func() {
			withSelector()
			d.Errands[0].Jobs[0].Properties["auth.password"] = "(( .properties.creds.password ))"
			j := maps.Clone(appJobs)
			j["server"] = fakeJob{
				Properties: append(slices.Clone(appJobs["server"].Properties), "backups.enabled", "backups.schedule", "backups.s3.bucket", "backups.s3.secret"),
				Provides:   appJobs["server"].Provides,
			}
			j["smoke"] = fakeJob{Properties: []string{"auth.password", "backups.enabled", "backups.schedule", "backups.s3.bucket", "backups.s3.secret"}}
			app, err := tile.ReadRelease(writeRelease(GinkgoT().TempDir(), "app", "0+dev.3", j))
			Expect(err).NotTo(HaveOccurred())
			releases[0] = app
			d.Errands[0].Jobs[0].Properties["backups"] = "(( .properties.backups.selected_option.parsed_manifest(backups) ))"
			_, err = build()
			Expect(err).NotTo(HaveOccurred())
		})

		DescribeTable("is refused when it would not work, naming the problem",
			func(change func(), problem string) {
				withSelector()
				change()
				_, err := build()
				Expect(err).To(MatchError(ContainSubstring(problem)))
			},
			Entry("an option's manifest setting a property the job's spec lacks", func() {
				d.Forms[0].Properties[2].Options[1].Manifests["backups"].(map[string]any)["s3"].(map[string]any)["region"] = "x"
			}, "job type server: job server: property backups.s3.region (option s3 of backups): not in the job's spec"),
			Entry("an option's property no manifest takes", func() {
				delete(d.Forms[0].Properties[2].Options[1].Manifests["backups"].(map[string]any)["s3"].(map[string]any), "secret")
			}, "form plan: property backups.s3.secret_key is taken by no job property"),
			Entry("a selector no job takes", func() {
				delete(d.InstanceGroups[0].Jobs[1].Properties, "backups")
			}, "form plan: property backups is taken by no job property"),
			Entry("a manifest the options lack", func() {
				d.InstanceGroups[0].Jobs[1].Properties["backups"] = "(( .properties.backups.selected_option.parsed_manifest(backup) ))"
			}, "option off of selector backups has no manifest backup"),
			Entry("a parsed_manifest that is not the whole value", func() {
				d.InstanceGroups[0].Jobs[1].Properties["backups"] = "x(( .properties.backups.selected_option.parsed_manifest(backups) ))"
			}, "a parsed_manifest must be a job property's whole value"),
			Entry("a parsed_manifest of a property that is no selector", func() {
				d.InstanceGroups[0].Jobs[1].Properties["limit"] = "(( .properties.limit.selected_option.parsed_manifest(backups) ))"
			}, "limit is not a selector"),
			Entry("a manifest using another option's property", func() {
				d.Forms[0].Properties[2].Options[0].Manifests["backups"] = map[string]any{"enabled": "(( .properties.backups.s3.scheduled.value ))"}
			}, "(option off of backups): (( .properties.backups.s3.scheduled.value )) is a property of another option of selector backups"),
		)

		DescribeTable("is refused in the description when Ops Manager would reject it",
			func(change func(p *tile.Property), problem string) {
				withSelector()
				change(&d.Forms[0].Properties[2])
				Expect(d.Validate()).To(MatchError(ContainSubstring(problem)))
			},
			Entry("a default that is no option", func(p *tile.Property) { p.Default = "on" }, "default on is not one of the options (off, s3)"),
			Entry("options with different manifests", func(p *tile.Property) {
				p.Options[0].Manifests = map[string]any{"other": map[string]any{}}
			}, "every option needs the same ones"),
			Entry("a secret with a default in an option", func(p *tile.Property) {
				p.Options[1].Properties[1].Default = "hunter2"
			}, "option s3: property secret_key: a secret with a default"),
			Entry("a selector in a selector", func(p *tile.Property) {
				p.Options[1].Properties[0] = *p
			}, "a selector within a selector"),
			Entry("manifests on a dropdown's option", func(p *tile.Property) {
				p.Type = "dropdown_select"
				p.Default = nil
			}, "properties and manifests are for a selector's options"),
		)
	})

	DescribeTable("refuses a tile that would not work, naming every problem",
		func(change func(), problems ...string) {
			change()
			_, err := build()
			Expect(err).To(HaveOccurred())
			for _, p := range problems {
				Expect(err.Error()).To(ContainSubstring(p))
			}
		},
		Entry("a release without its tarball", func() { releases = releases[:1] },
			"releases: no release tarball given for bpm"),
		Entry("a tarball of a release the description does not name", func() {
			other, err := tile.ReadRelease(writeRelease(dir, "other", "1", map[string]fakeJob{"x": {}}))
			Expect(err).NotTo(HaveOccurred())
			releases = append(releases, other)
		}, "tarballs of other given, which the description does not name"),
		Entry("a job property the job's spec lacks", func() {
			d.InstanceGroups[0].Jobs[1].Properties["limits"] = "(( .properties.limit.value ))"
		}, "job type server: job server: property limits is not in the job's spec (release app 0+dev.3)"),
		Entry("a form property that reaches no job property", func() {
			delete(d.InstanceGroups[0].Jobs[1].Properties, "limit")
		}, "form plan: property limit is taken by no job property: the setting would go nowhere"),
		Entry("a generated credential nothing uses", func() {
			d.Generated = append(d.Generated, tile.Property{Name: "unused", Type: "secret"})
		}, "property unused: generated, but taken by no job property"),
		Entry("an errand running a job no release has", func() {
			d.Errands[0].Jobs[0].Name = "smoke-tests"
		}, "job type smoke: job smoke-tests: release app 0+dev.3 has no such job (it has client, server, smoke)"),
		Entry("an instance group running a job of a release the tile lacks", func() {
			d.InstanceGroups[1].Jobs[0].Release = "nowhere"
		}, `job type client: job client: release "nowhere" is not one the tile carries`),
		Entry("a reference to no property", func() {
			d.InstanceGroups[0].Jobs[1].Properties["limit"] = "(( .properties.limt.value ))"
		}, "property limit: (( .properties.limt.value )) names no property"),
		Entry("an accessor the property's type lacks", func() {
			d.InstanceGroups[0].Jobs[1].Properties["limit"] = "(( .properties.limit.password ))"
		}, "a integer gives value, not password"),
		Entry("a conditional's operand that names no property", func() {
			d.InstanceGroups[0].Jobs[1].Properties["limit"] = "(( .properties.limt.value ? 1 : 2 ))"
		}, "property limit: .properties.limt.value names no property"),
		Entry("a reference to a pending form's property", func() {
			d.InstanceGroups[0].Jobs[1].Properties["key"] = "(( .properties.bucket.value ))"
		}, "takes (( .properties.bucket.value )), which is on pending form later"),
		Entry("an unknown CredHub variable or field", func() {
			d.InstanceGroups[0].Jobs[1].Properties["tls.cert"] = "((( server_tl.certificate )))"
			d.InstanceGroups[0].Jobs[1].Properties["tls.ca"] = "((( server_tls.cert )))"
		}, "((( server_tl.certificate ))) names no variable", "a certificate variable has the fields [ca certificate private_key]"),
		Entry("another product the tile does not require", func() {
			d.RequiresProductVersions = nil
		}, "reads product cf, which requires_product_versions does not name"),
		Entry("an unknown $context accessor", func() {
			d.InstanceGroups[1].Jobs[0].Properties["ca"] = "(( $ops_manager.root_ca ))"
		}, "$ops_manager has no root_ca"),
		Entry("an expression Ops Manager does not have", func() {
			d.InstanceGroups[1].Jobs[0].Properties["ca"] = "(( .server.some_job_property ))"
		}, "job-level properties are not"),
		Entry("a link from no provider", func() {
			d.InstanceGroups[1].Jobs[0].Consumes["server"] = map[string]any{"from": "srvs"}
		}, `consumes server from "srvs", which no job provides`),
		Entry("a link the job does not consume", func() {
			d.InstanceGroups[1].Jobs[0].Consumes["database"] = "nil"
		}, "consumes link database, which the job does not consume"),
		Entry("a required link left to BOSH, with no provider", func() {
			delete(d.InstanceGroups[1].Jobs[0].Consumes, "server")
			d.InstanceGroups[0].Jobs = d.InstanceGroups[0].Jobs[:1]
		}, "job type client: job client: needs link server (type srv), which no job provides"),
		Entry("a link left to BOSH with two providers", func() {
			delete(d.InstanceGroups[1].Jobs[0].Consumes, "other")
			d.InstanceGroups = append(d.InstanceGroups, d.InstanceGroups[0])
			d.InstanceGroups[2].Name = "server2"
			d.InstanceGroups[2].Jobs = []tile.Job{{Name: "server", Release: "app", Properties: d.InstanceGroups[0].Jobs[1].Properties,
				Provides: map[string]any{"server": map[string]any{"as": "servers2"}}}}
		}, "job type client: job client: link other (type srv) could come from any of servers, servers2: name one"),
		Entry("a required link blocked", func() {
			d.InstanceGroups[1].Jobs[0].Consumes["server"] = "nil"
		}, "blocks link server, which the job needs"),
		Entry("a variable consuming a link nobody provides", func() {
			d.Variables[1].Consumes["alternative_name"] = map[string]any{"from": "nodes"}
		}, `variable server_tls: consumes alternative_name from "nodes", which no job provides`),
		Entry("a variable nothing uses", func() {
			d.Variables = append(d.Variables, tile.Variable{Name: "spare", Type: "password"})
		}, "variable spare: used by no job property and no other variable"),
		Entry("an icon that is not a PNG", func() {
			Expect(os.WriteFile(filepath.Join(dir, "icon.png"), []byte("GIF89a"), 0o644)).To(Succeed())
		}, "icon icon.png is not a PNG file"),
	)
})

var _ = Describe("ParseDescription", func() {
	DescribeTable("refuses descriptions Ops Manager would reject or that leak secrets",
		func(from, to, problem string) {
			Expect(baseDescription).To(ContainSubstring(from))
			_, err := tile.ParseDescription([]byte(strings.Replace(baseDescription, from, to, 1)))
			Expect(err).To(MatchError(ContainSubstring(problem)))
		},
		Entry("an unknown key", "metadata_version:", "metadata_versoin:", "field metadata_versoin not found"),
		Entry("a secret with a default", "    label: API key\n", "    label: API key\n    default: hunter2\n",
			"form plan: property api_key: a secret with a default"),
		Entry("optional with a default", "    default: 5\n", "    default: 5\n    optional: true\n",
			"form plan: property limit: optional with a default"),
		Entry("a generated credential with a value", "  type: simple_credentials\n",
			"  type: simple_credentials\n  default: {identity: a, password: b}\n", "a generated property takes no default"),
		Entry("a type Ops Manager does not generate", "  type: simple_credentials\n", "  type: string\n",
			"generated property creds: type \"string\" is not one Ops Manager generates"),
		Entry("a type operators cannot set", "    type: integer\n", "    type: collection\n",
			`type "collection" is not one an operator can set`),
		Entry("a name twice", "- name: api_key\n", "- name: limit\n", `properties (forms and generated): "limit" appears more than once`),
		Entry("an errand that never runs", "  run: post-deploy\n", "  run: sometimes\n",
			`errand smoke: run must be one of post-deploy, pre-delete, not "sometimes"`),
		Entry("an errand with a disk", "persistent_disk: 0, cpu: 1}\n  jobs:\n  - name: smoke",
			"persistent_disk: 10, cpu: 1}\n  jobs:\n  - name: smoke", "errand smoke: an errand keeps nothing"),
		Entry("an instance count outside its bounds", "{default: 2, configurable: true, min: 1}",
			"{default: 0, configurable: true, min: 1}", "instance group server: instances.default 0 is outside its bounds"),
		Entry("a property set whole and in part", "      auth.password: (( .properties.creds.password ))\n      tls",
			"      auth.password: (( .properties.creds.password ))\n      auth: {}\n      tls",
			"property auth is set both whole and in part (auth.password)"),
		Entry("an unknown variable type", "  type: certificate\n  options: {is_ca", "  type: cert\n  options: {is_ca",
			`variables ca: type "cert" is not one BOSH generates`),
	)
})

var _ = Describe("ParseRefs", func() {
	It("finds the properties, products, contexts and CredHub variables a value uses", func() {
		refs, err := tile.ParseRefs("https://api.(( ..cf.cloud_controller.system_domain.value )):(( .properties.port.value ))/((( tls.ca )))(( $self.service_network ))((( pw )))")
		Expect(err).NotTo(HaveOccurred())
		Expect(refs).To(ConsistOf(
			tile.Ref{Kind: tile.ProductRef, Raw: "(( ..cf.cloud_controller.system_domain.value ))", Name: "cf", Accessor: "cloud_controller.system_domain.value"},
			tile.Ref{Kind: tile.PropertyRef, Raw: "(( .properties.port.value ))", Name: "port", Accessor: "value"},
			tile.Ref{Kind: tile.VariableRef, Raw: "((( tls.ca )))", Name: "tls", Accessor: "ca"},
			tile.Ref{Kind: tile.ContextRef, Raw: "(( $self.service_network ))", Name: "$self", Accessor: "service_network"},
			tile.Ref{Kind: tile.VariableRef, Raw: "((( pw )))", Name: "pw"},
		))
		refs, err = tile.ParseRefs("no expressions")
		Expect(err).NotTo(HaveOccurred())
		Expect(refs).To(BeEmpty())
	})

	DescribeTable("refuses what Ops Manager would fail on at Apply Changes",
		func(s, problem string) {
			_, err := tile.ParseRefs(s)
			Expect(err).To(MatchError(ContainSubstring(problem)))
		},
		Entry("an expression with an operator", "(( .properties.x.value || [] ))", "is not an expression the tile supports"),
		Entry("a property without accessor", "(( .properties.x ))", "a property reference is .properties.NAME.ACCESSOR"),
		Entry("unbalanced parentheses", "(( .properties.x.value )", "unbalanced"),
		Entry("a variable path", "((( a.b.c )))", "is not a CredHub variable reference"),
		Entry("a parsed_manifest of a selector option", "(( .properties.x.y.selected_option.parsed_manifest(m) ))", "is not an expression the tile supports"),
		Entry("a property path of three parts", "(( .properties.x.y.value ))", "a property reference is .properties.NAME.ACCESSOR"),
	)

	It("finds a selector's manifest, its options' properties and a conditional's operands", func() {
		refs, err := tile.ParseRefs("(( .properties.backups.selected_option.parsed_manifest(backups) ))")
		Expect(err).NotTo(HaveOccurred())
		Expect(refs).To(Equal([]tile.Ref{{Kind: tile.PropertyRef, Raw: "(( .properties.backups.selected_option.parsed_manifest(backups) ))",
			Name: "backups", Accessor: "selected_option.parsed_manifest", Manifest: "backups"}}))
		refs, err = tile.ParseRefs("(( .properties.b.s3.on.value ? .properties.b.s3.cron.value : '' ))")
		Expect(err).NotTo(HaveOccurred())
		Expect(refs).To(Equal([]tile.Ref{
			{Kind: tile.PropertyRef, Raw: ".properties.b.s3.on.value", Name: "b.s3.on", Accessor: "value"},
			{Kind: tile.PropertyRef, Raw: ".properties.b.s3.cron.value", Name: "b.s3.cron", Accessor: "value"},
		}))
		refs, err = tile.ParseRefs("(( ..cf.x.value ? false : 'a b' ))")
		Expect(err).NotTo(HaveOccurred())
		Expect(refs).To(ConsistOf(HaveField("Name", "cf")))
	})
})

var _ = Describe("DeriveVersion", func() {
	DescribeTable("turns a release version into a tile version",
		func(release, want string) {
			Expect(tile.DeriveVersion(release)).To(Equal(want))
		},
		Entry("a dev release before the first final one", "0+dev.7", "0.0.1-dev.7"),
		Entry("a dev release after a final one, as scripts/create-release names it", "1.4.2+dev.20261203224600", "1.4.3-dev.20261203224600"),
		Entry("a final release", "12", "12.0.0"),
		Entry("a final release with a minor", "1.4", "1.4.0"),
		Entry("a full version", "1.4.2", "1.4.2"),
	)
	It("refuses versions it cannot turn into a semantic version", func() {
		_, err := tile.DeriveVersion("latest")
		Expect(err).To(MatchError(ContainSubstring(`release version "latest" gives no tile version`)))
	})
})

var _ = Describe("the .pivotal file", func() {
	var (
		dir, out string
		built    *tile.Built
	)

	BeforeEach(func() {
		dir = GinkgoT().TempDir()
		out = GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "icon.png"), pngBytes, 0o644)).To(Succeed())
		d, err := tile.ParseDescription([]byte(baseDescription))
		Expect(err).NotTo(HaveOccurred())
		app, err := tile.ReadRelease(writeRelease(dir, "app", "0+dev.3", appJobs))
		Expect(err).NotTo(HaveOccurred())
		bpm, err := tile.ReadRelease(writeRelease(dir, "bpm", "1.2.17", map[string]fakeJob{"bpm": {}}))
		Expect(err).NotTo(HaveOccurred())
		mdir := filepath.Join(dir, "migrations")
		Expect(os.Mkdir(mdir, 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(mdir, "202601011200_first.js"), []byte("exports.migrate = function (input) { return input; };\n"), 0o644)).To(Succeed())
		migrations, err := tile.LoadMigrations(mdir)
		Expect(err).NotTo(HaveOccurred())
		built, err = tile.Build(d, tile.Options{Dir: dir, Releases: []*tile.Release{app, bpm}, Migrations: migrations})
		Expect(err).NotTo(HaveOccurred())
	})

	It("is a zip of the metadata, the releases and the migrations, which reads back and passes the checks", func() {
		path, err := built.Write(out)
		Expect(err).NotTo(HaveOccurred())
		Expect(path).To(Equal(filepath.Join(out, "p-test-0.0.1-dev.3.pivotal")))
		zr, err := zip.OpenReader(path)
		Expect(err).NotTo(HaveOccurred())
		defer zr.Close()
		var names []string
		for _, f := range zr.File {
			names = append(names, f.Name)
			if strings.HasPrefix(f.Name, "releases/") {
				Expect(f.Method).To(Equal(zip.Store), "a tarball is compressed already")
			}
		}
		Expect(names).To(ConsistOf("metadata/p-test.yml", "migrations/v1/202601011200_first.js", "releases/app-0+dev.3.tgz", "releases/bpm-1.2.17.tgz"))
		Expect(os.ReadDir(out)).To(HaveLen(1), "no temporary file is left")

		back, err := tile.Read(path)
		Expect(err).NotTo(HaveOccurred())
		Expect(back.Metadata).To(Equal(built.Metadata))
		Expect(back.Migrations).To(Equal(built.Migrations))
		Expect(tile.Check(back.Metadata, back.Releases)).To(Succeed())
	})

	It("is written whole or not at all", func() {
		earlier := filepath.Join(out, "p-test-0.0.1-dev.3.pivotal")
		Expect(os.WriteFile(earlier, []byte("an earlier tile"), 0o644)).To(Succeed())
		Expect(os.Remove(built.Releases[1].Path)).To(Succeed())
		_, err := built.Write(out)
		Expect(err).To(MatchError(ContainSubstring("bpm-1.2.17.tgz: open")))
		entries, err := os.ReadDir(out)
		Expect(err).NotTo(HaveOccurred())
		Expect(entries).To(HaveLen(1), "no temporary file is left")
		Expect(os.ReadFile(earlier)).To(Equal([]byte("an earlier tile")))
	})

	It("is checked when read: a metadata that lies about its releases fails", func() {
		built.Metadata.Releases[1].Version = "1.2.18"
		path, err := built.Write(out)
		Expect(err).NotTo(HaveOccurred())
		back, err := tile.Read(path)
		Expect(err).NotTo(HaveOccurred())
		Expect(tile.Check(back.Metadata, back.Releases)).To(MatchError(ContainSubstring(
			"release bpm: listed as version 1.2.18, but the tarball is 1.2.17")))
	})

	It("checks that secrets are typed on a form or generated, never written into the tile", func() {
		m := built.Metadata
		m.PropertyBlueprints = append(m.PropertyBlueprints,
			tile.Blueprint{Name: "admin_password", Type: "secret", Configurable: true},
			tile.Blueprint{Name: "fixed", Type: "simple_credentials", Default: map[string]string{"identity": "admin", "password": "admin"}},
		)
		err := tile.Check(m, built.Releases)
		Expect(err).To(MatchError(ContainSubstring("property admin_password: configurable but on no form")))
		Expect(err).To(MatchError(ContainSubstring("property fixed: a secret with a default value in the tile")))
	})

	It("checks that every errand listed is an errand job type, listed once", func() {
		m := built.Metadata
		m.PreDeleteErrands = append(m.PreDeleteErrands, tile.ErrandRef{Name: "smoke"}, tile.ErrandRef{Name: "ghost"})
		m.JobTypes[1].Errand = true
		err := tile.Check(m, built.Releases)
		Expect(err).To(MatchError(ContainSubstring("errand ghost: no job type of that name with errand: true")))
		Expect(err).To(MatchError(ContainSubstring("errand smoke: listed more than once")))
		Expect(err).To(MatchError(ContainSubstring("errand client: neither a post-deploy nor a pre-delete errand")))
	})
})

var _ = Describe("LoadMigrations", func() {
	It("reads them in the order Ops Manager runs them", func() {
		dir := GinkgoT().TempDir()
		for _, name := range []string{"202602011200_b.js", "202601011200_a.js"} {
			Expect(os.WriteFile(filepath.Join(dir, name), []byte("exports.migrate = function (i) { return i; };"), 0o644)).To(Succeed())
		}
		m, err := tile.LoadMigrations(dir)
		Expect(err).NotTo(HaveOccurred())
		Expect(m).To(HaveLen(2))
		Expect(m[0].Name).To(Equal("202601011200_a.js"))
		m, err = tile.LoadMigrations(filepath.Join(dir, "none"))
		Expect(err).NotTo(HaveOccurred())
		Expect(m).To(BeEmpty())
	})

	DescribeTable("refuses files Ops Manager would not run as migrations",
		func(name, source, problem string) {
			dir := GinkgoT().TempDir()
			Expect(os.WriteFile(filepath.Join(dir, name), []byte(source), 0o644)).To(Succeed())
			_, err := tile.LoadMigrations(dir)
			Expect(err).To(MatchError(ContainSubstring(problem)))
		},
		Entry("a name without a timestamp", "rename.js", "exports.migrate = 1", "rename.js is not a migration file named YYYYMMDDHHMM_name.js"),
		Entry("a timestamp that is no time", "202613011200_x.js", "exports.migrate = 1", "202613011200 is not a time"),
		Entry("no exports.migrate", "202601011200_x.js", "module.exports = {}", "defines no exports.migrate"),
	)
})
