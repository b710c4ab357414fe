package instance_test

import (
	"context"
	"net"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/testkit/tlstest"
)

// tenantDenied gives every command of redisconf.TenantDeniedCommands
// arguments Redis accepts, so the ACL, not the arity check, answers.
var tenantDenied = map[string][]any{
	"config": {"CONFIG", "GET", "maxmemory"}, "debug": {"DEBUG", "SLEEP", "0"}, "shutdown": {"SHUTDOWN"},
	"module": {"MODULE", "LIST"}, "acl": {"ACL", "LIST"}, "replicaof": {"REPLICAOF", "NO", "ONE"},
	"slaveof": {"SLAVEOF", "NO", "ONE"}, "sync": {"SYNC"}, "psync": {"PSYNC", "?", "-1"},
	"replconf": {"REPLCONF", "listening-port", "1"}, "failover": {"FAILOVER"}, "cluster": {"CLUSTER", "INFO"},
	"monitor": {"MONITOR"}, "migrate": {"MIGRATE", "127.0.0.1", "1", "k", "0", "1"}, "save": {"SAVE"},
	"bgsave": {"BGSAVE"}, "bgrewriteaof": {"BGREWRITEAOF"}, "pfdebug": {"PFDEBUG", "GETREG", "k"},
	"pfselftest":   {"PFSELFTEST"},
	"client|pause": {"CLIENT", "PAUSE", "600000", "ALL"}, "client|unpause": {"CLIENT", "UNPAUSE"},
	"client|kill": {"CLIENT", "KILL", "USER", instance.AdminUser}, "client|no-evict": {"CLIENT", "NO-EVICT", "on"},
}

const library = "#!lua name=tenantlib\nredis.register_function('hello', function() return 'hi' end)"

var _ = Describe("a Server's verbs", func() {
	var s *server
	BeforeEach(func(ctx SpecContext) {
		s = newServer(tempDir(), "inst-1", nil)
		s.start(ctx)
	})

	It("describes its instance with what the running server reports, and no other", func(ctx SpecContext) {
		inst, err := s.Get(ctx, "inst-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.ID).To(Equal("inst-1"))
		Expect(inst.State).To(Equal(agentapi.StateRunning))
		Expect(inst.Host).To(Equal("127.0.0.1"))
		Expect(inst.Port).To(Equal(s.record().Port))
		Expect(inst.MaxMemoryBytes).To(Equal(int64(64 << 20)))
		Expect(inst.Parameters).To(Equal(params.Defaults()))
		Expect(inst.Bindings).To(BeEmpty())
		Expect(inst.Live).NotTo(BeNil())
		Expect(inst.Live.RedisVersion).To(HavePrefix("7."))
		Expect(inst.Live.UsedMemoryBytes).To(BeNumerically(">", 0))
		Expect(inst.Live.Keys).To(BeZero())
		Expect(inst.Live.Replication.Role).To(Equal(replication.RoleLeader))
		Expect(s.Get(ctx, "inst-2")).Error().To(MatchError(agentapi.ErrNotFound))
		Expect(s.Get(ctx, "../x")).Error().To(MatchError(agentapi.ErrInvalid))
		conf := s.file(s.paths.Conf)
		Expect(conf).To(ContainSubstring("# redis.conf of instance inst-1"))
		Expect(conf).To(ContainSubstring("maxmemory 67108864"))
	})

	It("gives each binding its own user, denies the platform's commands, and closes a removed user's connections", func(ctx SpecContext) {
		c1, p1 := s.bind(ctx, "b1")
		c2, p2 := s.bind(ctx, "b2")

		_, created, err := s.Bind(ctx, "inst-1", "b1", agentapi.BindingRequest{Password: p1})
		Expect(err).NotTo(HaveOccurred(), "an identical rebind succeeds")
		Expect(created).To(BeFalse())
		for _, bad := range []struct {
			id  string
			req agentapi.BindingRequest
			err error
		}{
			{"b1", agentapi.BindingRequest{Password: secret.New()}, agentapi.ErrConflict},
			{"b1", agentapi.BindingRequest{Password: p1, Role: agentapi.RoleReplication}, agentapi.ErrConflict},
			{"b3", agentapi.BindingRequest{Password: "short"}, agentapi.ErrInvalid},
			{instance.AdminUser, agentapi.BindingRequest{Password: secret.New()}, agentapi.ErrInvalid},
			{"default", agentapi.BindingRequest{Password: secret.New()}, agentapi.ErrInvalid},
			{"a/b", agentapi.BindingRequest{Password: secret.New()}, agentapi.ErrInvalid},
			{"b3", agentapi.BindingRequest{Password: secret.New(), Role: "admin"}, agentapi.ErrInvalid},
		} {
			_, _, err := s.Bind(ctx, "inst-1", bad.id, bad.req)
			Expect(err).To(MatchError(bad.err), "%s %+v", bad.id, bad.req)
		}
		Expect(s.Bind(ctx, "inst-2", "b3", agentapi.BindingRequest{Password: secret.New()})).Error().To(MatchError(agentapi.ErrNotFound))

		Expect(c1.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		Expect(c2.Get(ctx, "k").Val()).To(Equal("v"))
		Expect(c1.Eval(ctx, "return redis.call('get', KEYS[1])", []string{"k"}).Val()).To(Equal("v"))
		Expect(c1.FunctionLoad(ctx, library).Err()).To(Succeed())
		Expect(c1.Do(ctx, "ACL", "WHOAMI").Val()).To(Equal("b1"))
		for _, name := range redisconf.TenantDeniedCommands {
			cmd, ok := tenantDenied[name]
			Expect(ok).To(BeTrue(), "no test arguments for denied command %q", name)
			Expect(c1.Do(ctx, cmd...).Err()).To(MatchError(MatchRegexp("NOPERM|command not allowed")), "%v", cmd)
		}

		Expect(s.Unbind(ctx, "inst-1", "b1")).To(Succeed())
		Expect(c1.Ping(ctx).Err()).To(HaveOccurred(), "ACL DELUSER closed its connection")
		Expect(s.tenant("b1", p1).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		Expect(c2.Ping(ctx).Err()).To(Succeed())
		Expect(s.Unbind(ctx, "inst-1", "b1")).To(MatchError(agentapi.ErrNotFound))
		Expect(s.Unbind(ctx, "inst-1", "default")).To(MatchError(agentapi.ErrInvalid))
		Expect(s.Unbind(ctx, "inst-2", "b2")).To(MatchError(agentapi.ErrNotFound))

		inst, err := s.Get(ctx, "inst-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.Bindings).To(Equal([]string{"b2"}))
		Expect(inst.Live.Keys).To(Equal(int64(1)))
		acl := s.file(s.paths.ACL)
		Expect(acl).To(ContainSubstring("user b2 "))
		Expect(acl).NotTo(ContainSubstring("user b1 "))
		Expect(acl).NotTo(ContainSubstring(p2), "the ACL file holds hashes only")
		Expect(s.record().Users).To(Equal(map[string]instance.User{"b2": {PasswordHash: secret.Hash(p2)}}))
	})

	It("applies parameters live and keeps them in the record and redis.conf", func(ctx SpecContext) {
		c, _ := s.bind(ctx, "b1")
		pid := s.pid()
		p := params.Parameters{MaxMemoryPolicy: "allkeys-lru", NotifyKeyspaceEvents: "Ex", Timeout: 42}
		inst, err := s.Update(ctx, "inst-1", agentapi.UpdateRequest{Parameters: p})
		Expect(err).NotTo(HaveOccurred())
		Expect(inst.Parameters).To(Equal(p))
		Expect(s.record().Parameters).To(Equal(p))
		Expect(s.pid()).To(Equal(pid), "no restart")
		Expect(c.Info(ctx, "memory").Val()).To(ContainSubstring("maxmemory_policy:allkeys-lru"))
		conf := s.file(s.paths.Conf)
		Expect(conf).To(ContainSubstring("maxmemory-policy allkeys-lru\n"))
		Expect(conf).To(ContainSubstring("timeout 42\n"))

		_, err = s.Update(ctx, "inst-1", agentapi.UpdateRequest{Parameters: params.Parameters{MaxMemoryPolicy: "bad"}})
		Expect(err).To(MatchError(agentapi.ErrInvalid))
		_, err = s.Update(ctx, "inst-2", agentapi.UpdateRequest{Parameters: p})
		Expect(err).To(MatchError(agentapi.ErrNotFound))
	})

	It("sets a new memory limit live and reads what the server uses", func(ctx SpecContext) {
		r, err := s.store.Update("inst-1", func(r *instance.Record) error { r.MaxMemoryBytes = 32 << 20; return nil })
		Expect(err).NotTo(HaveOccurred())
		Expect(s.SetMaxMemory(ctx, r)).To(Succeed())
		Expect(s.admin().ConfigGet(ctx, "maxmemory").Val()).To(HaveKeyWithValue("maxmemory", "33554432"))
		Expect(s.file(s.paths.Conf)).To(ContainSubstring("maxmemory 33554432"))
		used, err := s.UsedMemory(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(used).To(BeNumerically(">", 0))
	})
})

var _ = Describe("two Servers, leader and follower", func() {
	It("replicates the leader, reports the link and lag, refuses writes, and becomes writable when promoted", func(ctx SpecContext) {
		dir := tempDir()
		leader, follower := newServer(dir, "inst-leader", nil), newServer(dir, "inst-follower", nil)
		leader.start(ctx)
		follower.start(ctx)
		lc, _ := leader.bind(ctx, "app-l")
		fc, _ := follower.bind(ctx, "app-f")
		for i := range 100 {
			Expect(lc.Set(ctx, "k"+itoa(i), i, 0).Err()).To(Succeed())
		}

		By("giving the follower a replication user on the leader")
		replPw := secret.New()
		b, _, err := leader.Bind(ctx, "inst-leader", "repl-inst-follower", agentapi.BindingRequest{Password: replPw, Role: agentapi.RoleReplication})
		Expect(err).NotTo(HaveOccurred())
		Expect(b.Role).To(Equal(agentapi.RoleReplication))
		repl := leader.tenant("repl-inst-follower", replPw)
		Expect(repl.Get(ctx, "k1").Err()).To(MatchError(ContainSubstring("NOPERM")), "a replication user reads no keys")

		self := &replication.Leader{Host: "127.0.0.1", Port: follower.record().Port, Username: "x", Password: "y"}
		_, err = follower.SetReplication(ctx, "inst-follower", agentapi.ReplicationRequest{Leader: self})
		Expect(err).To(MatchError(agentapi.ErrInvalid), "an instance cannot follow itself")
		_, err = follower.SetReplication(ctx, "inst-follower", agentapi.ReplicationRequest{Leader: &replication.Leader{Host: "a b", Port: 1}})
		Expect(err).To(MatchError(agentapi.ErrInvalid))
		_, err = follower.SetReplication(ctx, "inst-leader", agentapi.ReplicationRequest{Leader: self})
		Expect(err).To(MatchError(agentapi.ErrNotFound))

		By("following the leader")
		leaderAt := &replication.Leader{Host: "127.0.0.1", Port: leader.record().Port, Username: "repl-inst-follower", Password: replPw}
		st, err := follower.SetReplication(ctx, "inst-follower", agentapi.ReplicationRequest{Leader: leaderAt})
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Live.Replication.Role).To(Equal(replication.RoleFollower))
		// The leader waits repl-diskless-sync-delay (5s by default) for more
		// followers before it streams the first snapshot.
		Eventually(func(g Gomega) {
			st, err := follower.Get(ctx, "inst-follower")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(st.Live).NotTo(BeNil())
			r := st.Live.Replication
			g.Expect(r.Role).To(Equal(replication.RoleFollower))
			g.Expect(r.LeaderHost).To(Equal("127.0.0.1"))
			g.Expect(r.LeaderPort).To(Equal(leader.record().Port))
			g.Expect(r.Link).To(Equal("up"))
			g.Expect(r.Offset).To(BeNumerically(">", 0))
			g.Expect(r.LagBytes).To(BeNumerically(">=", 0), "the lag is known: the follower asked its leader")
			g.Expect(st.Live.Keys).To(Equal(int64(100)))
		}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(fc.Get(ctx, "k42").Val()).To(Equal("42"))
		Expect(lc.Set(ctx, "late", "v", 0).Err()).To(Succeed())
		Eventually(func() string { return fc.Get(ctx, "late").Val() }).WithContext(ctx).Should(Equal("v"))
		ls, err := leader.Get(ctx, "inst-leader")
		Expect(err).NotTo(HaveOccurred())
		Expect(ls.Live.Replication.Role).To(Equal(replication.RoleLeader))
		Expect(ls.Live.Replication.Followers).To(Equal(1))
		Expect(ls.Bindings).To(ConsistOf("app-l", "repl-inst-follower"))

		Expect(fc.Set(ctx, "x", "y", 0).Err()).To(MatchError(ContainSubstring("READONLY")))
		Expect(follower.file(follower.paths.Conf)).To(ContainSubstring("replicaof \"127.0.0.1\" " + itoa(leader.record().Port) + "\n"))
		_, err = follower.Restore(ctx, "inst-follower", agentapi.RestoreRequest{}, nil)
		Expect(err).To(MatchError(agentapi.ErrConflict), "a restore into a follower is refused before anything changes")

		By("promoting the follower")
		st, err = follower.SetReplication(ctx, "inst-follower", agentapi.ReplicationRequest{Leader: nil})
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Live.Replication.Role).To(Equal(replication.RoleLeader))
		Expect(fc.Set(ctx, "x", "y", 0).Err()).To(Succeed())
		Expect(fc.Get(ctx, "late").Val()).To(Equal("v"), "the data stays")
		Expect(follower.file(follower.paths.Conf)).NotTo(ContainSubstring("replicaof"))
		Expect(follower.record().Leader).To(BeNil())
	})
})

var _ = Describe("a Server with TLS", func() {
	It("serves its binding users over TLS and in plaintext, and gives bindings its TLS port and CA", func(ctx SpecContext) {
		dir := tempDir()
		ca, err := tlstest.NewCA("redis-ca")
		Expect(err).NotTo(HaveOccurred())
		s := newServer(dir, "inst-1", ca.RedisTLS(GinkgoT(), dir, "127.0.0.1"))
		s.start(ctx)
		Expect(s.file(s.paths.Conf)).To(ContainSubstring("tls-port " + itoa(s.record().TLSPort) + "\n"))
		pw := secret.New()
		b, _, err := s.Bind(ctx, "inst-1", "b1", agentapi.BindingRequest{Password: pw})
		Expect(err).NotTo(HaveOccurred())
		Expect(b.TLSPort).To(Equal(s.record().TLSPort))
		Expect(b.TLSCA).To(Equal(ca.PEM))
		c := tlstest.RedisClient(GinkgoT(), "127.0.0.1", b.TLSPort, b.TLSCA, "b1", pw)
		Expect(c.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		Expect(s.tenant("b1", pw).Get(ctx, "k").Val()).To(Equal("v"))

		other, err := tlstest.NewCA("other-ca")
		Expect(err).NotTo(HaveOccurred())
		wrong := tlstest.RedisClient(GinkgoT(), "127.0.0.1", b.TLSPort, other.PEM, "b1", pw)
		Expect(wrong.Ping(ctx).Err()).To(MatchError(ContainSubstring("certificate")))
	})

	It("closes its plaintext port and the connections on it when made TLS-only, and opens it again", func(ctx SpecContext) {
		dir := tempDir()
		ca, err := tlstest.NewCA("redis-ca")
		Expect(err).NotTo(HaveOccurred())
		s := newServer(dir, "inst-1", ca.RedisTLS(GinkgoT(), dir, "127.0.0.1"))
		s.start(ctx)
		plain, pw := s.bind(ctx, "b1")
		Expect(plain.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		open := s.tenant("b1", pw)
		Expect(open.Ping(ctx).Err()).To(Succeed(), "a plaintext connection opened before")

		p := params.Defaults()
		p.TLSOnly = true
		got, err := s.Update(ctx, "inst-1", agentapi.UpdateRequest{Parameters: p})
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Parameters.TLSOnly).To(BeTrue())
		Expect(s.file(s.paths.Conf)).To(ContainSubstring("\nport 0\n"))
		_, err = net.DialTimeout("tcp", s.addr(), time.Second)
		Expect(err).To(HaveOccurred(), "the plaintext port is closed")
		Expect(open.Ping(ctx).Err()).To(HaveOccurred(), "the plaintext connection opened before is closed")
		c := tlstest.RedisClient(GinkgoT(), "127.0.0.1", s.record().TLSPort, ca.PEM, "b1", pw)
		Expect(c.Get(ctx, "k").Val()).To(Equal("v"))

		By("managing it over TLS: live status, a new binding, a restart of the agent that adopts the running server")
		st, err := s.Get(ctx, "inst-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Live).NotTo(BeNil(), "the agent reaches the server over TLS")
		pw2 := secret.New()
		_, _, err = s.Bind(ctx, "inst-1", "b2", agentapi.BindingRequest{Password: pw2})
		Expect(err).NotTo(HaveOccurred())
		Expect(tlstest.RedisClient(GinkgoT(), "127.0.0.1", s.record().TLSPort, ca.PEM, "b2", pw2).Ping(ctx).Err()).To(Succeed())
		pid := s.pid()
		s.Abandon()
		again := s.again()
		DeferCleanup(func() { again.Shutdown(context.Background()) })
		Expect(again.Start(ctx)).To(Succeed())
		Expect(s.pid()).To(Equal(pid), "the running TLS-only server is adopted, not restarted")
		st, err = again.Get(ctx, "inst-1")
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Live).NotTo(BeNil())

		By("turning TLS-only off again")
		p.TLSOnly = false
		_, err = again.Update(ctx, "inst-1", agentapi.UpdateRequest{Parameters: p})
		Expect(err).NotTo(HaveOccurred())
		Expect(s.tenant("b1", pw).Get(ctx, "k").Val()).To(Equal("v"))
		Expect(c.Get(ctx, "k").Val()).To(Equal("v"), "TLS connections stay open")
	})

	It("replicates over TLS from a TLS-only leader", func(ctx SpecContext) {
		dir := tempDir()
		ca, err := tlstest.NewCA("redis-ca")
		Expect(err).NotTo(HaveOccurred())
		// Each started before the next picks its free ports, so none picks
		// one another holds but does not listen on yet.
		leader := newServer(dir, "inst-leader", ca.RedisTLS(GinkgoT(), dir, "127.0.0.1"))
		leader.start(ctx)
		follower := newServer(dir, "inst-follower", ca.RedisTLS(GinkgoT(), dir, "127.0.0.1"))
		follower.start(ctx)
		plainFollower := newServer(dir, "inst-plain", nil)
		plainFollower.start(ctx)
		lc, _ := leader.bind(ctx, "app-l")
		Expect(lc.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		p := params.Defaults()
		p.TLSOnly = true
		_, err = leader.Update(ctx, "inst-leader", agentapi.UpdateRequest{Parameters: p})
		Expect(err).NotTo(HaveOccurred())
		replPw := secret.New()
		_, _, err = leader.Bind(ctx, "inst-leader", "repl-f", agentapi.BindingRequest{Password: replPw, Role: agentapi.RoleReplication})
		Expect(err).NotTo(HaveOccurred())

		at := &replication.Leader{Host: "127.0.0.1", Port: leader.record().TLSPort, Username: "repl-f", Password: replPw, TLS: true}
		_, err = plainFollower.SetReplication(ctx, "inst-plain", agentapi.ReplicationRequest{Leader: at})
		Expect(err).To(MatchError(agentapi.ErrInvalid), "a VM without TLS cannot replicate over TLS")
		_, err = follower.SetReplication(ctx, "inst-follower", agentapi.ReplicationRequest{Leader: at})
		Expect(err).NotTo(HaveOccurred())
		Expect(follower.file(follower.paths.Conf)).To(ContainSubstring("\ntls-replication yes\n"))
		Eventually(func(g Gomega) {
			st, err := follower.Get(ctx, "inst-follower")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(st.Live).NotTo(BeNil())
			g.Expect(st.Live.Replication.Link).To(Equal("up"))
			g.Expect(st.Live.Keys).To(Equal(int64(1)))
		}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

		By("promoting it, which keeps nothing of the TLS link")
		_, err = follower.SetReplication(ctx, "inst-follower", agentapi.ReplicationRequest{})
		Expect(err).NotTo(HaveOccurred())
		Expect(follower.file(follower.paths.Conf)).To(ContainSubstring("\ntls-replication no\n"))
	})

	It("refuses TLS-only on an agent that serves no TLS", func(ctx SpecContext) {
		s := newServer(tempDir(), "inst-1", nil)
		s.start(ctx)
		p := params.Defaults()
		p.TLSOnly = true
		_, err := s.Update(ctx, "inst-1", agentapi.UpdateRequest{Parameters: p})
		Expect(err).To(MatchError(agentapi.ErrInvalid))
		Expect(err).To(MatchError(ContainSubstring("tls_only")))
		Expect(s.record().Parameters.TLSOnly).To(BeFalse())
	})

})
