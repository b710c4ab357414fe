package sharedagent_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/portalloc"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/internal/sharedagent"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

var _ = Describe("Manager with redis_tls", func() {
	var (
		dir string
		a   *agent
		rt  *instance.RedisTLS
	)
	BeforeEach(func() {
		dir = tempDir()
		ca, err := tlstest.NewCA("redis-ca")
		Expect(err).NotTo(HaveOccurred())
		rt = ca.RedisTLS(GinkgoT(), GinkgoT().TempDir(), "127.0.0.1")
	})
	AfterEach(func() {
		if a != nil {
			a.stop()
			a = nil
		}
	})
	tlsConfig := func() instance.RedisTLS { return *rt }

	It("serves every new instance on a TLS port of its own beside the plaintext one", func(ctx SpecContext) {
		cfg := config(dir)
		t := tlsConfig()
		cfg.RedisTLS = &t
		a = startAgent(cfg)
		inst, err := a.client.Create(ctx, "i1", request(16))
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.TLSPort).NotTo(BeZero())
		Expect(inst.TLSPort).NotTo(Equal(inst.Port))
		caPEM, err := os.ReadFile(rt.CAFile)
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.TLSCA).To(Equal(string(caPEM)), "the create's answer carries the CA")
		listed, err := a.client.List(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(listed).To(HaveLen(1))
		Expect(listed[0].TLSCA).To(BeEmpty(), "a list stays small: no CA per instance")
		other, err := a.client.Create(ctx, "i2", request(16))
		Expect(err).NotTo(HaveOccurred())
		Expect([]int{other.Port, other.TLSPort}).NotTo(ContainElements(inst.Port, inst.TLSPort))

		pass := secret.New()
		b, err := a.client.Bind(ctx, "i1", "app1", agentapi.BindingRequest{Password: pass})
		Expect(err).NotTo(HaveOccurred())
		Expect(b.TLSPort).To(Equal(inst.TLSPort))
		Expect(b.TLSCA).To(Equal(string(caPEM)))

		c := tlstest.RedisClient(GinkgoT(), "127.0.0.1", b.TLSPort, b.TLSCA, "app1", pass)
		Expect(c.Ping(ctx).Err()).To(Succeed())
		Expect(c.Set(ctx, "k", "over tls", 0).Err()).To(Succeed())
		Expect(tenant(inst, "app1", pass).Get(ctx, "k").Val()).To(Equal("over tls"), "the plaintext port serves too")

		// A server not signed by the CA is refused by the client.
		wrong, err := tlstest.NewCA("another")
		Expect(err).NotTo(HaveOccurred())
		Expect(tlstest.RedisClient(GinkgoT(), "127.0.0.1", b.TLSPort, wrong.PEM, "app1", pass).Ping(ctx).Err()).To(HaveOccurred())

		conf, err := os.ReadFile(filepath.Join(dir, "instances", "i1", "redis.conf"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(conf)).To(ContainSubstring("tls-port " + strconv.Itoa(inst.TLSPort) + "\n"))
		Expect(string(conf)).To(ContainSubstring("tls-auth-clients no\n"))
		Expect(string(conf)).To(ContainSubstring("tls-replication no\n"))

		capa, err := a.client.Capacity(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(capa.PortsPerInstance).To(Equal(2))
		Expect(capa.FreePorts).To(Equal(portalloc.Default.Size() - 4))
	})

	It("gives instances from before TLS a TLS port live when the agent restarts with it, and takes it away live when TLS is off again", func(ctx SpecContext) {
		a = startAgent(config(dir))
		inst, err := a.client.Create(ctx, "old", request(16))
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.TLSPort).To(BeZero())
		pass := secret.New()
		b, err := a.client.Bind(ctx, "old", "app1", agentapi.BindingRequest{Password: pass})
		Expect(err).NotTo(HaveOccurred())
		Expect(b.TLSPort).To(BeZero())
		Expect(b.TLSCA).To(BeEmpty())
		Expect(tenant(inst, "app1", pass).Set(ctx, "k", "kept", 0).Err()).To(Succeed())
		pid := pidOf(dir, "old")

		// The agent restarts with TLS on; the redis-server keeps running.
		a.srv.Close()
		a.mgr.Abandon()
		cfg := config(dir)
		cfg.Credentials = a.cfg.Credentials
		t := tlsConfig()
		cfg.RedisTLS = &t
		a = startAgent(cfg)
		got, err := a.client.Get(ctx, "old")
		Expect(err).NotTo(HaveOccurred())
		Expect(got.TLSPort).NotTo(BeZero())
		Expect(got.Port).To(Equal(inst.Port))
		Expect(pidOf(dir, "old")).To(Equal(pid))
		b, err = a.client.Bind(ctx, "old", "app1", agentapi.BindingRequest{Password: pass})
		Expect(err).NotTo(HaveOccurred())
		Expect(b.TLSPort).To(Equal(got.TLSPort))
		c := tlstest.RedisClient(GinkgoT(), "127.0.0.1", got.TLSPort, b.TLSCA, "app1", pass)
		Expect(c.Get(ctx, "k").Val()).To(Equal("kept"))
		Expect(processAlive(pid)).To(Succeed())

		// And off again: the TLS port goes, live, and from redis.conf.
		a.srv.Close()
		a.mgr.Abandon()
		cfg.RedisTLS = nil
		a = startAgent(cfg)
		got2, err := a.client.Get(ctx, "old")
		Expect(err).NotTo(HaveOccurred())
		Expect(got2.TLSPort).To(BeZero())
		Expect(pidOf(dir, "old")).To(Equal(pid))
		_, err = net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(got.TLSPort)), time.Second)
		Expect(err).To(HaveOccurred(), "nothing listens on the old TLS port")
		Expect(tenant(inst, "app1", pass).Get(ctx, "k").Val()).To(Equal("kept"))
		conf, err := os.ReadFile(filepath.Join(dir, "instances", "old", "redis.conf"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(conf)).To(ContainSubstring("tls-port 0\n"))
		Expect(string(conf)).NotTo(ContainSubstring("tls-cert-file"))
		b, err = a.client.Bind(ctx, "old", "app1", agentapi.BindingRequest{Password: pass})
		Expect(err).NotTo(HaveOccurred())
		Expect(b.TLSPort).To(BeZero())
	})

	It("moves a new instance when another process holds its TLS port", func(ctx SpecContext) {
		cfg := config(dir)
		t := tlsConfig()
		cfg.RedisTLS = &t
		lo, err := systemtest.FreePortRange(4)
		Expect(err).NotTo(HaveOccurred())
		cfg.Ports = portalloc.Range{Min: lo, Max: lo + 3}
		taken, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(lo+1)))
		Expect(err).NotTo(HaveOccurred())
		defer taken.Close()
		a = startAgent(cfg)
		a.mgr.SkipPortCheck()
		inst, err := a.client.Create(ctx, "i1", request(16))
		Expect(err).NotTo(HaveOccurred())
		Expect([]int{inst.Port, inst.TLSPort}).To(Equal([]int{lo + 2, lo + 3}))
		Expect(inst.State).To(Equal("running"))
		capa, err := a.client.Capacity(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(capa.FreePorts).To(Equal(2))
	})

	It("refuses a config whose redis_tls leaves a file out, and does not start with one that names a missing or wrong file", func() {
		cfg := config(dir)
		t := tlsConfig()
		t.CAFile = ""
		cfg.RedisTLS = &t
		Expect(cfg.Validate()).To(MatchError(ContainSubstring("redis_tls.ca_file is required")))

		// Whether the files exist and parse is checked at start: a config
		// is also checked where they are not yet (a BOSH template's).
		start := func(t instance.RedisTLS) error {
			cfg := config(dir)
			cfg.RedisTLS = &t
			Expect(cfg.Validate()).To(Succeed())
			m, err := sharedagent.New(cfg, slog.New(slog.NewTextHandler(GinkgoWriter, nil)))
			if m != nil {
				m.Shutdown(context.Background())
			}
			return err
		}
		t = tlsConfig()
		t.CertFile = filepath.Join(dir, "missing.crt")
		Expect(start(t)).To(MatchError(ContainSubstring("redis_tls.cert_file")))
		t = tlsConfig()
		t.KeyFile = t.CAFile
		Expect(start(t)).To(MatchError(ContainSubstring("redis_tls.key_file")))
	})
})
