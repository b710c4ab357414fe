package nodeagent_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/nodeagent"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/internal/sentinel"
)

// failover bounds waits that span a Sentinel failover: calling the leader
// down, electing, promoting, pointing the followers at the new leader.
const failover = 60 * time.Second

// haConfig is nodeConfig with Sentinel on a free port of host.
func haConfig(host string) nodeagent.Config {
	cfg := nodeConfig(tempDir(), host)
	port := freePort(host)
	for port == cfg.Port {
		port = freePort(host) // the kernel may hand out the port it just freed
	}
	cfg.HA = &nodeagent.HAConfig{SentinelPort: port}
	return cfg
}

// haGroup is three nodes, each claimed by one instance and joined to one
// group, whose first leader is the first node.
type haGroup struct {
	id    string
	nodes []*node
	g     sentinel.Group
}

// formGroup starts three HA nodes on 127.0.0.1-3, claims them for one
// instance and joins them into a group led by the first.
func formGroup(ctx context.Context) *haGroup { return formGroupTLS(ctx, false) }

// formGroupTLS is formGroup; with withTLS the nodes serve TLS and the group
// replicates, and its Sentinels serve, over TLS.
func formGroupTLS(ctx context.Context, withTLS bool) *haGroup {
	return formGroupWith(ctx, groupOptions{tls: withTLS})
}

// groupOptions change how formGroupWith starts the nodes.
type groupOptions struct {
	// tls: the nodes serve TLS and the group runs over it.
	tls bool
	// config, when set, changes each node's config before it starts.
	config func(*nodeagent.Config)
	// logs, when set, receive the log of the node of the same index.
	logs []io.Writer
}

// formGroupWith is formGroup with options.
func formGroupWith(ctx context.Context, o groupOptions) *haGroup {
	withTLS := o.tls
	h := &haGroup{id: "ha-" + secret.New()[:8]}
	h.g.TLS = withTLS
	for i, host := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
		cfg := haConfig(host)
		if o.config != nil {
			o.config(&cfg)
		}
		port := cfg.Port
		if withTLS {
			cfg.RedisTLS = ca.RedisTLS(GinkgoT(), tempDir(), host)
			for cfg.TLSPort == 0 || cfg.TLSPort == cfg.Port || cfg.TLSPort == cfg.HA.SentinelPort {
				cfg.TLSPort = freePort(host)
			}
			port = cfg.TLSPort
		}
		var w io.Writer = GinkgoWriter
		if i < len(o.logs) {
			w = io.MultiWriter(GinkgoWriter, o.logs[i])
		}
		nd := startNodeLogging(cfg, w)
		nd.claim(ctx, h.id)
		h.nodes = append(h.nodes, nd)
		h.g.Members = append(h.g.Members, sentinel.Member{Host: host, Port: port, SentinelPort: nd.cfg.HA.SentinelPort})
	}
	DeferCleanup(func() {
		if !CurrentSpecReport().Failed() {
			return
		}
		for _, nd := range h.nodes {
			for _, f := range []string{"redis-server.log", "redis-sentinel.log"} {
				data, _ := os.ReadFile(filepath.Join(nd.cfg.DataDir, "logs", f))
				GinkgoWriter.Printf("--- %s of %s\n%s\n", f, nd.cfg.Host, data)
			}
		}
	})
	h.g.MasterName = "redis-" + h.id
	h.g.ReplicationPassword, h.g.SentinelPassword = secret.New(), secret.New()
	for _, nd := range h.nodes {
		_, err := nd.client.JoinHA(ctx, h.id, h.g)
		Expect(err).NotTo(HaveOccurred())
	}
	return h
}

// sentinelAddrs are the group's Sentinels as host:port.
// awaitFollowers waits until both followers follow the first leader, with
// their links up, and returns the leader's address.
func (h *haGroup) awaitFollowers(ctx context.Context) string {
	GinkgoHelper()
	leader := h.nodes[0].addr()
	for _, nd := range h.nodes[1:] {
		Eventually(role).WithContext(ctx).WithArguments(nd).WithTimeout(failover).Should(Equal("follower of " + leader + " link up"))
	}
	return leader
}

// bindAll makes binding id on every member (and so in every Sentinel) with
// one new password, and returns it.
func (h *haGroup) bindAll(ctx context.Context, id string) string {
	GinkgoHelper()
	pw := secret.New()
	for _, nd := range h.nodes {
		_, err := nd.client.Bind(ctx, h.id, id, agentapi.BindingRequest{Password: pw})
		Expect(err).NotTo(HaveOccurred())
	}
	return pw
}

func (h *haGroup) sentinelAddrs() []string {
	var addrs []string
	for _, m := range h.g.Members {
		addrs = append(addrs, net.JoinHostPort(m.Host, strconv.Itoa(m.SentinelPort)))
	}
	return addrs
}

// tls is the client TLS config of a group over TLS; nil otherwise.
func (h *haGroup) tls() *tls.Config {
	if !h.g.TLS {
		return nil
	}
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM([]byte(ca.PEM))).To(BeTrue())
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// leaderAt is the leader the Sentinel of member i names, as host:port.
func (h *haGroup) leaderAt(ctx context.Context, i int) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: h.sentinelAddrs()[i], Username: sentinel.User, Password: h.g.SentinelPassword, MaxRetries: -1, TLSConfig: h.tls()})
	defer c.Close()
	a, err := c.GetMasterAddrByName(ctx, h.g.MasterName).Result()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(a[0], a[1]), nil
}

// role is what node nd's redis-server says it is, and whom it follows.
func role(ctx context.Context, nd *node) (string, error) {
	c := nd.admin(nd.adminPassword())
	info, err := c.InfoMap(ctx, "replication").Result()
	if err != nil {
		return "", err
	}
	r := info["Replication"]
	if r["role"] == "slave" {
		return "follower of " + net.JoinHostPort(r["master_host"], r["master_port"]) + " link " + r["master_link_status"], nil
	}
	return r["role"], nil
}

// firstWrite writes key on a group's new leader. With min-replicas-to-write
// 1 the leader refuses writes (NOREPLICAS) until a follower has
// acknowledged the stream, which followers do once a second: a follower's
// link being up does not yet make it a good replica.
func firstWrite(ctx context.Context, c *redis.Client, key, value string) {
	GinkgoHelper()
	Eventually(func() error { return c.Set(ctx, key, value, 0).Err() }).WithContext(ctx).WithTimeout(failover).Should(Succeed())
}

func sentinelPid(nd *node) int {
	data, err := os.ReadFile(filepath.Join(nd.cfg.DataDir, "sentinel.pid"))
	Expect(err).NotTo(HaveOccurred())
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	Expect(err).NotTo(HaveOccurred())
	return pid
}

var _ = Describe("a dedicated node in an HA group", func() {
	It("forms a group, replicates, fails over when the leader's server is killed, and takes the old leader back as a follower", func(ctx SpecContext) {
		h := formGroup(ctx)
		leader := h.awaitFollowers(ctx)

		By("binding on every member, and in every Sentinel")
		pw := h.bindAll(ctx, "app")
		app := h.nodes[0].tenant("app", pw)
		firstWrite(ctx, app, "k", "v")
		Expect(app.Do(ctx, "WAIT", 2, 5000).Int()).To(Equal(2), "both followers acknowledge the write")
		for _, nd := range h.nodes[1:] {
			f := nd.tenant("app", pw)
			Expect(f.Get(ctx, "k").Val()).To(Equal("v"))
			Expect(f.Set(ctx, "x", "y", 0).Err()).To(MatchError(ContainSubstring("READONLY")))
		}

		By("the tenant cannot forge a Sentinel's hello, and keeps the rest of pub/sub")
		hello := "127.6.6.6,26379," + strings.Repeat("f", 40) + ",99," + h.g.MasterName + ",127.6.6.6,6379,99"
		for _, nd := range h.nodes {
			c := nd.tenant("app", pw)
			Expect(c.Publish(ctx, "__sentinel__:hello", hello).Err()).To(MatchError(ContainSubstring("NOPERM")), "on %s", nd.addr())
			Expect(c.Eval(ctx, "return redis.call('publish', 'news', ARGV[1])", nil, "x").Err()).To(Succeed())
			Expect(c.Do(ctx, "EVAL", "return redis.call('publish', '__sentinel__:hello', ARGV[1])", 0, hello).Err()).To(MatchError(ContainSubstring("can't publish to the channel")))
			Expect(c.Publish(ctx, "news", "x").Err()).To(Succeed())
			Expect(c.Publish(ctx, "__sentinel__:hello2", "x").Err()).To(Succeed())
			ps := c.PSubscribe(ctx, "__keyspace@0__:*")
			_, err := ps.Receive(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(ps.Close()).To(Succeed())
		}

		By("the tenant cannot change what bounds a failover's losses")
		Expect(app.ConfigSet(ctx, "min-replicas-to-write", "0").Err()).To(MatchError(ContainSubstring("NOPERM")))
		Expect(app.ConfigGet(ctx, "min-replicas-to-write").Err()).To(MatchError(ContainSubstring("NOPERM")))
		admin := h.nodes[0].admin(h.nodes[0].adminPassword())
		Expect(admin.ConfigGet(ctx, "min-replicas-*").Val()).To(Equal(map[string]string{"min-replicas-to-write": "1", "min-replicas-max-lag": "3"}))
		_, err := h.nodes[0].client.Update(ctx, h.id, agentapi.UpdateRequest{Parameters: params.Parameters{MaxMemoryPolicy: "allkeys-lru"}})
		Expect(err).NotTo(HaveOccurred())
		Expect(admin.ConfigGet(ctx, "min-replicas-to-write").Val()).To(HaveKeyWithValue("min-replicas-to-write", "1"), "a parameter change keeps it")

		By("the app's user on a Sentinel may find the leader, not reconfigure it")
		sc := redis.NewSentinelClient(&redis.Options{Addr: h.sentinelAddrs()[1], Username: "app", Password: pw})
		DeferCleanup(sc.Close)
		Expect(sc.GetMasterAddrByName(ctx, h.g.MasterName).Val()).To(Equal([]string{"127.0.0.1", strconv.Itoa(h.nodes[0].cfg.Port)}))
		Expect(sc.Replicas(ctx, h.g.MasterName).Err()).To(Succeed())
		Expect(sc.Set(ctx, h.g.MasterName, "quorum", "1").Err()).To(MatchError(ContainSubstring("NOPERM")))
		Expect(sc.Failover(ctx, h.g.MasterName).Err()).To(MatchError(ContainSubstring("NOPERM")))
		Expect(sc.Process(ctx, redis.NewSliceCmd(ctx, "ACL", "LIST"))).To(MatchError(ContainSubstring("NOPERM")))

		fc := redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: h.g.MasterName, SentinelAddrs: h.sentinelAddrs(),
			SentinelUsername: "app", SentinelPassword: pw, Username: "app", Password: pw,
		})
		DeferCleanup(fc.Close)
		Expect(fc.Set(ctx, "before", "1", 0).Err()).To(Succeed())

		By("kill -9 of the leader's redis-server")
		Expect(syscall.Kill(h.nodes[0].pid(), syscall.SIGKILL)).To(Succeed())
		Eventually(h.leaderAt).WithContext(ctx).WithArguments(1).WithTimeout(failover).ShouldNot(Equal(leader))
		promoted, err := h.leaderAt(ctx, 1)
		Expect(err).NotTo(HaveOccurred())
		Expect(promoted).To(BeElementOf(h.nodes[1].addr(), h.nodes[2].addr()))
		Eventually(func() error { return fc.Set(ctx, "after", "2", 0).Err() }).WithContext(ctx).WithTimeout(failover).Should(Succeed())

		By("the old leader's server, restarted by its supervisor, follows the new leader")
		for _, nd := range h.nodes {
			if nd.addr() != promoted {
				Eventually(role).WithContext(ctx).WithArguments(nd).WithTimeout(failover).Should(Equal("follower of " + promoted + " link up"))
			}
		}
		Expect(fc.Do(ctx, "WAIT", 2, 5000).Int()).To(Equal(2))
		for _, nd := range h.nodes {
			c := nd.tenant("app", pw)
			Expect(c.MGet(ctx, "k", "before", "after").Val()).To(Equal([]any{"v", "1", "2"}), "the binding made before works on %s", nd.addr())
		}
		inst := h.nodes[0].get(ctx, h.id)
		Expect(inst.Live.Replication.Role).To(Equal(replication.RoleFollower))
		Expect(net.JoinHostPort(inst.Live.Replication.LeaderHost, strconv.Itoa(inst.Live.Replication.LeaderPort))).To(Equal(promoted))
	})

	It("replicates and fails over over TLS when the nodes serve TLS, with Sentinels on TLS", func(ctx SpecContext) {
		h := formGroupTLS(ctx, true)
		leader := h.g.Members[0].Addr()
		for _, nd := range h.nodes[1:] {
			Eventually(role).WithContext(ctx).WithArguments(nd).WithTimeout(failover).Should(Equal("follower of " + leader + " link up"))
		}
		conn, err := net.DialTimeout("tcp", h.sentinelAddrs()[0], time.Second)
		Expect(err).NotTo(HaveOccurred())
		_, err = conn.Write([]byte("PING\r\n"))
		Expect(err).NotTo(HaveOccurred())
		Expect(conn.SetReadDeadline(time.Now().Add(2 * time.Second))).To(Succeed())
		reply := make([]byte, 16)
		n, _ := conn.Read(reply)
		conn.Close()
		Expect(string(reply[:n])).NotTo(ContainSubstring("PONG"), "Sentinel serves TLS only")

		pw := h.bindAll(ctx, "app")
		fc := redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: h.g.MasterName, SentinelAddrs: h.sentinelAddrs(), TLSConfig: h.tls(),
			SentinelUsername: "app", SentinelPassword: pw, Username: "app", Password: pw,
		})
		DeferCleanup(fc.Close)
		Expect(fc.Set(ctx, "before", "1", 0).Err()).To(Succeed())
		Expect(fc.Do(ctx, "WAIT", 2, 5000).Int()).To(Equal(2))

		Expect(syscall.Kill(h.nodes[0].pid(), syscall.SIGKILL)).To(Succeed())
		Eventually(h.leaderAt).WithContext(ctx).WithArguments(1).WithTimeout(failover).ShouldNot(Equal(leader))
		promoted, err := h.leaderAt(ctx, 1)
		Expect(err).NotTo(HaveOccurred())
		Expect(promoted).To(BeElementOf(h.g.Members[1].Addr(), h.g.Members[2].Addr()))
		Eventually(func() error { return fc.Set(ctx, "after", "2", 0).Err() }).WithContext(ctx).WithTimeout(failover).Should(Succeed())
		Eventually(role).WithContext(ctx).WithArguments(h.nodes[0]).WithTimeout(failover).Should(Equal("follower of " + promoted + " link up"))
		Expect(fc.MGet(ctx, "before", "after").Val()).To(Equal([]any{"1", "2"}))
	})

	It("takes a member back as a follower after kill -9 of its agent and its redis-server", func(ctx SpecContext) {
		h := formGroup(ctx)
		leader := h.awaitFollowers(ctx)
		pw := h.bindAll(ctx, "app")
		app := h.nodes[0].tenant("app", pw)
		firstWrite(ctx, app, "k", "v")
		Expect(app.Do(ctx, "WAIT", 2, 5000).Int()).To(Equal(2))

		victim := h.nodes[0]
		pid := victim.pid()
		victim.crash()
		Expect(syscall.Kill(pid, syscall.SIGKILL)).To(Succeed())
		Eventually(h.leaderAt).WithContext(ctx).WithArguments(1).WithTimeout(failover).ShouldNot(Equal(leader))
		promoted, err := h.leaderAt(ctx, 1)
		Expect(err).NotTo(HaveOccurred())

		By("the agent starts again on the same files")
		back := startNode(victim.cfg)
		Eventually(role).WithContext(ctx).WithArguments(back).WithTimeout(failover).Should(Equal("follower of " + promoted + " link up"))
		Expect(back.tenant("app", pw).Get(ctx, "k").Val()).To(Equal("v"))
		sc := redis.NewSentinelClient(&redis.Options{Addr: h.sentinelAddrs()[0], Username: "app", Password: pw})
		DeferCleanup(sc.Close)
		Expect(sc.GetMasterAddrByName(ctx, h.g.MasterName).Err()).To(Succeed(), "its Sentinel, adopted, still knows the binding")

		By("a restart of the new leader's agent, its server adopted, changes nobody's role")
		var lead *node
		for _, nd := range h.nodes[1:] {
			if nd.addr() == promoted {
				lead = nd
			}
		}
		Expect(lead).NotTo(BeNil())
		lead.crash()
		lead = startNode(lead.cfg)
		Expect(role(ctx, lead)).To(Equal("master"))
		Expect(h.leaderAt(ctx, 0)).To(Equal(promoted))
		Expect(lead.tenant("app", pw).Set(ctx, "still", "leading", 0).Err()).To(Succeed())
		Consistently(role).WithContext(ctx).WithArguments(back).WithTimeout(3 * time.Second).Should(Equal("follower of " + promoted + " link up"))
	})

	It("brings a leader whose server died back as the leader, with its data, when no follower could be promoted", func(ctx SpecContext) {
		logs := gbytes.NewBuffer()
		h := formGroupWith(ctx, groupOptions{logs: []io.Writer{logs}})
		h.awaitFollowers(ctx)
		pw := h.bindAll(ctx, "app")
		app := h.nodes[0].tenant("app", pw)
		firstWrite(ctx, app, "k", "v")
		Expect(app.Do(ctx, "WAIT", 2, 5000).Int()).To(Equal(2))

		By("both followers lost with their agents; their Sentinels stay")
		for _, nd := range h.nodes[1:] {
			pid := nd.pid()
			nd.crash()
			Expect(syscall.Kill(pid, syscall.SIGKILL)).To(Succeed())
		}

		By("kill -9 of the leader's redis-server: its agent waits for a promotion that cannot come, then leads again")
		Expect(syscall.Kill(h.nodes[0].pid(), syscall.SIGKILL)).To(Succeed())
		Eventually(logs).WithTimeout(failover).Should(gbytes.Say("no follower was promoted; it leads again"))
		Eventually(role).WithContext(ctx).WithArguments(h.nodes[0]).WithTimeout(failover).Should(Equal("master"))
		Expect(app.Get(ctx, "k").Val()).To(Equal("v"))
		leader, err := h.leaderAt(ctx, 0)
		Expect(err).NotTo(HaveOccurred())
		Expect(leader).To(Equal(h.nodes[0].addr()), "the Sentinels still name it")
	})

	It("wipes Sentinel with the rest when a member is reset, and refuses what does not fit a group", func(ctx SpecContext) {
		h := formGroup(ctx)
		nd := h.nodes[2]

		By("refusals")
		_, err := nd.client.JoinHA(ctx, h.id, func() sentinel.Group { g := h.g; g.MasterName = "other"; return g }())
		Expect(err).To(MatchError(agentapi.ErrConflict))
		_, err = nd.client.SetReplication(ctx, h.id, agentapi.ReplicationRequest{})
		Expect(err).To(MatchError(agentapi.ErrInvalid))
		_, err = nd.client.Bind(ctx, h.id, sentinel.User, agentapi.BindingRequest{Password: secret.New()})
		Expect(err).To(MatchError(agentapi.ErrInvalid))
		plain := startNode(nodeConfig(tempDir(), "127.0.0.4"))
		plain.claim(ctx, h.id)
		_, err = plain.client.JoinHA(ctx, h.id, h.g)
		Expect(err).To(MatchError(ContainSubstring("runs no Sentinel")))
		stranger := startNode(haConfig("127.0.0.5"))
		stranger.claim(ctx, h.id)
		_, err = stranger.client.JoinHA(ctx, h.id, h.g)
		Expect(err).To(MatchError(ContainSubstring("not a member of the group")))
		short := h.g
		short.Members = short.Members[:2]
		_, err = stranger.client.JoinHA(ctx, h.id, short)
		Expect(err).To(MatchError(ContainSubstring("a group has 3 members")))

		By("an unbind takes the user off the Sentinel too")
		pw := secret.New()
		_, err = nd.client.Bind(ctx, h.id, "gone", agentapi.BindingRequest{Password: pw})
		Expect(err).NotTo(HaveOccurred())
		sc := redis.NewSentinelClient(&redis.Options{Addr: h.sentinelAddrs()[2], Username: "gone", Password: pw, MaxRetries: -1})
		DeferCleanup(sc.Close)
		Expect(sc.GetMasterAddrByName(ctx, h.g.MasterName).Err()).To(Succeed())
		Expect(nd.client.Unbind(ctx, h.id, "gone")).To(Succeed())
		Expect(sc.GetMasterAddrByName(ctx, h.g.MasterName).Err()).To(HaveOccurred(), "the user's connection is closed")
		Expect(sc.GetMasterAddrByName(ctx, h.g.MasterName).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		data, err := os.ReadFile(filepath.Join(nd.cfg.DataDir, "sentinel", "sentinel.conf"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(data)).NotTo(ContainSubstring("user gone "), "Sentinel saved its users")

		By("the reset")
		sentinelLog := filepath.Join(nd.cfg.DataDir, "logs", "redis-sentinel.log")
		Eventually(func() string { data, _ := os.ReadFile(sentinelLog); return string(data) }).
			Should(ContainSubstring("+monitor master "+h.g.MasterName), "Sentinel logs into its own file in the log folder")
		spid := sentinelPid(nd)
		Expect(nd.client.Delete(ctx, h.id)).To(Succeed())
		Expect(nd.node(ctx).State).To(Equal(agentapi.NodeFree))
		Eventually(func() error { return processAlive(spid) }).Should(MatchError(syscall.ESRCH))
		_, err = os.Stat(filepath.Join(nd.cfg.DataDir, "sentinel"))
		Expect(errors.Is(err, os.ErrNotExist)).To(BeTrue(), "Sentinel's files are gone: %v", err)
		logs, err := filepath.Glob(sentinelLog + "*")
		Expect(err).NotTo(HaveOccurred())
		Expect(logs).To(BeEmpty(), "Sentinel's log, which names the group, goes with the reset")
		conn, err := net.DialTimeout("tcp", h.sentinelAddrs()[2], time.Second)
		if err == nil {
			conn.Close()
		}
		Expect(err).To(HaveOccurred(), "nothing listens on Sentinel's port")
		admin := nd.admin(nd.adminPassword())
		Expect(admin.Do(ctx, "ACL", "USERS").StringSlice()).To(ConsistOf("default", "platform-admin"))
		Expect(admin.ConfigGet(ctx, "min-replicas-to-write").Val()).To(HaveKeyWithValue("min-replicas-to-write", "0"))
	})
})
