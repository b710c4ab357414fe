package deploylocal_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"

	"github.com/cf-redis/redis-for-cf/src/internal/archive"
	"github.com/cf-redis/redis-for-cf/src/internal/buildinfo"
	"github.com/cf-redis/redis-for-cf/src/release/localbosh"
)

// name prefixes the test deployment's namespaces. It is fixed, so that a
// run killed before its cleanup leaves nothing the next run does not
// remove.
const name = "rcft"

// release is what a deploy is given: the manifest's properties this test
// changes, and the programs' build.
type release struct {
	sharedMaxMemoryMB, nodeMaxMemoryMB int
	// version is the release version stamped into the programs, as the
	// release's packaging script stamps it; the catalog's
	// maintenance_info.version follows it.
	version string
	// redisTLS turns TLS on the instances' ports on (manifests/operations/redis-tls.yml).
	redisTLS bool
}

// opsFile writes an ops file setting r's properties.
func (r release) opsFile(dir string) string {
	ops := fmt.Sprintf(`
- type: replace
  path: /instance_groups/name=redis-broker/jobs/name=redis-broker/properties/shared_vm?/maxmemory_mb
  value: %d
- type: replace
  path: /instance_groups/name=redis-node/jobs/name=redis-node/properties/redis?/maxmemory_mb
  value: %d
`, r.sharedMaxMemoryMB, r.nodeMaxMemoryMB)
	path := filepath.Join(dir, r.version+".yml")
	Expect(os.WriteFile(path, []byte(ops), 0o600)).To(Succeed())
	return path
}

func (r release) ldflags() string {
	return "-X github.com/cf-redis/redis-for-cf/src/internal/buildinfo.version=" + r.version
}

// maintenanceVersion is the maintenance_info.version a broker of r offers.
func (r release) maintenanceVersion() string {
	v, err := buildinfo.ToSemVer(r.version)
	Expect(err).NotTo(HaveOccurred())
	return v
}

// tenant is a service instance as its app sees it: its bindings'
// credentials and what it wrote.
type tenant struct {
	id       string
	plan     localbosh.Plan
	params   map[string]any
	bindings map[string]localbosh.Credentials
	keys     int
	runID    string
}

const mb = 1 << 20

var _ = Describe("an upgrade of a local deployment", Ordered, func() {
	var (
		ctx       = context.Background()
		state     string
		opsDir    string
		d         *localbosh.Director
		b         *localbosh.Broker
		serviceID string
		plans     map[string]localbosh.Plan
		tenants   []*tenant
		v1Package string
		v1        = release{sharedMaxMemoryMB: 64, nodeMaxMemoryMB: 100, version: "1.0.0"}
		v2        = release{sharedMaxMemoryMB: 96, nodeMaxMemoryMB: 160, version: "1.1.0+dev.20261204031500", redisTLS: true}
	)

	deploy := func(r release) {
		GinkgoHelper()
		var err error
		ops := []string{r.opsFile(opsDir)}
		if r.redisTLS {
			tlsOps, err := filepath.Abs("../../../manifests/operations/redis-tls.yml")
			Expect(err).NotTo(HaveOccurred())
			ops = append(ops, tlsOps)
		}
		d, err = localbosh.New(localbosh.Options{
			Name: name, StateDir: state, OpsFiles: ops,
			LDFlags: r.ldflags(), Out: GinkgoWriter, RedisPackage: redisPackage(),
			// Backups to the S3 stand-in (MinIO), as scripts/deploy-local
			// deploys by default.
			S3: true,
		})
		Expect(err).NotTo(HaveOccurred())
		start := time.Now()
		Expect(d.Deploy(ctx)).To(Succeed())
		AddReportEntry("deploy "+r.version, time.Since(start).Round(100*time.Millisecond).String())
		b, err = d.Broker()
		Expect(err).NotTo(HaveOccurred())
	}

	client := func(c localbosh.Credentials) *redis.Client {
		r := d.Redis(c)
		DeferCleanup(r.Close)
		return r
	}

	info := func(c localbosh.Credentials, section, field string) string {
		GinkgoHelper()
		m, err := client(c).InfoMap(ctx, section).Result()
		Expect(err).NotTo(HaveOccurred())
		for _, fields := range m {
			if v, ok := fields[field]; ok {
				return v
			}
		}
		Fail(fmt.Sprintf("INFO %s has no %s", section, field))
		return ""
	}

	firstBinding := func(t *tenant) localbosh.Credentials {
		return t.bindings[sortedKeys(t.bindings)[0]]
	}

	// programsFromPackage checks that every program of the redis-for-cf
	// package that runs in the deployment runs from the package the last
	// deploy built, and returns that package's folder.
	programsFromPackage := func() string {
		GinkgoHelper()
		dir, err := d.PackageDir("redis-for-cf")
		Expect(err).NotTo(HaveOccurred())
		seen := map[string]int{}
		for _, vm := range []struct {
			group string
			index int
		}{{"redis-broker", 0}, {"redis-node", 0}, {"redis-node", 1}} {
			procs, err := d.Processes(vm.group, vm.index)
			Expect(err).NotTo(HaveOccurred())
			for _, p := range procs {
				if !strings.HasPrefix(p.Cmdline[0], "/var/vcap/packages/redis-for-cf/bin/") {
					continue
				}
				running, err := os.Stat(fmt.Sprintf("/proc/%d/exe", p.Pid))
				Expect(err).NotTo(HaveOccurred())
				built, err := os.Stat(filepath.Join(dir, "bin", filepath.Base(p.Cmdline[0])))
				Expect(err).NotTo(HaveOccurred())
				Expect(os.SameFile(running, built)).To(BeTrue(), "%s on %s/%d runs from %s", p.Cmdline[0], vm.group, vm.index, dir)
				seen[filepath.Base(p.Cmdline[0])]++
			}
		}
		Expect(seen).To(Equal(map[string]int{"redis-broker": 1, "redis-shared-agent": 1, "redis-node-agent": 2}))
		return dir
	}

	BeforeAll(func() {
		state = GinkgoT().TempDir()
		opsDir = GinkgoT().TempDir()
		takeMachine(state, &d)
		deploy(v1)
	})

	It("serves both plans, from programs of the first build", func() {
		svc, err := b.Catalog(ctx)
		Expect(err).NotTo(HaveOccurred())
		serviceID = svc.ID
		plans = map[string]localbosh.Plan{}
		for _, p := range svc.Plans {
			plans[p.Name] = p
			Expect(p.MaintenanceInfo).NotTo(BeNil())
			Expect(p.MaintenanceInfo.Version).To(Equal(v1.maintenanceVersion()))
		}
		Expect(plans).To(HaveKey("shared-vm"))
		Expect(plans).To(HaveKey("dedicated-vm"))
		v1Package = programsFromPackage()
	})

	It("serves every job's metrics where its prom scraper file says, under the name it gives, to the manifest's scraper certificate only", func() {
		var vars struct {
			Scraper struct {
				Certificate string `yaml:"certificate"`
				PrivateKey  string `yaml:"private_key"`
				CA          string `yaml:"ca"`
			} `yaml:"metrics_scraper_tls"`
		}
		data, err := os.ReadFile(filepath.Join(state, "vars.yml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(yaml.Unmarshal(data, &vars)).To(Succeed())
		pair, err := tls.X509KeyPair([]byte(vars.Scraper.Certificate), []byte(vars.Scraper.PrivateKey))
		Expect(err).NotTo(HaveOccurred())
		roots := x509.NewCertPool()
		Expect(roots.AppendCertsFromPEM([]byte(vars.Scraper.CA))).To(BeTrue())
		for _, vm := range []struct {
			group, job, series string
			index              int
		}{
			{"redis-broker", "redis-broker", "redis_broker_instances", 0},
			{"redis-broker", "redis-shared-agent", "redis_for_cf_agent_instances", 0},
			{"redis-node", "redis-node", "redis_for_cf_node_state", 0},
			{"redis-node", "redis-node", "redis_for_cf_node_state", 1},
		} {
			var file struct {
				Port       int    `yaml:"port"`
				SourceID   string `yaml:"source_id"`
				InstanceID string `yaml:"instance_id"`
				Scheme     string `yaml:"scheme"`
				ServerName string `yaml:"server_name"`
				Path       string `yaml:"path"`
			}
			// Read inside the VM: /var/vcap/jobs/JOB links to its
			// rendered folder by the VM's own paths.
			text, err := d.Exec(ctx, vm.group, vm.index, "cat", "/var/vcap/jobs/"+vm.job+"/config/prom_scraper_config.yml")
			Expect(err).NotTo(HaveOccurred(), "%s/%d %s: %s", vm.group, vm.index, vm.job, text)
			Expect(yaml.Unmarshal(text, &file)).To(Succeed(), "%s/%d %s: %q", vm.group, vm.index, vm.job, text)
			Expect(file.SourceID).To(Equal(vm.job))
			Expect(file.Scheme).To(Equal("https"))
			Expect(file.Path).To(Equal("/metrics"))
			Expect(file.InstanceID).NotTo(BeEmpty())
			Expect(file.Port).NotTo(BeZero())
			ip, err := d.IP(vm.group, vm.index)
			Expect(err).NotTo(HaveOccurred())
			url := fmt.Sprintf("https://%s%s", net.JoinHostPort(ip, strconv.Itoa(file.Port)), file.Path)
			get := func(certs []tls.Certificate) (int, string) {
				GinkgoHelper()
				c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
					DialContext: d.Dial,
					// The prom scraper checks the endpoint's certificate
					// against server_name, as this does.
					TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: file.ServerName, Certificates: certs, MinVersion: tls.VersionTLS12},
				}}
				defer c.CloseIdleConnections()
				resp, err := c.Get(url)
				Expect(err).NotTo(HaveOccurred())
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				Expect(err).NotTo(HaveOccurred())
				return resp.StatusCode, string(body)
			}
			// An agent's values come with its first sweep, once it has
			// recovered its instances.
			Eventually(func(g Gomega) {
				code, body := get([]tls.Certificate{pair})
				g.Expect(code).To(Equal(http.StatusOK), "%s on %s/%d: %s", vm.job, vm.group, vm.index, body)
				g.Expect(strings.Contains(body, vm.series)).To(BeTrue(), "%s on %s/%d serves no %s", vm.job, vm.group, vm.index, vm.series)
			}).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())
			code, body := get(nil)
			Expect(code).To(Equal(http.StatusForbidden), "%s on %s/%d without a client certificate", vm.job, vm.group, vm.index)
			Expect(body).NotTo(ContainSubstring("redis_"))
		}
	})

	It("holds instances of both plans with data and bindings", func() {
		tenants = []*tenant{
			{id: "shared-1", plan: plans["shared-vm"], params: map[string]any{"maxmemory-policy": "allkeys-lru"}},
			{id: "shared-2", plan: plans["shared-vm"]},
			{id: "dedicated-1", plan: plans["dedicated-vm"], params: map[string]any{"maxmemory-policy": "volatile-lru"}},
		}
		for _, t := range tenants {
			Expect(b.Provision(ctx, t.id, serviceID, t.plan.ID, t.params)).To(Succeed())
			t.bindings = map[string]localbosh.Credentials{}
			for _, bid := range []string{t.id + "-app-a", t.id + "-app-b"} {
				creds, err := b.Bind(ctx, t.id, bid, serviceID, t.plan.ID)
				Expect(err).NotTo(HaveOccurred())
				t.bindings[bid] = creds
			}
			// Enough keys to be data, in a pipeline per binding.
			t.keys = 2000
			for i, bid := range sortedKeys(t.bindings) {
				pipe := client(t.bindings[bid]).Pipeline()
				for k := i * t.keys / 2; k < (i+1)*t.keys/2; k++ {
					pipe.Set(ctx, fmt.Sprintf("key:%d", k), fmt.Sprintf("%s:%d", t.id, k), 0)
				}
				pipe.HSet(ctx, "profile:"+bid, "app", bid, "n", i)
				_, err := pipe.Exec(ctx)
				Expect(err).NotTo(HaveOccurred())
			}
			t.keys += len(t.bindings)
			c := firstBinding(t)
			Expect(client(c).DBSize(ctx).Val()).To(BeEquivalentTo(t.keys))
			t.runID = info(c, "server", "run_id")
			want := v1.sharedMaxMemoryMB
			if t.plan.Name == "dedicated-vm" {
				want = v1.nodeMaxMemoryMB
			}
			Expect(info(c, "memory", "maxmemory")).To(Equal(strconv.Itoa(want * mb)))
		}
		// Written just before the redeploy: only the drain's clean stop
		// (an AOF fsync) keeps what the last second wrote.
		for _, t := range tenants {
			Expect(client(firstBinding(t)).Set(ctx, "last-write", t.id, 0).Err()).To(Succeed())
			t.keys++
		}
	})

	It("redeploys with changed properties and a new build of every program, stopping each through its drain script", func() {
		drainLogs := map[string]int{}
		for _, vm := range drainedJobs {
			drainLogs[vm.log] = strings.Count(readVMFile(d, vm.group, vm.index, vm.log), "stopped after")
		}
		deploy(v2)
		for _, vm := range drainedJobs {
			Expect(strings.Count(readVMFile(d, vm.group, vm.index, vm.log), "stopped after")).To(Equal(drainLogs[vm.log]+1),
				"%s/%d %s: the drain script stopped the job once, and waited for it", vm.group, vm.index, vm.log)
		}
		Expect(programsFromPackage()).NotTo(Equal(v1Package), "the second build is another package")
		for _, vm := range drainedJobs {
			summary, err := d.Exec(ctx, vm.group, vm.index, "/var/vcap/bosh/bin/monit", "summary")
			Expect(err).NotTo(HaveOccurred(), string(summary))
			Expect(string(summary)).NotTo(ContainSubstring("not monitored"), "%s/%d", vm.group, vm.index)
			Expect(string(summary)).To(ContainSubstring("running"))
		}
	})

	It("keeps every instance's data and credentials, on redis-servers that restarted under the new agents", func() {
		for _, t := range tenants {
			for bid, c := range t.bindings {
				r := client(c)
				Expect(r.Ping(ctx).Err()).To(Succeed(), "%s binding %s", t.id, bid)
				Expect(r.DBSize(ctx).Val()).To(BeEquivalentTo(t.keys), t.id)
				Expect(r.Get(ctx, "last-write").Val()).To(Equal(t.id))
				Expect(r.Get(ctx, "key:1999").Val()).To(Equal(t.id + ":1999"))
				Expect(r.HGet(ctx, "profile:"+bid, "app").Val()).To(Equal(bid))
			}
			c := firstBinding(t)
			Expect(info(c, "server", "run_id")).NotTo(Equal(t.runID), "%s: its redis-server restarted", t.id)
			if policy, ok := t.params["maxmemory-policy"]; ok {
				Expect(info(c, "memory", "maxmemory_policy")).To(Equal(policy), "%s keeps its parameters", t.id)
			}
		}
	})

	It("gives running dedicated instances the nodes' new maxmemory", func() {
		for _, t := range tenants {
			if t.plan.Name == "dedicated-vm" {
				Expect(info(firstBinding(t), "memory", "maxmemory")).To(Equal(strconv.Itoa(v2.nodeMaxMemoryMB * mb)))
			}
		}
	})

	It("gives running shared instances the plan's new maxmemory, live, and new ones too", func() {
		// The broker resizes them when it starts with the changed plan (and
		// every ten minutes after); the agents apply it with CONFIG SET.
		for _, t := range tenants {
			if t.plan.Name == "shared-vm" {
				Eventually(func() string { return info(firstBinding(t), "memory", "maxmemory") }, 30*time.Second, 200*time.Millisecond).
					Should(Equal(strconv.Itoa(v2.sharedMaxMemoryMB*mb)), t.id)
			}
		}
		fresh := &tenant{id: "shared-3", plan: plans["shared-vm"], bindings: map[string]localbosh.Credentials{}}
		Expect(b.Provision(ctx, fresh.id, serviceID, fresh.plan.ID, nil)).To(Succeed())
		creds, err := b.Bind(ctx, fresh.id, fresh.id+"-app-a", serviceID, fresh.plan.ID)
		Expect(err).NotTo(HaveOccurred())
		fresh.bindings[fresh.id+"-app-a"] = creds
		tenants = append(tenants, fresh)
		Expect(info(creds, "memory", "maxmemory")).To(Equal(strconv.Itoa(v2.sharedMaxMemoryMB * mb)))
		Expect(client(creds).Set(ctx, "last-write", fresh.id, 0).Err()).To(Succeed())
	})

	It("offers the new maintenance version, which existing instances take through an update", func() {
		svc, err := b.Catalog(ctx)
		Expect(err).NotTo(HaveOccurred())
		for _, p := range svc.Plans {
			Expect(p.MaintenanceInfo.Version).To(Equal(v2.maintenanceVersion()), p.Name)
		}
		for _, t := range tenants[:3] {
			inst, err := b.Instance(ctx, t.id)
			Expect(err).NotTo(HaveOccurred())
			Expect(inst).To(HaveKeyWithValue("metadata", HaveKeyWithValue("attributes", HaveKeyWithValue("maintenance_version", v1.maintenanceVersion()))), t.id)
			Expect(b.Update(ctx, t.id, serviceID, t.plan.ID, nil, v2.maintenanceVersion())).To(Succeed())
			inst, err = b.Instance(ctx, t.id)
			Expect(err).NotTo(HaveOccurred())
			Expect(inst).To(HaveKeyWithValue("metadata", HaveKeyWithValue("attributes", HaveKeyWithValue("maintenance_version", v2.maintenanceVersion()))), t.id)
		}
	})

	It("serves the instances of both plans over TLS too once the redeploy turned it on, with their data", func() {
		for _, t := range tenants[:3] {
			bindingID := t.id + "-app-tls"
			creds, err := b.Bind(ctx, t.id, bindingID, serviceID, t.plan.ID)
			Expect(err).NotTo(HaveOccurred())
			t.bindings[bindingID] = creds
			Expect(creds.TLSPort).NotTo(BeZero(), t.id)
			Expect(creds.TLSURI).To(HavePrefix("rediss://"), t.id)
			Expect(creds.Host).To(HaveSuffix(".bosh"), "%s: the BOSH DNS name the certificate holds", t.id)
			rc, err := d.RedisTLS(creds)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(rc.Close)
			Expect(rc.Ping(ctx).Err()).To(Succeed(), "%s over TLS, verified against tls_ca", t.id)
			Expect(rc.DBSize(ctx).Val()).To(BeNumerically(">=", t.keys), t.id)
			Expect(client(creds).Ping(ctx).Err()).To(Succeed(), "%s still in plain text", t.id)
		}
	})

	It("backs up every instance of both plans to the S3 stand-in with the backup errand", func() {
		s3, err := d.S3()
		Expect(err).NotTo(HaveOccurred())
		before, err := s3.Objects(ctx)
		Expect(err).NotTo(HaveOccurred())
		start := time.Now()
		results, err := d.RunErrand(ctx, "backup")
		Expect(err).NotTo(HaveOccurred())
		AddReportEntry("backup errand", time.Since(start).Round(100*time.Millisecond).String())
		// An errand VM of its own asks every agent and node.
		Expect(results).To(HaveLen(1))
		Expect(results[0].Instance).To(HavePrefix("backup/0 "))
		var out strings.Builder
		for _, r := range results {
			Expect(r.ExitCode).To(Equal(0), r.Instance)
			out.WriteString(r.Stdout)
		}
		after, err := s3.Objects(ctx)
		Expect(err).NotTo(HaveOccurred())
		newObjects := map[string][]localbosh.S3Object{}
		for _, o := range after {
			if !slices.ContainsFunc(before, func(b localbosh.S3Object) bool { return b.Name == o.Name }) {
				id, _, _ := strings.Cut(o.Name, "/")
				newObjects[id] = append(newObjects[id], o)
			}
		}
		Expect(sortedKeys(newObjects)).To(ConsistOf("shared-1", "shared-2", "shared-3", "dedicated-1"), "one archive per instance, named for it")
		s3c, err := s3.Client()
		Expect(err).NotTo(HaveOccurred())
		for _, t := range tenants {
			Expect(newObjects[t.id]).To(HaveLen(1), t.id)
			o := newObjects[t.id][0]
			Expect(o.Name).To(MatchRegexp(`^%s/\d{8}T\d{6}\.\d{3}Z\.tar\.gz$`, t.id))
			Expect(o.Size).To(BeNumerically(">", 0))
			Expect(out.String()).To(ContainSubstring("backup of instance %s (", t.id))
			// The archive holds the instance's data as it was: every
			// checksum verified, the keys counted.
			obj, err := s3c.GetObject(ctx, s3.Bucket, o.Name, minio.GetObjectOptions{})
			Expect(err).NotTo(HaveOccurred())
			m, err := archive.Extract(obj, GinkgoT().TempDir())
			obj.Close()
			Expect(err).NotTo(HaveOccurred(), o.Name)
			Expect(m.InstanceID).To(Equal(t.id))
			Expect(m.Plan).To(Equal(t.plan.Name))
			if t.keys > 0 {
				Expect(m.Keys).To(BeEquivalentTo(t.keys), t.id)
			}
		}
	})

	It("restores an instance of each plan from its latest backup through the broker", func() {
		for _, t := range []*tenant{tenants[0], tenants[2]} {
			c := firstBinding(t)
			Expect(client(c).Del(ctx, "last-write").Err()).To(Succeed())
			Expect(client(c).Set(ctx, "after-the-backup", "x", 0).Err()).To(Succeed())
			start := time.Now()
			// cf update-service -c '{"restore":"latest"}'
			Expect(b.Update(ctx, t.id, serviceID, t.plan.ID, map[string]any{"restore": "latest"}, "")).To(Succeed(), t.id)
			AddReportEntry("restore "+t.id, time.Since(start).Round(100*time.Millisecond).String())
			for bid, c := range t.bindings {
				r := d.Redis(c)
				Expect(r.Get(ctx, "last-write").Val()).To(Equal(t.id), "%s binding %s", t.id, bid)
				Expect(r.Exists(ctx, "after-the-backup").Val()).To(BeZero(), t.id)
				Expect(r.DBSize(ctx).Val()).To(BeEquivalentTo(t.keys), t.id)
				Expect(r.Close()).To(Succeed())
			}
		}
	})

	It("never writes the S3 secret or a generated password into a log", func() {
		secrets := map[string]string{}
		var creds struct {
			Secret string `json:"secret_access_key"`
		}
		data, err := os.ReadFile(d.S3CredentialsFile())
		Expect(err).NotTo(HaveOccurred())
		Expect(json.Unmarshal(data, &creds)).To(Succeed())
		Expect(creds.Secret).NotTo(BeEmpty())
		secrets["backup_s3_secret_access_key"] = creds.Secret
		var vars map[string]any
		data, err = os.ReadFile(filepath.Join(state, "vars.yml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(yaml.Unmarshal(data, &vars)).To(Succeed())
		for _, v := range []string{"redis_broker_password", "redis_shared_agent_password", "redis_node_password"} {
			Expect(vars).To(HaveKeyWithValue(v, BeAssignableToTypeOf("")))
			secrets[v] = vars[v].(string)
		}
		logs, err := filepath.Glob(filepath.Join(state, "vms", "*", "vcap", "sys", "log"))
		Expect(err).NotTo(HaveOccurred())
		Expect(logs).NotTo(BeEmpty())
		logs = append(logs, filepath.Join(state, "s3", "minio.log"))
		for _, dir := range logs {
			Expect(filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
				if err != nil || e.IsDir() {
					return err
				}
				content, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				for name, secret := range secrets {
					Expect(string(content)).NotTo(ContainSubstring(secret), "%s holds %s", path, name)
				}
				return nil
			})).To(Succeed())
		}
	})

	It("still binds, unbinds and deprovisions every instance", func() {
		for _, t := range tenants {
			bids := sortedKeys(t.bindings)
			gone := t.bindings[bids[0]]
			Expect(b.Unbind(ctx, t.id, bids[0], serviceID, t.plan.ID)).To(Succeed())
			Eventually(func() error { return d.Redis(gone).Ping(ctx).Err() }).Should(MatchError(ContainSubstring("WRONGPASS")), t.id)
			creds, err := b.Bind(ctx, t.id, t.id+"-app-c", serviceID, t.plan.ID)
			Expect(err).NotTo(HaveOccurred())
			Expect(client(creds).Get(ctx, "last-write").Val()).To(Equal(t.id))
			Expect(b.Deprovision(ctx, t.id, serviceID, t.plan.ID)).To(Succeed())
		}
	})
})

// drainedJobs are the jobs with a drain script, and its log.
var drainedJobs = []struct {
	group string
	index int
	log   string
}{
	{"redis-broker", 0, "sys/log/redis-shared-agent/drain.log"},
	{"redis-node", 0, "sys/log/redis-node/drain.log"},
	{"redis-node", 1, "sys/log/redis-node/drain.log"},
}

// readVMFile reads a file of a VM's /var/vcap; a missing one is "".
func readVMFile(d *localbosh.Director, group string, index int, rel string) string {
	GinkgoHelper()
	dir, err := d.VMDir(group, index)
	Expect(err).NotTo(HaveOccurred())
	data, err := os.ReadFile(filepath.Join(dir, "vcap", rel))
	if os.IsNotExist(err) {
		return ""
	}
	Expect(err).NotTo(HaveOccurred())
	return string(data)
}

// vcapProcesses lists the processes of this machine that run a program
// from /var/vcap: only a VM's can.
func vcapProcesses() []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.HasPrefix(string(cmdline), "/var/vcap/") {
			out = append(out, e.Name()+": "+strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " "))
		}
	}
	return out
}

// keepLogs copies the VMs' logs of a failed run out of the state folder,
// which the cleanup removes, and says where they are.
func keepLogs(state string) {
	dir, err := os.MkdirTemp("", "deploylocal-logs-")
	if err != nil {
		return
	}
	vms, _ := filepath.Glob(filepath.Join(state, "vms", "*"))
	for _, vm := range vms {
		_ = os.CopyFS(filepath.Join(dir, filepath.Base(vm)), os.DirFS(filepath.Join(vm, "vcap", "sys", "log")))
	}
	fmt.Fprintf(os.Stderr, "\nlogs of the local deployment kept in %s\n", dir)
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
