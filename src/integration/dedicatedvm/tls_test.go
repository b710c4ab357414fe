package dedicatedvm_test

import (
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemspec"
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
)

var _ = Describe("TLS on a dedicated node's Redis port", func() {
	It("hands out tls_port, tls_uri and tls_ca that go-redis and redis-cli --tls use", func() {
		sys := startSystemWith(systemtest.Options{Nodes: 1, RedisTLS: true})
		code, body := systemspec.Provision(sys, "dtls", systemtest.DedicatedPlanID, nil)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		code, body = systemspec.Bind(sys, "dtls", "b", systemtest.DedicatedPlanID)
		Expect(code).To(Equal(http.StatusCreated), "%v", body)
		creds := systemspec.Credentials(body)
		tlsPort := int(creds["tls_port"].(float64))
		Expect(tlsPort).To(BeNumerically(">", 0))
		Expect(creds["tls_ca"]).To(Equal(sys.RedisCA.PEM))
		host := creds["host"].(string)
		Expect(creds["tls_uri"]).To(HavePrefix("rediss://"))
		Expect(creds["tls_uri"]).To(HaveSuffix("@" + net.JoinHostPort(host, strconv.Itoa(tlsPort))))

		opt, err := redis.ParseURL(creds["tls_uri"].(string))
		Expect(err).NotTo(HaveOccurred())
		pool := x509.NewCertPool()
		Expect(pool.AppendCertsFromPEM([]byte(creds["tls_ca"].(string)))).To(BeTrue())
		opt.TLSConfig.RootCAs = pool
		opt.MaxRetries = -1
		opt.DialTimeout = 2 * time.Second
		rc := redis.NewClient(opt)
		DeferCleanup(rc.Close)
		Expect(rc.Ping(ctx).Err()).To(Succeed())
		Expect(rc.Set(ctx, "over-tls", "1", 0).Err()).To(Succeed())
		Expect(client(creds).Get(ctx, "over-tls").Val()).To(Equal("1"), "the plaintext port serves too")

		caFile := filepath.Join(GinkgoT().TempDir(), "ca.pem")
		Expect(os.WriteFile(caFile, []byte(creds["tls_ca"].(string)), 0o600)).To(Succeed())
		out, err := exec.Command(redistest.MustProgram(GinkgoT(), "redis-cli"), "--tls", "--cacert", caFile, "-u", creds["tls_uri"].(string), "--no-auth-warning", "GET", "over-tls").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		Expect(strings.TrimSpace(string(out))).To(Equal("1"))

		Expect(systemspec.Deprovision(sys, "dtls", systemtest.DedicatedPlanID)).To(Equal(http.StatusOK))
	})
})
