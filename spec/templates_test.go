package spec

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.yaml.in/yaml/v3"
)

// group returns n instances of an instance group, with stable made-up ids
// and addresses of the form BOSH DNS gives them.
func group(name string, n int, firstIP int) []Instance {
	var out []Instance
	for i := range n {
		id := fmt.Sprintf("%08x-%04x-4000-8000-%012x", len(name)*7919, i, firstIP+i)
		out = append(out, Instance{
			Group: name, Index: i, ID: id, AZ: fmt.Sprintf("z%d", i%3+1),
			IP:         fmt.Sprintf("10.0.16.%d", firstIP+i),
			Address:    fmt.Sprintf("%s.%s.default.redis.bosh", id, name),
			Deployment: "redis",
		})
	}
	return out
}

func mustLoadJob(name string) *Job {
	GinkgoHelper()
	j, err := loadJob(name)
	Expect(err).NotTo(HaveOccurred())
	return j
}

func mustRenderAll(j *Job, p map[string]any, in Instance, links map[string]LinkData) map[string]string {
	GinkgoHelper()
	out, err := j.renderAll(p, in, links)
	Expect(err).NotTo(HaveOccurred())
	return out
}

func mustLink(j *Job, name string, p map[string]any, in []Instance) LinkData {
	GinkgoHelper()
	l, err := linkFrom(j, name, p, in)
	Expect(err).NotTo(HaveOccurred())
	return l
}

// bpmProcess is one process of a rendered bpm.yml.
type bpmProcess struct {
	Name           string   `yaml:"name"`
	Executable     string   `yaml:"executable"`
	Args           []string `yaml:"args"`
	PersistentDisk bool     `yaml:"persistent_disk"`
	EphemeralDisk  bool     `yaml:"ephemeral_disk"`
	Limits         struct {
		OpenFiles int `yaml:"open_files"`
	} `yaml:"limits"`
}

// expectBPM checks a rendered bpm.yml: one process named for the job, that
// runs a command the redis-for-cf package builds with the job's rendered
// config file, and keeps its data on the persistent disk.
func expectBPM(j *Job, rendered map[string]string) bpmProcess {
	GinkgoHelper()
	var bpm struct {
		Processes []bpmProcess `yaml:"processes"`
	}
	Expect(yaml.Unmarshal([]byte(rendered["config/bpm.yml"]), &bpm)).To(Succeed())
	Expect(bpm.Processes).To(HaveLen(1))
	p := bpm.Processes[0]
	Expect(p.Name).To(Equal(j.Name), "monit starts the process named for the job")
	Expect(p.Executable).To(HavePrefix("/var/vcap/packages/redis-for-cf/bin/"))
	Expect(packagePrograms()).To(ContainElement(filepath.Base(p.Executable)), "the redis-for-cf package builds the programs its spec names")
	Expect(j.Packages).To(ContainElement("redis-for-cf"))
	Expect(p.Args).To(Equal([]string{"-config", "/var/vcap/jobs/" + j.Name + "/config/config.json"}))
	Expect(rendered).To(HaveKey("config/config.json"))
	Expect(p.PersistentDisk).To(BeTrue())
	return p
}

var _ = Describe("job specs", func() {
	names, err := jobNames()
	if err != nil {
		panic(err)
	}
	secret := regexp.MustCompile(`password|private_key|secret`)

	for _, name := range names {
		Describe(name, func() {
			var j *Job
			BeforeEach(func() { j = mustLoadJob(name) })

			It("is named for its folder and describes every property, with no default secret", func() {
				Expect(j.Name).To(Equal(name))
				Expect(j.Properties).NotTo(BeEmpty())
				for p, def := range j.Properties {
					Expect(strings.TrimSpace(def.Description)).NotTo(BeEmpty(), "property %s has no description", p)
					if secret.MatchString(p) {
						Expect(def.Default).To(Or(BeNil(), Equal("")), "property %s must not have a default", p)
					}
				}
			})

			It("lists exactly the templates it has, and packages and link properties that exist", func() {
				files, err := os.ReadDir(filepath.Join(root, "jobs", name, "templates"))
				Expect(err).NotTo(HaveOccurred())
				var have []string
				for _, f := range files {
					have = append(have, f.Name())
				}
				var listed []string
				for src := range j.Templates {
					listed = append(listed, src)
				}
				Expect(have).To(ConsistOf(listed))
				for _, p := range j.Packages {
					Expect(filepath.Join(root, "packages", p, "spec")).To(BeARegularFile())
				}
				for _, l := range j.Provides {
					for _, p := range l.Properties {
						Expect(j.Properties).To(HaveKey(p), "link %s lists property %s", l.Name, p)
					}
				}
			})

			It("lets monit run it only through bpm", func() {
				monit, err := os.ReadFile(filepath.Join(root, "jobs", name, "monit"))
				Expect(err).NotTo(HaveOccurred())
				if isErrand(j) {
					// An errand runs only when asked (bin/run): nothing for
					// monit to watch (spec/errands_test.go).
					Expect(string(monit)).To(BeEmpty())
					return
				}
				Expect(string(monit)).To(Equal(fmt.Sprintf(`check process %[1]s
  with pidfile /var/vcap/sys/run/bpm/%[1]s/%[1]s.pid
  start program "/var/vcap/jobs/bpm/bin/bpm start %[1]s"
  stop program "/var/vcap/jobs/bpm/bin/bpm stop %[1]s"
  group vcap
`, name)))
				Expect(j.Templates).To(HaveKeyWithValue("bpm.yml.erb", "config/bpm.yml"))
			})
		})
	}
})

// metricsKV are the properties of a job's metrics certificate (for
// serverName, which metrics.server_name names) and the scrapers' CA, as
// the manifest gives them.
func metricsKV(m pki, serverName string) []any {
	return []any{"metrics.tls.certificate", m.cert, "metrics.tls.private_key", m.key,
		"metrics.tls.ca", m.ca, "metrics.server_name", serverName}
}

var _ = Describe("redis-shared-agent templates", func() {
	var (
		j          *Job
		in         Instance
		metricsTLS pki
	)
	BeforeEach(func() {
		j = mustLoadJob("redis-shared-agent")
		in = group("redis-broker", 1, 5)[0]
		metricsTLS = newPKI("redis-shared-agent-metrics")
	})
	// agentProps are props with the metrics certificate and the scrapers'
	// CA the manifest gives every shared agent (metrics.port defaults to
	// 9091).
	agentProps := func(kv ...any) map[string]any {
		return props(append(metricsKV(metricsTLS, "redis-shared-agent-metrics"), kv...)...)
	}

	It("render with the spec defaults into a config the agent accepts", func() {
		out := mustRenderAll(j, agentProps("api.password", "agent-secret"), in, nil)
		c := mustCheckConfig("redis-shared-agent", out["config/config.json"])
		Expect(field(c, "listen")).To(Equal("0.0.0.0:9001"))
		Expect(field(c, "credentials")).To(Equal(map[string]any{"username": "broker", "password": "agent-secret"}))
		Expect(field(c, "host")).To(Equal(in.IP))
		Expect(field(c, "bind")).To(Equal(in.IP))
		Expect(field(c, "data_dir")).To(Equal("/var/vcap/store/redis-shared-agent"))
		Expect(field(c, "log_dir")).To(Equal("/var/vcap/sys/log/redis-shared-agent"))
		Expect(field(c, "redis_logs")).To(Equal(map[string]any{"max_size_mb": 10.0, "keep": 2.0}))
		Expect(field(c, "redis_server")).To(Equal("/var/vcap/packages/redis/bin/redis-server"))
		Expect(j.Packages).To(ContainElement("redis"))
		Expect(field(c, "cgroups")).To(Equal("auto"))
		Expect(field(c, "port_range")).To(Equal(map[string]any{"min": 32768.0, "max": 61000.0}))
		Expect(field(c, "tls")).To(BeNil())
		Expect(strings.TrimSpace(out["config/tls.crt"])).To(BeEmpty())
		Expect(strings.TrimSpace(out["config/tls.key"])).To(BeEmpty())

		p := expectBPM(j, out)
		Expect(p.Limits.OpenFiles).To(Equal(65536))
	})

	It("render the operator's choices", func() {
		out := mustRenderAll(j, agentProps(
			"api.password", "s", "api.port", 9101, "api.listen_address", "10.0.16.5",
			"redis.host", "redis.example.com", "redis.bind", "0.0.0.0",
			"redis.port_range.min", 40000, "redis.port_range.max", 40999,
			"redis.memory_budget_mb", 4096, "redis.max_instances", 50, "open_files", 200000,
			"redis.cgroups", "required",
		), in, nil)
		c := mustCheckConfig("redis-shared-agent", out["config/config.json"])
		Expect(field(c, "listen")).To(Equal("10.0.16.5:9101"))
		Expect(field(c, "host")).To(Equal("redis.example.com"))
		Expect(field(c, "bind")).To(Equal("0.0.0.0"))
		Expect(field(c, "port_range")).To(Equal(map[string]any{"min": 40000.0, "max": 40999.0}))
		Expect(field(c, "memory_budget_mb")).To(BeEquivalentTo(4096))
		Expect(field(c, "max_instances")).To(BeEquivalentTo(50))
		Expect(field(c, "cgroups")).To(Equal("required"))
		Expect(expectBPM(j, out).Limits.OpenFiles).To(Equal(200000))
		Expect(out["bin/pre-start"]).To(ContainSubstring("net.ipv4.ip_local_reserved_ports = 40000-40999"))
	})

	It("render TLS on into a config the agent accepts, with the certificate files", func() {
		tls := newPKI(in.Address)
		out := mustRenderAll(j, agentProps("api.password", "s", "api.tls.enabled", true,
			"api.tls.certificate", tls.cert, "api.tls.private_key", tls.key, "api.tls.ca", tls.ca), in, nil)
		c := mustCheckConfig("redis-shared-agent", out["config/config.json"])
		Expect(field(c, "tls")).To(Equal(map[string]any{
			"cert_file": "/var/vcap/jobs/redis-shared-agent/config/tls.crt",
			"key_file":  "/var/vcap/jobs/redis-shared-agent/config/tls.key",
		}))
		Expect(j.Templates).To(HaveKeyWithValue("tls.crt.erb", "config/tls.crt"))
		Expect(j.Templates).To(HaveKeyWithValue("tls.key.erb", "config/tls.key"))
		Expect(strings.TrimSpace(out["config/tls.crt"])).To(Equal(strings.TrimSpace(tls.cert)))
		Expect(strings.TrimSpace(out["config/tls.key"])).To(Equal(strings.TrimSpace(tls.key)))
	})

	It("render TLS on the Redis ports into a config the agent accepts: apps reach the BOSH address, redis-server listens on the IP", func() {
		tls := newPKI(in.Address)
		out := mustRenderAll(j, agentProps("api.password", "s", "redis.tls.enabled", true, "redis.tls.certificate", tls.cert,
			"redis.tls.private_key", tls.key, "redis.tls.ca", tls.ca), in, nil)
		c := mustCheckConfig("redis-shared-agent", out["config/config.json"])
		Expect(field(c, "redis_tls")).To(Equal(map[string]any{
			"cert_file": "/var/vcap/jobs/redis-shared-agent/config/redis-tls.crt",
			"key_file":  "/var/vcap/jobs/redis-shared-agent/config/redis-tls.key",
			"ca_file":   "/var/vcap/jobs/redis-shared-agent/config/redis-tls-ca.crt",
		}))
		Expect(strings.TrimSpace(out["config/redis-tls.crt"])).To(Equal(strings.TrimSpace(tls.cert)))
		Expect(strings.TrimSpace(out["config/redis-tls.key"])).To(Equal(strings.TrimSpace(tls.key)))
		Expect(strings.TrimSpace(out["config/redis-tls-ca.crt"])).To(Equal(strings.TrimSpace(tls.ca)))
		Expect(field(c, "host")).To(Equal(in.Address))
		Expect(field(c, "bind")).To(Equal(in.IP))

		out = mustRenderAll(j, agentProps("api.password", "s", "redis.tls.enabled", true, "redis.tls.certificate", tls.cert,
			"redis.tls.private_key", tls.key, "redis.tls.ca", tls.ca, "redis.host", "redis.example.com"), in, nil)
		c = mustCheckConfig("redis-shared-agent", out["config/config.json"])
		Expect(field(c, "host")).To(Equal("redis.example.com"))
		Expect(field(c, "bind")).To(Equal("redis.example.com"), "the operator's host, as without TLS")

		out = mustRenderAll(j, agentProps("api.password", "s"), in, nil)
		Expect(strings.TrimSpace(out["config/redis-tls.key"])).To(BeEmpty())
		Expect(field(mustCheckConfig("redis-shared-agent", out["config/config.json"]), "redis_tls")).To(BeNil())
	})

	It("render backups on a schedule into a config the agent accepts, and leave them to the errand without one", func() {
		out := mustRenderAll(j, agentProps(append([]any{"api.password", "s"}, s3Backups("backups.s3.path_style", true,
			"backups.s3.part_size_mb", 64, "backups.s3.concurrency", 8)...)...), in, nil)
		c := mustCheckConfig("redis-shared-agent", out["config/config.json"])
		Expect(field(c, "backups.schedule")).To(Equal("0 2 * * *"))
		Expect(field(c, "backups.destination")).To(Equal(map[string]any{
			"s3": map[string]any{
				"endpoint": "https://s3.example.com", "region": "eu-west-1", "bucket": "redis-backups", "access_key_id": "AKID",
				"secret_access_key": "s3-secret", "path_style": true, "part_size_mb": 64.0, "concurrency": 8.0,
			},
			"path_prefix": "prod",
		}))
		Expect(field(c, "backups.retention")).To(Equal(map[string]any{"keep_newest": 7.0}))
		Expect(field(c, "backups.snapshot_timeout_seconds")).To(BeEquivalentTo(3600))

		out = mustRenderAll(j, agentProps(append([]any{"api.password", "s"}, s3Backups("backups.schedule", "@every 6h")...)...), in, nil)
		Expect(field(mustCheckConfig("redis-shared-agent", out["config/config.json"]), "backups.schedule")).To(Equal("@every 6h"))

		out = mustRenderAll(j, agentProps(append([]any{"api.password", "s"}, s3Backups("backups.schedule", "")...)...), in, nil)
		Expect(field(mustCheckConfig("redis-shared-agent", out["config/config.json"]), "backups")).To(BeNil())
		out = mustRenderAll(j, agentProps("api.password", "s", "backups.s3.bucket", "ignored while backups are off"), in, nil)
		Expect(field(mustCheckConfig("redis-shared-agent", out["config/config.json"]), "backups")).To(BeNil())
	})

	It("render a config the agent refuses, naming the field, for a schedule that is not one", func() {
		out := mustRenderAll(j, agentProps(append([]any{"api.password", "s"}, s3Backups("backups.schedule", "at night")...)...), in, nil)
		_, err := checkConfig("redis-shared-agent", out["config/config.json"])
		Expect(err).To(MatchError(ContainSubstring("backups.schedule")))
	})

	DescribeTable("refuse to render without what they need, naming it",
		func(p map[string]any, in Instance, message string) {
			_, err := j.render("config.json.erb", p, in, nil)
			Expect(err).To(MatchError(ContainSubstring(message)))
		},
		Entry("no password", props(), group("g", 1, 5)[0], "Can't find property 'api.password'"),
		Entry("TLS without a certificate", props("api.password", "s", "api.tls.enabled", true, "api.tls.private_key", "k"), group("g", 1, 5)[0], "api.tls.certificate is required"),
		Entry("TLS without a key", props("api.password", "s", "api.tls.enabled", true, "api.tls.certificate", "c"), group("g", 1, 5)[0], "api.tls.private_key is required"),
		Entry("no address", props("api.password", "s"), Instance{Group: "g", ID: "x"}, "redis.host is required"),
		Entry("Redis TLS without a CA", props("api.password", "s", "redis.tls.enabled", true, "redis.tls.certificate", "c",
			"redis.tls.private_key", "k"), group("g", 1, 5)[0], "redis.tls.ca is required when redis.tls.enabled is true"),
		Entry("backups without a destination", props("api.password", "s", "backups.enabled", true), group("g", 1, 5)[0],
			"backups.enabled is true: set one of backups.s3.bucket (S3) and backups.local_path (a folder)"),
		Entry("backups to S3 without an endpoint", props(append([]any{"api.password", "s"}, s3Backups("backups.s3.endpoint", "")...)...),
			group("g", 1, 5)[0], "backups.s3.endpoint is required for backups to S3"),
		Entry("backups to S3 without an access key", props(append([]any{"api.password", "s"}, s3Backups("backups.s3.access_key_id", " ")...)...),
			group("g", 1, 5)[0], "backups.s3.access_key_id is required for backups to S3"),
	)

	DescribeTable("refuse a pre-start that would hand out the instances' ports",
		func(p map[string]any, message string) {
			_, err := j.render("pre-start.erb", p, in, nil)
			Expect(err).To(MatchError(ContainSubstring(message)))
		},
		Entry("overlapping ranges", props("ephemeral_port_range.min", 50000), "ephemeral_port_range 50000-65535 overlaps redis.port_range 32768-61000"),
		Entry("an empty range", props("redis.port_range.min", 5000, "redis.port_range.max", 4000), "redis.port_range: 5000-4000 must lie within 1-65535"),
	)
})

var _ = Describe("redis-node templates", func() {
	var (
		j          *Job
		in         Instance
		tls        pki
		metricsTLS pki
	)
	BeforeEach(func() {
		j = mustLoadJob("redis-node")
		in = group("redis-node", 3, 20)[2]
		tls = newPKI(in.Address)
		metricsTLS = newPKI("redis-node-metrics")
	})
	required := func(kv ...any) map[string]any {
		p := props(append(metricsKV(metricsTLS, "redis-node-metrics"),
			"api.password", "node-secret", "api.tls.certificate", tls.cert, "api.tls.private_key", tls.key, "api.tls.ca", tls.ca)...)
		for i := 0; i+1 < len(kv); i += 2 {
			setPath(p, kv[i].(string), kv[i+1])
		}
		return p
	}

	It("render with the spec defaults into a config the node agent accepts, identified by the instance id", func() {
		out := mustRenderAll(j, required(), in, nil)
		c := mustCheckConfig("redis-node-agent", out["config/config.json"])
		Expect(field(c, "node_id")).To(Equal(in.ID))
		Expect(field(c, "listen")).To(Equal("0.0.0.0:9002"))
		Expect(field(c, "credentials")).To(Equal(map[string]any{"username": "broker", "password": "node-secret"}))
		Expect(field(c, "tls")).To(Equal(map[string]any{
			"cert_file": "/var/vcap/jobs/redis-node/config/tls.crt",
			"key_file":  "/var/vcap/jobs/redis-node/config/tls.key",
		}))
		Expect(strings.TrimSpace(out["config/tls.crt"])).To(Equal(strings.TrimSpace(tls.cert)))
		Expect(strings.TrimSpace(out["config/tls.key"])).To(Equal(strings.TrimSpace(tls.key)))
		Expect(field(c, "host")).To(Equal(in.IP))
		Expect(field(c, "port")).To(BeEquivalentTo(6379))
		Expect(field(c, "data_dir")).To(Equal("/var/vcap/store/redis-node"))
		Expect(field(c, "log_dir")).To(Equal("/var/vcap/sys/log/redis-node"))
		Expect(field(c, "redis_logs")).To(Equal(map[string]any{"max_size_mb": 10.0, "keep": 2.0}))
		Expect(field(c, "redis_server")).To(Equal("/var/vcap/packages/redis/bin/redis-server"))
		Expect(j.Packages).To(ContainElement("redis"))
		Expect(field(c, "maxmemory_percent")).To(BeEquivalentTo(75))
		Expect(field(c, "cgroups")).To(Equal("auto"))
		Expect(expectBPM(j, out).Limits.OpenFiles).To(Equal(65536))
	})

	It("render the operator's choices", func() {
		out := mustRenderAll(j, required("redis.port", 6380, "redis.maxmemory_mb", 2048, "redis.host", "10.1.0.9",
			"redis.bind", "0.0.0.0", "api.port", 9443), in, nil)
		c := mustCheckConfig("redis-node-agent", out["config/config.json"])
		Expect(field(c, "port")).To(BeEquivalentTo(6380))
		Expect(field(c, "maxmemory_mb")).To(BeEquivalentTo(2048))
		Expect(field(c, "host")).To(Equal("10.1.0.9"))
		Expect(field(c, "bind")).To(Equal("0.0.0.0"))
		Expect(field(c, "listen")).To(Equal("0.0.0.0:9443"))
	})

	DescribeTable("refuse to render without what they need, naming it",
		func(drop string, message string) {
			p := required()
			setPath(p, drop, nil)
			_, err := j.render("config.json.erb", p, in, nil)
			Expect(err).To(MatchError(ContainSubstring(message)))
		},
		Entry("no password", "api.password", "Can't find property 'api.password'"),
		Entry("no certificate", "api.tls.certificate", "Can't find property 'api.tls.certificate'"),
		Entry("no key", "api.tls.private_key", "Can't find property 'api.tls.private_key'"),
		Entry("no CA", "api.tls.ca", "Can't find property 'api.tls.ca'"),
	)

	It("render TLS on the Redis port into a config the node agent accepts, on 16379 unless told", func() {
		redisTLS := newPKI(in.Address)
		out := mustRenderAll(j, required("redis.tls.enabled", true, "redis.tls.certificate", redisTLS.cert,
			"redis.tls.private_key", redisTLS.key, "redis.tls.ca", redisTLS.ca), in, nil)
		c := mustCheckConfig("redis-node-agent", out["config/config.json"])
		Expect(field(c, "redis_tls.ca_file")).To(Equal("/var/vcap/jobs/redis-node/config/redis-tls-ca.crt"))
		Expect(field(c, "tls_port")).To(BeEquivalentTo(16379))
		Expect(field(c, "host")).To(Equal(in.Address))
		Expect(field(c, "bind")).To(Equal(in.IP))
		Expect(strings.TrimSpace(out["config/redis-tls.crt"])).To(Equal(strings.TrimSpace(redisTLS.cert)))

		out = mustRenderAll(j, required("redis.tls.enabled", true, "redis.tls.certificate", redisTLS.cert,
			"redis.tls.private_key", redisTLS.key, "redis.tls.ca", redisTLS.ca, "redis.tls_port", 6380), in, nil)
		Expect(field(mustCheckConfig("redis-node-agent", out["config/config.json"]), "tls_port")).To(BeEquivalentTo(6380))
		_, err := j.render("config.json.erb", required("redis.tls.enabled", true), in, nil)
		Expect(err).To(MatchError(ContainSubstring("redis.tls.certificate is required when redis.tls.enabled is true")))
	})

	It("render Sentinel only when HA is on, on 26379 unless told, into a config the node agent accepts", func() {
		out := mustRenderAll(j, required(), in, nil)
		Expect(mustCheckConfig("redis-node-agent", out["config/config.json"])).NotTo(HaveKey("ha"))
		out = mustRenderAll(j, required("ha.enabled", true), in, nil)
		Expect(field(mustCheckConfig("redis-node-agent", out["config/config.json"]), "ha")).To(Equal(map[string]any{"sentinel_port": 26379.0}))
		out = mustRenderAll(j, required("ha.enabled", true, "ha.sentinel_port", 26380), in, nil)
		Expect(field(mustCheckConfig("redis-node-agent", out["config/config.json"]), "ha.sentinel_port")).To(BeEquivalentTo(26380))
		_, err := j.render("config.json.erb", required("ha.enabled", true, "ha.sentinel_port", 6379), in, nil)
		Expect(err).To(MatchError(ContainSubstring("ha.sentinel_port 6379 must differ from redis.port")))
	})

	It("render backups to a folder on a schedule into a config the node agent accepts", func() {
		out := mustRenderAll(j, required("backups.enabled", true, "backups.local_path", "/var/vcap/store/backups",
			"backups.schedule", "@daily", "backups.retention.keep_days", 30), in, nil)
		c := mustCheckConfig("redis-node-agent", out["config/config.json"])
		Expect(field(c, "backups")).To(Equal(map[string]any{
			"schedule":                 "@daily",
			"destination":              map[string]any{"local": map[string]any{"path": "/var/vcap/store/backups"}},
			"retention":                map[string]any{"keep_newest": 7.0, "keep_days": 30.0},
			"snapshot_timeout_seconds": 3600.0,
		}))
		_, err := j.render("config.json.erb", required("backups.enabled", true, "backups.local_path", "/b", "backups.s3.bucket", "b"), in, nil)
		Expect(err).To(MatchError(ContainSubstring("set one of backups.s3.bucket (S3) and backups.local_path (a folder)")))
	})

	It("refuse an empty certificate", func() {
		_, err := j.render("config.json.erb", required("api.tls.certificate", " "), in, nil)
		Expect(err).To(MatchError(ContainSubstring("api.tls.certificate is required: the node API is served over HTTPS only")))
	})
})

var _ = Describe("redis-broker templates", func() {
	var (
		j, agentJob, nodeJob *Job
		in                   Instance
		agents, moreAgents   []Instance
		nodes                []Instance
		agentTLS, nodeTLS    pki
		nodeProps            map[string]any
		nodeKV               []any
	)
	BeforeEach(func() {
		j = mustLoadJob("redis-broker")
		agentJob = mustLoadJob("redis-shared-agent")
		nodeJob = mustLoadJob("redis-node")
		agents = group("redis-broker", 1, 5)
		in = agents[0]
		moreAgents = group("redis-shared", 2, 10)
		nodes = group("redis-node", 3, 20)
		agentTLS = newPKI("*.redis-broker.default.redis.bosh", "*.redis-shared.default.redis.bosh")
		nodeTLS = newPKI("*.redis-node.default.redis.bosh")
		nodeKV = []any{"api.password", "node-secret", "api.tls.certificate", nodeTLS.cert,
			"api.tls.private_key", nodeTLS.key, "api.tls.ca", nodeTLS.ca}
		nodeProps = props(nodeKV...)
	})
	agentProps := func(tls bool) map[string]any {
		if !tls {
			return props("api.password", "agent-secret")
		}
		return props("api.password", "agent-secret", "api.port", 9443, "api.tls.enabled", true,
			"api.tls.certificate", agentTLS.cert, "api.tls.private_key", agentTLS.key, "api.tls.ca", agentTLS.ca)
	}
	// metricsTLS is the broker's metrics certificate (server_name
	// redis-broker-metrics) and the scrapers' CA, as the manifest gives them.
	var metricsTLS pki
	BeforeEach(func() { metricsTLS = newPKI("redis-broker-metrics") })
	brokerProps := func(kv ...any) map[string]any {
		return props(append(append([]any{"broker.password", "cc-secret"}, metricsKV(metricsTLS, "redis-broker-metrics")...), kv...)...)
	}

	It("render with the spec defaults and one shared agent into a config the broker accepts", func() {
		links := map[string]LinkData{"redis-shared-agent": mustLink(agentJob, "redis-shared-agent", agentProps(false), agents)}
		out := mustRenderAll(j, brokerProps(), in, links)
		c := mustCheckConfig("redis-broker", out["config/config.json"])
		Expect(field(c, "listen")).To(Equal("0.0.0.0:8080"))
		Expect(field(c, "credentials")).To(Equal(map[string]any{"username": "broker", "password": "cc-secret"}))
		Expect(field(c, "state_dir")).To(Equal("/var/vcap/store/redis-broker"))
		Expect(field(c, "tls")).To(BeNil())
		Expect(field(c, "catalog.service_name")).To(Equal("p-redis"))
		Expect(field(c, "catalog.service_id")).NotTo(BeEmpty())
		Expect(field(c, "shared_vm.name")).To(Equal("shared-vm"))
		Expect(field(c, "shared_vm.max_instances")).To(BeEquivalentTo(20))
		Expect(field(c, "shared_vm.maxmemory_mb")).To(BeEquivalentTo(256))
		Expect(field(c, "shared_vm.tls_only")).To(Equal("optional"), "app developers may choose TLS-only by default")
		Expect(field(c, "shared_vm.agents")).To(HaveLen(1))
		Expect(field(c, "shared_vm.agents.0")).To(Equal(map[string]any{
			"id":       agents[0].ID,
			"url":      "http://" + agents[0].Address + ":9001",
			"username": "broker",
			"password": "agent-secret",
		}))
		Expect(field(c, "dedicated_vm")).To(BeNil())
		Expect(field(c, "external_leaders")).To(BeNil(), "no leader outside the service unless the operator lists it")
		expectBPM(j, out)
	})

	It("render the metrics endpoint (HTTPS, the scrapers' CA) and the prom scraper's file, by default on port 9090", func() {
		links := map[string]LinkData{"redis-shared-agent": mustLink(agentJob, "redis-shared-agent", agentProps(false), agents)}
		out := mustRenderAll(j, brokerProps(), in, links)
		c := mustCheckConfig("redis-broker", out["config/config.json"])
		Expect(field(c, "metrics")).To(Equal(map[string]any{
			"listen":    "0.0.0.0:9090",
			"cert_file": "/var/vcap/jobs/redis-broker/config/metrics.crt",
			"key_file":  "/var/vcap/jobs/redis-broker/config/metrics.key",
			"ca_file":   "/var/vcap/jobs/redis-broker/config/metrics_ca.crt",
		}))
		Expect(strings.TrimSpace(out["config/metrics.crt"])).To(Equal(strings.TrimSpace(metricsTLS.cert)))
		Expect(strings.TrimSpace(out["config/metrics.key"])).To(Equal(strings.TrimSpace(metricsTLS.key)))
		Expect(strings.TrimSpace(out["config/metrics_ca.crt"])).To(Equal(strings.TrimSpace(metricsTLS.ca)))
		var scraper map[string]any
		Expect(yaml.Unmarshal([]byte(out["config/prom_scraper_config.yml"]), &scraper)).To(Succeed())
		Expect(scraper).To(Equal(map[string]any{
			"port": 9090, "source_id": "redis-broker", "instance_id": in.ID, "scheme": "https",
			"server_name": "redis-broker-metrics", "path": "/metrics",
		}))

		out = mustRenderAll(j, brokerProps("metrics.port", 9191, "broker.listen_address", "10.0.16.5"), in, links)
		Expect(field(mustCheckConfig("redis-broker", out["config/config.json"]), "metrics.listen")).To(Equal("10.0.16.5:9191"))
		Expect(out["config/prom_scraper_config.yml"]).To(ContainSubstring("port: 9191\n"))
	})

	It("render no metrics, no certificates and an empty prom scraper file with metrics.port 0, and need no certificates then", func() {
		links := map[string]LinkData{"redis-shared-agent": mustLink(agentJob, "redis-shared-agent", agentProps(false), agents)}
		out := mustRenderAll(j, props("broker.password", "cc-secret", "metrics.port", 0), in, links)
		c := mustCheckConfig("redis-broker", out["config/config.json"])
		Expect(field(c, "metrics")).To(BeNil())
		for _, f := range []string{"config/metrics.crt", "config/metrics.key", "config/metrics_ca.crt", "config/prom_scraper_config.yml"} {
			Expect(strings.TrimSpace(out[f])).To(BeEmpty(), f)
		}
	})

	It("render external leaders from a list, or from the tile's text field, into a config the broker accepts", func() {
		links := map[string]LinkData{"redis-shared-agent": mustLink(agentJob, "redis-shared-agent", agentProps(false), agents)}
		want := []any{"10.20.0.0/16", "192.0.2.7", "redis.example.com"}
		for _, value := range []any{
			[]any{"10.20.0.0/16", "192.0.2.7", "redis.example.com"},
			"10.20.0.0/16, 192.0.2.7\nredis.example.com\n",
		} {
			c := mustCheckConfig("redis-broker", mustRenderAll(j, brokerProps("replication.external_leaders", value), in, links)["config/config.json"])
			Expect(field(c, "external_leaders")).To(Equal(want))
		}
		c := mustCheckConfig("redis-broker", mustRenderAll(j, brokerProps("replication.external_leaders", "  \n "), in, links)["config/config.json"])
		Expect(field(c, "external_leaders")).To(BeNil())
		out := mustRenderAll(j, brokerProps("replication.external_leaders", []any{"0x7f.1"}), in, links)
		_, err := checkConfig("redis-broker", out["config/config.json"])
		Expect(err).To(MatchError(ContainSubstring(`external_leaders[0]: "0x7f.1" is not a CIDR, an IP address or a DNS name`)))
	})

	It("render each plan's tls_only, and a value the broker refuses fails the config check", func() {
		links := map[string]LinkData{"redis-shared-agent": mustLink(agentJob, "redis-shared-agent", agentProps(false), agents)}
		c := mustCheckConfig("redis-broker", mustRenderAll(j, brokerProps("shared_vm.tls_only", "always"), in, links)["config/config.json"])
		Expect(field(c, "shared_vm.tls_only")).To(Equal("always"))
		out := mustRenderAll(j, brokerProps("shared_vm.tls_only", "sometimes"), in, links)
		_, err := checkConfig("redis-broker", out["config/config.json"])
		Expect(err).To(MatchError(ContainSubstring(`shared_vm.tls_only must be "optional", "always" or "never", not "sometimes"`)))
	})

	It("render TLS everywhere, agents of two instance groups and several nodes into a config the broker accepts", func() {
		brokerTLS := newPKI("broker.example.com")
		links := map[string]LinkData{
			"redis-shared-agent":       mustLink(agentJob, "redis-shared-agent", agentProps(true), agents),
			"more-redis-shared-agents": mustLink(agentJob, "redis-shared-agent", agentProps(true), moreAgents),
			"redis-node":               mustLink(nodeJob, "redis-node", nodeProps, nodes),
		}
		out := mustRenderAll(j, brokerProps("broker.tls.enabled", true, "broker.tls.certificate", brokerTLS.cert,
			"broker.tls.private_key", brokerTLS.key, "shared_vm.max_instances", 500), in, links)
		c := mustCheckConfig("redis-broker", out["config/config.json"])
		Expect(field(c, "tls")).To(Equal(map[string]any{
			"cert_file": "/var/vcap/jobs/redis-broker/config/tls.crt",
			"key_file":  "/var/vcap/jobs/redis-broker/config/tls.key",
		}))
		Expect(strings.TrimSpace(out["config/tls.crt"])).To(Equal(strings.TrimSpace(brokerTLS.cert)))

		Expect(field(c, "shared_vm.agents")).To(HaveLen(3))
		for i, want := range append(append([]Instance{}, agents...), moreAgents...) {
			a := fmt.Sprintf("shared_vm.agents.%d.", i)
			Expect(field(c, a+"id")).To(Equal(want.ID))
			Expect(field(c, a+"url")).To(Equal("https://" + want.Address + ":9443"))
			Expect(field(c, a+"ca_cert")).To(Equal(agentTLS.ca))
		}

		Expect(field(c, "dedicated_vm.name")).To(Equal("dedicated-vm"))
		Expect(field(c, "dedicated_vm.plan_id")).NotTo(Equal(field(c, "shared_vm.plan_id")))
		Expect(field(c, "dedicated_vm.nodes")).To(HaveLen(3))
		for i, want := range nodes {
			Expect(field(c, fmt.Sprintf("dedicated_vm.nodes.%d", i))).To(Equal(map[string]any{
				"id":       want.ID, // the id the node agent reports: its spec.id
				"url":      "https://" + want.Address + ":9002",
				"username": "broker",
				"password": "node-secret",
				"ca_cert":  nodeTLS.ca,
			}))
		}
	})

	It("give the broker the agents' and nodes' S3 destination for restores, and no folder of another VM", func() {
		links := map[string]LinkData{
			"redis-shared-agent": mustLink(agentJob, "redis-shared-agent", props(append([]any{"api.password", "agent-secret"}, s3Backups()...)...), agents),
			"redis-node":         mustLink(nodeJob, "redis-node", props(append(nodeKV, s3Backups("backups.schedule", "")...)...), nodes),
		}
		c := mustCheckConfig("redis-broker", mustRenderAll(j, brokerProps(), in, links)["config/config.json"])
		Expect(field(c, "backups")).To(Equal(map[string]any{
			"s3": map[string]any{
				"endpoint": "https://s3.example.com", "region": "eu-west-1", "bucket": "redis-backups",
				"access_key_id": "AKID", "secret_access_key": "s3-secret", "part_size_mb": 16.0, "concurrency": 3.0,
			},
			"path_prefix": "prod",
		}))

		links["redis-shared-agent"] = mustLink(agentJob, "redis-shared-agent", props("api.password", "agent-secret",
			"backups.enabled", true, "backups.local_path", "/var/vcap/store/backups"), agents)
		links["redis-node"] = mustLink(nodeJob, "redis-node", nodeProps, nodes)
		c = mustCheckConfig("redis-broker", mustRenderAll(j, brokerProps(), in, links)["config/config.json"])
		Expect(field(c, "backups")).To(BeNil())

		links["redis-node"] = mustLink(nodeJob, "redis-node", props(append(nodeKV, s3Backups()...)...), nodes)
		links["redis-shared-agent"] = mustLink(agentJob, "redis-shared-agent", props(append([]any{"api.password", "agent-secret"}, s3Backups("backups.path_prefix", "other")...)...), agents)
		_, err := j.render("config.json.erb", brokerProps(), in, links)
		Expect(err).To(MatchError(ContainSubstring("the linked agents and nodes back up to different S3 destinations")))
	})

	It("render the dedicated-vm plan alone", func() {
		links := map[string]LinkData{"redis-node": mustLink(nodeJob, "redis-node", nodeProps, nodes)}
		c := mustCheckConfig("redis-broker", mustRenderAll(j, brokerProps(), in, links)["config/config.json"])
		Expect(field(c, "shared_vm")).To(BeNil())
		Expect(field(c, "dedicated_vm.nodes")).To(HaveLen(3))
	})

	// renderJSON renders the broker's config, checks that the broker accepts
	// it, and decodes it as rendered (before the broker fills in defaults).
	renderJSON := func(p map[string]any, links map[string]LinkData) map[string]any {
		GinkgoHelper()
		doc := mustRenderAll(j, p, in, links)["config/config.json"]
		mustCheckConfig("redis-broker", doc)
		var c map[string]any
		Expect(json.Unmarshal([]byte(doc), &c)).To(Succeed())
		return c
	}
	haNodes := func(n int, kv ...any) map[string]LinkData {
		return map[string]LinkData{"redis-node": mustLink(nodeJob, "redis-node", props(append(append(append([]any{}, nodeKV...), "ha.enabled", true), kv...)...), group("redis-node", n, 20))}
	}

	It("render the dedicated-ha plan from the dedicated nodes, each with its AZ, the Sentinel port from the link", func() {
		c := renderJSON(brokerProps("dedicated_ha.enabled", true), haNodes(4))
		Expect(field(c, "dedicated_ha")).To(Equal(map[string]any{
			"plan_id": "5b8d3e1f-9c2a-4d7e-b6f0-3a1c9e8d2b47", "name": "dedicated-ha", "description": "",
			"tls_only": "optional", "sentinel_port": 26379.0,
		}))
		Expect(field(c, "dedicated_ha.plan_id")).NotTo(BeElementOf(field(c, "dedicated_vm.plan_id"), "a3c1b7e2-0d4f-4c59-8e2b-61f5d0c9b342"))
		Expect(field(c, "dedicated_vm.nodes")).To(HaveLen(4), "one pool for both dedicated plans")
		for i, want := range group("redis-node", 4, 20) {
			Expect(field(c, fmt.Sprintf("dedicated_vm.nodes.%d.id", i))).To(Equal(want.ID))
			Expect(field(c, fmt.Sprintf("dedicated_vm.nodes.%d.az", i))).To(Equal(want.AZ))
		}

		c = renderJSON(brokerProps("dedicated_ha.enabled", true, "dedicated_ha.name", "ha", "dedicated_ha.description", "Three nodes",
			"dedicated_ha.tls_only", "always", "dedicated_ha.plan_id", "ha-plan"), haNodes(3, "ha.sentinel_port", 26380))
		Expect(field(c, "dedicated_ha")).To(Equal(map[string]any{
			"plan_id": "ha-plan", "name": "ha", "description": "Three nodes", "tls_only": "always", "sentinel_port": 26380.0,
		}))

		By("a node without an AZ has no az; without the plan no node has one, and the broker accepts the config")
		links := haNodes(3)
		links["redis-node"] = mustLink(nodeJob, "redis-node", props(append(append([]any{}, nodeKV...), "ha.enabled", true)...),
			func() []Instance { g := group("redis-node", 3, 20); g[1].AZ = ""; return g }())
		c = renderJSON(brokerProps("dedicated_ha.enabled", true), links)
		Expect(field(c, "dedicated_vm.nodes.0")).To(HaveKey("az"))
		Expect(field(c, "dedicated_vm.nodes.1")).NotTo(HaveKey("az"))
		c = mustCheckConfig("redis-broker", mustRenderAll(j, brokerProps(), in, haNodes(3))["config/config.json"])
		Expect(field(c, "dedicated_ha")).To(BeNil())
		Expect(field(c, "dedicated_vm.nodes.0")).NotTo(HaveKey("az"))
	})

	DescribeTable("refuse the dedicated-ha plan without three Sentinel nodes, naming the cause",
		func(links func() map[string]LinkData, message string) {
			_, err := j.render("config.json.erb", brokerProps("dedicated_ha.enabled", true), in, links())
			Expect(err).To(MatchError(ContainSubstring(message)))
		},
		Entry("two nodes", func() map[string]LinkData { return haNodes(2) },
			"dedicated_ha.enabled needs at least 3 dedicated nodes (a leader and two followers, each on its own VM); the redis-node link has 2"),
		Entry("nodes without Sentinel", func() map[string]LinkData {
			return map[string]LinkData{"redis-node": mustLink(nodeJob, "redis-node", nodeProps, nodes)}
		}, "dedicated_ha.enabled needs Sentinel on the dedicated nodes: set ha.enabled: true on the redis-node job"),
		Entry("no nodes at all", func() map[string]LinkData {
			return map[string]LinkData{"redis-shared-agent": mustLink(agentJob, "redis-shared-agent", agentProps(false), agents)}
		}, "dedicated_ha.enabled needs dedicated nodes: link the broker to the redis-node job"),
	)

	It("count an agent once when both shared-agent links lead to its instance group", func() {
		l := mustLink(agentJob, "redis-shared-agent", agentProps(false), moreAgents)
		links := map[string]LinkData{"redis-shared-agent": l, "more-redis-shared-agents": l}
		c := mustCheckConfig("redis-broker", mustRenderAll(j, brokerProps(), in, links)["config/config.json"])
		Expect(field(c, "shared_vm.agents")).To(HaveLen(2))
	})

	It("bracket an IPv6 agent address", func() {
		v6 := agents[0]
		v6.Address = "fd00::5"
		links := map[string]LinkData{"redis-shared-agent": mustLink(agentJob, "redis-shared-agent", agentProps(false), []Instance{v6})}
		c := mustCheckConfig("redis-broker", mustRenderAll(j, brokerProps(), in, links)["config/config.json"])
		Expect(field(c, "shared_vm.agents.0.url")).To(Equal("http://[fd00::5]:9001"))
	})

	DescribeTable("refuse to render without what they need, naming it",
		func(p map[string]any, links func() map[string]LinkData, message string) {
			_, err := j.render("config.json.erb", p, in, links())
			Expect(err).To(MatchError(ContainSubstring(message)))
		},
		Entry("no password", props(), func() map[string]LinkData {
			return map[string]LinkData{"redis-shared-agent": mustLink(agentJob, "redis-shared-agent", agentProps(false), agents)}
		}, "Can't find property 'broker.password'"),
		Entry("no plan", props("broker.password", "s"), func() map[string]LinkData { return nil },
			"the broker offers no plan: link it to shared agents (redis-shared-agent) or dedicated nodes (redis-node)"),
		Entry("a shared-agent link without instances", props("broker.password", "s"), func() map[string]LinkData {
			return map[string]LinkData{"redis-shared-agent": mustLink(agentJob, "redis-shared-agent", agentProps(false), nil)}
		}, "the redis-shared-agent link has no instances"),
		Entry("a node link without instances", props("broker.password", "s"), func() map[string]LinkData {
			return map[string]LinkData{"redis-node": mustLink(nodeJob, "redis-node", nodeProps, nil)}
		}, "the redis-node link has no instances"),
		Entry("TLS without a certificate", props("broker.password", "s", "broker.tls.enabled", true), func() map[string]LinkData {
			return map[string]LinkData{"redis-shared-agent": mustLink(agentJob, "redis-shared-agent", agentProps(false), agents)}
		}, "broker.tls.certificate is required when broker.tls.enabled is true"),
		Entry("metrics without their certificates", props("broker.password", "s"), func() map[string]LinkData {
			return map[string]LinkData{"redis-shared-agent": mustLink(agentJob, "redis-shared-agent", agentProps(false), agents)}
		}, "metrics.tls.certificate is required unless metrics.port is 0"),
		Entry("metrics without a server name", props("broker.password", "s", "metrics.tls.certificate", "C", "metrics.tls.private_key", "K", "metrics.tls.ca", "CA"), func() map[string]LinkData {
			return map[string]LinkData{"redis-shared-agent": mustLink(agentJob, "redis-shared-agent", agentProps(false), agents)}
		}, "metrics.server_name is required unless metrics.port is 0"),
	)
})

var _ = Describe("job scripts", func() {
	for _, c := range []struct{ job, script string }{
		{"redis-shared-agent", "bin/pre-start"}, {"redis-shared-agent", "bin/drain"},
		{"redis-node", "bin/pre-start"}, {"redis-node", "bin/drain"},
	} {
		It(fmt.Sprintf("%s %s renders into valid bash", c.job, c.script), func() {
			j := mustLoadJob(c.job)
			in := group(c.job, 1, 30)[0]
			p := props("api.password", "s", "api.tls.certificate", "c", "api.tls.private_key", "k", "api.tls.ca", "ca", "metrics.port", 0)
			out := mustRenderAll(j, p, in, nil)
			Expect(out).To(HaveKey(c.script))
			Expect(out[c.script]).To(HavePrefix("#!/usr/bin/env bash\n"))
			cmd := exec.Command("bash", "-n")
			cmd.Stdin = strings.NewReader(out[c.script])
			msg, err := cmd.CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), string(msg))
		})
	}
})

// Both agents serve their metrics as the broker does: HTTPS with the job's
// certificate, the scrapers' CA, and a prom scraper file naming the job.
var _ = Describe("the agents' metrics templates", func() {
	type agentJob struct {
		job, program, serverName string
		port                     int
		base                     func(in Instance) []any
	}
	shared := agentJob{"redis-shared-agent", "redis-shared-agent", "redis-shared-agent-metrics", 9091,
		func(Instance) []any { return []any{"api.password", "s"} }}
	node := agentJob{"redis-node", "redis-node-agent", "redis-node-metrics", 9092, func(in Instance) []any {
		tls := newPKI(in.Address)
		return []any{"api.password", "s", "api.tls.certificate", tls.cert, "api.tls.private_key", tls.key, "api.tls.ca", tls.ca}
	}}

	DescribeTable("render the metrics endpoint and the prom scraper's file on the job's port, or nothing with metrics.port 0",
		func(a agentJob) {
			j := mustLoadJob(a.job)
			in := group(a.job, 1, 30)[0]
			m := newPKI(a.serverName)
			out := mustRenderAll(j, props(append(a.base(in), metricsKV(m, a.serverName)...)...), in, nil)
			c := mustCheckConfig(a.program, out["config/config.json"])
			dir := "/var/vcap/jobs/" + a.job + "/config/"
			Expect(field(c, "metrics")).To(Equal(map[string]any{
				"listen":    fmt.Sprintf("0.0.0.0:%d", a.port),
				"cert_file": dir + "metrics.crt",
				"key_file":  dir + "metrics.key",
				"ca_file":   dir + "metrics_ca.crt",
			}))
			Expect(strings.TrimSpace(out["config/metrics.crt"])).To(Equal(strings.TrimSpace(m.cert)))
			Expect(strings.TrimSpace(out["config/metrics.key"])).To(Equal(strings.TrimSpace(m.key)))
			Expect(strings.TrimSpace(out["config/metrics_ca.crt"])).To(Equal(strings.TrimSpace(m.ca)))
			var scraper map[string]any
			Expect(yaml.Unmarshal([]byte(out["config/prom_scraper_config.yml"]), &scraper)).To(Succeed())
			Expect(scraper).To(Equal(map[string]any{
				"port": a.port, "source_id": a.job, "instance_id": in.ID, "scheme": "https",
				"server_name": a.serverName, "path": "/metrics",
			}))

			out = mustRenderAll(j, props(append(a.base(in), append(metricsKV(m, a.serverName), "metrics.port", 9300, "api.listen_address", "10.0.16.5")...)...), in, nil)
			Expect(field(mustCheckConfig(a.program, out["config/config.json"]), "metrics.listen")).To(Equal("10.0.16.5:9300"))
			Expect(out["config/prom_scraper_config.yml"]).To(ContainSubstring("port: 9300\n"))

			out = mustRenderAll(j, props(append(a.base(in), "metrics.port", 0)...), in, nil)
			Expect(field(mustCheckConfig(a.program, out["config/config.json"]), "metrics")).To(BeNil())
			for _, f := range []string{"config/metrics.crt", "config/metrics.key", "config/metrics_ca.crt", "config/prom_scraper_config.yml"} {
				Expect(strings.TrimSpace(out[f])).To(BeEmpty(), f)
			}
		},
		Entry("redis-shared-agent", shared),
		Entry("redis-node", node),
	)

	DescribeTable("refuse metrics without their certificates or server name, naming it",
		func(a agentJob, drop, message string) {
			j := mustLoadJob(a.job)
			in := group(a.job, 1, 30)[0]
			kv := metricsKV(newPKI(a.serverName), a.serverName)
			var keep []any
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] != drop {
					keep = append(keep, kv[i], kv[i+1])
				}
			}
			_, err := j.render("config.json.erb", props(append(a.base(in), keep...)...), in, nil)
			Expect(err).To(MatchError(ContainSubstring(message)))
		},
		Entry("shared agent, no certificate", shared, "metrics.tls.certificate", "metrics.tls.certificate is required unless metrics.port is 0"),
		Entry("shared agent, no CA", shared, "metrics.tls.ca", "metrics.tls.ca is required unless metrics.port is 0"),
		Entry("shared agent, no server name", shared, "metrics.server_name", "metrics.server_name is required unless metrics.port is 0"),
		Entry("node, no key", node, "metrics.tls.private_key", "metrics.tls.private_key is required unless metrics.port is 0"),
		Entry("node, no server name", node, "metrics.server_name", "metrics.server_name is required unless metrics.port is 0"),
	)
})
