package instance_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
	"github.com/cf-redis/redis-for-cf/src/testkit/fakeleader"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

// startGuard runs a Guard over s until the spec ends.
func startGuard(maxScriptSeconds int, servers ...*server) {
	g := instance.NewGuard(instance.GuardConfig{
		Servers: func() []*instance.Server {
			var list []*instance.Server
			for _, s := range servers {
				list = append(list, s.Server)
			}
			return list
		},
		MaxScriptSeconds: maxScriptSeconds,
		Logger:           slog.New(slog.NewTextHandler(GinkgoWriter, nil)),
	})
	g.Start()
	DeferCleanup(g.Stop)
}

// adminConns are the CLIENT LIST lines of the agent's admin connections.
func adminConns(ctx context.Context, s *server) []string {
	list, err := s.admin().ClientList(ctx).Result()
	Expect(err).NotTo(HaveOccurred())
	var found []string
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, " name="+instance.AdminClientName+" ") {
			found = append(found, line)
		}
	}
	return found
}

func field(line, name string) string {
	for _, kv := range strings.Fields(line) {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

var _ = Describe("the agent's way in", func() {
	It("is one named admin connection, exempt from client eviction, kept across commands", func(ctx SpecContext) {
		s := newServer(tempDir(), "inst-1", nil)
		s.start(ctx)
		conns := adminConns(ctx, s)
		Expect(conns).To(HaveLen(1), "opened as the server started")
		Expect(field(conns[0], "flags")).To(ContainSubstring("e"), "CLIENT NO-EVICT on")
		id := field(conns[0], "id")
		s.bind(ctx, "b1")
		Expect(s.Unbind(ctx, "inst-1", "b1")).To(Succeed())
		_, err := s.Get(ctx, "inst-1")
		Expect(err).NotTo(HaveOccurred())
		conns = adminConns(ctx, s)
		Expect(conns).To(HaveLen(1))
		Expect(field(conns[0], "id")).To(Equal(id), "the same connection served every command")
	})

	It("is dialled again after the server restarted", func(ctx SpecContext) {
		s := newServer(tempDir(), "inst-1", nil)
		s.start(ctx)
		Expect(s.Stop(ctx, false)).To(Succeed())
		s.start(ctx)
		s.bind(ctx, "b1")
		Expect(adminConns(ctx, s)).To(HaveLen(1))
	})

	It("keeps bind, unbind, GET and backup working while connections that never log in fill maxclients, and the guard closes those after 10 s and no connection that logged in by password alone", func(ctx SpecContext) {
		// Room in maxmemory-clients for 10,000 idle connections (about 37
		// KB each in Redis 7.0), so they fill maxclients rather than being
		// evicted.
		s := newServer(tempDir(), "inst-1", nil)
		s.store.r.MaxMemoryBytes = 1 << 30
		s.start(ctx)
		// Logged in by its password alone before the flood, so older than
		// every connection the guard closes.
		_, earlyPw := s.bind(ctx, "early")
		early := passwordOnly(s.addr(), earlyPw)
		earlyID, err := early.ClientID(ctx).Result()
		Expect(err).NotTo(HaveOccurred())
		var flood []net.Conn
		DeferCleanup(func() {
			for _, c := range flood {
				c.Close()
			}
		})
		// Full: a new connection is told so at once, and closed.
		full := func() bool {
			c, err := net.Dial("tcp", s.addr())
			Expect(err).NotTo(HaveOccurred())
			defer c.Close()
			Expect(c.SetReadDeadline(time.Now().Add(time.Second))).To(Succeed())
			reply, _ := io.ReadAll(c)
			return strings.Contains(string(reply), "max number of clients reached")
		}
		for !full() {
			for range 500 {
				c, err := net.Dial("tcp", s.addr())
				Expect(err).NotTo(HaveOccurred())
				flood = append(flood, c)
			}
			Expect(len(flood)).To(BeNumerically("<", 12000))
		}

		_, pw := s.bind(ctx, "b1")
		inst, err := s.Get(ctx, "inst-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.Live).NotTo(BeNil())
		a, err := s.Snapshot(ctx, "inst-1", agentapi.SnapshotRequest{Timeout: time.Minute})
		Expect(err).NotTo(HaveOccurred())
		Expect(a.Close()).To(Succeed())
		_, _, err = s.Bind(ctx, "inst-1", "b2", agentapi.BindingRequest{Password: pw})
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Unbind(ctx, "inst-1", "b2")).To(Succeed())

		startGuard(60, s)
		Eventually(func() error {
			c := redis.NewClient(&redis.Options{Addr: s.addr(), Username: "b1", Password: pw, MaxRetries: -1})
			defer c.Close()
			return c.Ping(ctx).Err()
		}).WithTimeout(40*time.Second).WithPolling(time.Second).Should(Succeed(), "an app logs in again")
		info := s.Admin().InfoMap(ctx, "clients").Val()
		connected, err := strconv.Atoi(info["Clients"]["connected_clients"])
		Expect(err).NotTo(HaveOccurred())
		Expect(connected).To(BeNumerically("<", 9000), "the connections that had not logged in for 10 s were closed")
		Expect(early.ClientID(ctx).Val()).To(Equal(earlyID), "a password-only login is its binding's user, not default: the guard left it open")

		Expect(s.Stop(ctx, true)).To(Succeed(), "delete")
	})
})

var _ = Describe("the guard against busy scripts", func() {
	var s *server
	BeforeEach(func(ctx SpecContext) {
		s = newServer(tempDir(), "inst-1", nil)
		s.start(ctx)
		// BUSY after 100 ms rather than Redis's 5 s.
		Expect(s.admin().ConfigSet(ctx, "busy-reply-threshold", "100").Err()).To(Succeed())
		startGuard(1, s)
	})

	// slowTenant is a client of b1 that waits a minute for a reply.
	slowTenant := func(pw string) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: s.addr(), Username: "b1", Password: pw, MaxRetries: -1, ReadTimeout: time.Minute})
		DeferCleanup(c.Close)
		return c
	}

	It("kills a script that only read after max_script_seconds", func(ctx SpecContext) {
		_, pw := s.bind(ctx, "b1")
		c := slowTenant(pw)
		err := c.Eval(ctx, "while true do end", nil).Err()
		Expect(err).To(MatchError(ContainSubstring("Script killed")))
		Eventually(func() string { return s.Describe(s.record()).LastError }).
			Should(Equal("a script ran longer than max_script_seconds (1 s) and was ended by the agent"))
		Expect(c.Ping(ctx).Err()).To(Succeed())
	})

	It("shuts down a server whose script wrote, and it restarts with the data from before the script", func(ctx SpecContext) {
		_, pw := s.bind(ctx, "b1")
		c := slowTenant(pw)
		Expect(c.Set(ctx, "before", "1", 0).Err()).To(Succeed())
		pid := s.pid()
		err := c.Eval(ctx, "redis.call('set', 'during', '1') while true do end", nil).Err()
		Expect(err).To(HaveOccurred())
		Eventually(func() bool { return s.Describe(s.record()).State == agentapi.StateRunning && s.pid() != pid }).
			WithTimeout(30 * time.Second).Should(BeTrue())
		inst := s.Describe(s.record())
		Expect(inst.Restarts).To(Equal(1))
		Expect(inst.LastError).To(HavePrefix("a script ran longer than max_script_seconds (1 s) and was ended by the agent"))
		after := s.tenant("b1", pw)
		Expect(after.Get(ctx, "before").Val()).To(Equal("1"))
		Expect(after.Exists(ctx, "during").Val()).To(BeZero(), "the script's write is gone with it")
	})
})

var _ = Describe("a follower's leader", func() {
	var (
		s      *server
		leader *fakeleader.Leader
	)
	BeforeEach(func(ctx SpecContext) {
		s = newServer(tempDir(), "inst-1", nil)
		s.start(ctx)
		var err error
		leader, err = fakeleader.Start()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(leader.Close)
		_, err = s.SetReplication(ctx, "inst-1", agentapi.ReplicationRequest{Leader: &replication.Leader{Host: "127.0.0.1", Port: leader.Port()}})
		Expect(err).NotTo(HaveOccurred())
		Eventually(leader.Synced).WithTimeout(10 * time.Second).Should(Equal(1))
	})

	open := func(ctx context.Context) bool {
		c := redis.NewClient(&redis.Options{Addr: s.addr(), MaxRetries: -1})
		defer c.Close()
		return c.Ping(ctx).Err() == nil
	}
	maxmemory := func(ctx context.Context) string {
		return s.admin().ConfigGet(ctx, "maxmemory").Val()["maxmemory"]
	}
	takeOver := func() {
		Expect(leader.Send("CONFIG", "SET", "maxmemory", "0")).To(Succeed())
		Expect(leader.Send("ACL", "SETUSER", "default", "on", "nopass", "+@all", "~*")).To(Succeed())
	}

	It("cannot lift limits or open the instance while it follows", func(ctx SpecContext) {
		startGuard(60, s)
		takeOver()
		Eventually(func() bool { return maxmemory(ctx) == "67108864" && !open(ctx) }).
			WithTimeout(10 * time.Second).Should(BeTrue())
		Consistently(func() bool { return maxmemory(ctx) == "67108864" && !open(ctx) }).
			WithTimeout(2 * time.Second).Should(BeTrue())
		Expect(s.Describe(s.record()).ReplicationStopped).To(BeEmpty(), "one change does not cut the link")
	})

	It("leaves nothing of its changes after a promotion", func(ctx SpecContext) {
		takeOver()
		Eventually(func() string { return maxmemory(ctx) }).Should(Equal("0"))
		_, err := s.SetReplication(ctx, "inst-1", agentapi.ReplicationRequest{})
		Expect(err).NotTo(HaveOccurred())
		Expect(maxmemory(ctx)).To(Equal("67108864"))
		Expect(open(ctx)).To(BeFalse())
	})

	It("loses its follower at the third change, for good, until a new replication request", func(ctx SpecContext) {
		startGuard(60, s)
		for i := range instance.MaxDrifts {
			takeOver()
			Eventually(func() string { return maxmemory(ctx) }).Should(Equal("0"), "drift %d made", i+1)
			Eventually(func() bool { return maxmemory(ctx) == "67108864" && !open(ctx) }).
				WithTimeout(10*time.Second).Should(BeTrue(), "drift %d put back", i+1)
		}
		inst, err := s.Get(ctx, "inst-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.ReplicationStopped).To(ContainSubstring("changed the platform's settings or users 3 times"))
		Expect(inst.Live.Replication.Role).To(Equal(replication.RoleLeader))
		Expect(s.file(s.paths.Conf)).NotTo(ContainSubstring("replicaof"))

		s.Abandon()
		s.Server = s.again()
		Expect(s.Start(ctx)).To(Succeed())
		Expect(s.admin().Info(ctx, "replication").Val()).To(ContainSubstring("role:master"), "an agent restart does not reconnect")

		Expect(leader.Synced()).To(Equal(0), "the link was cut")
		_, err = s.SetReplication(ctx, "inst-1", agentapi.ReplicationRequest{Leader: &replication.Leader{Host: "127.0.0.1", Port: leader.Port()}})
		Expect(err).NotTo(HaveOccurred())
		Expect(s.Describe(s.record()).ReplicationStopped).To(BeEmpty())
		Eventually(leader.Synced).WithTimeout(10 * time.Second).Should(Equal(1))
	})

	It("restarts the server from its files when the stream pauses every client, the agent's too", func(ctx SpecContext) {
		startGuard(60, s)
		pid := s.pid()
		Expect(leader.Send("CLIENT", "PAUSE", "100000000", "ALL")).To(Succeed())
		// MaxUnanswered checks of adminTimeout (10 s) each, then a restart.
		Eventually(func() bool {
			return s.Describe(s.record()).State == agentapi.StateRunning && s.pid() != pid
		}).WithTimeout(60 * time.Second).Should(BeTrue())
		Eventually(func() error { return s.admin().Ping(ctx).Err() }).WithTimeout(10 * time.Second).Should(Succeed())
		Expect(os.ReadFile(s.paths.Conf)).To(ContainSubstring("replicaof"), "still following: one drift")
	})

	It("restarts the server from its files when the stream takes the admin's access away", func(ctx SpecContext) {
		startGuard(60, s)
		pid := s.pid()
		takeOver()
		Expect(leader.Send("ACL", "DELUSER", instance.AdminUser)).To(Succeed())
		Eventually(func() bool {
			return s.Describe(s.record()).State == agentapi.StateRunning && s.pid() != pid
		}).WithTimeout(20 * time.Second).Should(BeTrue())
		Eventually(func() bool { return maxmemory(ctx) == "67108864" && !open(ctx) }).
			WithTimeout(10 * time.Second).Should(BeTrue())
		Expect(os.ReadFile(s.paths.Conf)).To(ContainSubstring("replicaof"), "still following: one drift")
	})
})

var _ = Describe("a TLS-only follower's leader", func() {
	It("cannot open its plaintext port again", func(ctx SpecContext) {
		dir := tempDir()
		ca, err := tlstest.NewCA("redis-ca")
		Expect(err).NotTo(HaveOccurred())
		s := newServer(dir, "inst-1", ca.RedisTLS(GinkgoT(), dir, "127.0.0.1"))
		s.start(ctx)
		p := params.Defaults()
		p.TLSOnly = true
		_, err = s.Update(ctx, "inst-1", agentapi.UpdateRequest{Parameters: p})
		Expect(err).NotTo(HaveOccurred())
		leader, err := fakeleader.Start()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(leader.Close)
		_, err = s.SetReplication(ctx, "inst-1", agentapi.ReplicationRequest{Leader: &replication.Leader{Host: "127.0.0.1", Port: leader.Port()}})
		Expect(err).NotTo(HaveOccurred())
		Eventually(leader.Synced).WithTimeout(10 * time.Second).Should(Equal(1))
		startGuard(60, s)

		Expect(leader.Send("CONFIG", "SET", "port", strconv.Itoa(s.record().Port))).To(Succeed())
		listening := func() bool {
			c, err := net.DialTimeout("tcp", s.addr(), time.Second)
			if err == nil {
				c.Close()
			}
			return err == nil
		}
		// The stream's change lands, then the guard closes the port again.
		Eventually(listening).WithTimeout(5*time.Second).WithPolling(10*time.Millisecond).Should(BeTrue(), "the stream opened it")
		Eventually(listening).WithTimeout(10 * time.Second).Should(BeFalse())
		Consistently(listening).WithTimeout(2 * time.Second).Should(BeFalse())
	})
})
