package redisconf_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
)

func TestRedisconf(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "redisconf")
}

var _ = Describe("Render", func() {
	valid := redisconf.Config{
		InstanceID: "i-1", Bind: "127.0.0.1", Port: 40000, Dir: "/data/i 1", ACLFile: "/data/users.acl",
		MaxMemoryBytes: 64 << 20, Params: params.Defaults(),
	}

	It("writes persistence, limits and the tenant's parameters", func() {
		var b strings.Builder
		p := valid
		p.Params.NotifyKeyspaceEvents = "Ex"
		Expect(redisconf.Render(&b, p)).To(Succeed())
		conf := b.String()
		for _, line := range []string{
			"port 40000", "bind 127.0.0.1", "daemonize no", `dir "/data/i 1"`, `aclfile "/data/users.acl"`,
			"maxmemory 67108864", "maxmemory-policy noeviction", "notify-keyspace-events Ex", "timeout 0",
			"appendonly yes", "appendfsync everysec", "maxclients 10000", "enable-debug-command no",
			"proto-max-bulk-len 67108864", "maxmemory-clients 67108864",
			`client-output-buffer-limit "normal 67108864 0 0 replica 134217728 67108864 60 pubsub 33554432 8388608 60"`,
		} {
			Expect(conf).To(ContainSubstring(line + "\n"))
		}
	})

	DescribeTable("refuses configs that would start a wrong server",
		func(change func(*redisconf.Config), mentions string) {
			c := valid
			change(&c)
			Expect(redisconf.Render(&strings.Builder{}, c)).To(MatchError(ContainSubstring(mentions)))
		},
		Entry("port 0", func(c *redisconf.Config) { c.Port = 0 }, "port"),
		Entry("port too large", func(c *redisconf.Config) { c.Port = 70000 }, "port"),
		Entry("no memory limit", func(c *redisconf.Config) { c.MaxMemoryBytes = 0 }, "maxmemory"),
		Entry("no dir", func(c *redisconf.Config) { c.Dir = "" }, "dir"),
		Entry("bad parameter", func(c *redisconf.Config) { c.Params.MaxMemoryPolicy = "x\nslaveof 1.2.3.4 1" }, "maxmemory-policy"),
		Entry("leader without port", func(c *redisconf.Config) { c.ReplicaOf = &redisconf.Leader{Host: "10.0.0.1"} }, "replicaof"),
		Entry("TLS-only without TLS", func(c *redisconf.Config) { c.Params.TLSOnly = true }, "TLS-only"),
		Entry("replication over TLS without TLS", func(c *redisconf.Config) {
			c.ReplicaOf = &redisconf.Leader{Host: "10.0.0.1", Port: 6380, TLS: true}
		}, "tls-replication"),
	)

	It("runs background tasks at Redis's rate unless told otherwise", func() {
		var b strings.Builder
		Expect(redisconf.Render(&b, valid)).To(Succeed())
		Expect(b.String()).To(ContainSubstring("\nhz 10\ndynamic-hz yes\n"))
		c := valid
		c.Hz = redisconf.SharedHz
		b.Reset()
		Expect(redisconf.Render(&b, c)).To(Succeed())
		Expect(b.String()).To(ContainSubstring("\nhz 1\ndynamic-hz yes\n"))
		c.Hz = 501
		Expect(redisconf.Render(&b, c)).To(MatchError(ContainSubstring("hz 501")))
	})

	It("closes the plaintext port of a TLS-only server, after the TLS port", func() {
		c := valid
		c.TLS = &redisconf.TLS{Port: 40001, CertFile: "/c.pem", KeyFile: "/k.pem", CAFile: "/ca.pem"}
		var b strings.Builder
		Expect(redisconf.Render(&b, c)).To(Succeed())
		Expect(b.String()).To(ContainSubstring("\nport 40000\n"))
		Expect(b.String()).To(ContainSubstring("\ntls-port 40001\n"))
		Expect(strings.Count(b.String(), "\nport ")).To(Equal(1))
		c.Params.TLSOnly = true
		Expect(c.ListenPort()).To(Equal(0))
		b.Reset()
		Expect(redisconf.Render(&b, c)).To(Succeed())
		Expect(b.String()).To(ContainSubstring("\nport 0\n"))
		Expect(strings.Count(b.String(), "\nport ")).To(Equal(1))
		names := []string{}
		for _, d := range c.Settings() {
			names = append(names, d.Name)
		}
		Expect(names[len(names)-1]).To(Equal("port"))
		Expect(names).To(ContainElement("tls-port"))
	})

	It("replicates over TLS only from a leader reached with TLS", func() {
		c := valid
		c.TLS = &redisconf.TLS{Port: 40001, CertFile: "/c.pem", KeyFile: "/k.pem", CAFile: "/ca.pem"}
		c.ReplicaOf = &redisconf.Leader{Host: "10.0.0.1", Port: 6379}
		var b strings.Builder
		Expect(redisconf.Render(&b, c)).To(Succeed())
		Expect(b.String()).To(ContainSubstring("\ntls-replication no\n"))
		c.ReplicaOf.TLS = true
		b.Reset()
		Expect(redisconf.Render(&b, c)).To(Succeed())
		Expect(b.String()).To(ContainSubstring("\ntls-replication yes\n"))
	})

	It("renders a follower's replication settings only when it has a leader", func() {
		var b strings.Builder
		Expect(redisconf.Render(&b, valid)).To(Succeed())
		Expect(b.String()).NotTo(ContainSubstring("replicaof"))
		Expect(b.String()).To(ContainSubstring(`masteruser ""` + "\n"))
		Expect(b.String()).To(ContainSubstring(`masterauth ""` + "\n"))
		f := valid
		f.ReplicaOf = &redisconf.Leader{Host: "10.0.0.1", Port: 6379, User: "repl-1", Password: `p"w`}
		b.Reset()
		Expect(redisconf.Render(&b, f)).To(Succeed())
		for _, line := range []string{`replicaof "10.0.0.1" 6379`, "masteruser repl-1", `masterauth "p\"w"`, "replica-read-only yes"} {
			Expect(b.String()).To(ContainSubstring(line + "\n"))
		}
	})
})

var _ = Describe("RenderACL", func() {
	It("refuses usernames and hashes that could inject rules", func() {
		h := secret.Hash("x")
		Expect(redisconf.RenderACL(&strings.Builder{}, []redisconf.User{{Name: "a b", PasswordHash: h}})).NotTo(Succeed())
		Expect(redisconf.RenderACL(&strings.Builder{}, []redisconf.User{{Name: "default", PasswordHash: h}})).NotTo(Succeed())
		Expect(redisconf.RenderACL(&strings.Builder{}, []redisconf.User{{Name: "a", PasswordHash: "on >x"}})).NotTo(Succeed())
		Expect(redisconf.RenderACL(&strings.Builder{}, []redisconf.User{{Name: "a", PasswordHash: h, Role: "root"}})).NotTo(Succeed())
	})

	It("gives a replication user the replication commands and no keys", func() {
		rule := redisconf.ACLRule(redisconf.User{Name: "r", PasswordHash: secret.Hash("x"), Role: redisconf.RoleReplication})
		Expect(rule).To(HaveSuffix(" -@all +psync +replconf +ping +info|replication"))
		Expect(rule).NotTo(ContainSubstring("~"))
	})
})

// These start a real redis-server with the rendered files, so a template
// mistake that Redis would reject fails here.
var _ = Describe("a redis-server started from the rendered files", func() {
	var (
		admin, tenant *redis.Client
		adminPass     = secret.New()
		tenantPass    = secret.New()
		conf          string
		port          int
	)

	BeforeEach(func() {
		dir := GinkgoT().TempDir()
		var err error
		port, err = redistest.FreePort()
		Expect(err).NotTo(HaveOccurred())
		conf = filepath.Join(dir, "redis.conf")
		acl := filepath.Join(dir, "users.acl")
		Expect(os.Mkdir(filepath.Join(dir, "data"), 0o700)).To(Succeed())
		Expect(redisconf.WriteACLFile(acl, []redisconf.User{
			{Name: "platform-admin", PasswordHash: secret.Hash(adminPass), Admin: true},
			{Name: "binding-1", PasswordHash: secret.Hash(tenantPass)},
			{Name: "repl-1", PasswordHash: secret.Hash(tenantPass), Role: redisconf.RoleReplication},
		})).To(Succeed())
		Expect(redisconf.WriteFile(conf, redisconf.Config{
			InstanceID: "t", Bind: "127.0.0.1", Port: port, Dir: filepath.Join(dir, "data"), ACLFile: acl,
			MaxMemoryBytes: 32 << 20, Params: params.Parameters{MaxMemoryPolicy: "allkeys-lru", NotifyKeyspaceEvents: "KEA", Timeout: 30},
			Hz: redisconf.SharedHz,
		})).To(Succeed())

		cmd := exec.Command(redistest.MustProgram(GinkgoT(), "redis-server"), conf)
		cmd.Dir = dir
		Expect(cmd.Start()).To(Succeed())
		DeferCleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
		})
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		admin = redis.NewClient(&redis.Options{Addr: addr, Username: "platform-admin", Password: adminPass})
		tenant = redis.NewClient(&redis.Options{Addr: addr, Username: "binding-1", Password: tenantPass})
		DeferCleanup(admin.Close)
		DeferCleanup(tenant.Close)
		Eventually(func() error { return admin.Ping(context.Background()).Err() }).WithTimeout(10 * time.Second).Should(Succeed())
	})

	It("applies the parameters and persistence settings", func(ctx SpecContext) {
		got, err := admin.ConfigGet(ctx, "*").Result()
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(HaveKeyWithValue("maxmemory", "33554432"))
		Expect(got).To(HaveKeyWithValue("maxmemory-policy", "allkeys-lru"))
		Expect(got).To(HaveKeyWithValue("timeout", "30"))
		Expect(got).To(HaveKeyWithValue("appendonly", "yes"))
		Expect(got).To(HaveKeyWithValue("appendfsync", "everysec"))
		Expect(got["notify-keyspace-events"]).To(ContainSubstring("K"))
	})

	// Shared instances wake once a second (hz 1) instead of Redis's ten
	// times, which on a VM of 2,000 instances is most of its idle CPU;
	// dynamic-hz raises it again when an instance has many clients.
	It("runs a shared instance's background tasks once a second, faster with many clients", func(ctx SpecContext) {
		got, err := admin.ConfigGet(ctx, "*").Result()
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(HaveKeyWithValue("hz", "1"))
		Expect(got).To(HaveKeyWithValue("dynamic-hz", "yes"))
	})

	// What a tenant relies on from the background tasks still happens at
	// SharedHz: keys nobody reads expire and say so, idle connections close
	// after the tenant's timeout, blocking commands end at theirs.
	Describe("at that rate", func() {
		It("expires keys nobody reads, and tells subscribers", func(ctx SpecContext) {
			sub := tenant.Subscribe(ctx, "__keyevent@0__:expired")
			defer sub.Close()
			_, err := sub.Receive(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(tenant.Set(ctx, "short", "v", 50*time.Millisecond).Err()).To(Succeed())
			Expect(tenant.Set(ctx, "long", "v", time.Hour).Err()).To(Succeed())
			var msg *redis.Message
			Eventually(sub.Channel()).WithTimeout(10 * time.Second).Should(Receive(&msg))
			Expect(msg.Payload).To(Equal("short"))
			// Removed by the server itself, not by a read: the keyspace
			// counts one key, and the expired-keys counter one.
			info, err := admin.InfoMap(ctx, "keyspace", "stats").Result()
			Expect(err).NotTo(HaveOccurred())
			Expect(info["Keyspace"]["db0"]).To(HavePrefix("keys=1,expires=1,"))
			Expect(info["Stats"]["expired_keys"]).To(Equal("1"))
		})

		It("closes connections idle longer than the tenant's timeout, and only those", func(ctx SpecContext) {
			Expect(admin.ConfigSet(ctx, "timeout", "1").Err()).To(Succeed())
			idle, err := net.Dial("tcp", admin.Options().Addr)
			Expect(err).NotTo(HaveOccurred())
			defer idle.Close()
			fmt.Fprintf(idle, "AUTH binding-1 %s\r\n", tenantPass)
			r := bufio.NewReader(idle)
			Expect(r.ReadString('\n')).To(Equal("+OK\r\n"))
			Expect(idle.SetReadDeadline(time.Now().Add(30 * time.Second))).To(Succeed())
			// The busy client keeps talking while the idle one waits for
			// the server to close it.
			closed := make(chan error, 1)
			go func() { _, err := r.ReadString('\n'); closed <- err }()
			Eventually(func() error {
				if err := tenant.Ping(ctx).Err(); err != nil {
					return err
				}
				select {
				case err := <-closed:
					return err
				default:
					return errors.New("the idle connection is still open")
				}
			}).WithTimeout(20 * time.Second).WithPolling(200 * time.Millisecond).Should(Equal(io.EOF))
			Expect(tenant.Ping(ctx).Err()).To(Succeed())
		})

		It("ends a blocking command at its timeout", func(ctx SpecContext) {
			// go-redis rounds BLPop's timeout up to a second; Do does not.
			Expect(tenant.Do(ctx, "BLPOP", "empty", "0.2").Err()).To(Equal(redis.Nil))
			_, err := tenant.XRead(ctx, &redis.XReadArgs{Streams: []string{"s", "$"}, Block: 200 * time.Millisecond}).Result()
			Expect(err).To(Equal(redis.Nil))
		})
	})

	It("refuses the default user and wrong passwords", func(ctx SpecContext) {
		anon := redis.NewClient(&redis.Options{Addr: admin.Options().Addr})
		defer anon.Close()
		Expect(anon.Ping(ctx).Err()).To(MatchError(ContainSubstring("NOAUTH")))
		wrong := redis.NewClient(&redis.Options{Addr: admin.Options().Addr, Username: "binding-1", Password: adminPass})
		defer wrong.Close()
		Expect(wrong.Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
	})

	It("lets the tenant use data commands but none the platform owns", func(ctx SpecContext) {
		Expect(tenant.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		Expect(tenant.Eval(ctx, "return redis.call('get', KEYS[1])", []string{"k"}).Val()).To(Equal("v"))
		Expect(tenant.Do(ctx, "ACL", "WHOAMI").Val()).To(Equal("binding-1"))
		for _, cmd := range [][]any{
			{"CONFIG", "GET", "maxmemory"}, {"DEBUG", "SLEEP", "0"}, {"SHUTDOWN"}, {"MODULE", "LIST"},
			{"ACL", "LIST"}, {"REPLICAOF", "NO", "ONE"}, {"SLAVEOF", "NO", "ONE"}, {"FAILOVER"}, {"CLUSTER", "INFO"},
			{"MONITOR"}, {"SAVE"}, {"BGSAVE"}, {"BGREWRITEAOF"}, {"MIGRATE", "127.0.0.1", "1", "k", "0", "1"},
			{"SYNC"}, {"PSYNC", "?", "-1"},
			{"CLIENT", "PAUSE", "600000", "ALL"}, {"CLIENT", "UNPAUSE"}, {"CLIENT", "KILL", "USER", "platform-admin"},
			{"CLIENT", "NO-EVICT", "on"},
		} {
			// DEBUG and MODULE are also switched off server-wide, which Redis
			// checks before the ACL.
			Expect(tenant.Do(ctx, cmd...).Err()).To(MatchError(MatchRegexp("NOPERM|command not allowed")), "%v", cmd)
		}
		Expect(admin.Do(ctx, "CONFIG", "GET", "maxmemory").Err()).To(Succeed())
		Expect(tenant.Do(ctx, "CLIENT", "SETNAME", "app").Err()).To(Succeed())
		Expect(tenant.Do(ctx, "CLIENT", "LIST").Err()).To(Succeed())
	})

	It("takes every setting the platform owns, as CONFIG GET reads them back", func(ctx SpecContext) {
		got, err := admin.ConfigGet(ctx, "*").Result()
		Expect(err).NotTo(HaveOccurred())
		l := redisconf.LimitsFor(32 << 20)
		Expect(got).To(HaveKeyWithValue("proto-max-bulk-len", strconv.FormatInt(l.MaxBulk, 10)))
		Expect(got).To(HaveKeyWithValue("client-query-buffer-limit", strconv.FormatInt(l.QueryBuffer, 10)))
		Expect(got).To(HaveKeyWithValue("maxmemory-clients", strconv.FormatInt(l.Clients, 10)))
		Expect(got["client-output-buffer-limit"]).To(HavePrefix("normal " + strconv.FormatInt(l.ClientOutput, 10) + " 0 0 "))
		// The live command sets the same values the file did.
		settings := redisconf.Config{Port: port, MaxMemoryBytes: 32 << 20, Params: params.Defaults()}.Settings()
		Expect(admin.Do(ctx, redisconf.ConfigSet(settings)...).Err()).To(Succeed())
	})

	// The memory attacks a tenant can make with its own credentials, each
	// of which took a 64 MB instance to 1.5 GB before the limits.
	Describe("memory a client makes the server hold", func() {
		const value = 10 << 20
		ceiling := redisconf.MemoryCeiling(32 << 20)

		peak := func(ctx context.Context) int64 {
			v, err := admin.InfoMap(ctx, "memory").Result()
			Expect(err).NotTo(HaveOccurred())
			n, err := strconv.ParseInt(v["Memory"]["used_memory_peak"], 10, 64)
			Expect(err).NotTo(HaveOccurred())
			return n
		}

		It("disconnects a client that asks for replies it never reads", func(ctx SpecContext) {
			// Under an eviction policy the server would evict the value
			// itself once the replies count against maxmemory.
			Expect(admin.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err()).To(Succeed())
			Expect(tenant.Set(ctx, "big", strings.Repeat("x", value), 0).Err()).To(Succeed())
			conn, err := net.Dial("tcp", admin.Options().Addr)
			Expect(err).NotTo(HaveOccurred())
			defer conn.Close()
			var req strings.Builder
			fmt.Fprintf(&req, "AUTH binding-1 %s\r\n", tenantPass)
			for range 150 {
				req.WriteString("GET big\r\n")
			}
			_, err = conn.Write([]byte(req.String()))
			Expect(err).NotTo(HaveOccurred())
			// The server closes the connection once its unread replies pass
			// the limit; until then they would have grown to 1.5 GB.
			Eventually(func() string { return tenant.ClientList(ctx).Val() }).WithTimeout(10 * time.Second).
				ShouldNot(ContainSubstring("cmd=get"))
			Expect(conn.SetReadDeadline(time.Now().Add(10 * time.Second))).To(Succeed())
			_, err = io.Copy(io.Discard, conn)
			Expect(err).NotTo(HaveOccurred(), "the server closed the connection")
			Expect(peak(ctx)).To(BeNumerically("<", ceiling))
			Expect(tenant.Ping(ctx).Err()).To(Succeed())
		})

		It("refuses a request longer than the instance before reading it", func(ctx SpecContext) {
			for range 3 {
				conn, err := net.Dial("tcp", admin.Options().Addr)
				Expect(err).NotTo(HaveOccurred())
				defer conn.Close()
				fmt.Fprintf(conn, "AUTH binding-1 %s\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n", tenantPass, 499<<20)
				Expect(conn.SetReadDeadline(time.Now().Add(10 * time.Second))).To(Succeed())
				reply, _ := io.ReadAll(conn)
				Expect(string(reply)).To(ContainSubstring("invalid bulk length"))
			}
			Expect(peak(ctx)).To(BeNumerically("<", ceiling))
		})
	})

	It("lets a replication user replicate and read INFO replication, nothing else", func(ctx SpecContext) {
		repl := redis.NewClient(&redis.Options{Addr: admin.Options().Addr, Username: "repl-1", Password: tenantPass})
		defer repl.Close()
		Expect(repl.Ping(ctx).Err()).To(Succeed())
		Expect(repl.Info(ctx, "replication").Val()).To(ContainSubstring("role:master"))
		Expect(repl.Do(ctx, "REPLCONF", "listening-port", "1").Err()).To(Succeed())
		for _, cmd := range [][]any{{"GET", "k"}, {"SET", "k", "v"}, {"INFO", "keyspace"}, {"KEYS", "*"}, {"EVAL", "return 1", "0"}, {"SUBSCRIBE", "c"}} {
			Expect(repl.Do(ctx, cmd...).Err()).To(MatchError(ContainSubstring("NOPERM")), "%v", cmd)
		}
	})
})

var _ = Describe("an HA group's member", func() {
	member := redisconf.Config{
		InstanceID: "i-1", Bind: "127.0.0.1", Port: 40000, Dir: "/data", ACLFile: "/data/users.acl",
		MaxMemoryBytes: 64 << 20, Params: params.Defaults(),
		HA: &redisconf.HA{User: "ha-replication", Password: "pw", AnnounceIP: "10.0.0.1", AnnouncePort: 40000, Followers: 2},
	}

	It("replicates with the group's user whoever leads, and leads only with a follower in sync", func() {
		settings := map[string]string{}
		for _, d := range member.Settings() {
			settings[d.Name] = d.Value
		}
		Expect(settings).To(HaveKeyWithValue("min-replicas-to-write", "1"))
		Expect(settings).To(HaveKeyWithValue("min-replicas-max-lag", "3"))
		Expect(settings).To(HaveKeyWithValue("masteruser", "ha-replication"))
		Expect(settings).To(HaveKeyWithValue("masterauth", "pw"))
		Expect(settings).To(HaveKeyWithValue("replica-announce-ip", "10.0.0.1"))
		Expect(settings).To(HaveKeyWithValue("replica-announce-port", "40000"))
		Expect(settings).To(HaveKeyWithValue("repl-diskless-sync-max-replicas", "2"))
		var b strings.Builder
		Expect(redisconf.Render(&b, member)).To(Succeed())
		Expect(b.String()).To(ContainSubstring("min-replicas-to-write 1\n"))

		lone := member
		lone.HA = nil
		for _, d := range lone.Settings() {
			Expect(d.Name).NotTo(HavePrefix("min-replicas"), "a lone server renders none of it")
		}
		bad := member
		bad.HA = &redisconf.HA{User: "ha-replication"}
		Expect(redisconf.Render(io.Discard, bad)).To(MatchError(ContainSubstring("an HA member needs")))
		bad.HA = &redisconf.HA{User: "u", Password: "p", AnnounceIP: "h", AnnouncePort: 1, TLS: true}
		Expect(redisconf.Render(io.Discard, bad)).To(MatchError(ContainSubstring("over TLS needs")))
	})

	It("gives Sentinel's user what Sentinel needs and no key", func() {
		rule := redisconf.ACLRule(redisconf.User{Name: "ha-sentinel", PasswordHash: secret.Hash("x"), Role: redisconf.RoleSentinel})
		Expect(rule).To(HavePrefix("on #" + secret.Hash("x") + " resetchannels &__sentinel__:hello -@all"))
		for _, c := range []string{"+slaveof", "+config|rewrite", "+client|kill", "+publish", "+multi", "+exec"} {
			Expect(rule).To(ContainSubstring(" " + c))
		}
		Expect(rule).NotTo(ContainSubstring("~"))
		var b strings.Builder
		Expect(redisconf.RenderACL(&b, []redisconf.User{{Name: "ha-sentinel", PasswordHash: secret.Hash("x"), Role: redisconf.RoleSentinel}})).To(Succeed())
	})
})

var _ = Describe("a tenant of a server Sentinels monitor", func() {
	It("may publish to every channel but Sentinel's, through a selector", func() {
		rule := redisconf.ACLRule(redisconf.User{Name: "app", PasswordHash: secret.Hash("x"), Sentinel: true})
		Expect(rule).To(ContainSubstring(" ~* &* +@all"))
		Expect(rule).To(ContainSubstring(" -publish (+publish &[^_]* &_[^_]* &_ "))
		Expect(rule).To(HaveSuffix(" &__sentinel__:hell[^o]* &__sentinel__:hell &__sentinel__:hello?*)"))
		Expect(redisconf.ACLRule(redisconf.User{Name: "app", PasswordHash: secret.Hash("x")})).NotTo(ContainSubstring("("))
	})
})

var _ = Describe("SeedAOF", func() {
	// startOn starts a real redis-server from the rendered files on data
	// and returns an admin client and the server's log; the server is
	// stopped gracefully (it flushes its AOF) by the returned function.
	startOn := func(data string) (*redis.Client, string, func()) {
		dir := filepath.Dir(data)
		port, err := redistest.FreePort()
		Expect(err).NotTo(HaveOccurred())
		conf, acl, log := filepath.Join(dir, "redis.conf"), filepath.Join(dir, "users.acl"), filepath.Join(dir, "redis.log")
		pass := secret.New()
		Expect(redisconf.WriteACLFile(acl, []redisconf.User{{Name: "platform-admin", PasswordHash: secret.Hash(pass), Admin: true}})).To(Succeed())
		Expect(redisconf.WriteFile(conf, redisconf.Config{
			InstanceID: "t", Bind: "127.0.0.1", Port: port, Dir: data, ACLFile: acl, LogFile: log, MaxMemoryBytes: 32 << 20, Hz: redisconf.SharedHz, Params: params.Defaults(),
		})).To(Succeed())
		cmd := exec.Command(redistest.MustProgram(GinkgoT(), "redis-server"), conf)
		Expect(cmd.Start()).To(Succeed())
		DeferCleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Username: "platform-admin", Password: pass})
		DeferCleanup(c.Close)
		Eventually(func() error { return c.Ping(context.Background()).Err() }).WithTimeout(30 * time.Second).Should(Succeed())
		return c, log, func() {
			Expect(cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
			Expect(cmd.Wait()).To(Succeed())
		}
	}
	newData := func() string {
		data := filepath.Join(GinkgoT().TempDir(), "data")
		Expect(os.Mkdir(data, 0o700)).To(Succeed())
		return data
	}
	aof := func(data string) map[string]string {
		files := map[string]string{}
		entries, _ := os.ReadDir(filepath.Join(data, "appendonlydir"))
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(data, "appendonlydir", e.Name()))
			Expect(err).NotTo(HaveOccurred())
			files[e.Name()] = string(b)
		}
		return files
	}
	seeded := map[string]string{"appendonly.aof.1.incr.aof": "", "appendonly.aof.manifest": "file appendonly.aof.1.incr.aof seq 1 type i\n"}

	It("gives an empty data directory an empty AOF that redis-server opens, without writing a base file, and keeps writes in", func(ctx SpecContext) {
		data := newData()
		sync, err := redisconf.SeedAOF(data)
		Expect(err).NotTo(HaveOccurred())
		Expect(sync()).To(Succeed())
		Expect(aof(data)).To(Equal(seeded))

		c, log, stop := startOn(data)
		b, err := os.ReadFile(log)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(b)).To(ContainSubstring("Opening AOF incr file appendonly.aof.1.incr.aof on server start"))
		Expect(string(b)).NotTo(ContainSubstring("Creating AOF base file"))
		Expect(c.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		Expect(c.Do(ctx, "BGREWRITEAOF").Err()).To(Succeed(), "a rewrite (a backup's snapshot) works on it")
		Eventually(func() string { return c.Info(ctx, "persistence").Val() }).WithTimeout(30 * time.Second).Should(ContainSubstring("aof_rewrite_in_progress:0"))
		Expect(c.Set(ctx, "k2", "v2", 0).Err()).To(Succeed())
		stop()

		c, _, _ = startOn(data)
		Expect(c.MGet(ctx, "k", "k2").Val()).To(Equal([]any{"v", "v2"}))
	})

	It("leaves data alone: a dump.rdb, an AOF holding anything; and seeds again over a seed of empty files cut short", func() {
		data := newData()
		Expect(os.WriteFile(filepath.Join(data, "dump.rdb"), []byte("REDIS"), 0o600)).To(Succeed())
		sync, err := redisconf.SeedAOF(data)
		Expect(err).NotTo(HaveOccurred())
		Expect(sync()).To(Succeed())
		Expect(filepath.Join(data, "appendonlydir")).NotTo(BeADirectory())

		data = newData()
		Expect(os.Mkdir(filepath.Join(data, "appendonlydir"), 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(data, "appendonlydir", "appendonly.aof.manifest"), []byte("file appendonly.aof.3.base.rdb seq 3 type b\n"), 0o644)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(data, "appendonlydir", "appendonly.aof.3.base.rdb"), nil, 0o644)).To(Succeed())
		sync, err = redisconf.SeedAOF(data)
		Expect(err).NotTo(HaveOccurred())
		Expect(sync()).To(Succeed())
		Expect(aof(data)).To(HaveKeyWithValue("appendonly.aof.manifest", "file appendonly.aof.3.base.rdb seq 3 type b\n"))

		data = newData()
		Expect(os.Mkdir(filepath.Join(data, "appendonlydir"), 0o755)).To(Succeed())
		for _, f := range []string{"appendonly.aof.manifest", "appendonly.aof.1.incr.aof"} {
			Expect(os.WriteFile(filepath.Join(data, "appendonlydir", f), nil, 0o644)).To(Succeed(), "empty after a power cut")
		}
		sync, err = redisconf.SeedAOF(data)
		Expect(err).NotTo(HaveOccurred())
		Expect(sync()).To(Succeed())
		Expect(aof(data)).To(Equal(seeded))
	})
})
