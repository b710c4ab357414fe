package nodeagent_test

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/nodeagent"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/internal/tlstest"
)

// redisTLS is the node's redis_tls: the suite's CA signs its certificate
// (issued for host in dir), and ca_file holds that CA.
func redisTLS(dir, host string) *instance.RedisTLS {
	certFile, keyFile, caFile, err := ca.RedisFiles(dir, host)
	Expect(err).NotTo(HaveOccurred())
	return &instance.RedisTLS{CertFile: certFile, KeyFile: keyFile, CAFile: caFile}
}

// tlsTenant is a client of port over TLS that verifies the server with caPEM.
func tlsTenant(host string, port int, caPEM, user, password string) *redis.Client {
	c, err := tlstest.RedisClient(host, port, caPEM, user, password)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(c.Close)
	return c
}

var _ = Describe("Node with redis_tls", func() {
	It("serves the claimed instance's binding users over TLS and in plaintext", func(ctx SpecContext) {
		dir := tempDir()
		cfg := nodeConfig(dir, "127.0.0.1")
		cfg.RedisTLS = redisTLS(dir, "127.0.0.1")
		cfg.TLSPort = freePort("127.0.0.1")
		nd := startNode(cfg)
		st := nd.claim(ctx, "inst-1")
		Expect(st.TLSPort).To(Equal(cfg.TLSPort))
		pw := secret.New()
		b, err := nd.client.Bind(ctx, "inst-1", "b1", agentapi.BindingRequest{Password: pw})
		Expect(err).NotTo(HaveOccurred())
		Expect(b.TLSPort).To(Equal(cfg.TLSPort))
		Expect(b.TLSCA).To(Equal(ca.PEM))
		c := tlsTenant("127.0.0.1", b.TLSPort, b.TLSCA, "b1", pw)
		Expect(c.Ping(ctx).Err()).To(Succeed())
		Expect(c.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		Expect(nd.tenant("b1", pw).Get(ctx, "k").Val()).To(Equal("v"))
	})

	It("turns TLS on and off on a running server when the agent restarts, keeping its process and data", func(ctx SpecContext) {
		dir := tempDir()
		cfg := nodeConfig(dir, "127.0.0.1")
		nd := startNode(cfg)
		nd.claim(ctx, "inst-1")
		c, pw := nd.bind(ctx, "inst-1", "b1")
		Expect(c.Set(ctx, "k", "kept", 0).Err()).To(Succeed())
		pid := nd.pid()

		nd.crash()
		cfg.RedisTLS = redisTLS(dir, "127.0.0.1")
		cfg.TLSPort = freePort("127.0.0.1")
		nd = startNode(cfg)
		Expect(nd.pid()).To(Equal(pid))
		st, err := nd.client.Get(ctx, "inst-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(st.TLSPort).To(Equal(cfg.TLSPort))
		Expect(tlsTenant("127.0.0.1", cfg.TLSPort, ca.PEM, "b1", pw).Get(ctx, "k").Val()).To(Equal("kept"))

		nd.crash()
		tlsPort := cfg.TLSPort
		cfg.RedisTLS, cfg.TLSPort = nil, 0
		nd = startNode(cfg)
		Expect(nd.pid()).To(Equal(pid))
		st, err = nd.client.Get(ctx, "inst-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(st.TLSPort).To(BeZero())
		_, err = net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort)), time.Second)
		Expect(err).To(HaveOccurred(), "nothing listens on the TLS port any more")
		conf, err := os.ReadFile(filepath.Join(cfg.DataDir, "redis.conf"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(conf)).NotTo(ContainSubstring("tls-port"))
		Expect(c.Get(ctx, "k").Val()).To(Equal("kept"))
	})

	It("checks redis_tls and tls_port", func() {
		dir := tempDir()
		cfg := nodeConfig(dir, "127.0.0.1")
		Expect(cfg.Validate()).To(Succeed())
		Expect(cfg.TLSPort).To(BeZero())
		cfg.RedisTLS = redisTLS(dir, "127.0.0.1")
		Expect(cfg.Validate()).To(Succeed())
		Expect(cfg.TLSPort).To(Equal(nodeagent.DefaultTLSPort))
		cfg.TLSPort = cfg.Port
		Expect(cfg.Validate()).To(MatchError(ContainSubstring("tls_port")))
		cfg.TLSPort = 0
		cfg.RedisTLS.CAFile = ""
		Expect(cfg.Validate()).To(MatchError(ContainSubstring("redis_tls.ca_file is required")))
		// Files that are missing or wrong stop the agent's start (a config
		// is also checked where they are not yet: a BOSH template's).
		cfg.RedisTLS = redisTLS(dir, "127.0.0.1")
		cfg.RedisTLS.CertFile = filepath.Join(dir, "missing.crt")
		Expect(cfg.Validate()).To(Succeed())
		n, err := nodeagent.New(cfg, slog.New(slog.NewTextHandler(GinkgoWriter, nil)))
		Expect(n).To(BeNil())
		Expect(err).To(MatchError(ContainSubstring("redis_tls.cert_file")))
	})
})
