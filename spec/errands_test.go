package spec

import (
	"fmt"
	"os/exec"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// isErrand reports whether a job is an errand: it has a bin/run and no
// process for bpm to run.
func isErrand(j *Job) bool {
	hasRun := false
	for _, dst := range j.Templates {
		hasRun = hasRun || dst == "bin/run"
	}
	_, bpm := j.Templates["bpm.yml.erb"]
	return hasRun && !bpm
}

// errandProgram is the program of each errand job, whose config loader
// (through configcheck) takes the rendered config.
var errandProgram = map[string]string{
	"smoke-tests":        "smoke-tests",
	"broker-registrar":   "broker-registrar",
	"broker-deregistrar": "broker-deregistrar",
	"redis-backup":       "redis-backup",
}

// expectRun checks a rendered errand: a bash bin/run that runs its program
// from the redis-for-cf package with the job's rendered config.
func expectRun(j *Job, rendered map[string]string) {
	GinkgoHelper()
	run := rendered["bin/run"]
	Expect(run).To(HavePrefix("#!/usr/bin/env bash\n"))
	program := errandProgram[j.Name]
	Expect(run).To(ContainSubstring(fmt.Sprintf("\nexec /var/vcap/packages/redis-for-cf/bin/%s -config /var/vcap/jobs/%s/config/config.json\n", program, j.Name)))
	Expect(packagePrograms()).To(ContainElement(program), "the redis-for-cf package builds the programs its spec names")
	Expect(j.Packages).To(ContainElement("redis-for-cf"))
	Expect(rendered).To(HaveKey("config/config.json"))
	cmd := exec.Command("bash", "-n")
	cmd.Stdin = strings.NewReader(run)
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
}

// brokerLink is the redis-broker link of a broker with the given
// properties (and a password), from one instance.
func brokerLink(in Instance, kv ...any) LinkData {
	GinkgoHelper()
	return mustLink(mustLoadJob("redis-broker"), "redis-broker", props(append([]any{"broker.password", "cc-secret"}, kv...)...), []Instance{in})
}

var _ = Describe("errand jobs", func() {
	for name := range errandProgram {
		It(name+" is an errand: bin/run and its config, nothing for monit or bpm, and TLS verification skipped only toward Cloud Controller, off by default", func() {
			j := mustLoadJob(name)
			Expect(isErrand(j)).To(BeTrue())
			Expect(j.Templates).To(HaveKeyWithValue("config.json.erb", "config/config.json"))
			for p, prop := range j.Properties {
				if p == "cf.skip_ssl_validation" && (name == "broker-registrar" || name == "broker-deregistrar") {
					Expect(prop.Default).To(BeFalse())
					continue
				}
				Expect(p).NotTo(MatchRegexp(`skip|insecure`), "certificates are always verified")
			}
		})
	}
})

var _ = Describe("smoke-tests templates", func() {
	var (
		j      *Job
		in     Instance
		broker Instance
	)
	BeforeEach(func() {
		j = mustLoadJob("smoke-tests")
		in = group("smoke-tests", 1, 60)[0]
		broker = group("redis-broker", 1, 5)[0]
	})
	links := func(l LinkData) map[string]LinkData { return map[string]LinkData{"redis-broker": l} }

	It("render with the spec defaults into a config smoke-tests accepts, the broker from its link", func() {
		out := mustRenderAll(j, nil, in, links(brokerLink(broker)))
		expectRun(j, out)
		c := mustCheckConfig("smoke-tests", out["config/config.json"])
		Expect(field(c, "broker")).To(Equal(map[string]any{
			"url": "http://" + broker.Address + ":8080", "username": "broker", "password": "cc-secret",
		}))
		Expect(field(c, "service")).To(Equal("p-redis"))
		Expect(field(c, "plans")).To(Equal([]any{"shared-vm"}), "the shared-vm plan alone: a dedicated test takes a VM")
		Expect(field(c, "timeout_seconds")).To(BeEquivalentTo(600))
		Expect(field(c, "cleanup_timeout_seconds")).To(BeEquivalentTo(120))
	})

	It("render a broker with TLS, another port and names, and the operator's choices", func() {
		tls := newPKI(broker.Address)
		l := brokerLink(broker, "broker.tls.enabled", true, "broker.port", 8443, "broker.username", "cloud-controller",
			"catalog.service_name", "redis-ent")
		out := mustRenderAll(j, props("broker.ca_cert", tls.ca, "plans", []any{"dedicated-vm"}, "timeout_seconds", 1200,
			"cleanup_timeout_seconds", 300), in, links(l))
		c := mustCheckConfig("smoke-tests", out["config/config.json"])
		Expect(field(c, "broker.url")).To(Equal("https://" + broker.Address + ":8443"))
		Expect(field(c, "broker.username")).To(Equal("cloud-controller"))
		Expect(field(c, "broker.ca_cert")).To(Equal(tls.ca))
		Expect(field(c, "service")).To(Equal("redis-ent"))
		Expect(field(c, "plans")).To(Equal([]any{"dedicated-vm"}))
		Expect(field(c, "timeout_seconds")).To(BeEquivalentTo(1200))
		Expect(field(c, "cleanup_timeout_seconds")).To(BeEquivalentTo(300))

		out = mustRenderAll(j, props("service", "6e1d2e3f-6b5a-4b8e-9a61-2f0c9d1e7a10"), in, links(l))
		c = mustCheckConfig("smoke-tests", out["config/config.json"])
		Expect(field(c, "service")).To(Equal("6e1d2e3f-6b5a-4b8e-9a61-2f0c9d1e7a10"))
	})

	It("test the shared-vm plan by the name the broker gives it, unless told otherwise", func() {
		l := brokerLink(broker, "shared_vm.name", "redis-small")
		c := mustCheckConfig("smoke-tests", mustRenderAll(j, nil, in, links(l))["config/config.json"])
		Expect(field(c, "plans")).To(Equal([]any{"redis-small"}))
		c = mustCheckConfig("smoke-tests", mustRenderAll(j, props("plans", []any{"redis-small", "dedicated-vm"}), in, links(l))["config/config.json"])
		Expect(field(c, "plans")).To(Equal([]any{"redis-small", "dedicated-vm"}))
	})

	It("bracket an IPv6 broker address", func() {
		broker.Address = "fd00::5"
		c := mustCheckConfig("smoke-tests", mustRenderAll(j, nil, in, links(brokerLink(broker)))["config/config.json"])
		Expect(field(c, "broker.url")).To(Equal("http://[fd00::5]:8080"))
	})

	It("render a config smoke-tests refuses, naming the field, for a CA that is not PEM", func() {
		out := mustRenderAll(j, props("broker.ca_cert", "not a certificate"), in, links(brokerLink(broker)))
		_, err := checkConfig("smoke-tests", out["config/config.json"])
		Expect(err).To(MatchError(ContainSubstring("broker.ca_cert holds no PEM certificate")))
	})

	DescribeTable("refuse to render without what they need, naming it",
		func(links func() map[string]LinkData, message string) {
			_, err := j.render("config.json.erb", nil, in, links())
			Expect(err).To(MatchError(ContainSubstring(message)))
		},
		Entry("no broker link", func() map[string]LinkData { return nil }, "Can't find link 'redis-broker'"),
		Entry("a broker link without instances", func() map[string]LinkData {
			return map[string]LinkData{"redis-broker": mustLink(mustLoadJob("redis-broker"), "redis-broker", props("broker.password", "s"), nil)}
		}, "the redis-broker link has no instances"),
		Entry("a broker without a password", func() map[string]LinkData {
			return map[string]LinkData{"redis-broker": mustLink(mustLoadJob("redis-broker"), "redis-broker", nil, []Instance{broker})}
		}, "broker.password"),
	)
})

var _ = Describe("broker-registrar and broker-deregistrar templates", func() {
	var (
		registrar, deregistrar *Job
		in, broker             Instance
		tls                    pki
	)
	BeforeEach(func() {
		registrar = mustLoadJob("broker-registrar")
		deregistrar = mustLoadJob("broker-deregistrar")
		in = group("broker-registrar", 1, 70)[0]
		broker = group("redis-broker", 1, 5)[0]
		tls = newPKI("api.sys.example.com")
	})
	links := func(kv ...any) map[string]LinkData {
		return map[string]LinkData{"redis-broker": brokerLink(broker, kv...)}
	}
	client := func(kv ...any) map[string]any {
		return props(append([]any{"cf.api_url", "https://api.sys.example.com", "cf.client_id", "redis-registrar", "cf.client_secret", "client-secret"}, kv...)...)
	}
	user := func(kv ...any) map[string]any {
		return props(append([]any{"cf.api_url", "https://api.sys.example.com", "cf.username", "admin", "cf.password", "admin-pass"}, kv...)...)
	}

	It("render the registrar with the spec defaults into a config it accepts: the broker from its link, public access", func() {
		out := mustRenderAll(registrar, client(), in, links())
		expectRun(registrar, out)
		c := mustCheckConfig("broker-registrar", out["config/config.json"])
		Expect(field(c, "cloud_controller")).To(Equal(map[string]any{
			"url": "https://api.sys.example.com", "client_id": "redis-registrar", "client_secret": "client-secret",
		}))
		Expect(field(c, "broker")).To(Equal(map[string]any{
			"name": "redis-for-cf", "url": "http://" + broker.Address + ":8080", "username": "broker", "password": "cc-secret",
		}))
		Expect(field(c, "service_access")).To(Equal("public"))
		Expect(field(c, "orgs")).To(BeNil())
		Expect(field(c, "timeout_seconds")).To(BeEquivalentTo(600))
	})

	It("render the registrar with a user, a CA, an org list, a TLS broker and the operator's choices", func() {
		out := mustRenderAll(registrar, user("cf.ca_cert", tls.ca, "service_access", "orgs", "orgs", []any{"dev", "test"},
			"broker_name", "redis-east", "timeout_seconds", 900), in, links("broker.tls.enabled", true, "broker.port", 8443))
		c := mustCheckConfig("broker-registrar", out["config/config.json"])
		Expect(field(c, "cloud_controller")).To(Equal(map[string]any{
			"url": "https://api.sys.example.com", "ca_cert": tls.ca, "client_id": "cf", "username": "admin", "password": "admin-pass",
		}), "a user's grant goes through the cf client")
		Expect(field(c, "broker.name")).To(Equal("redis-east"))
		Expect(field(c, "broker.url")).To(Equal("https://" + broker.Address + ":8443"))
		Expect(field(c, "service_access")).To(Equal("orgs"))
		Expect(field(c, "orgs")).To(Equal([]any{"dev", "test"}))
		Expect(field(c, "timeout_seconds")).To(BeEquivalentTo(900))
	})

	It("render the registrar with the broker's URL given, and access left alone", func() {
		out := mustRenderAll(registrar, client("broker_url", "https://redis-broker.sys.example.com", "service_access", "none"), in, links())
		c := mustCheckConfig("broker-registrar", out["config/config.json"])
		Expect(field(c, "broker.url")).To(Equal("https://redis-broker.sys.example.com"))
		Expect(field(c, "service_access")).To(Equal("none"))
	})

	It("render the deregistrar with the spec defaults (purge on, as Redis for PCF), and with purge off and a user", func() {
		out := mustRenderAll(deregistrar, client(), in, nil)
		expectRun(deregistrar, out)
		c := mustCheckConfig("broker-deregistrar", out["config/config.json"])
		Expect(field(c, "cloud_controller.client_id")).To(Equal("redis-registrar"))
		Expect(field(c, "broker_name")).To(Equal("redis-for-cf"))
		Expect(field(c, "purge")).To(BeTrue())
		Expect(field(c, "timeout_seconds")).To(BeEquivalentTo(600))

		out = mustRenderAll(deregistrar, user("purge", false, "broker_name", "redis-east", "cf.ca_cert", tls.ca), in, nil)
		c = mustCheckConfig("broker-deregistrar", out["config/config.json"])
		Expect(field(c, "purge")).To(BeNil(), "false, left out")
		Expect(field(c, "broker_name")).To(Equal("redis-east"))
		Expect(field(c, "cloud_controller.username")).To(Equal("admin"))
	})

	It("render Ops Manager's CA and skip_ssl_validation into configs both programs accept", func() {
		for _, j := range []*Job{registrar, deregistrar} {
			out := mustRenderAll(j, client("cf.ca_cert", tls.ca, "cf.skip_ssl_validation", true), in, links())
			c := mustCheckConfig(j.Name, out["config/config.json"])
			Expect(field(c, "cloud_controller.ca_cert")).To(Equal(tls.ca))
			Expect(field(c, "cloud_controller.skip_ssl_validation")).To(BeTrue())

			c = mustCheckConfig(j.Name, mustRenderAll(j, client(), in, links())["config/config.json"])
			Expect(field(c, "cloud_controller.skip_ssl_validation")).To(BeNil(), "false, left out")
		}
	})

	It("give both errands the same broker name by default", func() {
		Expect(registrar.Properties["broker_name"].Default).To(Equal(deregistrar.Properties["broker_name"].Default))
	})

	for _, name := range []string{"broker-registrar", "broker-deregistrar"} {
		DescribeTable(name+" refuses to render without what it needs, naming it",
			func(p map[string]any, message string) {
				j := mustLoadJob(name)
				_, err := j.render("config.json.erb", p, in, links())
				Expect(err).To(MatchError(ContainSubstring(message)))
			},
			Entry("no API URL", props("cf.client_id", "c", "cf.client_secret", "s"), "Can't find property 'cf.api_url'"),
			Entry("no credentials", props("cf.api_url", "https://api.sys.example.com"),
				"cf.client_id and cf.client_secret, or cf.username and cf.password, are required"),
			Entry("a client without its secret", props("cf.api_url", "https://api.sys.example.com", "cf.client_id", "c"),
				"cf.client_id and cf.client_secret, or cf.username and cf.password, are required"),
		)

		DescribeTable(name+" renders configs its program refuses, naming the field",
			func(p map[string]any, message string) {
				j := mustLoadJob(name)
				out, err := j.render("config.json.erb", p, in, links())
				Expect(err).NotTo(HaveOccurred())
				_, err = checkConfig(name, out)
				Expect(err).To(MatchError(ContainSubstring(message)))
			},
			Entry("plain http to Cloud Controller", client("cf.api_url", "http://api.sys.example.com"),
				`cloud_controller.url "http://api.sys.example.com" must be an absolute https URL`),
			Entry("a user without a password", props("cf.api_url", "https://api.sys.example.com", "cf.username", "admin"),
				"cloud_controller.password is required with cloud_controller.username"),
			Entry("a CA that is not PEM", client("cf.ca_cert", "nope"), "cloud_controller.ca_cert holds no PEM certificate"),
		)
	}

	DescribeTable("the registrar refuses service access it does not know, or an org list it would ignore",
		func(p map[string]any, message string) {
			out, err := registrar.render("config.json.erb", p, in, links())
			if err == nil {
				_, err = checkConfig("broker-registrar", out)
			}
			Expect(err).To(MatchError(ContainSubstring(message)))
		},
		Entry("an unknown access", client("service_access", "everyone"), `service_access must be "public", "orgs" or "none", not "everyone"`),
		Entry("orgs access without orgs", client("service_access", "orgs"), `orgs must name at least one org with service_access "orgs"`),
		Entry("orgs without orgs access", client("orgs", []any{"dev"}), "orgs is set: set service_access to orgs as well (it is public)"),
	)
})

// s3Backups are an agent's or node's backups.* properties for backups to
// S3, with the given overrides.
func s3Backups(kv ...any) []any {
	return append([]any{"backups.enabled", true, "backups.s3.endpoint", "https://s3.example.com", "backups.s3.region", "eu-west-1",
		"backups.s3.bucket", "redis-backups", "backups.s3.access_key_id", "AKID", "backups.s3.secret_access_key", "s3-secret",
		"backups.path_prefix", "prod"}, kv...)
}

var _ = Describe("redis-backup templates", func() {
	var (
		j, agentJob, nodeJob *Job
		agents, nodes        []Instance
		nodeTLS              pki
	)
	BeforeEach(func() {
		j = mustLoadJob("redis-backup")
		agentJob = mustLoadJob("redis-shared-agent")
		nodeJob = mustLoadJob("redis-node")
		agents = group("redis-shared", 2, 10)
		nodes = group("redis-node", 3, 20)
		nodeTLS = newPKI("*.redis-node.default.redis.bosh")
	})
	agentLink := func(kv ...any) LinkData {
		return mustLink(agentJob, "redis-shared-agent", props(append([]any{"api.password", "agent-secret"}, kv...)...), agents)
	}
	nodeLink := func(kv ...any) LinkData {
		return mustLink(nodeJob, "redis-node", props(append([]any{"api.password", "node-secret", "api.tls.certificate", nodeTLS.cert,
			"api.tls.private_key", nodeTLS.key, "api.tls.ca", nodeTLS.ca}, kv...)...), nodes)
	}

	It("render, colocated with a shared agent, a config redis-backup accepts: that VM's agent only, the destination from its link", func() {
		links := map[string]LinkData{"redis-shared-agent": agentLink(s3Backups()...)}
		out := mustRenderAll(j, nil, agents[1], links)
		expectRun(j, out)
		c := mustCheckConfig("redis-backup", out["config/config.json"])
		Expect(field(c, "agents")).To(Equal([]any{map[string]any{
			"id": agents[1].ID, "url": "http://" + agents[1].Address + ":9001", "username": "broker", "password": "agent-secret",
		}}))
		Expect(field(c, "nodes")).To(BeNil())
		Expect(field(c, "destination")).To(Equal(map[string]any{
			"s3": map[string]any{
				"endpoint": "https://s3.example.com", "region": "eu-west-1", "bucket": "redis-backups",
				"access_key_id": "AKID", "secret_access_key": "s3-secret", "part_size_mb": 16.0, "concurrency": 3.0,
			},
			"path_prefix": "prod",
		}))
		Expect(field(c, "retention")).To(Equal(map[string]any{"keep_newest": 7.0}))
		Expect(field(c, "snapshot_timeout_seconds")).To(BeEquivalentTo(3600))
	})

	It("render, colocated with a node, that node only, over HTTPS verified against the node CA; a local folder and the operator's retention", func() {
		links := map[string]LinkData{
			"redis-shared-agent": agentLink(s3Backups()...),
			"redis-node": nodeLink("backups.enabled", true, "backups.local_path", "/var/vcap/store/backups",
				"backups.retention.keep_newest", 3, "backups.retention.keep_days", 14, "backups.snapshot_timeout_seconds", 600),
		}
		c := mustCheckConfig("redis-backup", mustRenderAll(j, nil, nodes[2], links)["config/config.json"])
		Expect(field(c, "agents")).To(BeNil())
		Expect(field(c, "nodes")).To(Equal([]any{map[string]any{
			"id": nodes[2].ID, "url": "https://" + nodes[2].Address + ":9002", "username": "broker", "password": "node-secret",
			"ca_cert": nodeTLS.ca,
		}}))
		Expect(field(c, "destination")).To(Equal(map[string]any{"local": map[string]any{"path": "/var/vcap/store/backups"}}))
		Expect(field(c, "retention")).To(Equal(map[string]any{"keep_newest": 3.0, "keep_days": 14.0}))
		Expect(field(c, "snapshot_timeout_seconds")).To(BeEquivalentTo(600))
	})

	It("render, on an errand VM of its own (only_this_vm false), every linked agent and node, TLS agents verified against their CA", func() {
		agentTLS := newPKI("*.redis-shared.default.redis.bosh")
		links := map[string]LinkData{
			"redis-shared-agent": agentLink(s3Backups("api.tls.enabled", true, "api.tls.certificate", agentTLS.cert,
				"api.tls.private_key", agentTLS.key, "api.tls.ca", agentTLS.ca)...),
			"redis-node": nodeLink(s3Backups()...),
		}
		in := group("backup", 1, 80)[0]
		c := mustCheckConfig("redis-backup", mustRenderAll(j, props("only_this_vm", false), in, links)["config/config.json"])
		Expect(field(c, "agents")).To(HaveLen(2))
		Expect(field(c, "agents.1.url")).To(Equal("https://" + agents[1].Address + ":9001"))
		Expect(field(c, "agents.1.ca_cert")).To(Equal(agentTLS.ca))
		Expect(field(c, "nodes")).To(HaveLen(3))
		Expect(field(c, "destination.s3.bucket")).To(Equal("redis-backups"))
	})

	It("deploy with backups off on this VM (BOSH renders errands at every deploy), and fail when run, saying why", func() {
		out := mustRenderAll(j, nil, agents[0], map[string]LinkData{"redis-shared-agent": agentLink()})
		expectRun(j, out)
		code, msg := runUntilExec(out["bin/run"])
		Expect(code).To(Equal(1))
		Expect(msg).To(ContainSubstring("redis-backup: backups are off: set backups.enabled (and a destination) on the redis-shared-agent and redis-node jobs of this VM, then deploy"))
		Expect(msg).NotTo(ContainSubstring("reached exec"))

		out = mustRenderAll(j, props("only_this_vm", false), group("backup", 1, 80)[0],
			map[string]LinkData{"redis-shared-agent": agentLink(), "redis-node": nodeLink()})
		code, msg = runUntilExec(out["bin/run"])
		Expect(code).To(Equal(1))
		Expect(msg).To(ContainSubstring("backups are off"))
	})

	It("back up, from an errand VM, the agents and nodes that have backups on, and say which are left out", func() {
		links := map[string]LinkData{"redis-shared-agent": agentLink(s3Backups()...), "redis-node": nodeLink()}
		out := mustRenderAll(j, props("only_this_vm", false), group("backup", 1, 80)[0], links)
		c := mustCheckConfig("redis-backup", out["config/config.json"])
		Expect(field(c, "agents")).To(HaveLen(2))
		Expect(field(c, "nodes")).To(BeNil())
		code, msg := runUntilExec(out["bin/run"])
		Expect(code).To(Equal(0))
		Expect(msg).To(Equal("redis-backup: backups are off on the linked redis-node: their instances are not backed up\nreached exec\n"))

		code, msg = runUntilExec(mustRenderAll(j, nil, agents[0], links)["bin/run"])
		Expect(code).To(Equal(0))
		Expect(msg).To(Equal("reached exec\n"), "on a shared VM, the nodes are not its business")
	})

	DescribeTable("refuse to render without what they need, naming it",
		func(p map[string]any, onNode bool, links func() map[string]LinkData, message string) {
			in := agents[0]
			if onNode {
				in = nodes[0]
			}
			_, err := j.render("config.json.erb", p, in, links())
			Expect(err).To(MatchError(ContainSubstring(message)))
		},
		Entry("no agent or node on this VM", nil, false, func() map[string]LinkData {
			return map[string]LinkData{"redis-node": nodeLink(s3Backups()...)}
		}, "no redis-shared-agent or redis-node runs on this VM"),
		Entry("no link at all, on an errand VM", props("only_this_vm", false), false, func() map[string]LinkData { return nil },
			"redis-backup is linked to no agent or node"),
		Entry("agents and nodes with different buckets, on an errand VM", props("only_this_vm", false), false, func() map[string]LinkData {
			return map[string]LinkData{"redis-shared-agent": agentLink(s3Backups()...), "redis-node": nodeLink(s3Backups("backups.s3.bucket", "other")...)}
		}, "the linked agents and nodes back up to different destinations"),
		Entry("backups on without a destination", nil, true, func() map[string]LinkData {
			return map[string]LinkData{"redis-node": nodeLink("backups.enabled", true)}
		}, "set one of backups.s3.bucket (S3) and backups.local_path (a folder)"),
		Entry("both destinations", nil, true, func() map[string]LinkData {
			return map[string]LinkData{"redis-node": nodeLink(s3Backups("backups.local_path", "/backups")...)}
		}, "set one of backups.s3.bucket (S3) and backups.local_path (a folder)"),
		Entry("S3 without a secret", nil, true, func() map[string]LinkData {
			return map[string]LinkData{"redis-node": nodeLink(s3Backups("backups.s3.secret_access_key", "")...)}
		}, "backups.s3.secret_access_key is required for backups to S3"),
	)

	It("render a config redis-backup refuses, naming the field, for an endpoint that is not a URL", func() {
		links := map[string]LinkData{"redis-shared-agent": agentLink(s3Backups("backups.s3.endpoint", "s3.example.com")...)}
		_, err := checkConfig("redis-backup", mustRenderAll(j, nil, agents[0], links)["config/config.json"])
		Expect(err).To(MatchError(ContainSubstring("destination.s3.endpoint must be an http or https URL")))
	})
})

// runUntilExec runs a rendered bin/run up to its exec (which it must not
// reach) and returns its exit code and output.
func runUntilExec(run string) (int, string) {
	GinkgoHelper()
	Expect(run).To(ContainSubstring("\nexec /var/vcap/packages/"))
	cmd := exec.Command("bash", "-c", strings.Replace(run, "\nexec /var/vcap/packages/", "\necho reached exec; exit 0\n#", 1))
	out, _ := cmd.CombinedOutput()
	return cmd.ProcessState.ExitCode(), string(out)
}
