package spec

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"hash/fnv"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"go.yaml.in/yaml/v3"

	"github.com/cf-redis/redis-for-cf/src/release/boshrender"
)

// The manifest as these tests read it: src/release/boshrender's view, which the
// local deployment shares.
type (
	manifest      = boshrender.Manifest
	instanceGroup = boshrender.InstanceGroup
	manifestJob   = boshrender.ManifestJob
)

// interpolate runs `bosh interpolate --var-errs` on manifests/redis.yml with
// the ops files, generating the manifest's variables into a vars store and
// taking the operator's own variables from vars.
func interpolate(ops []string, vars map[string]string) (string, error) {
	return interpolateInto(filepath.Join(GinkgoT().TempDir(), "vars.yml"), ops, vars)
}

// interpolateInto is interpolate with the vars store at store, for tests
// that read the generated certificates.
func interpolateInto(store string, ops []string, vars map[string]string) (string, error) {
	args := []string{"tool", "bosh-cli", "interpolate", filepath.Join(root, "manifests/redis.yml"),
		"--var-errs", "--vars-store", store}
	for _, o := range ops {
		args = append(args, "-o", filepath.Join(root, "manifests/operations", o))
	}
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range vars {
			if !yield(k) {
				return
			}
		}
	}) {
		args = append(args, "-v", k+"="+vars[k])
	}
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("bosh interpolate %s: %w\n%s", strings.Join(ops, " "), err, out)
	}
	return string(out), nil
}

// newDeployment interpolates manifests/redis.yml with the ops files and
// vars and loads the release's jobs it names.
func newDeployment(ops []string, vars map[string]string) *deployment {
	GinkgoHelper()
	doc, err := interpolate(ops, vars)
	Expect(err).NotTo(HaveOccurred())
	d := &deployment{jobs: map[string]*Job{}}
	Expect(yaml.Unmarshal([]byte(doc), &d.m)).To(Succeed())
	for _, g := range d.m.InstanceGroups {
		for _, mj := range g.Jobs {
			if mj.Release == "redis-for-cf" && d.jobs[mj.Name] == nil {
				d.jobs[mj.Name], err = loadJob(mj.Name)
				Expect(err).NotTo(HaveOccurred(), "job %s of instance group %s", mj.Name, g.Name)
			}
		}
	}
	return d
}

// flatten lists the dotted names of a properties tree's leaves.
func flatten(prefix string, v any, out *[]string) {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		if prefix != "" { // a job with no properties has no leaves
			*out = append(*out, prefix)
		}
		return
	}
	for k, sub := range m {
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		flatten(name, sub, out)
	}
}

// deployment is a manifest as a Director would see it: its instances, with
// the addresses BOSH DNS gives them, and the links between its jobs.
type deployment struct {
	m    manifest
	jobs map[string]*Job
}

// instances are the instances of a group, with stable made-up ids.
func (d *deployment) instances(g instanceGroup) []Instance {
	h := fnv.New32a()
	h.Write([]byte(g.Name))
	network := "default"
	if len(g.Networks) > 0 {
		network = g.Networks[0].Name
	}
	var out []Instance
	for i := range g.Instances {
		id := fmt.Sprintf("%08x-%04x-4000-8000-%012x", h.Sum32(), i, i)
		ip := fmt.Sprintf("10.0.%d.%d", h.Sum32()%200, 10+i)
		addr := ip
		if d.m.Features.UseDNSAddresses {
			addr = fmt.Sprintf("%s.%s.%s.%s.bosh", id, g.Name, network, d.m.Name)
		}
		out = append(out, Instance{Group: g.Name, Index: i, ID: id, AZ: g.AZ(i), IP: ip, Address: addr, Deployment: d.m.Name})
	}
	return out
}

// links resolves the links a job consumes as the Director does
// (boshrender.Deployment.Links).
func (d *deployment) links(mj manifestJob) (map[string]LinkData, error) {
	bd := boshrender.Deployment{Manifest: d.m, Release: "redis-for-cf", Jobs: map[string]*boshrender.Job{}, Instances: d.instances}
	for name, j := range d.jobs {
		bd.Jobs[name] = j.Job
	}
	return bd.Links(mj)
}

// providerOf returns the manifest job behind the agent or node a broker
// config entry's URL names.
func (d *deployment) providerOf(rawURL string) (manifestJob, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return manifestJob{}, err
	}
	for _, g := range d.m.InstanceGroups {
		for _, in := range d.instances(g) {
			if in.Address == u.Hostname() {
				for _, mj := range g.Jobs {
					if mj.Name == "redis-shared-agent" || mj.Name == "redis-node" {
						return mj, nil
					}
				}
			}
		}
	}
	return manifestJob{}, fmt.Errorf("no agent or node at %s", rawURL)
}

// job returns the manifest job named name (of the first group that runs it).
func (d *deployment) job(name string) manifestJob {
	for _, g := range d.m.InstanceGroups {
		for _, mj := range g.Jobs {
			if mj.Name == name {
				return mj
			}
		}
	}
	return manifestJob{}
}

// verifyServer checks that a PEM certificate chains to the PEM CA and names
// the host.
func verifyServer(certPEM, caPEM, host string) error {
	block, _ := pem.Decode([]byte(certPEM))
	if block == nil {
		return fmt.Errorf("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(caPEM)) {
		return fmt.Errorf("no PEM CA")
	}
	_, err = cert.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

var _ = Describe("manifests/redis.yml", func() {
	cf, err := makePKI("api.sys.example.com")
	if err != nil {
		panic(err)
	}
	// A deployment and network named otherwise than the manifest's
	// examples: every check below holds under the operator's names.
	operatorVars := map[string]string{"deployment_name": "payments-cache", "network_name": "services",
		"redis_for_cf_version": "1.2.3", "redis_for_cf_url": "https://example.com/redis-for-cf-1.2.3.tgz", "redis_for_cf_sha1": "sha256:0123",
		"bpm_version": "1.4.7", "bpm_url": "https://bosh.io/d/github.com/cloudfoundry/bpm-release?v=1.4.7", "bpm_sha1": "sha256:4567",
		"redis_node_instances": "3", "redis_shared_vm_instances": "2",
		"cf_api_url": "https://api.sys.example.com", "cf_ca_cert": cf.ca, "cf_client_id": "redis-registrar", "cf_client_secret": "registrar-secret",
		"backup_s3_endpoint": "https://s3.example.com", "backup_s3_region": "eu-west-1", "backup_s3_bucket": "redis-backups",
		"backup_s3_access_key_id": "AKID", "backup_s3_secret_access_key": "s3-secret"}
	haPlan := "enable-ha-plan.yml"
	combinations := [][]string{
		nil,
		{haPlan},
		{"redis-tls.yml", haPlan},
		{"scale-dedicated-nodes.yml"},
		{"dev-releases.yml"},
		{"extra-shared-vms.yml"},
		{"shared-agent-tls.yml"},
		{"extra-shared-vms.yml", "extra-shared-vms-tls.yml"},
		{"register-broker.yml"},
		{"backups-s3.yml"},
		{"broker-tls.yml"},
		{"redis-tls.yml"},
		{haPlan, "scale-dedicated-nodes.yml", "extra-shared-vms.yml", "shared-agent-tls.yml", "extra-shared-vms-tls.yml", "register-broker.yml",
			"backups-s3.yml", "extra-shared-vms-backups.yml", "broker-tls.yml", "redis-tls.yml", "extra-shared-vms-redis-tls.yml"},
	}

	It("has every ops file tried below", func() {
		files, err := filepath.Glob(filepath.Join(root, "manifests/operations/*.yml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(files).NotTo(BeEmpty())
		tried := map[string]bool{}
		for _, c := range combinations {
			for _, o := range c {
				tried[o] = true
			}
		}
		for _, f := range files {
			Expect(tried).To(HaveKey(filepath.Base(f)))
		}
	})

	for _, ops := range combinations {
		name := "alone"
		if len(ops) > 0 {
			name = "with " + strings.Join(ops, ", ")
		}
		Describe(name, Ordered, func() {
			var d *deployment

			BeforeAll(func() { d = newDeployment(ops, operatorVars) })

			It("names only jobs, properties and links the job specs define, and gives every group a persistent disk", func() {
				var releases []string
				for _, r := range d.m.Releases {
					releases = append(releases, r.Name)
				}
				Expect(releases).To(ContainElements("redis-for-cf", "bpm"))
				for _, g := range d.m.InstanceGroups {
					Expect(g.Instances).To(BeNumerically(">=", 1), g.Name)
					errand := g.Lifecycle == "errand" // a VM only while the errand runs: no data, no processes
					Expect(errand || g.PersistentDiskType != "" || g.PersistentDisk > 0).To(BeTrue(), "instance group %s keeps its data on a persistent disk", g.Name)
					var names []string
					for _, mj := range g.Jobs {
						names = append(names, mj.Name)
						Expect(releases).To(ContainElement(mj.Release))
						if mj.Release != "redis-for-cf" {
							continue
						}
						j := d.jobs[mj.Name]
						var set []string
						flatten("", mj.Properties, &set)
						for _, p := range set {
							known := false
							for defined := range j.Properties {
								if p == defined || strings.HasPrefix(p, defined+".") {
									known = true
								}
							}
							Expect(known).To(BeTrue(), "%s/%s sets property %s, which its spec does not define", g.Name, mj.Name, p)
						}
						for c := range mj.Consumes {
							Expect(slices.ContainsFunc(j.Consumes, func(l LinkSpec) bool { return l.Name == c })).To(BeTrue(), "%s consumes no link %s", mj.Name, c)
						}
						for p := range mj.Provides {
							_, ok := j.provided(p)
							Expect(ok).To(BeTrue(), "%s provides no link %s", mj.Name, p)
						}
					}
					if !errand {
						Expect(names).To(ContainElement("bpm"), "instance group %s runs its processes under bpm", g.Name)
					}
				}
			})

			It("renders every job into configs their programs accept, linked with certificates that name the linked addresses", func() {
				programs := map[string]string{"redis-broker": "redis-broker", "redis-shared-agent": "redis-shared-agent", "redis-node": "redis-node-agent"}
				maps.Copy(programs, errandProgram)
				brokers := 0
				for _, g := range d.m.InstanceGroups {
					// The first instance of each group: the others differ only in
					// their id and address.
					for _, in := range d.instances(g)[:1] {
						for _, mj := range g.Jobs {
							j := d.jobs[mj.Name]
							if j == nil {
								continue
							}
							links, err := d.links(mj)
							Expect(err).NotTo(HaveOccurred())
							out, err := j.renderAll(mj.Properties, in, links)
							Expect(err).NotTo(HaveOccurred(), "%s/%d %s", g.Name, in.Index, mj.Name)
							var conf map[string]any
							if mj.Name == "redis-backup" && json.Unmarshal([]byte(out["config/config.json"]), &conf) == nil && len(conf) == 0 {
								// Backups off: no config, and the errand fails
								// when run, saying why (the table below).
								code, msg := runUntilExec(out["bin/run"])
								Expect(code).To(Equal(1))
								Expect(msg).To(ContainSubstring("backups are off"))
								continue
							}
							c := mustCheckConfig(programs[mj.Name], out["config/config.json"])
							if field(c, "redis_tls") != nil {
								// Apps verify the instances' TLS port against the CA
								// their credentials carry, for the host they name.
								cert, _ := field(mj.Properties, "redis.tls.certificate").(string)
								ca, _ := field(mj.Properties, "redis.tls.ca").(string)
								Expect(verifyServer(cert, ca, field(c, "host").(string))).To(Succeed(), "%s/%s", g.Name, mj.Name)
								Expect(field(c, "bind")).To(Equal(in.IP), "redis-server listens on the IP")
							}
							if u, _ := field(c, "broker.url").(string); mj.Name == "smoke-tests" && strings.HasPrefix(u, "https://") {
								// The smoke tests verify the broker's certificate
								// against the CA they are given.
								host := strings.Split(strings.TrimPrefix(u, "https://"), ":")[0]
								cert, _ := field(d.job("redis-broker").Properties, "broker.tls.certificate").(string)
								Expect(verifyServer(cert, field(c, "broker.ca_cert").(string), host)).To(Succeed(), u)
							}
							if mj.Name != "redis-broker" {
								continue
							}
							brokers++
							// Every agent and node of the deployment, each verified
							// against its CA when called over HTTPS.
							want := 0
							for _, og := range d.m.InstanceGroups {
								for _, omj := range og.Jobs {
									if omj.Name == "redis-shared-agent" || omj.Name == "redis-node" {
										want += og.Instances
									}
								}
							}
							var entries []any
							if a, ok := field(c, "shared_vm.agents").([]any); ok {
								entries = append(entries, a...)
							}
							if n, ok := field(c, "dedicated_vm.nodes").([]any); ok {
								entries = append(entries, n...)
							}
							Expect(entries).To(HaveLen(want))
							for _, e := range entries {
								u := field(e, "url").(string)
								pj, err := d.providerOf(u)
								Expect(err).NotTo(HaveOccurred())
								Expect(field(e, "password")).To(Equal(field(pj.Properties, "api.password")))
								if strings.HasPrefix(u, "https://") {
									host := strings.Split(strings.TrimPrefix(u, "https://"), ":")[0]
									cert, _ := field(pj.Properties, "api.tls.certificate").(string)
									Expect(verifyServer(cert, field(e, "ca_cert").(string), host)).To(Succeed(), u)
								}
							}
						}
					}
				}
				Expect(brokers).To(Equal(1), "one broker: its records are its own")
			})
		})
	}

	Describe("with "+haPlan, func() {
		// render renders job name of the first instance of its group.
		render := func(d *deployment, name string) (map[string]string, error) {
			for _, g := range d.m.InstanceGroups {
				for _, mj := range g.Jobs {
					if mj.Name == name {
						links, err := d.links(mj)
						Expect(err).NotTo(HaveOccurred())
						return d.jobs[name].renderAll(mj.Properties, d.instances(g)[0], links)
					}
				}
			}
			return nil, fmt.Errorf("no job %s", name)
		}
		withVars := func(kv ...string) map[string]string {
			vars := maps.Clone(operatorVars)
			for i := 0; i+1 < len(kv); i += 2 {
				vars[kv[i]] = kv[i+1]
			}
			return vars
		}

		It("runs Sentinel on 3 nodes and offers the plan from them, over TLS too", func() {
			for _, ops := range [][]string{{haPlan}, {"redis-tls.yml", haPlan}} {
				d := newDeployment(ops, operatorVars)
				Expect(d.m.InstanceGroups[slices.IndexFunc(d.m.InstanceGroups, func(g instanceGroup) bool { return g.Name == "redis-node" })].Instances).To(Equal(3))
				out, err := render(d, "redis-node")
				Expect(err).NotTo(HaveOccurred())
				Expect(field(mustCheckConfig("redis-node-agent", out["config/config.json"]), "ha")).To(Equal(map[string]any{"sentinel_port": 26379.0}), "%v", ops)
				out, err = render(d, "redis-broker")
				Expect(err).NotTo(HaveOccurred())
				// The broker accepts it; the block as rendered, before its
				// defaults are filled in:
				mustCheckConfig("redis-broker", out["config/config.json"])
				var c map[string]any
				Expect(json.Unmarshal([]byte(out["config/config.json"]), &c)).To(Succeed())
				Expect(field(c, "dedicated_ha")).To(Equal(map[string]any{
					"plan_id": "5b8d3e1f-9c2a-4d7e-b6f0-3a1c9e8d2b47", "name": "dedicated-ha", "description": "",
					"tls_only": "optional", "sentinel_port": 26379.0,
				}))
				Expect(field(c, "dedicated_vm.nodes")).To(HaveLen(3))
				Expect(field(c, "dedicated_vm.nodes.2.az")).To(Equal("z1"))
			}
		})

		It("takes more nodes from scale-dedicated-nodes.yml after it, and refuses fewer than 3 at render time", func() {
			d := newDeployment([]string{haPlan, "scale-dedicated-nodes.yml"}, withVars("redis_node_instances", "5"))
			out, err := render(d, "redis-broker")
			Expect(err).NotTo(HaveOccurred())
			Expect(out["config/config.json"]).To(ContainSubstring(`"dedicated_ha"`))
			d = newDeployment([]string{haPlan, "scale-dedicated-nodes.yml"}, withVars("redis_node_instances", "2"))
			_, err = render(d, "redis-broker")
			Expect(err).To(MatchError(ContainSubstring("dedicated_ha.enabled needs at least 3 dedicated nodes")))
		})
	})

	It("names every certificate for the BOSH DNS addresses of the instances that serve it, under the deployment and network names given", func() {
		all := combinations[len(combinations)-1]
		store := filepath.Join(GinkgoT().TempDir(), "vars.yml")
		doc, err := interpolateInto(store, all, operatorVars)
		Expect(err).NotTo(HaveOccurred())
		d := &deployment{}
		Expect(yaml.Unmarshal([]byte(doc), &d.m)).To(Succeed())
		Expect(d.m.Name).To(Equal("payments-cache"))
		Expect(d.m.Features.UseDNSAddresses).To(BeTrue(), "the certificates name BOSH DNS addresses, not IPs")
		var generated map[string]any
		Expect(yaml.Unmarshal(must(os.ReadFile(store)), &generated)).To(Succeed())
		ca, _ := field(generated, "redis_ca.certificate").(string)
		Expect(ca).To(ContainSubstring("BEGIN CERTIFICATE"))
		metricsCA, _ := field(generated, "metrics_ca.certificate").(string)
		Expect(metricsCA).To(ContainSubstring("BEGIN CERTIFICATE"))
		servers, metricsServers := 0, 0
		for _, g := range d.m.InstanceGroups {
			Expect(g.Networks).NotTo(BeEmpty(), g.Name)
			for _, n := range g.Networks {
				Expect(n.Name).To(Equal("services"), "instance group %s", g.Name)
			}
			for _, mj := range g.Jobs {
				// The metrics endpoints' certificates chain to metrics_ca,
				// every other one to redis_ca.
				props := maps.Clone(mj.Properties)
				delete(props, "metrics")
				for _, cert := range serverCertificates(field(mj.Properties, "metrics")) {
					metricsServers++
					for _, in := range d.instances(g) {
						Expect(verifyServer(cert, metricsCA, in.Address)).To(Succeed(), "%s/%s metrics for %s", g.Name, mj.Name, in.Address)
					}
					Expect(verifyServer(cert, metricsCA, field(mj.Properties, "metrics.server_name").(string))).To(Succeed(), "%s/%s metrics.server_name", g.Name, mj.Name)
					Expect(verifyServer(cert, ca, d.instances(g)[0].Address)).NotTo(Succeed(), "a metrics certificate of redis_ca")
				}
				for _, cert := range serverCertificates(props) {
					servers++
					// Every instance of the group by its own address, and the
					// group's BOSH DNS queries (q-s0.GROUP.NETWORK.DEPLOYMENT.bosh).
					hosts := []string{fmt.Sprintf("q-s0.%s.services.payments-cache.bosh", g.Name)}
					for _, in := range d.instances(g) {
						Expect(in.Address).To(HaveSuffix("." + g.Name + ".services.payments-cache.bosh"))
						hosts = append(hosts, in.Address)
					}
					for _, h := range hosts {
						Expect(verifyServer(cert, ca, h)).To(Succeed(), "%s/%s for %s", g.Name, mj.Name, h)
					}
					// And nothing of another deployment or network.
					Expect(verifyServer(cert, ca, strings.Replace(hosts[0], ".services.", ".default.", 1))).NotTo(Succeed())
					Expect(verifyServer(cert, ca, strings.Replace(hosts[0], ".payments-cache.", ".redis.", 1))).NotTo(Succeed())
				}
			}
		}
		// redis-node (api and redis TLS), the broker's OSB API, both shared
		// agents' APIs and both shared groups' instances.
		Expect(servers).To(Equal(7))
		// The metrics endpoints of the broker, its group's shared agent,
		// the dedicated nodes and extra-shared-vms.yml's shared agents (3
		// without that file).
		Expect(metricsServers).To(Equal(4))
	})

	It("pins every release by the version, url and sha1 the operator gives; dev-releases.yml takes the releases uploaded last instead", func() {
		type release struct{ Name, Version, URL, SHA1 string }
		var raw struct{ Releases []release }
		Expect(yaml.Unmarshal(must(os.ReadFile(filepath.Join(root, "manifests/redis.yml"))), &raw)).To(Succeed())
		Expect(raw.Releases).NotTo(BeEmpty())
		for _, r := range raw.Releases {
			v := strings.ReplaceAll(r.Name, "-", "_")
			Expect(r).To(Equal(release{Name: r.Name, Version: "((" + v + "_version))", URL: "((" + v + "_url))", SHA1: "((" + v + "_sha1))"}))
		}

		var pinned struct{ Releases []release }
		Expect(yaml.Unmarshal([]byte(must(interpolate(nil, operatorVars))), &pinned)).To(Succeed())
		Expect(pinned.Releases).To(ContainElements(
			release{"redis-for-cf", "1.2.3", "https://example.com/redis-for-cf-1.2.3.tgz", "sha256:0123"},
			release{"bpm", "1.4.7", "https://bosh.io/d/github.com/cloudfoundry/bpm-release?v=1.4.7", "sha256:4567"}))

		_, err := interpolate(nil, map[string]string{"deployment_name": "redis", "network_name": "default"})
		Expect(err).To(MatchError(And(ContainSubstring("redis_for_cf_version"), ContainSubstring("redis_for_cf_url"), ContainSubstring("redis_for_cf_sha1"),
			ContainSubstring("bpm_version"), ContainSubstring("bpm_url"), ContainSubstring("bpm_sha1"))))

		var dev struct{ Releases []release }
		Expect(yaml.Unmarshal([]byte(must(interpolate([]string{"dev-releases.yml"}, map[string]string{"deployment_name": "redis", "network_name": "default"}))), &dev)).To(Succeed())
		Expect(dev.Releases).To(ConsistOf(release{Name: "redis-for-cf", Version: "latest"}, release{Name: "bpm", Version: "latest"}))
	})

	DescribeTable("has a backup errand, as `bosh run-errand backup` expects: an errand VM that backs up every agent and node, or says what to configure",
		func(ops []string, on bool) {
			d := &deployment{jobs: map[string]*Job{}}
			Expect(yaml.Unmarshal([]byte(must(interpolate(ops, operatorVars))), &d.m)).To(Succeed())
			var backup *instanceGroup
			for i, g := range d.m.InstanceGroups {
				for _, mj := range g.Jobs {
					if mj.Name == "redis-backup" {
						Expect(g.Name).To(Equal("backup"), "one way to run it: bosh run-errand backup (or redis-backup, the job's name)")
						backup = &d.m.InstanceGroups[i]
					}
				}
			}
			Expect(backup).NotTo(BeNil())
			Expect(backup.Lifecycle).To(Equal("errand"))
			Expect(backup.Jobs).To(HaveLen(1))
			mj := backup.Jobs[0]
			for _, g := range d.m.InstanceGroups {
				for _, gj := range g.Jobs {
					if gj.Release == "redis-for-cf" && d.jobs[gj.Name] == nil {
						d.jobs[gj.Name] = must(loadJob(gj.Name))
					}
				}
			}
			links := must(d.links(mj))
			out, err := d.jobs[mj.Name].renderAll(mj.Properties, d.instances(*backup)[0], links)
			Expect(err).NotTo(HaveOccurred())
			code, msg := runUntilExec(out["bin/run"])
			if !on {
				Expect(code).To(Equal(1), "with backups off the errand fails: a backup that did not happen is no success")
				Expect(msg).To(ContainSubstring("backups are off: set backups.enabled (and a destination) on the redis-shared-agent and redis-node jobs, then deploy"))
				Expect(msg).To(ContainSubstring("manifests/operations/backups-s3.yml"))
				return
			}
			Expect(code).To(Equal(0), msg)
			Expect(msg).To(Equal("reached exec\n"))
			c := mustCheckConfig("redis-backup", out["config/config.json"])
			agents, nodes := 0, 0
			for _, g := range d.m.InstanceGroups {
				for _, gj := range g.Jobs {
					switch gj.Name {
					case "redis-shared-agent":
						agents += g.Instances
					case "redis-node":
						nodes += g.Instances
					}
				}
			}
			Expect(field(c, "agents")).To(HaveLen(agents), "every shared VM's agent, the extra shared VMs' too")
			Expect(field(c, "nodes")).To(HaveLen(nodes))
		},
		Entry("backups off", nil, false),
		Entry("backups off, extra shared VMs", []string{"extra-shared-vms.yml"}, false),
		Entry("backups-s3.yml", []string{"backups-s3.yml"}, true),
		Entry("backups-s3.yml, extra shared VMs", []string{"extra-shared-vms.yml", "backups-s3.yml", "extra-shared-vms-backups.yml"}, true),
	)

	It("names the operator's variables it lacks", func() {
		_, err := interpolate([]string{"scale-dedicated-nodes.yml", "extra-shared-vms.yml"}, nil)
		Expect(err).To(MatchError(And(ContainSubstring("redis_node_instances"), ContainSubstring("redis_shared_vm_instances"))))
	})

	It("keeps secrets out of the manifest", func() {
		for _, f := range append([]string{filepath.Join(root, "manifests/redis.yml")}, must(filepath.Glob(filepath.Join(root, "manifests/operations/*.yml")))...) {
			data, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			var doc any
			Expect(yaml.Unmarshal(data, &doc)).To(Succeed())
			var leaves []string
			collectSecrets("", doc, &leaves)
			for _, l := range leaves {
				Expect(l).To(MatchRegexp(`=\(\([a-z0-9_.]+\)\)$`), "%s: %s must be a ((variable))", filepath.Base(f), l)
			}
		}
	})
})

// serverCertificates returns the PEM certificates a job's properties give
// it to serve with: every certificate beside a private_key.
func serverCertificates(props any) []string {
	var out []string
	switch t := props.(type) {
	case map[string]any:
		cert, ok := t["certificate"].(string)
		if _, key := t["private_key"]; ok && key {
			out = append(out, cert)
		}
		for _, sub := range t {
			out = append(out, serverCertificates(sub)...)
		}
	case []any:
		for _, sub := range t {
			out = append(out, serverCertificates(sub)...)
		}
	}
	return out
}

// collectSecrets lists "path=value" for every value under a key that names
// a secret (password, private_key, S3 keys).
func collectSecrets(path string, v any, out *[]string) {
	switch t := v.(type) {
	case map[string]any:
		for k, sub := range t {
			if (k == "password" || k == "private_key" || k == "secret_access_key" || k == "access_key_id") && !isMap(sub) {
				*out = append(*out, fmt.Sprintf("%s.%s=%v", path, k, sub))
				continue
			}
			collectSecrets(path+"."+k, sub, out)
		}
	case []any:
		for i, sub := range t {
			collectSecrets(fmt.Sprintf("%s[%d]", path, i), sub, out)
		}
	}
}

func isMap(v any) bool { _, ok := v.(map[string]any); return ok }

func must[T any](v T, err error) T {
	GinkgoHelper()
	Expect(err).NotTo(HaveOccurred())
	return v
}
