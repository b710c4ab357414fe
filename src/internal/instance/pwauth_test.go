package instance_test

import (
	"context"
	"os/exec"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/agentapi"
	"github.com/cf-redis/redis-for-cf/src/internal/instance"
	"github.com/cf-redis/redis-for-cf/src/internal/replication"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/testkit/redistest"
)

// passwordOnly is a go-redis client of addr that sends only a password, as
// apps configured with host, port and password do: go-redis logs in with
// HELLO 3 AUTH default <password>. One connection, never retried, so a
// closed connection shows as an error rather than a silent redial.
func passwordOnly(addr, password string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, Password: password, PoolSize: 1, MaxRetries: -1})
	DeferCleanup(c.Close)
	return c
}

// anonymous is one connection of addr that has not logged in: the test
// sends AUTH or HELLO on it itself.
func anonymous(ctx context.Context, addr string) *redis.Conn {
	c := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, PoolSize: 1, MaxRetries: -1, DisableIdentity: true})
	DeferCleanup(c.Close)
	conn := c.Conn()
	DeferCleanup(conn.Close)
	Expect(conn.Ping(ctx).Err()).To(MatchError(ContainSubstring("NOAUTH")), "the default user is off: a connection starts logged out")
	return conn
}

// cli runs the build's redis-cli against addr with args and returns its
// output. It never returns the arguments (they hold passwords).
func cli(ctx context.Context, args ...string) string {
	cmd := exec.CommandContext(ctx, redistest.MustProgram(GinkgoT(), "redis-cli"), append([]string{"--no-auth-warning"}, args...)...)
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "redis-cli: %s", out)
	return strings.TrimSpace(string(out))
}

// whoami is ACL WHOAMI on c.
func whoami(ctx context.Context, c interface {
	Do(context.Context, ...any) *redis.Cmd
}) string {
	GinkgoHelper()
	name, err := c.Do(ctx, "ACL", "WHOAMI").Text()
	Expect(err).NotTo(HaveOccurred())
	return name
}

// clientLine is the admin's CLIENT LIST line of the connection with id.
func clientLine(ctx context.Context, s *server, id int64) string {
	GinkgoHelper()
	list, err := s.admin().ClientList(ctx).Result()
	Expect(err).NotTo(HaveOccurred())
	for _, line := range strings.Split(list, "\n") {
		if strings.HasPrefix(line, "id="+itoa(int(id))+" ") {
			return line
		}
	}
	Fail("no connection with id " + itoa(int(id)))
	return ""
}

// authFailures are the ACL LOG's entries of failed logins.
func authFailures(ctx context.Context, s *server) []*redis.ACLLogEntry {
	GinkgoHelper()
	entries, err := s.admin().ACLLog(ctx, 100).Result()
	Expect(err).NotTo(HaveOccurred())
	var auth []*redis.ACLLogEntry
	for _, e := range entries {
		if e.Reason == "auth" {
			auth = append(auth, e)
		}
	}
	return auth
}

// failedAs is how many logins that gave the user name user failed, as the
// ACL LOG counts them.
func failedAs(ctx context.Context, s *server, user string) int64 {
	GinkgoHelper()
	var n int64
	for _, e := range authFailures(ctx, s) {
		if e.Username == user {
			n += e.Count
		}
	}
	return n
}

var _ = Describe("a password sent alone", func() {
	var s *server
	BeforeEach(func(ctx SpecContext) {
		s = newServer(tempDir(), "inst-1", nil)
		s.start(ctx)
	})

	It("logs in as the binding whose password it is, in every form apps and clients send it", func(ctx SpecContext) {
		named1, p1 := s.bind(ctx, "b1")
		_, p2 := s.bind(ctx, "b2")
		port := itoa(s.record().Port)

		By("go-redis with a password and no username: HELLO 3 AUTH default <password>")
		c1 := passwordOnly(s.addr(), p1)
		Expect(whoami(ctx, c1)).To(Equal("b1"))
		Expect(c1.Set(ctx, "k", "v1", 0).Err()).To(Succeed())
		Expect(named1.Get(ctx, "k").Val()).To(Equal("v1"), "the same keyspace as the binding's named login")
		Expect(whoami(ctx, passwordOnly(s.addr(), p2))).To(Equal("b2"))

		By("AUTH <password>, AUTH default <password> and HELLO 3 AUTH default <password> on a connection")
		conn := anonymous(ctx, s.addr())
		Expect(conn.Do(ctx, "AUTH", p1).Text()).To(Equal("OK"))
		Expect(whoami(ctx, conn)).To(Equal("b1"))
		Expect(conn.Do(ctx, "AUTH", "default", p2).Text()).To(Equal("OK"), "a logged-in connection may log in again as another binding")
		Expect(whoami(ctx, conn)).To(Equal("b2"))
		conn = anonymous(ctx, s.addr())
		hello, err := conn.Do(ctx, "HELLO", "3", "AUTH", "default", p1).Result()
		Expect(err).NotTo(HaveOccurred())
		Expect(hello).To(HaveKeyWithValue("proto", int64(3)))
		Expect(whoami(ctx, conn)).To(Equal("b1"))

		By("redis-cli -a <password> (AUTH <password>) and redis-cli -u redis://:<password>@host:port")
		Expect(cli(ctx, "-h", "127.0.0.1", "-p", port, "-a", p1, "ACL", "WHOAMI")).To(Equal("b1"))
		Expect(cli(ctx, "-u", "redis://:"+p2+"@127.0.0.1:"+port, "ACL", "WHOAMI")).To(Equal("b2"))
		Expect(cli(ctx, "-u", "redis://:"+p1+"@127.0.0.1:"+port, "GET", "k")).To(Equal("v1"))
		// Clever Cloud's form, the password where a URI puts the user name,
		// which redis-cli sends as AUTH <password>.
		Expect(cli(ctx, "-u", "redis://"+p2+"@127.0.0.1:"+port, "ACL", "WHOAMI")).To(Equal("b2"))

		By("the connection is the binding's as a named login's is: its user in CLIENT LIST, its ACL")
		id, err := c1.ClientID(ctx).Result()
		Expect(err).NotTo(HaveOccurred())
		Expect(clientLine(ctx, s, id)).To(ContainSubstring(" user=b1 "), "not user=default: the guard's reaper of connections that never logged in leaves it alone")
		Expect(c1.Do(ctx, "CONFIG", "GET", "maxmemory").Err()).To(MatchError(ContainSubstring("NOPERM")), "a tenant's commands only")

		By("named logins and the platform's admin, which logs in by name, are unchanged")
		Expect(whoami(ctx, named1)).To(Equal("b1"))
		Expect(whoami(ctx, s.admin())).To(Equal(instance.AdminUser))
		Expect(s.Admin().Ping(ctx).Err()).To(Succeed())
		Expect(authFailures(ctx, s)).To(BeEmpty(), "no login failed")
	})

	It("is refused with the stock WRONGPASS and ACL LOG entry when it is no binding's, or several users', or names another user", func(ctx SpecContext) {
		_, p1 := s.bind(ctx, "b1")
		_, p2 := s.bind(ctx, "b2")

		wrong := secret.New()
		Expect(passwordOnly(s.addr(), wrong).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		conn := anonymous(ctx, s.addr())
		Expect(conn.Do(ctx, "AUTH", wrong).Err()).To(MatchError("WRONGPASS invalid username-password pair or user is disabled."))
		Expect(conn.Do(ctx, "HELLO", "3", "AUTH", "default", wrong).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		Expect(conn.Ping(ctx).Err()).To(MatchError(ContainSubstring("NOAUTH")), "still logged out")
		// go-redis sent HELLO, then AUTH when HELLO failed; then the
		// connection's AUTH and HELLO.
		Expect(authFailures(ctx, s)).To(HaveEach(And(HaveField("Username", "default"), HaveField("Context", "toplevel"))))
		Expect(failedAs(ctx, s, "default")).To(Equal(int64(4)))

		By("a binding's password with another binding's name is that name's wrong password")
		Expect(conn.Do(ctx, "AUTH", "b2", p1).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		Expect(conn.Do(ctx, "HELLO", "3", "AUTH", "b1", p2).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		Expect(failedAs(ctx, s, "b2")).To(Equal(int64(1)))
		Expect(failedAs(ctx, s, "b1")).To(Equal(int64(1)))

		By("a password two enabled users share logs in as neither")
		shared := secret.New()
		for _, b := range []string{"b3", "b4"} {
			_, _, err := s.Bind(ctx, "inst-1", b, agentapi.BindingRequest{Password: shared})
			Expect(err).NotTo(HaveOccurred())
		}
		Expect(conn.Do(ctx, "AUTH", shared).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		Expect(failedAs(ctx, s, "default")).To(Equal(int64(5)))
		Expect(whoami(ctx, s.tenant("b3", shared))).To(Equal("b3"), "by name it still logs in")

		By("a disabled user's password, and a nopass user, log in as no one")
		Expect(s.admin().Do(ctx, "ACL", "SETUSER", "b2", "off").Err()).To(Succeed())
		Expect(conn.Do(ctx, "AUTH", p2).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		Expect(s.admin().Do(ctx, "ACL", "SETUSER", "open", "on", "nopass", "+ping").Err()).To(Succeed())
		Expect(conn.Do(ctx, "AUTH", secret.New()).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		Expect(conn.Ping(ctx).Err()).To(MatchError(ContainSubstring("NOAUTH")))
		Expect(failedAs(ctx, s, "default")).To(Equal(int64(7)))
	})

	It("stops working at unbind, which closes the unbound binding's password-only connections and no other binding's", func(ctx SpecContext) {
		_, p1 := s.bind(ctx, "b1")
		named2, p2 := s.bind(ctx, "b2")
		c1, c2 := passwordOnly(s.addr(), p1), passwordOnly(s.addr(), p2)
		raw1 := anonymous(ctx, s.addr())
		Expect(raw1.Do(ctx, "AUTH", p1).Err()).To(Succeed())
		id1, err := c1.ClientID(ctx).Result()
		Expect(err).NotTo(HaveOccurred())
		raw1ID, err := raw1.ClientID(ctx).Result()
		Expect(err).NotTo(HaveOccurred())
		id2, err := c2.ClientID(ctx).Result()
		Expect(err).NotTo(HaveOccurred())
		named2ID, err := named2.ClientID(ctx).Result()
		Expect(err).NotTo(HaveOccurred())
		Expect(authFailures(ctx, s)).To(BeEmpty())

		Expect(s.Unbind(ctx, "inst-1", "b1")).To(Succeed())
		list, err := s.admin().ClientList(ctx).Result()
		Expect(err).NotTo(HaveOccurred())
		Expect(list).NotTo(ContainSubstring("id="+itoa(int(id1))+" "), "its go-redis password-only connection was closed")
		Expect(list).NotTo(ContainSubstring("id="+itoa(int(raw1ID))+" "), "and its AUTH <password> connection")
		Expect(list).To(ContainSubstring("id=" + itoa(int(id2)) + " "))
		err = raw1.Ping(ctx).Err()
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).NotTo(ContainSubstring("WRONGPASS"), "the same connection, closed, not a new one")
		Expect(c1.Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")), "a new connection with its password is refused")
		Expect(cli(ctx, "-u", "redis://:"+p1+"@"+s.addr(), "PING")).To(ContainSubstring("WRONGPASS"))
		// go-redis's HELLO and AUTH, and redis-cli's AUTH "" <password>.
		Expect(failedAs(ctx, s, "default")).To(Equal(int64(2)), "the refusals are logged as stock Redis logs a wrong password")
		Expect(failedAs(ctx, s, "")).To(Equal(int64(1)))

		Expect(c2.ClientID(ctx).Val()).To(Equal(id2), "the other binding's password-only connection is the same connection: no reconnect")
		Expect(whoami(ctx, c2)).To(Equal("b2"))
		Expect(c2.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		Expect(named2.ClientID(ctx).Val()).To(Equal(named2ID))
		Expect(named2.Get(ctx, "k").Val()).To(Equal("v"))
	})
})

var _ = Describe("a password sent alone to a follower", func() {
	It("logs in as the follower's binding, reads what the leader wrote, and stops at the follower's unbind", func(ctx SpecContext) {
		dir := tempDir()
		leader, follower := newServer(dir, "inst-leader", nil), newServer(dir, "inst-follower", nil)
		leader.start(ctx)
		follower.start(ctx)
		_, lp := leader.bind(ctx, "app-l")
		_, fp := follower.bind(ctx, "app-f")
		replPw := secret.New()
		_, _, err := leader.Bind(ctx, "inst-leader", "repl-inst-follower", agentapi.BindingRequest{Password: replPw, Role: agentapi.RoleReplication})
		Expect(err).NotTo(HaveOccurred())
		_, err = follower.SetReplication(ctx, "inst-follower", agentapi.ReplicationRequest{
			Leader: &replication.Leader{Host: "127.0.0.1", Port: leader.record().Port, Username: "repl-inst-follower", Password: replPw},
		})
		Expect(err).NotTo(HaveOccurred())

		lc := passwordOnly(leader.addr(), lp)
		Expect(whoami(ctx, lc)).To(Equal("app-l"))
		Expect(lc.Set(ctx, "k", "from-leader", 0).Err()).To(Succeed())
		fc := passwordOnly(follower.addr(), fp)
		Expect(whoami(ctx, fc)).To(Equal("app-f"))
		// The leader waits repl-diskless-sync-delay (5 s by default) before
		// it streams the first snapshot.
		Eventually(func() string { return fc.Get(ctx, "k").Val() }).WithContext(ctx).WithTimeout(30 * time.Second).Should(Equal("from-leader"))
		Expect(fc.Set(ctx, "x", "y", 0).Err()).To(MatchError(ContainSubstring("READONLY")))
		Expect(passwordOnly(follower.addr(), lp).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")), "the leader's binding is not the follower's")

		id, err := fc.ClientID(ctx).Result()
		Expect(err).NotTo(HaveOccurred())
		Expect(clientLine(ctx, follower, id)).To(ContainSubstring(" user=app-f "))
		Expect(follower.Unbind(ctx, "inst-follower", "app-f")).To(Succeed())
		Expect(fc.Ping(ctx).Err()).To(HaveOccurred(), "unbind closed it")
		Expect(fc.Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		Expect(lc.Get(ctx, "k").Val()).To(Equal("from-leader"), "the leader's binding keeps its connection")
	})
})

var _ = Describe("a password sent alone while the default user is on", func() {
	It("is the default user's password, as stock Redis has it", func(ctx SpecContext) {
		defaultPw, bindingPw := secret.New(), secret.New()
		dir := tempDir()
		s, err := redistest.Start(dir, "requirepass "+defaultPw, "user b1 on >"+bindingPw+" ~* +@all")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(s.Stop)
		c := redis.NewClient(&redis.Options{Addr: s.Addr, Protocol: 2, PoolSize: 1, MaxRetries: -1, DisableIdentity: true})
		DeferCleanup(c.Close)
		conn := c.Conn()
		DeferCleanup(conn.Close)
		Expect(conn.Do(ctx, "AUTH", bindingPw).Err()).To(MatchError(ContainSubstring("WRONGPASS")), "another user's password is not the default user's")
		Expect(conn.Do(ctx, "HELLO", "3", "AUTH", "default", bindingPw).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		Expect(conn.Do(ctx, "AUTH", "", bindingPw).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		Expect(conn.Do(ctx, "AUTH", defaultPw).Err()).To(Succeed())
		Expect(whoami(ctx, conn)).To(Equal("default"))
		Expect(conn.Do(ctx, "AUTH", "b1", bindingPw).Err()).To(Succeed())
		Expect(whoami(ctx, conn)).To(Equal("b1"))

		By("and with the default user on without a password")
		open, err := redistest.Start(GinkgoT().TempDir(), "user b1 on >"+bindingPw+" ~* +@all")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(open.Stop)
		oc := redis.NewClient(&redis.Options{Addr: open.Addr, Protocol: 2, PoolSize: 1, MaxRetries: -1, DisableIdentity: true})
		DeferCleanup(oc.Close)
		Expect(oc.Do(ctx, "AUTH", bindingPw).Err()).To(MatchError(ContainSubstring("without any password configured")))
		Expect(oc.Do(ctx, "HELLO", "3", "AUTH", "default", bindingPw).Err()).To(Succeed(), "any password is a nopass default user's")
		Expect(whoami(ctx, oc)).To(Equal("default"))
	})
})
