package sharedvm_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
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
	"github.com/cf-redis/redis-for-cf/src/testkit/systemtest"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

// tlsCreds are the TLS fields of a binding's credentials.
type tlsCreds struct {
	creds
	TLSPort int    `json:"tls_port"`
	TLSURI  string `json:"tls_uri"`
	TLSCA   string `json:"tls_ca"`
}

func (r bindingResponse) tlsCreds() tlsCreds {
	GinkgoHelper()
	var c tlsCreds
	Expect(json.Unmarshal(r.Credentials, &c)).To(Succeed())
	return c
}

// connectTLS is the client an app builds from tls_uri, trusting tls_ca.
func connectTLS(c tlsCreds) *redis.Client {
	GinkgoHelper()
	opts, err := redis.ParseURL(c.TLSURI)
	Expect(err).NotTo(HaveOccurred())
	Expect(opts.TLSConfig).NotTo(BeNil())
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM([]byte(c.TLSCA))).To(BeTrue())
	opts.TLSConfig.RootCAs = pool
	opts.MaxRetries = -1
	opts.DialTimeout = 2 * time.Second
	opts.DisableIdentity = true
	rc := redis.NewClient(opts)
	DeferCleanup(rc.Close)
	return rc
}

var _ = Describe("TLS on the Redis ports", Ordered, ContinueOnFailure, func() {
	var sys *system
	var inst string

	BeforeAll(func() {
		sys = startSystem(systemtest.Options{RedisTLS: true})
		inst = newID("inst-tls")
		sys.provision(inst, nil)
	})

	It("hands out tls_port, tls_uri and tls_ca beside the plaintext credentials, and endpoints with both ports", func() {
		bindingID := newID("bind")
		status, r := sys.bindRaw(inst, bindingID, "app-1")
		Expect(status).To(Equal(http.StatusCreated), r.Description)
		c := r.tlsCreds()
		Expect(c.TLSPort).To(BeNumerically(">", 0))
		Expect(c.TLSPort).NotTo(Equal(c.Port))
		Expect(c.TLSCA).To(Equal(sys.RedisCA.PEM))
		u, err := url.Parse(c.TLSURI)
		Expect(err).NotTo(HaveOccurred())
		Expect(u.Scheme).To(Equal("rediss"))
		Expect(u.Host).To(Equal(net.JoinHostPort(c.Host, strconv.Itoa(c.TLSPort))))
		Expect(u.User.Username()).To(Equal(c.Username))
		password, _ := u.User.Password()
		Expect(password).To(Equal(c.Password))
		Expect(r.Endpoints).To(HaveLen(1))
		Expect(r.Endpoints[0].Ports).To(Equal([]string{strconv.Itoa(c.Port), strconv.Itoa(c.TLSPort)}))

		status, got := sys.getBinding(inst, bindingID)
		Expect(status).To(Equal(http.StatusOK))
		Expect(got.tlsCreds()).To(Equal(c))
		Expect(got.Endpoints).To(Equal(r.Endpoints))
	})

	It("gives credentials that go-redis (verifying tls_ca) and redis-cli --tls use over TLS, and over plaintext too", func(ctx SpecContext) {
		status, r := sys.bindRaw(inst, newID("bind"), "app-1")
		Expect(status).To(Equal(http.StatusCreated), r.Description)
		tc := r.tlsCreds()

		rc := connectTLS(tc)
		Expect(rc.Ping(ctx).Err()).To(Succeed())
		Expect(rc.Set(ctx, "over-tls", "1", 0).Err()).To(Succeed())
		Expect(connect(tc.creds).Get(ctx, "over-tls").Val()).To(Equal("1"))

		caFile := filepath.Join(GinkgoT().TempDir(), "ca.pem")
		Expect(os.WriteFile(caFile, []byte(tc.TLSCA), 0o600)).To(Succeed())
		cli := func(args ...string) string {
			GinkgoHelper()
			cmd := exec.CommandContext(ctx, redistest.MustProgram(GinkgoT(), "redis-cli"), append([]string{"--tls", "--cacert", caFile, "-u", tc.TLSURI, "--no-auth-warning"}, args...)...)
			out, err := cmd.CombinedOutput()
			Expect(err).NotTo(HaveOccurred(), string(out))
			return strings.TrimSpace(string(out))
		}
		Expect(cli("PING")).To(Equal("PONG"))
		Expect(cli("GET", "over-tls")).To(Equal("1"))

		// A client that trusts another CA refuses the server.
		otherCA, err := tlstest.NewCA("another")
		Expect(err).NotTo(HaveOccurred())
		other := tc
		other.TLSCA = otherCA.PEM
		bad := connectTLS(other)
		Expect(bad.Ping(ctx).Err()).To(MatchError(ContainSubstring("certificate")))
	})

	It("closes an instance's plaintext port when it is made TLS-only, hands out rediss:// credentials, and opens it again", func(ctx SpecContext) {
		id := newID("inst-tls-only")
		sys.provision(id, nil)
		plain := sys.bind(id, newID("bind"))
		before := connect(plain)
		Expect(before.Set(ctx, "k", "v", 0).Err()).To(Succeed())

		_, err := sys.osb.UpdateInstance(updateRequest(id, map[string]any{"tls_only": true}))
		Expect(err).NotTo(HaveOccurred())
		Expect(before.Ping(ctx).Err()).To(HaveOccurred(), "the plaintext connection opened before is closed")
		_, err = net.DialTimeout("tcp", net.JoinHostPort(plain.Host, strconv.Itoa(plain.Port)), time.Second)
		Expect(err).To(HaveOccurred(), "nothing listens on the plaintext port")

		status, r := sys.bindRaw(id, newID("bind"), "app-1")
		Expect(status).To(Equal(http.StatusCreated), r.Description)
		tc := r.tlsCreds()
		Expect(tc.Port).To(Equal(tc.TLSPort), "port is the TLS port")
		Expect(tc.URI).To(Equal(tc.TLSURI))
		Expect(r.Endpoints[0].Ports).To(Equal([]string{strconv.Itoa(tc.TLSPort)}))
		// An app that reads only uri, trusting tls_ca, uses TLS.
		tc.TLSURI = tc.URI
		Expect(connectTLS(tc).Get(ctx, "k").Val()).To(Equal("v"))

		_, err = sys.osb.UpdateInstance(updateRequest(id, map[string]any{"tls_only": false}))
		Expect(err).NotTo(HaveOccurred())
		Expect(connect(plain).Get(ctx, "k").Val()).To(Equal("v"), "the plaintext port serves again")
		sys.deprovision(id)
	})

	It("makes a follower replicate over TLS from a TLS-only leader", func(ctx SpecContext) {
		leader, follower := newID("inst-leader"), newID("inst-follower")
		sys.provision(leader, map[string]any{"tls_only": true})
		sys.provision(follower, nil)
		status, r := sys.bindRaw(leader, newID("bind"), "app-1")
		Expect(status).To(Equal(http.StatusCreated), r.Description)
		lc := connectTLS(r.tlsCreds())
		Expect(lc.Set(ctx, "from-leader", "1", 0).Err()).To(Succeed())

		_, err := sys.osb.UpdateInstance(updateRequest(follower, map[string]any{"replica_of": leader}))
		Expect(err).NotTo(HaveOccurred())
		fc := connect(sys.bind(follower, newID("bind")))
		// The leader has no plaintext port: the data arrives over TLS.
		Eventually(func() string { return fc.Get(ctx, "from-leader").Val() }).WithContext(ctx).WithTimeout(30 * time.Second).Should(Equal("1"))
		Expect(infoField(ctx, fc, "replication", "master_port")).To(Equal(strconv.Itoa(r.tlsCreds().TLSPort)))

		_, err = sys.osb.UpdateInstance(updateRequest(follower, map[string]any{"replica_of": nil}))
		Expect(err).NotTo(HaveOccurred())
		sys.deprovision(follower)
		sys.deprovision(leader)
	})

	It("refuses tls_only that is not a boolean with a 400 naming it", func() {
		status, body := sys.do(http.MethodPut, instancePath(newID("inst"))+"?accepts_incomplete=true", provisionBody(`{"tls_only": "yes"}`))
		Expect(status).To(Equal(http.StatusBadRequest), string(body))
		Expect(description(body)).To(ContainSubstring("tls_only"))
	})

	It("writes no binding password into the broker's or agent's logs", func() {
		logs := sys.Broker.Log()
		for _, a := range sys.Agents {
			logs += a.Log()
		}
		sys.mu.Lock()
		defer sys.mu.Unlock()
		Expect(sys.issued).NotTo(BeEmpty())
		for _, p := range sys.issued {
			Expect(logs).NotTo(ContainSubstring(p))
		}
		key, err := os.ReadFile(filepath.Join(sys.Dir, "agent-0-redis-tls", "127.0.0.1.key"))
		Expect(err).NotTo(HaveOccurred())
		Expect(logs).NotTo(ContainSubstring(strings.Split(string(key), "\n")[1]))
	})

	It("refuses to start an agent whose redis_tls names a missing file, naming redis_tls.cert_file", func(ctx SpecContext) {
		data, err := os.ReadFile(sys.Agents[0].Config)
		Expect(err).NotTo(HaveOccurred())
		var cfg map[string]any
		Expect(json.Unmarshal(data, &cfg)).To(Succeed())
		cfg["redis_tls"].(map[string]any)["cert_file"] = filepath.Join(sys.Dir, "missing.crt")
		cfg["data_dir"] = filepath.Join(sys.Dir, "agent-bad")
		data, err = json.Marshal(cfg)
		Expect(err).NotTo(HaveOccurred())
		path := filepath.Join(sys.Dir, "agent-bad.json")
		Expect(os.WriteFile(path, data, 0o600)).To(Succeed())
		ctx2, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx2, bins.SharedAgent, "-config", path).CombinedOutput()
		var exit *exec.ExitError
		Expect(err).To(BeAssignableToTypeOf(exit), string(out))
		Expect(err.(*exec.ExitError).ExitCode()).To(Equal(1), "it cannot start")
		Expect(string(out)).To(ContainSubstring("redis_tls.cert_file"))
	})
})
