package clients_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

// app runs one client as an app bound with vcap, in mode, writing under id,
// and returns its result lines and whether it failed.
type app struct {
	name string
	run  func(ctx context.Context, vcap, mode, id string) (string, error)
}

// script is an app that is a script of testdata run by interpreter.
func script(interpreter string, args ...string) func(context.Context, string, string, string) (string, error) {
	return func(ctx context.Context, vcap, mode, id string) (string, error) {
		return runScript(ctx, append([]string{interpreter}, args...), vcap, mode, id)
	}
}

var apps = []app{
	{"go-redis", goRedisApp},
	{"redis-cli", func(ctx context.Context, vcap, mode, id string) (string, error) {
		return redisCLIApp(ctx, vcap, mode, id, GinkgoT().TempDir())
	}},
	{"ioredis", script(node, "client.js", "ioredis")},
	{"node-redis", script(node, "client.js", "node-redis")},
	{"redis-py", script(python, "client.py")},
	{"redis-rb", script(ruby, "client.rb")},
}

// connect is the specs' own go-redis connection with a binding's full
// credentials (uri, with tls_ca when it is rediss://), to read back what a
// client wrote.
func connect(c creds) *redis.Client {
	GinkgoHelper()
	opts, err := redis.ParseURL(c.URI)
	Expect(err).NotTo(HaveOccurred())
	if opts.TLSConfig != nil {
		pool := x509.NewCertPool()
		Expect(pool.AppendCertsFromPEM([]byte(c.TLSCA))).To(BeTrue())
		opts.TLSConfig.RootCAs = pool
	}
	opts.MaxRetries = -1
	opts.DialTimeout = 5 * time.Second
	rc := redis.NewClient(opts)
	DeferCleanup(rc.Close)
	return rc
}

// expectRun checks a client's run: it printed no secret, every operation
// succeeded with the values it must have read back, logged in as the
// binding on port, and what it wrote is in the instance.
func expectRun(ctx context.Context, c creds, port int, id, out string, runErr error) {
	GinkgoHelper()
	// Checked first, so that the output, shown when a check below fails,
	// holds no secret.
	Expect(strings.Contains(out, c.Password)).To(BeFalse(), "the client printed the binding's password")
	values, errs := parseResults(out)
	Expect(errs).To(BeEmpty(), "the client's operations failed; its output:\n%s", out)
	Expect(runErr).NotTo(HaveOccurred(), "the client failed; its output:\n%s", out)
	Expect(values).To(Equal(expected(id, c.Username, port)), "the client's output:\n%s", out)
	Expect(connect(c).Get(ctx, id+":str").Result()).To(Equal(id), "the value the client wrote, read back")
}

var _ = Describe("clients apps use", Ordered, ContinueOnFailure, func() {
	var sys *system

	BeforeAll(func() {
		sys = startSystem()
	})

	for _, p := range plans {
		Context("on the "+p.name+" plan", func() {
			It("opens both port and tls_port of an instance that offers TLS", func(ctx SpecContext) {
				inst := sys.instance(ctx, p, modeTLS)
				c := sys.bind(ctx, p, inst)
				Expect(c.TLSPort).NotTo(BeZero(), "tls_port")
				Expect(c.URI).To(HavePrefix("redis://"), "uri")
				found, err := sys.FindInstance(inst)
				Expect(err).NotTo(HaveOccurred())
				Expect(found.Pid).NotTo(BeZero())
				Expect(listeningPorts(found.Pid)).To(ConsistOf(c.Port, c.TLSPort), "the ports redis-server %d listens on", found.Pid)
			})

			It("closes the plaintext port of a TLS-only instance, whose credentials' port and uri are TLS ones", func(ctx SpecContext) {
				inst := sys.instance(ctx, p, modeTLSOnly)
				c := sys.bind(ctx, p, inst)
				Expect(c.TLSPort).NotTo(BeZero(), "tls_port")
				Expect(c.Port).To(Equal(c.TLSPort), "port")
				Expect(c.URI).To(HavePrefix("rediss://"), "uri")
				Expect(c.URI).To(Equal(c.TLSURI), "uri and tls_uri")
				Expect(c.TLSCA).To(Equal(sys.RedisCA.PEM), "tls_ca")

				// The instance's redis-server listens on the TLS port alone.
				found, err := sys.FindInstance(inst)
				Expect(err).NotTo(HaveOccurred())
				Expect(found.Pid).NotTo(BeZero())
				Expect(listeningPorts(found.Pid)).To(ConsistOf(c.TLSPort), "the ports redis-server %d listens on", found.Pid)

				// A plaintext client is refused, on the port the credentials
				// name and on the plaintext port the agent keeps.
				for _, addr := range []string{net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), found.Addr} {
					rc := redis.NewClient(&redis.Options{
						Addr: addr, Username: c.Username, Password: c.Password,
						MaxRetries: -1, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second,
					})
					DeferCleanup(rc.Close)
					Expect(rc.Ping(ctx).Err()).To(HaveOccurred(), "a plaintext PING to %s", addr)
				}
			})

			It("logs in with a password alone as its binding until the binding is deleted, which closes its connections and leaves another binding's alone", func(ctx SpecContext) {
				inst := sys.instance(ctx, p, modePasswordOnly)
				kept, gone := sys.bind(ctx, p, inst), sys.bind(ctx, p, inst)
				// What an app does with host, port and password: AUTH <password>.
				login := func(c creds) *redis.Client {
					rc := redis.NewClient(&redis.Options{
						Addr: net.JoinHostPort(c.Host, strconv.Itoa(c.Port)), Password: c.Password, Protocol: 2,
						MaxRetries: -1, PoolSize: 1, DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second,
					})
					DeferCleanup(rc.Close)
					return rc
				}
				keptConn, goneConn := login(kept), login(gone)
				Expect(keptConn.Do(ctx, "ACL", "WHOAMI").Text()).To(Equal(kept.Username))
				Expect(goneConn.Do(ctx, "ACL", "WHOAMI").Text()).To(Equal(gone.Username))
				goneID, err := goneConn.ClientID(ctx).Result()
				Expect(err).NotTo(HaveOccurred())

				sys.unbind(ctx, p, inst, gone)

				// The deleted binding's connection is closed, and its
				// password logs in no more.
				admin := connect(kept)
				Eventually(func() string { return admin.ClientList(ctx).Val() }).ShouldNot(ContainSubstring(fmt.Sprintf("id=%d ", goneID)))
				Expect(goneConn.Ping(ctx).Err()).To(HaveOccurred(), "the deleted binding's connection")
				fresh := login(gone)
				Expect(fresh.Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")), "a new login with the deleted binding's password")
				// The other binding's connection was not touched.
				Expect(keptConn.Do(ctx, "ACL", "WHOAMI").Text()).To(Equal(kept.Username))
			})

			for _, mode := range modes {
				for _, a := range apps {
					It(a.name+" connects "+mode+" and runs SET/GET, a pipeline, MULTI/EXEC, EVAL and pub/sub", func(ctx SpecContext) {
						c := sys.bind(ctx, p, sys.instance(ctx, p, mode))
						id := runID(a.name, mode, p)
						out, err := a.run(ctx, sys.vcapServices(p, c, mode), mode, id)
						port := c.Port
						if mode == modeTLS {
							port = c.TLSPort
						}
						expectRun(ctx, c, port, id, out, err)
					})
				}
			}
		})
	}

	Context("with a tls_ca that did not sign the server's certificate", func() {
		for _, a := range apps {
			It(a.name+" refuses the server", func(ctx SpecContext) {
				c := sys.bind(ctx, sharedPlan, sys.instance(ctx, sharedPlan, modeTLS))
				other, err := tlstest.NewCA("another")
				Expect(err).NotTo(HaveOccurred())
				var fields map[string]any
				Expect(json.Unmarshal(c.raw, &fields)).To(Succeed())
				fields["tls_ca"] = other.PEM
				c.raw, err = json.Marshal(fields)
				Expect(err).NotTo(HaveOccurred())

				out, runErr := a.run(ctx, sys.vcapServices(sharedPlan, c, modeTLS), modeTLS, runID(a.name, "bad-ca", sharedPlan))
				Expect(strings.Contains(out, c.Password)).To(BeFalse(), "the client printed the binding's password")
				Expect(runErr).To(HaveOccurred(), "the client's output:\n%s", out)
				values, _ := parseResults(out)
				Expect(values).To(BeEmpty(), "the client's output:\n%s", out)
			})
		}
	})
})
