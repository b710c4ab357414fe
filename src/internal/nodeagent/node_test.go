package nodeagent_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/redis/go-redis/v9"

	"github.com/cf-redis/redis-for-cf/src/internal/nodeagent"
	"github.com/cf-redis/redis-for-cf/src/internal/nodeapi"
	"github.com/cf-redis/redis-for-cf/src/internal/params"
	"github.com/cf-redis/redis-for-cf/src/internal/redisconf"
	"github.com/cf-redis/redis-for-cf/src/internal/secret"
	"github.com/cf-redis/redis-for-cf/src/internal/tlstest"
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
	"pfselftest": {"PFSELFTEST"},
}

const library = "#!lua name=tenantlib\nredis.register_function('hello', function() return 'hi' end)"

var _ = Describe("a dedicated node", func() {
	var (
		dir string
		nd  *node
	)
	BeforeEach(func() {
		dir = tempDir()
		nd = startNode(nodeConfig(dir, "127.0.0.1"))
	})

	It("starts free and empty, and says which node it is", func(ctx SpecContext) {
		st, err := nd.client.Status(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.NodeID).To(Equal("node-127-0-0-1"))
		Expect(st.State).To(Equal(nodeapi.StateFree))
		Expect(st.InstanceID).To(BeEmpty())
		Expect(st.RedisRunning).To(BeTrue())
		Expect(st.RedisVersion).To(HavePrefix("7."))
		Expect(st.MaxMemoryBytes).To(Equal(int64(64 << 20)))
		Expect(st.UsedMemoryBytes).To(BeNumerically(">", 0))
		Expect(st.Keys).To(BeZero())
		Expect(st.Host).To(Equal("127.0.0.1"))
		Expect(st.Port).To(Equal(nd.cfg.Port))
		Expect(st.Parameters).To(Equal(params.Defaults()))
		Expect(st.Replication.Role).To(Equal(nodeapi.RoleLeader))
	})

	It("is claimed by one instance, idempotently, and is busy for any other", func(ctx SpecContext) {
		st := nd.claim(ctx, "inst-1")
		Expect(st.State).To(Equal(nodeapi.StateClaimed))
		Expect(st.InstanceID).To(Equal("inst-1"))
		state, err := os.ReadFile(filepath.Join(nd.cfg.DataDir, "state.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(state)).To(ContainSubstring(`"instance_id": "inst-1"`), "the claim is on disk before the answer")

		again := nd.claim(ctx, "inst-1")
		Expect(again.InstanceID).To(Equal("inst-1"))
		_, err = nd.client.Claim(ctx, nodeapi.ClaimRequest{InstanceID: "inst-2", Parameters: params.Defaults()})
		Expect(err).To(MatchError(nodeapi.ErrBusy))
		other := params.Defaults()
		other.Timeout = 5
		_, err = nd.client.Claim(ctx, nodeapi.ClaimRequest{InstanceID: "inst-1", Parameters: other})
		Expect(err).To(MatchError(nodeapi.ErrConflict))
		_, err = nd.client.Claim(ctx, nodeapi.ClaimRequest{InstanceID: "../x", Parameters: params.Defaults()})
		Expect(err).To(MatchError(nodeapi.ErrInvalid))
		_, err = nd.client.Claim(ctx, nodeapi.ClaimRequest{InstanceID: "inst-3", Parameters: params.Parameters{MaxMemoryPolicy: "bad"}})
		Expect(err).To(MatchError(nodeapi.ErrInvalid))
	})

	It("gives each binding its own user, denies the platform's commands, and closes a removed user's connections", func(ctx SpecContext) {
		nd.claim(ctx, "inst-1")
		c1, p1 := nd.bind(ctx, "inst-1", "b1")
		c2, _ := nd.bind(ctx, "inst-1", "b2")

		_, err := nd.client.Bind(ctx, "b1", nodeapi.BindingRequest{InstanceID: "inst-1", Password: p1})
		Expect(err).NotTo(HaveOccurred(), "an identical rebind succeeds")
		_, err = nd.client.Bind(ctx, "b1", nodeapi.BindingRequest{InstanceID: "inst-1", Password: secret.New()})
		Expect(err).To(MatchError(nodeapi.ErrConflict))
		_, err = nd.client.Bind(ctx, "b3", nodeapi.BindingRequest{InstanceID: "inst-1", Password: "short"})
		Expect(err).To(MatchError(nodeapi.ErrInvalid))
		_, err = nd.client.Bind(ctx, nodeagent.AdminUser, nodeapi.BindingRequest{InstanceID: "inst-1", Password: secret.New()})
		Expect(err).To(MatchError(nodeapi.ErrInvalid))
		_, err = nd.client.Bind(ctx, "b3", nodeapi.BindingRequest{InstanceID: "inst-1", Password: secret.New(), Role: "admin"})
		Expect(err).To(MatchError(nodeapi.ErrInvalid))
		_, err = nd.client.Bind(ctx, "b3", nodeapi.BindingRequest{InstanceID: "inst-2", Password: secret.New()})
		Expect(err).To(MatchError(nodeapi.ErrConflict))

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

		Expect(nd.client.Unbind(ctx, "inst-1", "b1")).To(Succeed())
		Expect(c1.Ping(ctx).Err()).To(HaveOccurred(), "ACL DELUSER closed its connection")
		Expect(nd.tenant("b1", p1).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		Expect(c2.Ping(ctx).Err()).To(Succeed())
		Expect(nd.client.Unbind(ctx, "inst-1", "b1")).To(MatchError(nodeapi.ErrNotFound))
		Expect(nd.client.Unbind(ctx, "inst-2", "b2")).To(MatchError(nodeapi.ErrConflict))

		st, err := nd.client.Status(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Bindings).To(Equal([]string{"b2"}))
		Expect(st.Keys).To(Equal(int64(1)))
		acl, err := os.ReadFile(filepath.Join(nd.cfg.DataDir, "users.acl"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(acl)).To(ContainSubstring("user b2 "))
		Expect(string(acl)).NotTo(ContainSubstring("user b1 "))
	})

	It("applies parameters live and keeps them in redis.conf", func(ctx SpecContext) {
		nd.claim(ctx, "inst-1")
		c, _ := nd.bind(ctx, "inst-1", "b1")
		pid := nd.pid()
		p := params.Parameters{MaxMemoryPolicy: "allkeys-lru", NotifyKeyspaceEvents: "Ex", Timeout: 42}
		st, err := nd.client.UpdateParameters(ctx, nodeapi.ParametersRequest{InstanceID: "inst-1", Parameters: p})
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Parameters).To(Equal(p))
		Expect(nd.pid()).To(Equal(pid), "no restart")
		Expect(c.Info(ctx, "memory").Val()).To(ContainSubstring("maxmemory_policy:allkeys-lru"))
		conf, err := os.ReadFile(filepath.Join(nd.cfg.DataDir, "redis.conf"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(conf)).To(ContainSubstring(`maxmemory-policy "allkeys-lru"`))
		Expect(string(conf)).To(ContainSubstring(`timeout "42"`))

		_, err = nd.client.UpdateParameters(ctx, nodeapi.ParametersRequest{InstanceID: "inst-1", Parameters: params.Parameters{MaxMemoryPolicy: "bad"}})
		Expect(err).To(MatchError(nodeapi.ErrInvalid))
		_, err = nd.client.UpdateParameters(ctx, nodeapi.ParametersRequest{InstanceID: "inst-2", Parameters: p})
		Expect(err).To(MatchError(nodeapi.ErrConflict))
	})

	It("resets: wipes keys, users, functions and scripts, verifies, and the next tenant starts from nothing", func(ctx SpecContext) {
		nd.claim(ctx, "inst-1")
		c, pw := nd.bind(ctx, "inst-1", "b1")
		pipe := c.Pipeline()
		for i := range 1000 {
			pipe.Set(ctx, "key-"+strconv.Itoa(i), i, 0)
		}
		pipe.HSet(ctx, "db-zero-hash", "f", "v")
		_, err := pipe.Exec(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.Do(ctx, "SELECT", "7").Err()).To(Succeed())
		Expect(c.Set(ctx, "in-db-7", "v", 0).Err()).To(Succeed())
		Expect(c.FunctionLoad(ctx, library).Err()).To(Succeed())
		sha, err := c.ScriptLoad(ctx, "return 1").Result()
		Expect(err).NotTo(HaveOccurred())
		st, err := nd.client.Status(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Keys).To(Equal(int64(1002)))
		oldAdmin := nd.adminPassword()

		_, err = nd.client.Reset(ctx, nodeapi.ResetRequest{InstanceID: "inst-2"})
		Expect(err).To(MatchError(nodeapi.ErrConflict), "another instance cannot reset the node")

		started := time.Now()
		st, err = nd.client.Reset(ctx, nodeapi.ResetRequest{InstanceID: "inst-1"})
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("reset took %v\n", time.Since(started))
		Expect(st.State).To(Equal(nodeapi.StateFree))
		Expect(st.InstanceID).To(BeEmpty())
		Expect(st.Keys).To(BeZero())
		Expect(st.Bindings).To(BeEmpty())
		Expect(st.RedisRunning).To(BeTrue())
		Expect(nd.adminPassword()).NotTo(Equal(oldAdmin), "a new admin password")
		Expect(nd.tenant("b1", pw).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		Expect(nd.tenant(nodeagent.AdminUser, oldAdmin).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
		entries, err := os.ReadDir(filepath.Join(nd.cfg.DataDir, "data"))
		Expect(err).NotTo(HaveOccurred())
		for _, e := range entries {
			Expect(e.Name()).To(BeElementOf("appendonlydir", "dump.rdb"), "only the new server's own files")
		}

		again, err := nd.client.Reset(ctx, nodeapi.ResetRequest{InstanceID: "inst-1"})
		Expect(err).NotTo(HaveOccurred(), "resetting a free node is a no-op")
		Expect(again.State).To(Equal(nodeapi.StateFree))

		nd.claim(ctx, "inst-2")
		next, _ := nd.bind(ctx, "inst-2", "b2")
		Expect(next.DBSize(ctx).Val()).To(BeZero())
		Expect(next.Do(ctx, "SELECT", "7").Err()).To(Succeed())
		Expect(next.DBSize(ctx).Val()).To(BeZero())
		Expect(next.FunctionList(ctx, redis.FunctionListQuery{}).Val()).To(BeEmpty())
		Expect(next.ScriptExists(ctx, sha).Val()).To(Equal([]bool{false}))
	})

	It("refuses a claim of a free node it finds not empty, and quarantines it", func(ctx SpecContext) {
		// Someone with root on the VM wrote into the free node.
		admin := nd.tenant(nodeagent.AdminUser, nd.adminPassword())
		Expect(admin.Set(ctx, "left-over", "x", 0).Err()).To(Succeed())
		_, err := nd.client.Claim(ctx, nodeapi.ClaimRequest{InstanceID: "inst-1", Parameters: params.Defaults()})
		Expect(err).To(MatchError(nodeapi.ErrDirty))
		Expect(err).To(MatchError(ContainSubstring("db0 holds 1 keys")))
		st, err := nd.client.Status(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.State).To(Equal(nodeapi.StateResetFailed))

		st, err = nd.client.Reset(ctx, nodeapi.ResetRequest{InstanceID: "any-id"})
		Expect(err).NotTo(HaveOccurred())
		Expect(st.State).To(Equal(nodeapi.StateFree))
		nd.claim(ctx, "inst-1")
	})

	It("quarantines a node whose data cannot be wiped until a later reset passes", func(ctx SpecContext) {
		nd.claim(ctx, "inst-1")
		c, pw := nd.bind(ctx, "inst-1", "b1")
		Expect(c.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		how, undo := makeUnwipeable(filepath.Join(nd.cfg.DataDir, "data"))
		DeferCleanup(undo)
		By("making the data directory undeletable with " + how)

		_, err := nd.client.Reset(ctx, nodeapi.ResetRequest{InstanceID: "inst-1"})
		Expect(err).To(MatchError(nodeapi.ErrDirty))
		Expect(err).To(MatchError(ContainSubstring("wiping the data directory")))
		st, err := nd.client.Status(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.State).To(Equal(nodeapi.StateResetFailed))
		Expect(st.InstanceID).To(Equal("inst-1"))
		Expect(st.ResetError).To(ContainSubstring("wiping"))
		Expect(nd.tenant("b1", pw).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")), "the tenant is locked out all the same")

		_, err = nd.client.Claim(ctx, nodeapi.ClaimRequest{InstanceID: "inst-2", Parameters: params.Defaults()})
		Expect(err).To(MatchError(nodeapi.ErrDirty))
		_, err = nd.client.Reset(ctx, nodeapi.ResetRequest{InstanceID: "inst-2"})
		Expect(err).To(MatchError(nodeapi.ErrConflict))
		_, err = nd.client.Reset(ctx, nodeapi.ResetRequest{InstanceID: "inst-1"})
		Expect(err).To(MatchError(nodeapi.ErrDirty), "still undeletable")

		undo()
		st, err = nd.client.Reset(ctx, nodeapi.ResetRequest{InstanceID: "inst-1"})
		Expect(err).NotTo(HaveOccurred())
		Expect(st.State).To(Equal(nodeapi.StateFree))
		Expect(st.ResetError).To(BeEmpty())
		Expect(filepath.Join(nd.cfg.DataDir, "data", "locked")).NotTo(BeAnExistingFile())
		Expect(nd.claim(ctx, "inst-2").State).To(Equal(nodeapi.StateClaimed))
	})

	It("adopts its redis-server after an agent crash", func(ctx SpecContext) {
		nd.claim(ctx, "inst-1")
		c, _ := nd.bind(ctx, "inst-1", "b1")
		Expect(c.Set(ctx, "k", "v", 0).Err()).To(Succeed())
		pid := nd.pid()
		nd.crash()
		// The agent died between writing its files and telling the server:
		// the server has a user and a setting the files do not.
		admin := nd.tenant(nodeagent.AdminUser, nd.adminPassword())
		Expect(admin.Do(ctx, "ACL", "SETUSER", "stray", "on", ">"+secret.New(), "~*", "+@all").Err()).To(Succeed())
		Expect(admin.ConfigSet(ctx, "timeout", "99").Err()).To(Succeed())

		nd = startNode(nd.cfg)
		Expect(nd.pid()).To(Equal(pid))
		Expect(admin.Do(ctx, "ACL", "USERS").Val()).To(ConsistOf("b1", "default", nodeagent.AdminUser))
		Expect(admin.ConfigGet(ctx, "timeout").Val()).To(HaveKeyWithValue("timeout", "0"))
		st, err := nd.client.Status(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.State).To(Equal(nodeapi.StateClaimed))
		Expect(st.Keys).To(Equal(int64(1)))
		Expect(c.Get(ctx, "k").Val()).To(Equal("v"))
	})

	DescribeTable("finishes on start a reset that a crash interrupted",
		func(ctx SpecContext, serverDied bool) {
			nd.claim(ctx, "inst-1")
			c, pw := nd.bind(ctx, "inst-1", "b1")
			for i := range 100 {
				Expect(c.Set(ctx, fmt.Sprint(i), i, 0).Err()).To(Succeed())
			}
			pid := nd.pid()
			nd.crash()
			if serverDied {
				Expect(syscall.Kill(pid, syscall.SIGKILL)).To(Succeed())
				Eventually(func() error { return processAlive(pid) }).Should(HaveOccurred())
			}

			// The agent died right after recording the reset's first step.
			statePath := filepath.Join(nd.cfg.DataDir, "state.json")
			var st map[string]any
			data, err := os.ReadFile(statePath)
			Expect(err).NotTo(HaveOccurred())
			Expect(json.Unmarshal(data, &st)).To(Succeed())
			st["state"] = nodeapi.StateResetting
			data, err = json.Marshal(st)
			Expect(err).NotTo(HaveOccurred())
			Expect(os.WriteFile(statePath, data, 0o600)).To(Succeed())

			nd = startNode(nd.cfg)
			status, err := nd.client.Status(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(status.State).To(Equal(nodeapi.StateFree))
			Expect(status.InstanceID).To(BeEmpty())
			Expect(status.Keys).To(BeZero())
			Expect(status.RedisRunning).To(BeTrue())
			Expect(nd.pid()).NotTo(Equal(pid), "the old server was stopped")
			Eventually(func() error { return processAlive(pid) }).Should(HaveOccurred())
			Expect(nd.tenant("b1", pw).Ping(ctx).Err()).To(MatchError(ContainSubstring("WRONGPASS")))
			nd.claim(ctx, "inst-2")
		},
		Entry("with its redis-server still running", false),
		Entry("with its redis-server killed too", true),
	)

	It("serves only clients that trust its CA and know its credentials", func(ctx SpecContext) {
		other, err := tlstest.NewCA("other-ca")
		Expect(err).NotTo(HaveOccurred())
		_, err = nd.clientWith(nd.cfg.Credentials, other.PEM).Status(ctx)
		Expect(err).To(MatchError(nodeapi.ErrUnavailable))
		Expect(err).To(MatchError(ContainSubstring("certificate")))

		_, err = nd.clientWith(nodeapi.Credentials{Username: "broker", Password: "wrong"}, ca.PEM).Status(ctx)
		Expect(err).To(MatchError(ContainSubstring("401")))
		Expect(err.Error()).NotTo(ContainSubstring(nd.cfg.Credentials.Password))

		_, err = nodeapi.NewClient(nodeapi.ClientConfig{URL: "http://" + nd.addr(), CACert: ca.PEM})
		Expect(err).To(MatchError(ContainSubstring("https")))
		_, err = nodeapi.NewClient(nodeapi.ClientConfig{URL: nd.url})
		Expect(err).To(MatchError(ContainSubstring("ca_cert")))
		_, err = nodeapi.NewClient(nodeapi.ClientConfig{URL: nd.url, CACert: "junk"})
		Expect(err).To(MatchError(ContainSubstring("PEM")))
	})

	DescribeTable("answers bad requests with a JSON error",
		func(method, path, contentType, body string, auth bool, want int, code string) {
			resp := rawRequest(nd, method, path, contentType, body, auth)
			Expect(resp.status).To(Equal(want))
			Expect(resp.contentType).To(Equal("application/json"))
			Expect(resp.body.Error).To(Equal(code))
		},
		Entry("no credentials", "GET", "/v1/status", "", "", false, 401, "unauthorized"),
		Entry("malformed JSON", "PUT", "/v1/claim", "application/json", `{"instance_id":`, true, 400, "invalid"),
		Entry("unknown field", "PUT", "/v1/claim", "application/json", `{"instance_id":"i","params":{}}`, true, 400, "invalid"),
		Entry("trailing data", "POST", "/v1/reset", "application/json", `{"instance_id":"i"} {}`, true, 400, "invalid"),
		Entry("wrong content type", "PUT", "/v1/claim", "text/plain", `{}`, true, 415, "invalid"),
		Entry("huge body", "PUT", "/v1/claim", "application/json", `{"instance_id":"`+strings.Repeat("a", 100<<10)+`"}`, true, 413, "invalid"),
		Entry("binding on a free node", "PUT", "/v1/bindings/b1", "application/json", `{"instance_id":"i","password":"`+secret.New()+`"}`, true, 404, "not_found"),
		Entry("unbind without instance", "DELETE", "/v1/bindings/b1", "", "", true, 400, "invalid"),
		Entry("unbind on a free node", "DELETE", "/v1/bindings/b1?instance_id=i", "", "", true, 404, "not_found"),
		Entry("reset without instance", "POST", "/v1/reset", "application/json", `{}`, true, 400, "invalid"),
		Entry("replication with a bad leader", "PUT", "/v1/replication", "application/json", `{"instance_id":"i","leader":{"host":"a b","port":1}}`, true, 400, "invalid"),
	)
})

var _ = Describe("two nodes, leader and follower", func() {
	It("replicates the leader, reports the link and lag, refuses writes, and becomes writable when promoted", func(ctx SpecContext) {
		leader := startNode(nodeConfig(tempDir(), "127.0.0.1"))
		follower := startNode(nodeConfig(tempDir(), "127.0.0.2"))
		leader.claim(ctx, "inst-leader")
		follower.claim(ctx, "inst-follower")
		lc, _ := leader.bind(ctx, "inst-leader", "app-l")
		fc, _ := follower.bind(ctx, "inst-follower", "app-f")
		for i := range 100 {
			Expect(lc.Set(ctx, fmt.Sprint("k", i), i, 0).Err()).To(Succeed())
		}

		By("giving the follower a replication user on the leader")
		replPw := secret.New()
		b, err := leader.client.Bind(ctx, "repl-inst-follower", nodeapi.BindingRequest{InstanceID: "inst-leader", Password: replPw, Role: nodeapi.BindingRoleReplication})
		Expect(err).NotTo(HaveOccurred())
		Expect(b.Role).To(Equal(nodeapi.BindingRoleReplication))
		repl := leader.tenant("repl-inst-follower", replPw)
		Expect(repl.Get(ctx, "k1").Err()).To(MatchError(ContainSubstring("NOPERM")), "a replication user reads no keys")

		_, err = follower.client.SetReplication(ctx, nodeapi.ReplicationRequest{InstanceID: "inst-follower",
			Leader: &nodeapi.Leader{Host: follower.cfg.Host, Port: follower.cfg.Port, Username: "x", Password: "y"}})
		Expect(err).To(MatchError(nodeapi.ErrInvalid), "a node cannot follow itself")
		_, err = follower.client.SetReplication(ctx, nodeapi.ReplicationRequest{InstanceID: "inst-leader",
			Leader: &nodeapi.Leader{Host: "127.0.0.1", Port: leader.cfg.Port}})
		Expect(err).To(MatchError(nodeapi.ErrConflict))

		By("following the leader")
		leaderAt := &nodeapi.Leader{Host: "127.0.0.1", Port: leader.cfg.Port, Username: "repl-inst-follower", Password: replPw}
		st, err := follower.client.SetReplication(ctx, nodeapi.ReplicationRequest{InstanceID: "inst-follower", Leader: leaderAt})
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Replication.Role).To(Equal(nodeapi.RoleFollower))
		// The leader waits repl-diskless-sync-delay (5s by default) for more
		// followers before it streams the first snapshot.
		Eventually(func(g Gomega) {
			st, err := follower.client.Status(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(st.Replication.Link).To(Equal("up"))
			g.Expect(st.Keys).To(Equal(int64(100)))
		}).WithContext(ctx).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(fc.Get(ctx, "k42").Val()).To(Equal("42"))
		Expect(lc.Set(ctx, "late", "v", 0).Err()).To(Succeed())
		Eventually(func() string { return fc.Get(ctx, "late").Val() }).WithContext(ctx).Should(Equal("v"))
		Eventually(func(g Gomega) {
			st, err := follower.client.Status(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			r := st.Replication
			g.Expect(r.Role).To(Equal(nodeapi.RoleFollower))
			g.Expect(r.LeaderHost).To(Equal("127.0.0.1"))
			g.Expect(r.LeaderPort).To(Equal(leader.cfg.Port))
			g.Expect(r.Link).To(Equal("up"))
			g.Expect(r.Offset).To(BeNumerically(">", 0))
			g.Expect(r.LagBytes).To(BeNumerically(">=", 0), "the lag is known: the follower asked its leader")
		}).WithContext(ctx).Should(Succeed())
		ls, err := leader.client.Status(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(ls.Replication.Role).To(Equal(nodeapi.RoleLeader))
		Expect(ls.Replication.Followers).To(Equal(1))
		Expect(ls.Bindings).To(ConsistOf("app-l", "repl-inst-follower"))

		Expect(fc.Set(ctx, "x", "y", 0).Err()).To(MatchError(ContainSubstring("READONLY")))
		conf, err := os.ReadFile(filepath.Join(follower.cfg.DataDir, "redis.conf"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(conf)).To(ContainSubstring(fmt.Sprintf("replicaof \"127.0.0.1\" %d\n", leader.cfg.Port)))

		By("promoting the follower")
		st, err = follower.client.SetReplication(ctx, nodeapi.ReplicationRequest{InstanceID: "inst-follower", Leader: nil})
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Replication.Role).To(Equal(nodeapi.RoleLeader))
		Expect(fc.Set(ctx, "x", "y", 0).Err()).To(Succeed())
		Expect(fc.Get(ctx, "late").Val()).To(Equal("v"), "the data stays")
		conf, err = os.ReadFile(filepath.Join(follower.cfg.DataDir, "redis.conf"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(conf)).NotTo(ContainSubstring("replicaof"))

		By("resetting a node while it follows")
		_, err = follower.client.SetReplication(ctx, nodeapi.ReplicationRequest{InstanceID: "inst-follower", Leader: leaderAt})
		Expect(err).NotTo(HaveOccurred())
		st, err = follower.client.Reset(ctx, nodeapi.ResetRequest{InstanceID: "inst-follower"})
		Expect(err).NotTo(HaveOccurred())
		Expect(st.State).To(Equal(nodeapi.StateFree))
		Expect(st.Replication.Role).To(Equal(nodeapi.RoleLeader))
		Expect(st.Keys).To(BeZero())
	})
})

var _ = Describe("Config", func() {
	It("names every field at fault and fills in defaults", func() {
		var c nodeagent.Config
		err := c.Validate()
		Expect(err).To(HaveOccurred())
		for _, field := range []string{"listen", "credentials.username", "tls.cert_file", "node_id", "host", "data_dir"} {
			Expect(err.Error()).To(ContainSubstring(field))
		}
		c = nodeagent.Config{
			Listen: "127.0.0.1:9002", Credentials: nodeapi.Credentials{Username: "u", Password: "p"},
			TLS: nodeagent.TLS{CertFile: "c", KeyFile: "k"}, NodeID: "n1", Host: "10.0.0.7", DataDir: "/var/vcap/store/redis",
		}
		Expect(c.Validate()).To(Succeed())
		Expect(c.Port).To(Equal(6379))
		Expect(c.Bind).To(Equal("10.0.0.7"))
		Expect(c.MaxMemoryPercent).To(Equal(75))
		Expect(c.LogDir).To(Equal("/var/vcap/store/redis/logs"))
		c.MaxMemoryPercent = 101
		Expect(c.Validate()).To(MatchError(ContainSubstring("maxmemory_percent")))
	})
})
